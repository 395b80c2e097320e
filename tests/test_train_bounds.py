"""A run's bounds: a time budget covers all of it, a cancel ends it within seconds at any stage,
huge held-out text is scored in a bounded sample, and no staged index outlives its run."""

from __future__ import annotations

import importlib
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

import charrnn.checkpoint
from charrnn.batching import split_train_val
from charrnn.checkpoint import CheckpointError, load_model, load_training_state
from charrnn.engine import sample
from charrnn.evaluate import evaluate_ids, evaluate_text
from charrnn.model import CharRNN
from charrnn.originality import staged_index
from charrnn.sampling import SampleSettings
from charrnn.train import TrainConfig, train
from charrnn.vocab import Vocab

train_module = importlib.import_module("charrnn.train")  # the module: charrnn.train as an attribute is the function
heldout_module = importlib.import_module("charrnn.heldout")  # where the held-out text is chosen and scored

# A wide LSTM read by a tiny batch: training steps take milliseconds, scoring held-out text takes
# seconds, as fine-tuning a real model on a huge upload does.
WIDE = {"num_layers": 1, "hidden_size": 512, "embedding_dim": 16, "dropout": 0.0, "batch_size": 2, "seq_len": 16,
        "lr": 1e-3, "warmup_steps": 0, "patience": None}
SMALL = {"num_layers": 1, "hidden_size": 32, "embedding_dim": 16, "dropout": 0.0, "batch_size": 4, "seq_len": 16,
         "lr": 1e-2, "warmup_steps": 2, "patience": None}


