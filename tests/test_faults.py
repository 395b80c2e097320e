"""Faults: a training process killed mid-checkpoint, a stop button, a full or unwritable disk and
a diverging run all leave a loadable model behind and say what happened."""

from __future__ import annotations

import errno
import json
import math
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest
import torch

from charrnn import checkpoint as ckpt
from charrnn.checkpoint import CheckpointError, load_model, load_training_state, save_checkpoint
from charrnn.engine import sample
from charrnn.sampling import SampleSettings
from charrnn.train import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
TEXT = "Once upon a time a little fox lived at the edge of a wood, and every night it sang.\n" * 30
TINY = {"num_layers": 1, "hidden_size": 16, "embedding_dim": 8, "batch_size": 4, "seq_len": 16}


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def generates(model) -> bool:
    return len(sample(model, "fox", SampleSettings(length=20, seed=1).checked(len(model.vocab)))[0]) == 20


# --- SIGKILL in the middle of writing a checkpoint -----------------------------------------------------

# One Python process imports torch once, then forks training children that checkpoint at every step.
# Each child is SIGKILLed: at chosen points inside save_checkpoint (it blocks there and says so), or
# after a random delay. After each kill the parent checks that the checkpoint loads and resumes.
SUPERVISOR = textwrap.dedent(
    """
    import json, os, random, signal, sys, time
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from charrnn import checkpoint as ckpt
    from charrnn.checkpoint import load_model, load_training_state
    from charrnn.train import TrainConfig, train

    target, points, random_kills = Path(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3])
    text = "Once upon a time a little fox lived at the edge of a wood, and every night it sang.\\n" * 30
    config = TrainConfig(num_layers=1, hidden_size=16, embedding_dim=8, batch_size=4, seq_len=16, max_steps=10**6,
                         eval_interval=1, patience=None, warmup_steps=0)

    def child(pause_at, write_fd):
        def pause(point):
            if point == pause_at:
                os.write(write_fd, b"x")
                time.sleep(3600)
        original_write, original_exchange, original_fsync = ckpt.write_model_files, ckpt._exchange, ckpt._fsync_tree
        def write_model_files(*args, **kwargs):
            directory = args[1]
            (directory / ckpt.CONFIG).write_text("{}")
            pause("before-weights")  # config.json half there, no weights yet
            original_write(*args, **kwargs)
            pause("after-weights")
        def fsync_tree(path):
            pause("before-fsync")
            original_fsync(path)
        def exchange(a, b):
            pause("before-swap")
            done = original_exchange(a, b)
            pause("after-swap")  # the old checkpoint is in the staging directory, not yet removed
            return done
        ckpt.write_model_files, ckpt._exchange, ckpt._fsync_tree = write_model_files, exchange, fsync_tree
        for _ in train([text], target, config, resume=ckpt.is_checkpoint(target)):
            if pause_at == "random":
                os.write(write_fd, b"x")

    def run_and_kill(pause_at, delay):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            try:
                child(pause_at, write_fd)
            finally:
                os._exit(0)
        os.close(write_fd)
        started = os.read(read_fd, 1)  # blocks until the child reached the point (or wrote something)
        while pause_at == "random" and not ckpt.is_checkpoint(target):
            time.sleep(0.01)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_fd)
        leftovers = sorted(p.name for p in target.parent.iterdir() if p.name.startswith("." + target.name + ".tmp-"))
        try:
            model = load_model(target, device="cpu")
            state = load_training_state(target)
            ok, step, error = True, state["meta"]["step"], None
            finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
        except Exception as exc:
            ok, step, error, finite = False, None, f"{type(exc).__name__}: {exc}", False
        return {"point": pause_at, "reached": bool(started), "loads": ok, "finite": finite, "step": step,
                "error": error, "staging_left": leftovers}

    rng = random.Random(int(sys.argv[4]))
    results = [run_and_kill("random", 0.3)]  # a first checkpoint to protect
    results += [run_and_kill(point, 0.0) for point in points]
    results += [run_and_kill("random", rng.uniform(0.0, 0.25)) for _ in range(random_kills)]
    events = list(train([text], target, TrainConfig(max_steps=results[-1]["step"] + 2), resume=True))
    leftovers = sorted(p.name for p in target.parent.iterdir() if p.name != target.name)
    results.append({"point": "resume", "done": events[-1].kind == "done", "step": events[-1].step, "left": leftovers})
    print(json.dumps(results))
    """
)
KILL_POINTS = ["before-weights", "after-weights", "before-fsync", "before-swap", "after-swap"]


