"""Hostile model files: damaged, mismatched, oversized or pickled checkpoints are refused with a
message, before any large allocation, and a pickle planted anywhere is never executed."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants
from safetensors.torch import load_file, save_file

from charrnn import checkpoint as ckpt
from charrnn.checkpoint import CheckpointError, load_model, load_training_state, save_checkpoint
from charrnn.cli import main as cli
from charrnn.model import CharRNN
from charrnn.text import read_corpus
from charrnn.train import TrainConfig, train
from charrnn.vocab import Vocab

TEXT = "Once upon a time a little fox lived at the edge of a wood, and every night it sang.\n" * 30
TINY = {"num_layers": 1, "hidden_size": 16, "embedding_dim": 8, "max_steps": 2, "eval_interval": 1, "batch_size": 4,
        "seq_len": 16}


@pytest.fixture
def good(tmp_path) -> Path:
    torch.manual_seed(0)
    model = CharRNN(list(Vocab.build([TEXT]).chars), num_layers=1, hidden_size=16, embedding_dim=8)
    return save_checkpoint(tmp_path / "good", model, "card")


def damaged(good: Path, name: str) -> Path:
    return Path(shutil.copytree(good, good.parent / name))


def write_config(directory: Path, **changes) -> None:
    config = json.loads((directory / "config.json").read_text()) | changes
    (directory / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("keep", [0, 7, 8, 100, 0.5, -1])
def test_truncated_safetensors_is_refused(good, keep):
    directory = damaged(good, "truncated")
    data = (directory / "model.safetensors").read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    (directory / "model.safetensors").write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match="model.safetensors is damaged or truncated"):
        load_model(directory)


@pytest.mark.parametrize(
    "changes",
    [{"hidden_size": 32}, {"num_layers": 2}, {"cell": "gru"}, {"embedding_dim": 4}, {"vocab": ["\ufffd", "a", "b"]}],
    ids=["hidden", "layers", "cell", "embedding", "vocab"],
)
def test_config_that_does_not_match_the_weights_is_refused(good, changes):
    directory = damaged(good, "mismatch")
    write_config(directory, **changes)
    with pytest.raises(CheckpointError, match="the weights do not match config.json") as info:
        load_model(directory)
    assert "\n" not in str(info.value)


def test_weights_with_extra_or_missing_tensors_are_refused(good):
    directory = damaged(good, "extra")
    tensors = load_file(directory / "model.safetensors")
    save_file(tensors | {"backdoor.weight": torch.zeros(3)}, directory / "model.safetensors")
    with pytest.raises(CheckpointError, match="the weights do not match config.json"):
        load_model(directory)
    save_file({k: v for k, v in tensors.items() if k != "head.bias"}, directory / "model.safetensors")
    with pytest.raises(CheckpointError, match="the weights do not match config.json"):
        load_model(directory)


@pytest.mark.parametrize(
    ("content", "why"),
    [("{not json", "config.json is not valid JSON"), ("[1, 2]", "has no vocabulary"),
     ('{"hidden_size": 16}', "has no vocabulary"), (b"\xff\xfe\x00garbage", "config.json is not valid JSON")],
    ids=["broken", "list", "no-vocab", "binary"],
)
def test_unreadable_config_is_refused(good, content, why):
    directory = damaged(good, "config")
    path = directory / "config.json"
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    with pytest.raises(CheckpointError, match=why):
        load_model(directory)


@pytest.fixture
def allocations(monkeypatch) -> list:
    """Records every embedding and RNN layer built, to show a refusal came before any weights were allocated."""
    made = []
    for layer in (torch.nn.Embedding, torch.nn.LSTM, torch.nn.GRU):
        original = layer.__init__

        def counting_init(self, *args, _original=original, **kwargs):
            made.append(type(self).__name__)
            _original(self, *args, **kwargs)

        monkeypatch.setattr(layer, "__init__", counting_init)
    return made


def test_ten_million_entry_vocabulary_is_refused_before_allocating(good, allocations):
    directory = damaged(good, "huge-vocab")
    write_config(directory, vocab=["\ufffd"] + ["a"] * (10_000_000 - 1))
    with pytest.raises(CheckpointError, match=r"config.json is 50,000,\d+ bytes; a charrnn config is at most"):
        load_model(directory)
    write_config(directory, vocab=["\ufffd"] + [chr(0x100 + i) for i in range(70_000)])  # small enough to read
    with pytest.raises(CheckpointError, match="the vocabulary has 70,001 entries; charrnn allows 2 to 65,536"):
        load_model(directory)
    assert allocations == []


@pytest.mark.parametrize(
    ("changes", "why"),
    [({"hidden_size": 8192, "embedding_dim": 8192, "num_layers": 16},
      "would have 8,5[\\d,]+ parameters"),  # 34 GB of weights
     ({"hidden_size": 10**9}, "hidden_size must be a whole number from 1 to"),
     ({"num_layers": -1}, "num_layers must be a whole number"),
     ({"dropout": "lots"}, "dropout must be in"),
     ({"vocab": ["\ufffd", "ab", "c"]}, "a vocabulary holds single characters|'vocab' must be a list of characters")],
    ids=["34GB", "hidden", "layers", "dropout", "multichar"],
)
def test_oversized_or_nonsense_architecture_is_refused_before_allocating(good, allocations, changes, why):
    directory = damaged(good, "huge-arch")
    write_config(directory, **changes)
    with pytest.raises(CheckpointError, match=why):
        load_model(directory)
    assert allocations == []


def test_config_json_of_gigantic_size_is_not_parsed(good, monkeypatch):
    directory = damaged(good, "huge-config")
    with open(directory / "config.json", "w") as f:  # sparse: 2 GB on paper, nothing on disk
        f.write('{"vocab": ["')
        f.seek(2 * 1024**3)
        f.write('"]}')
    monkeypatch.setattr(json, "loads", lambda *_a, **_k: pytest.fail("a 2 GB config.json was parsed"))
    with pytest.raises(CheckpointError, match="config.json is 2,147,483,6\\d\\d bytes"):
        load_model(directory)


def test_non_finite_weights_are_refused(good):
    directory = damaged(good, "nan")
    tensors = load_file(directory / "model.safetensors")
    tensors["head.bias"][3] = float("nan")
    save_file(tensors, directory / "model.safetensors")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_model(directory)


# --- pickles ---------------------------------------------------------------------------------------

class Planted:
    """Unpickling this creates the marker file: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def plant(directory: Path, marker: Path) -> list[str]:
    payload = pickle.dumps(Planted(marker))
    names = ["pytorch_model.bin", "model.pt", "model.pth", "model.ckpt", "model.pkl", "training_args.bin",
             "optimizer.pt"]
    for name in names:
        (directory / name).write_bytes(payload)
    if (directory / ckpt.STATE_DIR).is_dir():
        (directory / ckpt.STATE_DIR / "optimizer.pt").write_bytes(payload)
        (directory / ckpt.STATE_DIR / "rng_state.pth").write_bytes(payload)
    return names


