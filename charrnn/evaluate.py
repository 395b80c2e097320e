"""How well a model predicts a text, in nats and bits per character."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from charrnn.batching import eval_streams
from charrnn.model import CharRNN, precision_autocast
from charrnn.text import normalize

EVAL_WINDOW = 256


def eval_precision(device: torch.device) -> str:
    """Evaluation's precision: bf16 on CUDA, where it roughly doubles LSTM throughput; fp32 on a
    CPU, so the figures on model cards are exact there."""
    return "bf16" if device.type == "cuda" else "fp32"


@torch.inference_mode()
def evaluate_ids(model: CharRNN, ids: torch.Tensor, should_stop: Callable[[], bool] | None = None,
                 streams: int | None = None) -> dict:
    """Mean next-character loss over ids, read as parallel streams with carried state.

    streams: how many (default: eval_streams of the length, as `charrnn eval` reads the text). More
    streams read the text in fewer, wider steps, which is faster, but each stream starts with no
    context, so the loss comes out a little higher.

    should_stop is asked after each window (EVAL_WINDOW characters of every stream), so a
    deadline or a cancel ends a long scoring within one window: the loss then covers the
    windows scored so far, 'chars' counts them and 'complete' is False. At least one
    window is always scored, so the loss is always a number.
    """
    if len(ids) < 2:
        raise ValueError("the evaluation text needs at least 2 characters")
    was_training = model.training
    model.eval()
    streams = min(streams or eval_streams(len(ids)), len(ids) - 1)
    stream_len = (len(ids) - 1) // streams
    end = streams * stream_len
    ids = ids.to(model.device)
    inputs = ids[:end].view(streams, stream_len)
    targets = ids[1 : end + 1].view(streams, stream_len)
    state = None
    total, scored = 0.0, 0
    with precision_autocast(model.device, eval_precision(model.device)):
        for start in range(0, stream_len, EVAL_WINDOW):
            logits, state = model(inputs[:, start : start + EVAL_WINDOW], state)
            window_targets = targets[:, start : start + EVAL_WINDOW]
            total += F.cross_entropy(logits.float().flatten(0, 1), window_targets.flatten(), reduction="sum").item()
            scored += window_targets.numel()
            if scored < end and should_stop is not None and should_stop():
                break
    model.train(was_training)
    loss = total / scored
    return {"loss": loss, "bpc": loss / math.log(2), "chars": scored, "complete": scored == end}


def evaluate_text(model: CharRNN, text: str) -> dict:
    """Loss on raw text, after the model's own normalisation (so eval matches training)."""
    return evaluate_ids(model, model.vocab.encode(normalize(text, model.ascii_fold)))
