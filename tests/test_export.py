"""`charrnn export`: the ONNX graph run by onnxruntime writes what the torch model writes, for every shipped model;
the web folder holds the weights its page reads; bad targets are refused in one line."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch

from charrnn.checkpoint import SHIPPED, load_model
from charrnn.cli import main
from charrnn.export import SETTINGS, export_model
from charrnn.model import CharRNN
from charrnn.vocab import Vocab

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -r requirements-dev.txt)")
pytest.importorskip("onnx", reason="onnx is not installed (pip install -r requirements-dev.txt)")

GREEDY_STEPS = 2000
PROMPTS = {"fairy-tales": "Once upon a time", "shakespeare": "ROMEO:\n", "tang-poems": "春眠不覺曉"}


def cli(capsys, *argv) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def onnx_session(directory) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(directory / "model.onnx"), options, providers=["CPUExecutionProvider"])


def onnx_greedy(directory, prompt: str, steps: int) -> tuple[list[int], np.ndarray]:
    """Greedy ids and the logits of each step from the exported graph alone: the prompt read in one call, then one
    character a call, the unknown symbol never chosen (as charrnn does)."""
    settings = json.loads((directory / SETTINGS).read_text(encoding="utf-8"))
    index = {ch: i for i, ch in enumerate(settings["vocab"])}
    session = onnx_session(directory)
    zeros = np.zeros((settings["num_layers"], 1, settings["hidden_size"]), np.float32)
    state = {"h": zeros, "c": zeros.copy()} if settings["cell"] == "lstm" else {"h": zeros}
    chars = np.array([[index[ch] for ch in prompt]], np.int64)
    ids, logits = [], []
    for _ in range(steps):
        out = session.run(None, {"chars": chars, **state})
        state = dict(zip(state, out[1:]))
        logits.append(out[0][0])
        masked = out[0][0].copy()
        masked[0] = -np.inf
        ids.append(int(masked.argmax()))
        chars = np.array([[ids[-1]]], np.int64)
    return ids, np.stack(logits)


def torch_logits(model: CharRNN, prompt: str, ids: list[int]) -> torch.Tensor:
    """The torch model's logits after the prompt and after each of ids but the last, in one pass."""
    sequence = torch.cat([model.vocab.encode(prompt), torch.tensor(ids[:-1], dtype=torch.long)])
    with torch.no_grad():
        out, _ = model.eval()(sequence[None])
    return out[0, len(prompt) - 1:]


def check_against_torch(model: CharRNN, directory, prompt: str, steps: int) -> None:
    ids, logits = onnx_greedy(directory, prompt, steps)
    expected = torch_logits(model, prompt, ids)
    assert np.abs(logits - expected.numpy()).max() <= 1e-4
    expected[:, 0] = -torch.inf
    assert expected.argmax(-1).tolist() == ids  # torch chooses every character the graph chose: the same text


@pytest.mark.parametrize("name", list(SHIPPED))
def test_onnx_writes_the_torch_models_greedy_text(name, tmp_path):
    model = load_model(SHIPPED[name], device="cpu")
    directory = export_model(model, tmp_path / name, "onnx", name=name)
    settings = json.loads((directory / SETTINGS).read_text(encoding="utf-8"))
    assert settings["vocab"] == list(model.vocab.chars) and settings["dtype"] == "fp32"
    check_against_torch(model, directory, PROMPTS[name], GREEDY_STEPS)


def test_fp16_weights_halve_the_file_and_compute_in_fp32(tmp_path):
    model = load_model(SHIPPED["fairy-tales"], device="cpu")
    full = export_model(model, tmp_path / "fp32", "onnx")
    half = export_model(model, tmp_path / "fp16", "onnx", dtype="fp16")
    assert (half / "model.onnx").stat().st_size < 0.51 * (full / "model.onnx").stat().st_size
    rounded = load_model(SHIPPED["fairy-tales"], device="cpu")
    with torch.no_grad():
        for p in rounded.parameters():
            p.copy_(p.half().float())
    check_against_torch(rounded, half, "The king said", 300)


