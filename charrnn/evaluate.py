"""How well a model predicts a text, in nats and bits per character."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from charrnn.batching import eval_streams
from charrnn.cancel import CancelSignal, is_cancelled
from charrnn.model import CharRNN, precision_autocast
from charrnn.text import normalize

EVAL_WINDOW = 256  # characters of every stream between two looks at should_stop
# Bytes of activations and logits one chunk of positions may hold at once: reading a long text with a
# large vocabulary never holds more than this, whatever the text's length.
CHUNK_BYTES = 16 * 2**20


def eval_precision(device: torch.device) -> str:
    """Evaluation's precision: bf16 on CUDA, where it roughly doubles LSTM throughput; fp32 on a
    CPU, so the figures on model cards are exact there."""
    return "bf16" if device.type == "cuda" else "fp32"


def bytes_per_position(model: CharRNN) -> int:
    """What reading one position holds at its peak: every layer's gates and output, and the logits
    with their fp32 copy and log-softmax."""
    return 4 * (model.num_layers * 5 * model.hidden_size + 3 * len(model.vocab))


def positions_per_chunk(model: CharRNN, rows: int = 1, chunk_bytes: int | None = None) -> int:
    """Time steps of `rows` parallel streams one chunk reads, so that it holds at most chunk_bytes (at least 1)."""
    return max(1, (chunk_bytes or CHUNK_BYTES) // (rows * bytes_per_position(model)))


@torch.inference_mode()
def evaluate_ids(model: CharRNN, ids: torch.Tensor, should_stop: CancelSignal = None,
                 streams: int | None = None) -> dict:
    """Mean next-character loss over ids, read as parallel streams with carried state.

    streams: how many (default: eval_streams of the length, as `charrnn eval` reads the text). More
    streams read the text in fewer, wider steps, which is faster, but each stream starts with no
    context, so the loss comes out a little higher.

    should_stop (a callable or a threading.Event) is asked after each window (EVAL_WINDOW characters
    of every stream), so a deadline or a cancel ends a long scoring within one window: the loss then
    covers the windows scored so far, 'chars' counts them and 'complete' is False. At least one
    window is always scored, so the loss is always a number. Each window is read in chunks of
    positions_per_chunk steps, so memory stays bounded by CHUNK_BYTES for any text and vocabulary.
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
    step = min(EVAL_WINDOW, positions_per_chunk(model, streams))
    state = None
    total, scored = 0.0, 0
    with precision_autocast(model.device, eval_precision(model.device)):
        for start in range(0, stream_len, EVAL_WINDOW):
            for at in range(start, min(start + EVAL_WINDOW, stream_len), step):
                chunk = slice(at, min(at + step, start + EVAL_WINDOW))
                logits, state = model(inputs[:, chunk], state)
                total += F.cross_entropy(logits.float().flatten(0, 1), targets[:, chunk].flatten(),
                                         reduction="sum").item()
                scored += logits.shape[0] * logits.shape[1]
                del logits
            if scored < end and is_cancelled(should_stop):
                break
    model.train(was_training)
    loss = total / scored
    return {"loss": loss, "bpc": loss / math.log(2), "chars": scored, "complete": scored == end}


def evaluate_text(model: CharRNN, text: str) -> dict:
    """Loss on raw text, after the model's own normalisation (so eval matches training)."""
    return evaluate_ids(model, model.vocab.encode(normalize(text, model.ascii_fold)))
