"""Training under torchrun with DistributedDataParallel: 2 CPU processes over gloo stay in step,
only rank 0 writes and logs, and the result is an ordinary model."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from safetensors.torch import load_file

from charrnn.checkpoint import load_model
from charrnn.distributed import state_digest

ROOT = Path(__file__).resolve().parent.parent
STORY = ("The fox ran to the river and the crow flew over the hill; the miller's daughter sang at the well. " * 300)


def torchrun(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)


def test_two_ranks_end_with_identical_weights_and_a_loadable_model(tmp_path):
    (tmp_path / "story.txt").write_text(STORY, encoding="utf-8")
    script = tmp_path / "run_rank.py"
    script.write_text(textwrap.dedent("""
        import json, os, sys
        from charrnn.train import TrainConfig, train
        text = open("story.txt", encoding="utf-8").read()
        config = TrainConfig(num_layers=1, hidden_size=32, embedding_dim=8, batch_size=4, seq_len=32, max_steps=30,
                             eval_interval=10)
        kinds = []
        for event in train([text], "model", config):
            kinds.append(event.kind)
            if event.kind == "done":
                result = event.result
        with open(f"rank{os.environ['RANK']}.json", "w") as f:
            json.dump({"digests": result.rank_weights_sha256, "kinds": kinds, "val": result.best_val_loss,
                       "steps": result.steps}, f)
    """), encoding="utf-8")
    run = torchrun([str(script)], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    digests = ranks[0]["digests"]
    assert len(digests) == 2 and digests[0] == digests[1], "the ranks' weights differ after training"
    assert ranks[1]["digests"] == digests and ranks[0]["steps"] == ranks[1]["steps"] == 30
    assert abs(ranks[0]["val"] - ranks[1]["val"]) < 1e-9  # every rank reports the same averaged validation loss
    # What rank 0 saved is the weights both ranks ended with, and it loads as a normal model.
    saved = load_file(tmp_path / "model" / "training_state" / "state.safetensors")
    final = {k[len("model."):]: v for k, v in saved.items() if k.startswith("model.")}
    assert state_digest(final) == digests[0]
    model = load_model(tmp_path / "model")
    assert model.hidden_size == 32 and model.vocab.encode("fox").min() > 0


def test_torchrun_cli_writes_one_checkpoint_and_logs_once(tmp_path):
    (tmp_path / "story.txt").write_text(STORY, encoding="utf-8")
    run = torchrun(["-m", "charrnn", "train", "story.txt", "--out", "m", "--layers", "1", "--hidden", "24",
                    "--embedding", "8", "--batch-size", "4", "--seq-len", "32", "--max-steps", "20", "--quiet"],
                   tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.count("charrnn: saved m") == 1
    assert load_model(tmp_path / "m").hidden_size == 24
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("m")] == ["m"]  # no stray per-rank output
