"""Export a model for other runtimes: an ONNX graph of one step, or a static web page that generates in the browser.

Both formats write, beside the weights, charrnn.json: the vocabulary and the settings a runtime needs to read a
prompt and write text as charrnn does (the unknown symbol is id 0 and is never written; an empty prompt reads as a
newline). The ONNX graph is torch.onnx's own export of the model's embedding, LSTM (or GRU) and output layer. The
web folder holds the weights as one flat little-endian file and the page that runs them (charrnn/web/): no
onnxruntime and no network beyond its host. An export is built beside OUT and moved into place whole.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from unidecode import unidecode

from charrnn.checkpoint import CONFIG, WEIGHTS, replace_dir, staging_dir
from charrnn.model import CharRNN
from charrnn.sampling import MAX_PROMPT_CHARS, MAX_SAMPLE_LENGTH, MAX_STOP_CHARS, MAX_STOP_STRINGS, MAX_TEMPERATURE
from charrnn.vocab import UNK

FORMATS = ("onnx", "web")
DTYPES = {"fp32": np.float32, "fp16": np.float16}
DEFAULT_DTYPE = {"onnx": "fp32", "web": "fp16"}  # ONNX exact by default; the page half the download
SETTINGS = "charrnn.json"  # the vocabulary and settings, in every export
ONNX_FILE = "model.onnx"
ONNX_OPSET = 17  # onnxruntime 1.14+ and onnxruntime-web run it
WEB_ASSETS = Path(__file__).resolve().parent / "web"
WEB_FILES = ("index.html", "charrnn-web.js", "charrnn-worker.js", "matvec.wasm")
# Characters a prompt may hold that the page folds as unidecode would (Latin letters with marks, typographic
# punctuation, full-width forms); anything else outside the vocabulary is dropped, as the server drops it.
FOLD_RANGES = ((0x00A0, 0x024F), (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x20A0, 0x20CF), (0xFF01, 0xFF5E))


class ExportError(ValueError):
    """An export that cannot be made; the message is meant for the user as is."""


def export_model(model: CharRNN, out: str | Path, fmt: str, dtype: str | None = None, overwrite: bool = False,
                 name: str = "") -> Path:
    """Write model to the directory out in format fmt ('onnx' or 'web'), weights stored as dtype ('fp32' or
    'fp16'; by default fp32 for ONNX, fp16 for the web). Returns out. An existing out is replaced only when
    overwrite is given and it holds an earlier export."""
    if fmt not in FORMATS:
        raise ExportError(f"the format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    dtype = dtype or DEFAULT_DTYPE[fmt]
    if dtype not in DTYPES:
        raise ExportError(f"the weights' dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if dtype == "fp16":
        check_fits_fp16(model)
    out = Path(out)
    check_target(out, overwrite)
    staged = staging_dir(out)
    try:
        settings = runtime_settings(model, fmt, dtype, name)
        settings |= write_onnx(model, staged, dtype) if fmt == "onnx" else write_web(model, staged, dtype)
        (staged / SETTINGS).write_text(json.dumps(settings, ensure_ascii=False, indent=1), encoding="utf-8")
        replace_dir(staged, out)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return out


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse to write over anything but an earlier export, and over that only when asked."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"{out} is a file; give a directory to export into")
    if not any(out.iterdir()):
        return
    if (out / WEIGHTS).exists() or (out / CONFIG).exists():
        raise ExportError(f"{out} holds a model; export into another directory")
    if not (out / SETTINGS).exists():
        raise ExportError(f"{out} is not empty and holds no earlier export; choose a new or empty directory")
    if not overwrite:
        raise ExportError(f"{out} already holds an export; pass --overwrite to replace it")


def check_fits_fp16(model: CharRNN) -> None:
    """Refuse fp16 storage for weights it cannot hold (beyond 65,504 they would become infinite)."""
    largest = max(float(p.detach().abs().max()) for p in model.parameters())
    if largest > float(np.finfo(np.float16).max):
        raise ExportError(f"a weight of {largest:.3g} is beyond fp16's range; export with --dtype fp32")


def runtime_settings(model: CharRNN, fmt: str, dtype: str, name: str) -> dict:
    """What a runtime needs besides the weights: the vocabulary, the network's shape, how prompts are read."""
    vocab = list(model.vocab.chars)
    return {
        "format": f"charrnn-{fmt}", "version": 1, "model": name, "dtype": dtype,
        "cell": model.cell, "num_layers": model.num_layers, "hidden_size": model.hidden_size,
        "embedding_dim": model.embedding_dim, "ascii_fold": model.ascii_fold,
        "vocab": vocab, "unknown_id": 0,
        "empty_prompt": "\n" if "\n" in model.vocab else vocab[1],
        "fold": prompt_folding(model),
        "limits": {"max_prompt_chars": MAX_PROMPT_CHARS, "max_length": MAX_SAMPLE_LENGTH,
                   "max_temperature": MAX_TEMPERATURE, "max_stop_strings": MAX_STOP_STRINGS,
                   "max_stop_chars": MAX_STOP_CHARS},
    }


def prompt_folding(model: CharRNN) -> dict[str, str]:
    """Characters of FOLD_RANGES that charrnn.sampling.prepare_prompt would read as others: each one to its
    unidecode folding, where the model knows every character of it (the rest are dropped)."""
    known = set(model.vocab.chars) - {UNK}
    table = {}
    for start, end in FOLD_RANGES:
        for code in range(start, end + 1):
            char = chr(code)
            if char in known and not model.ascii_fold:
                continue
            folded = unidecode(char, errors="ignore")
            if folded and folded != char and all(c in known for c in folded):
                table[char] = folded
    return table