@pytest.fixture(autouse=True, scope="module")
def optimizer_imported():
    """A process's first optimizer imports torch._dynamo (seconds): not part of any budget measured here."""
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """A temp directory of this test's own, so staged indexes of other processes do not count."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def words(n_chars: int, seed: int = 0) -> str:
    """Varied text: random words, so the n-gram index and the vocabulary do real work."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(400)]
    return " ".join(rng.choices(vocab, k=n_chars // 5))[:n_chars]


def base_for(text: str, hidden_size: int) -> CharRNN:
    """A model to fine-tune (as the app's visitors do): its time budget is all training, no autosize measuring."""
    torch.manual_seed(0)
    return CharRNN(list(Vocab.build([text]).chars), num_layers=1, hidden_size=hidden_size, embedding_dim=16,
                   dropout=0.0)


def staged(root: Path) -> list[Path]:
    return sorted(root.glob("charrnn-index-*"))


def test_a_small_budget_bounds_a_huge_text_run_final_scoring_included(tmp_path):
    # The reported case, scaled down: a big upload, a short budget and a few steps. Training ends
    # at max_steps long before the budget; scoring 300,000 held-out characters would take ~10 s more.
    text = words(600_000)
    began = time.monotonic()
    events = list(train([text], tmp_path / "m", TrainConfig(**WIDE, max_steps=5, time_budget=3.0, val_fraction=0.5),
                        init=base_for(text, 512), card_info={"eval_command": "charrnn eval m big.txt --split val"}))
    wall = time.monotonic() - began
    result = events[-1].result
    assert result.steps == 5 and result.stopped_because == "finished"
    assert wall < 3.0 + 2.5, f"took {wall:.1f} s on a 3 s budget"
    assert "time budget ran out" in result.val_scope and "300,000 held-out characters" in result.val_scope
    assert result.val_scope in events[-1].message
    card = (tmp_path / "m" / "README.md").read_text()
    assert result.val_scope in card and "Reproduce:" not in card  # a partial score is not what `charrnn eval` reports
    load_model(tmp_path / "m")


def test_the_final_scoring_of_a_short_run_takes_at_most_its_share_of_the_budget(tmp_path):
    # Two steps on a 30 s budget end long before it; scoring 300,000 held-out characters would take ~10 s,
    # but the final scoring gets its share of the budget (1.5 s) and says it stopped there.
    text = words(600_000, seed=2)
    config = TrainConfig(**WIDE, max_steps=2, time_budget=30.0, val_fraction=0.5)
    events = list(train([text], tmp_path / "m", config, init=base_for(text, 512)))
    result = events[-1].result
    assert result.steps == 2 and result.stopped_because == "finished"
    assert result.spent["final scoring"] < heldout_module.FINAL_SCORE_SHARE * 30.0 + 1.0, result.spent
    assert "share of the time budget (5%) ran out" in result.val_scope, result.val_scope


def test_a_cancel_during_the_final_scoring_ends_the_run_within_seconds_as_cancelled(tmp_path, monkeypatch):
    monkeypatch.setattr(heldout_module, "EVAL_CHARS_DURING_TRAINING", 20_000)
    cancel, cancelled_at = threading.Event(), []

    def stop_soon() -> None:
        cancelled_at.append(time.monotonic())
        cancel.set()

    def scoring(model, ids, *args, **kwargs):
        if len(ids) > 20_000:  # the held-out text, after training: the Stop button comes 0.3 s into it
            threading.Timer(0.3, stop_soon).start()
        return evaluate_ids(model, ids, *args, **kwargs)

    monkeypatch.setattr(heldout_module, "evaluate_ids", scoring)
    config = TrainConfig(**WIDE, max_steps=3, val_fraction=0.5)
    events = list(train([words(600_000, seed=1)], tmp_path / "m", config, cancel=cancel))
    ended = time.monotonic()
    assert cancelled_at, "the final scoring never started"
    assert ended - cancelled_at[0] < 2.5, f"ended {ended - cancelled_at[0]:.1f} s after the cancel"
    result = events[-1].result
    assert result.stopped_because == "cancelled" and result.steps == 3
    state = load_training_state(tmp_path / "m")  # resumable, as the app's time slices need
    assert state["meta"]["reason"] == "cancelled" and state["meta"]["step"] == 3


def test_a_cancel_during_start_up_stops_within_a_second_and_saves_nothing(tmp_path, private_tmp):
    text = words(5_000_000, seed=2)  # seconds of indexing, counting and encoding before the first step
    cancel, cancelled_at = threading.Event(), []

    def stop() -> None:
        cancelled_at.append(time.monotonic())
        cancel.set()

    threading.Timer(0.2, stop).start()
    with pytest.raises(CheckpointError, match="stopped before the first step; nothing was saved") as info:
        list(train([text], tmp_path / "m", TrainConfig(**SMALL, max_steps=5), cancel=cancel))
    assert time.monotonic() - cancelled_at[0] < 1.0
    assert isinstance(info.value, getattr(train_module, "StoppedBeforeFirstStep", ()))
    assert not (tmp_path / "m").exists() and staged(private_tmp) == []


def test_a_cancel_while_a_time_budget_picks_the_model_stops_the_measuring(tmp_path, monkeypatch):
    """From scratch with a time budget, autosize times candidate models first; a Stop ends that too,
    after the measurement under way."""
    import charrnn.autosize as autosize

    cancel, measured = threading.Event(), []
    real = autosize.measure_chars_per_s

    def measure_then_stop(*args, **kwargs) -> float:
        measured.append(args[1:3])
        cancel.set()  # the visitor presses Stop while the first candidate is being timed
        return real(*args, **{**kwargs, "max_seconds": 0.05})

    monkeypatch.setattr(autosize, "measure_chars_per_s", measure_then_stop)
    with pytest.raises(CheckpointError, match="stopped before the first step"):
        list(train([words(2_000_000, seed=4)], tmp_path / "m", TrainConfig(time_budget=3600), cancel=cancel))
    assert len(measured) == 1, f"{len(measured)} models were timed: {measured}"
    assert not (tmp_path / "m").exists()


def test_a_run_stopped_before_any_usable_evaluation_says_it_was_stopped(tmp_path):
    cancel = threading.Event()
    config = TrainConfig(**(SMALL | {"lr": 1e30, "warmup_steps": 0}), max_steps=50)
    refusal = "stopped before any evaluation was better than guessing uniformly; nothing was saved"
    with pytest.raises(CheckpointError, match=refusal) as info:
        for event in train([words(6_000, seed=7)], tmp_path / "m", config, cancel=cancel):
            if event.kind == "step":
                cancel.set()  # after the first step, which blew the weights up
    assert isinstance(info.value, getattr(train_module, "TrainingStopped", ()))
    assert not (tmp_path / "m").exists()


def test_an_ordinary_budget_run_stops_training_in_time_for_its_final_evaluation_and_samples(tmp_path):
    text = words(1_000_000, seed=3)  # a second of start-up, which the budget covers too
    config = TrainConfig(**SMALL, time_budget=4.0, eval_interval=50, val_fraction=0.02)  # 20,000 held-out characters
    began = time.monotonic()
    events = list(train([text], tmp_path / "m", config, init=base_for(text, 128)))
    wall = time.monotonic() - began
    result = events[-1].result
    assert result.stopped_because == "time budget reached"
    assert wall < 4.0 + 0.5, f"took {wall:.2f} s on a 4 s budget"
    assert result.val_scope == "over all 20,000 held-out characters"  # scored in full, not cut short
    card = (tmp_path / "m" / "README.md").read_text()
    assert card.count("Temperature ") == 3 and "Validation loss: **" in card
    saved = load_training_state(tmp_path / "m")["meta"]["card_info"]
    assert [len(s["text"]) for s in saved["samples"]] == [400, 400, 400]


def test_a_held_out_text_scored_during_training_is_not_scored_again(tmp_path, monkeypatch):
    calls = []

    def counting(model, ids, *args, **kwargs):
        calls.append(len(ids))
        return evaluate_ids(model, ids, *args, **kwargs)

    monkeypatch.setattr(heldout_module, "evaluate_ids", counting)
    text = words(6_000, seed=4)
    events = list(train([text], tmp_path / "m", TrainConfig(**SMALL, max_steps=20, eval_interval=10),
                        card_info={"eval_command": "charrnn eval m t.txt --split val"}))
    assert calls == [600, 600]  # the evaluations at steps 10 and 20, nothing more at the end
    result = events[-1].result
    val = split_train_val([text], 0.1)[1]
    assert result.best_val_loss == evaluate_text(load_model(tmp_path / "m"), val)["loss"]  # what `charrnn eval` reports
    assert result.val_scope == "over all 600 held-out characters"
    assert "Reproduce: `charrnn eval m t.txt --split val`" in (tmp_path / "m" / "README.md").read_text()


def test_a_long_held_out_text_is_scored_on_its_start_and_the_card_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(heldout_module, "EVAL_CHARS_DURING_TRAINING", 300)
    monkeypatch.setattr(heldout_module, "EVAL_CHARS_AT_END", 1_000)
    text = words(30_000, seed=5)
    events = list(train([text], tmp_path / "m", TrainConfig(**SMALL, max_steps=10, eval_interval=5),
                        card_info={"eval_command": "charrnn eval m t.txt --split val"}))
    result = events[-1].result
    assert result.val_scope == "over the first 1,000 of 3,000 held-out characters" and result.val_chars == 1_000
    val = split_train_val([text], 0.1)[1]
    assert result.best_val_loss == evaluate_text(load_model(tmp_path / "m"), val[:1_000])["loss"]
    card = (tmp_path / "m" / "README.md").read_text()
    bits = result.best_val_loss / 0.6931471805599453
    assert f"({bits:.4f} bits/char), over the first 1,000 of 3,000 held-out characters." in card
    assert "Reproduce:" not in card


def test_evaluation_stops_between_windows_when_asked_and_says_how_much_it_scored():
    model = CharRNN(list(Vocab.build(["abc"]).chars), num_layers=1, hidden_size=8, embedding_dim=4)
    ids = torch.randint(1, 4, (3 * 256 + 1,))
    whole = evaluate_ids(model, ids)
    assert whole["complete"] and whole["chars"] == 3 * 256
    asked = []
    part = evaluate_ids(model, ids, should_stop=lambda: asked.append(1) or len(asked) >= 2)
    assert not part["complete"] and part["chars"] == 2 * 256 and len(asked) == 2
    assert part["loss"] == pytest.approx(evaluate_ids(model, ids[: 2 * 256 + 1])["loss"], rel=1e-6)


def test_no_staged_index_outlives_its_run_however_the_run_ends(tmp_path, private_tmp, monkeypatch):
    text = words(6_000, seed=6)
    list(train([text], tmp_path / "done", TrainConfig(**SMALL, max_steps=5)))
    assert staged(private_tmp) == []

    run = train([text], tmp_path / "closed", TrainConfig(**SMALL, max_steps=10_000))
    assert next(run).kind == "start" and staged(private_tmp)  # staged while the run is on
    run.close()  # a closed browser tab: the consumer stops reading
    assert staged(private_tmp) == []

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(charrnn.checkpoint, "save_file", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device") as info:  # info keeps the run's frames alive
        list(train([text], tmp_path / "full", TrainConfig(**SMALL, max_steps=5, eval_interval=1)))
    assert info.value is not None and staged(private_tmp) == []


def test_staging_an_index_removes_those_of_processes_that_were_killed(private_tmp):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    killed = private_tmp / f"charrnn-index-{int(dead.stdout)}-abc123"
    living = private_tmp / f"charrnn-index-{os.getppid()}-def456"
    for directory in (killed, living):
        directory.mkdir()
        (directory / "ngram_index.safetensors").write_bytes(b"x")
    with staged_index(["a quiet text, indexed for a new run"], "t.txt", False) as name:
        assert Path(name).name.startswith(f"charrnn-index-{os.getpid()}-")
        assert not killed.exists() and living.exists()
    assert staged(private_tmp) == [living]


def test_a_card_sample_cut_short_is_the_start_of_what_its_seed_writes():
    torch.manual_seed(0)
    model = CharRNN(list(Vocab.build(["the quick brown fox"]).chars), num_layers=1, hidden_size=16, embedding_dim=8)
    settings = SampleSettings(length=60, temperature=0.8, seed=7)
    full = sample(model, "", settings)[0]
    assert train_module.sample_text(model, settings) == full
    asked = []
    assert train_module.sample_text(model, settings, lambda: asked.append(1) or len(asked) >= 25) == full[:25]