def test_a_batch_reads_each_row_as_alone(tmp_path):
    model = load_model(SHIPPED["shakespeare"], device="cpu")
    directory = export_model(model, tmp_path / "onnx", "onnx")
    session = onnx_session(directory)
    rows = np.array([model.vocab.encode(p).tolist() for p in ("KING:\n", "Queen ")], np.int64)
    zeros = np.zeros((2, 2, model.hidden_size), np.float32)
    logits, h, c = session.run(None, {"chars": rows, "h": zeros, "c": zeros})
    for k in range(2):
        logits_k, h_k, c_k = session.run(None, {"chars": rows[k:k + 1], "h": zeros[:, :1], "c": zeros[:, :1]})
        assert np.abs(logits[k] - logits_k[0]).max() <= 1e-5
        assert np.abs(h[:, k] - h_k[:, 0]).max() <= 1e-5 and np.abs(c[:, k] - c_k[:, 0]).max() <= 1e-5


def test_a_gru_exports_with_h_alone(tmp_path):
    torch.manual_seed(0)
    model = CharRNN(list(Vocab.build(["abcdefgh \n"]).chars), cell="gru", num_layers=2, hidden_size=32,
                    embedding_dim=8)
    directory = export_model(model, tmp_path / "gru", "onnx")
    assert [i.name for i in onnx_session(directory).get_inputs()] == ["chars", "h"]
    check_against_torch(model, directory, "abc", 200)


def test_the_web_folder_holds_the_weights_its_page_reads(tmp_path):
    model = load_model(SHIPPED["fairy-tales"], device="cpu")
    directory = export_model(model, tmp_path / "web", "web", name="fairy-tales")
    settings = json.loads((directory / SETTINGS).read_text(encoding="utf-8"))
    assert {"index.html", "charrnn-web.js", "charrnn-worker.js", "matvec.wasm"} <= {p.name for p in directory.iterdir()}
    assert settings["dtype"] == "fp16" and settings["fold"]["\u2019"] == "'" and settings["fold"]["é"] == "e"
    values = np.fromfile(directory / settings["weights"]["file"], dtype="<f2")
    layout = {t["name"]: t for t in settings["weights"]["tensors"]}
    rnn = model.rnn
    expected = {"embedding": model.embedding.weight, "head.bias": model.head.bias,
                "layer1.weight": torch.cat([rnn.weight_ih_l1, rnn.weight_hh_l1], 1),
                "layer0.bias": rnn.bias_ih_l0 + rnn.bias_hh_l0}
    for name, tensor in expected.items():
        entry = layout[name]
        stored = values[entry["offset"]:entry["offset"] + tensor.numel()].reshape(entry["shape"])
        assert np.array_equal(stored, tensor.detach().numpy().astype(np.float16))
    assert sum(int(np.prod(t["shape"])) for t in layout.values()) == values.size


def test_cli_exports_and_refuses_in_one_line(capsys, tmp_path):
    code, err = cli(capsys, "export", "fairy-tales", tmp_path / "web", "--format", "web")
    assert code == 0 and "fp16 weights" in err and "http.server" in err
    assert (tmp_path / "web" / "index.html").exists()
    code, err = cli(capsys, "export", "fairy-tales", tmp_path / "web", "--format", "web")
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    code, err = cli(capsys, "export", "shakespeare", tmp_path / "web", "--format", "onnx", "--overwrite")
    assert code == 0 and not (tmp_path / "web" / "index.html").exists() and (tmp_path / "web" / "model.onnx").exists()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    code, err = cli(capsys, "export", "fairy-tales", tmp_path / "notes", "--format", "onnx", "--overwrite")
    assert code == 2 and "holds no earlier export" in err and (tmp_path / "notes" / "mine.txt").read_text() == "keep me"
    shutil.copytree(SHIPPED["fairy-tales"], tmp_path / "model")
    code, err = cli(capsys, "export", tmp_path / "model", tmp_path / "model", "--format", "web", "--overwrite")
    assert code == 2 and "holds a model" in err
    code, err = cli(capsys, "export", "fairy-tales", tmp_path / "x", "--format", "pdf")
    assert code == 2 and "invalid choice" in err


def test_fp16_refuses_weights_beyond_its_range(tmp_path):
    model = load_model(SHIPPED["fairy-tales"], device="cpu")
    with torch.no_grad():
        model.head.bias[3] = 1e5
    with pytest.raises(ValueError, match="beyond fp16's range; export with --dtype fp32"):
        export_model(model, tmp_path / "web", "web")
    assert not (tmp_path / "web").exists()
    export_model(model, tmp_path / "web", "web", dtype="fp32")


def test_onnx_without_the_onnx_package_says_how_to_get_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    code, err = cli(capsys, "export", "fairy-tales", tmp_path / "o", "--format", "onnx")
    assert code == 2 and "pip install onnx" in err and not (tmp_path / "o").exists()
    assert not list(tmp_path.iterdir())  # nothing half-written is left beside it