# --- ONNX ---------------------------------------------------------------------------------------

class OneStep(nn.Module):
    """The model as a runtime steps it: characters [batch, length], the state in; the logits for the next
    character after the last one [batch, vocab], the state out. Length 1 is one step; longer reads a prompt."""

    def __init__(self, model: CharRNN) -> None:
        super().__init__()
        self.embedding, self.rnn, self.head = model.embedding, model.rnn, model.head

    def forward(self, chars: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out, new_state = self.rnn(self.embedding(chars), state if len(state) == 2 else state[0])
        new_state = new_state if isinstance(new_state, tuple) else (new_state,)
        return (self.head(out[:, -1]), *new_state)


def state_names(model: CharRNN) -> list[str]:
    return ["h", "c"] if model.cell == "lstm" else ["h"]


def write_onnx(model: CharRNN, directory: Path, dtype: str) -> dict:
    """model.onnx: torch.onnx's TorchScript exporter (it needs the onnx package), weights then stored as dtype.
    Returns the files and the graph's inputs and outputs, for charrnn.json."""
    try:
        import onnx
    except ImportError:
        raise ExportError("exporting to ONNX needs the onnx package: pip install onnx") from None
    model = copy.deepcopy(model).to("cpu").float().eval()
    states = state_names(model)
    zeros = torch.zeros(model.num_layers, 1, model.hidden_size)
    example = (torch.ones(1, 2, dtype=torch.long), *[zeros.clone() for _ in states])
    axes = {"chars": {0: "batch", 1: "length"}, "logits": {0: "batch"}}
    axes |= {name: {1: "batch"} for name in states} | {f"{name}_out": {1: "batch"} for name in states}
    path = directory / ONNX_FILE
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice and its note on LSTM batch sizes
        torch.onnx.export(OneStep(model), example, str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["chars", *states], output_names=["logits", *[f"{s}_out" for s in states]],
                          dynamic_axes=axes)
    if dtype == "fp16":
        graph = onnx.load(str(path))
        store_initializers_fp16(graph)
        onnx.save(graph, str(path))
    state_shape = ["num_layers", "batch", "hidden_size"]
    return {"files": [ONNX_FILE],
            "inputs": {"chars": ["batch", "length"], **{name: state_shape for name in states}},
            "outputs": {"logits": ["batch", "vocab"], **{f"{name}_out": state_shape for name in states}}}


def store_initializers_fp16(graph) -> None:
    """Every fp32 weight stored as fp16 and cast back to fp32 by the graph: half the file, fp32 arithmetic."""
    from onnx import TensorProto, helper, numpy_helper

    casts = []
    for tensor in graph.graph.initializer:
        if tensor.data_type != TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(tensor).astype(np.float16)
        name = tensor.name
        tensor.CopyFrom(numpy_helper.from_array(values, f"{name}_fp16"))
        casts.append(helper.make_node("Cast", [f"{name}_fp16"], [name], to=TensorProto.FLOAT, name=f"cast_{name}"))
    for k, node in enumerate(casts):
        graph.graph.node.insert(k, node)


# --- the web page -------------------------------------------------------------------------------

def web_tensors(model: CharRNN) -> dict[str, torch.Tensor]:
    """The weights as the page's step reads them, in order. An LSTM layer's input and recurrent matrices are
    side by side ([4H, in + H]) with one bias, so a layer is one product over [input, h]; a GRU keeps them
    apart, as its candidate gate needs the recurrent product alone."""
    rnn = model.rnn
    tensors = {"embedding": model.embedding.weight}
    for k in range(model.num_layers):
        w_ih, w_hh = getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")
        b_ih, b_hh = getattr(rnn, f"bias_ih_l{k}"), getattr(rnn, f"bias_hh_l{k}")
        if model.cell == "lstm":
            tensors |= {f"layer{k}.weight": torch.cat([w_ih, w_hh], 1), f"layer{k}.bias": b_ih + b_hh}
        else:
            tensors |= {f"layer{k}.weight_ih": w_ih, f"layer{k}.weight_hh": w_hh,
                        f"layer{k}.bias_ih": b_ih, f"layer{k}.bias_hh": b_hh}
    return tensors | {"head.weight": model.head.weight, "head.bias": model.head.bias}


def write_web(model: CharRNN, directory: Path, dtype: str) -> dict:
    """The page, its runtime and the weights as one flat file named by its content (so a browser may keep it
    for good). Returns the files and the weights' layout (offsets in values), for charrnn.json."""
    layout, chunks, offset = [], [], 0
    with torch.no_grad():
        for name, tensor in web_tensors(model).items():
            values = tensor.detach().to("cpu", torch.float32).numpy().astype(DTYPES[dtype]).ravel()
            layout.append({"name": name, "shape": list(tensor.shape), "offset": offset})
            chunks.append(values.astype(values.dtype.newbyteorder("<")).tobytes())
            offset += values.size
    data = b"".join(chunks)
    weights = f"weights-{hashlib.sha256(data).hexdigest()[:16]}.bin"
    (directory / weights).write_bytes(data)
    for asset in WEB_FILES:
        shutil.copyfile(WEB_ASSETS / asset, directory / asset)
    return {"files": [*WEB_FILES, weights], "weights": {"file": weights, "tensors": layout}}