def test_the_planted_pickle_works_as_a_detector(tmp_path):
    marker = tmp_path / "executed"
    pickle.loads(pickle.dumps(Planted(marker)))  # noqa: S301 - the point of the test
    assert marker.exists()


def test_pickle_only_directory_is_refused_naming_the_pickle(good, tmp_path):
    directory = damaged(good, "pickle-only")
    (directory / "model.safetensors").unlink()
    marker = tmp_path / "executed"
    (directory / "pytorch_model.bin").write_bytes(pickle.dumps(Planted(marker)))
    with pytest.raises(CheckpointError, match=r"holds only pickle weights \(pytorch_model.bin\).*arbitrary code"):
        load_model(directory)
    with pytest.raises(FileNotFoundError, match="model.safetensors"):  # the mixin looks for safetensors only
        CharRNN.from_pretrained(str(directory), **json.loads((directory / "config.json").read_text()))
    assert not marker.exists()


def test_a_planted_pickle_is_never_executed_by_any_loading_path(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "executed"
    corpus = read_corpus(TEXT.encode(), name="fox.txt")
    run = tmp_path / "run"
    list(train([corpus], run, TrainConfig(**TINY)))  # a real checkpoint, with training state to resume
    plant(run, marker)
    pickle_only = tmp_path / "pickle-only"
    pickle_only.mkdir()
    shutil.copy(run / "config.json", pickle_only / "config.json")
    plant(pickle_only, marker)

    load_model(run)
    CharRNN.from_pretrained(str(run), **json.loads((run / "config.json").read_text()))
    load_training_state(run)
    events = list(train([corpus], run, TrainConfig(**(TINY | {"max_steps": 3})), resume=True))
    assert events[-1].kind == "done"
    plant(run, marker)  # the resumed run rewrote the directory
    tuning = TrainConfig(max_steps=1, eval_interval=1, batch_size=4, seq_len=16)
    list(train([corpus], tmp_path / "finetuned", tuning, init=run))
    assert cli(["sample", str(run), "--length", "5", "--seed", "1"]) == 0
    assert cli(["eval", str(run), str(_write(tmp_path / "fox.txt", TEXT))]) == 0
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(pickle_only)
    assert cli(["sample", str(pickle_only)]) == 2

    # The Hub path: a repo id resolved through the standard (offline) cache holding the same files.
    cache = tmp_path / "hub-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    files = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    model = load_model(run)
    _cache_repo(cache, "mallory/fox", files)
    _cache_repo(cache, "mallory/pickled", {p.name: p.read_bytes() for p in pickle_only.iterdir()})
    assert torch.equal(load_model("mallory/fox").head.bias, model.head.bias)
    with pytest.raises(CheckpointError, match="pickle"):
        load_model("mallory/pickled")
    capsys.readouterr()
    assert not marker.exists(), "a planted pickle was unpickled"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _cache_repo(cache: Path, repo_id: str, files: dict[str, bytes]) -> None:
    """huggingface_hub's cache layout: blobs, snapshots/<commit> symlinks, refs/main."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for sub in (repo / "refs", snapshot, repo / "blobs"):
        sub.mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