def test_sigkill_while_writing_a_checkpoint_leaves_the_previous_one_loadable(tmp_path):
    script = tmp_path / "supervisor.py"
    script.write_text(SUPERVISOR)
    target = tmp_path / "runs" / "model"
    target.parent.mkdir()
    proc = subprocess.run(
        [sys.executable, str(script), str(target), ",".join(KILL_POINTS), "3", "7"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    report = json.dumps(results, indent=1)
    kills = results[:-1]
    assert len(kills) == 1 + len(KILL_POINTS) + 3
    assert all(r["reached"] for r in kills), report
    assert all(r["loads"] and r["finite"] for r in kills), report
    # Killed mid-write, the run left a hidden staging directory and nothing else; the checkpoint is whole.
    for r in kills[1 : 1 + len(KILL_POINTS)]:
        assert r["staging_left"], report
    steps = [r["step"] for r in kills]
    assert steps == sorted(steps), report  # every resumed run went on from where the last checkpoint was
    assert results[-1]["done"], report
    assert results[-1]["left"] == [], report  # the next save removed what the killed processes left


def test_the_fallback_without_an_atomic_exchange_survives_a_kill_between_its_renames(tmp_path, monkeypatch):
    """Where renameat2 is missing (macOS, some filesystems), the old checkpoint is renamed aside first."""
    torch.manual_seed(0)
    from charrnn.model import CharRNN
    from charrnn.vocab import Vocab

    old = CharRNN(list(Vocab.build([TEXT]).chars), num_layers=1, hidden_size=16, embedding_dim=8)
    new = CharRNN(**old.config)
    target = save_checkpoint(tmp_path / "model", old, "old")
    monkeypatch.setattr(ckpt, "_exchange", lambda a, b: False)  # noqa: ARG005
    real_rename = ckpt.os.rename

    class Killed(BaseException):
        pass

    def rename(src, dst):
        real_rename(src, dst)
        if Path(dst).name.endswith(".old"):
            raise Killed  # the process dies right here: target renamed aside, new one not yet in place

    monkeypatch.setattr(ckpt.os, "rename", rename)
    with pytest.raises(Killed):
        save_checkpoint(target, new, "new")
    monkeypatch.setattr(ckpt.os, "rename", real_rename)
    assert same_weights(load_model(target), old)  # the interrupted swap is finished or undone on the next load
    save_checkpoint(target, new, "new")
    assert same_weights(load_model(target), new)
    assert not (tmp_path / "model.old").exists()


# --- stop, disk full, unwritable, NaN -------------------------------------------------------------------

def test_stop_during_training_keeps_the_best_checkpoint_and_it_loads(tmp_path):
    cancel = threading.Event()
    best = None
    events = []
    config = TrainConfig(**TINY, max_steps=10_000, eval_interval=3, patience=None)
    for event in train([TEXT], tmp_path / "m", config, cancel=cancel):
        events.append(event)
        if event.kind == "eval":
            best = event.best_val_loss
            if event.step >= 6:
                cancel.set()  # the Stop button, from the UI thread
    done = events[-1]
    assert done.kind == "done" and done.result.stopped_because == "cancelled"
    assert done.step < 20
    model = load_model(tmp_path / "m")
    assert generates(model)
    assert math.isfinite(best) and math.isfinite(done.result.best_val_loss)
    assert load_training_state(tmp_path / "m")["meta"]["step"] == done.step  # resumable from where it stopped


def test_stop_before_the_first_step_saves_nothing_and_says_so(tmp_path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CheckpointError, match="before the first step; nothing was saved"):
        list(train([TEXT], tmp_path / "m", TrainConfig(**TINY, max_steps=100), cancel=cancel))
    assert not (tmp_path / "m").exists()


@pytest.fixture
def trained(tmp_path):
    list(train([TEXT], tmp_path / "previous", TrainConfig(**TINY, max_steps=3, eval_interval=1)))
    return tmp_path / "previous", load_model(tmp_path / "previous")


def _disk_full(*args, **kwargs):  # noqa: ARG001
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_saving_is_a_clear_error_and_the_previous_checkpoint_survives(tmp_path, trained, monkeypatch):
    directory, before = trained
    monkeypatch.setattr(ckpt, "save_file", _disk_full)
    with pytest.raises(CheckpointError, match=r"could not write the checkpoint to .*previous: No space left on device"):
        save_checkpoint(directory, CharRNN_like(before), "card")
    # Resuming and fine-tuning hit the full disk at their first checkpoint: same error, old model intact.
    with pytest.raises(CheckpointError, match="No space left on device"):
        list(train([TEXT], directory, TrainConfig(max_steps=6), resume=True))
    with pytest.raises(CheckpointError, match="No space left on device"):
        tuning = TrainConfig(max_steps=2, eval_interval=1, batch_size=4, seq_len=16)
        list(train([TEXT], tmp_path / "finetuned", tuning, init=directory))
    monkeypatch.undo()
    after = load_model(directory)
    assert same_weights(before, after) and generates(after)
    assert not list(tmp_path.glob(".*.tmp-*")), "a staging directory was left behind"
    assert not (tmp_path / "finetuned").exists()


def CharRNN_like(model):  # noqa: N802 - reads like the constructor it wraps
    from charrnn.model import CharRNN

    return CharRNN(**model.config)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_unwritable_checkpoint_directory_is_a_clear_error_before_training(tmp_path, trained, monkeypatch, code):
    directory, before = trained

    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(suffix=None, prefix=None, dir=None):  # noqa: A002 - what it does in a read-only tmp_path (root ignores chmod)
        if dir is not None and Path(dir).is_relative_to(tmp_path):
            raise OSError(code, {errno.EACCES: "Permission denied", errno.EROFS: "Read-only file system"}[code])
        return real_mkdtemp(suffix, prefix, dir)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    with pytest.raises(CheckpointError, match=r"could not write the checkpoint to "
                                              r".*previous: (Permission denied|Read-only file system)"):
        save_checkpoint(directory, before, "card")
    steps = []
    with pytest.raises(CheckpointError, match="(Permission denied|Read-only file system)"):
        for event in train([TEXT], tmp_path / "new", TrainConfig(**TINY, max_steps=50, eval_interval=25)):
            steps.append(event.step)
    assert max(steps, default=0) == 0, "trained before finding out the model could not be saved"
    monkeypatch.undo()
    assert same_weights(load_model(directory), before)


def test_a_checkpoint_directory_under_a_file_is_a_clear_error(tmp_path, trained):
    _, model = trained
    (tmp_path / "afile").write_text("not a directory")
    with pytest.raises(CheckpointError, match="could not write the checkpoint to .*afile/m"):
        save_checkpoint(tmp_path / "afile" / "m", model, "card")


def test_nan_from_an_absurd_learning_rate_is_reported_and_never_saved_as_best(tmp_path):
    events = []
    with pytest.raises(CheckpointError, match="better than guessing"):
        config = TrainConfig(**TINY, max_steps=30, eval_interval=5, lr=1e30, warmup_steps=0)
        for event in train([TEXT], tmp_path / "m", config):
            events.append(event)
    nans = [e for e in events if e.kind == "nan"]
    assert nans and all("non-finite loss" in e.message for e in nans)
    assert not (tmp_path / "m" / "model.safetensors").exists(), "blown-up weights were published"
