"""What a piece of model work will cost, known from its inputs before it starts.

Every heavy library function has an estimate here: its arithmetic, the weights it streams
through memory step after step, and the most memory it holds at once. A caller (the web app)
compares an estimate with its budgets before doing any work, and refuses or shrinks the
request in one line; the cost suite (bench/cost.py, tests/test_cost.py) measures the real thing.

Two facts of an LSTM on a CPU shape the figures. Reading many rows at once (evaluation's
streams, beam search's beams, occlusion's copies) is arithmetic-bound: a step costs its FLOPs.
Reading one row at a time (a prompt, a text scored in order) is bound by memory: each step
reads every recurrent weight once, whatever the batch. Cost.seconds turns both into seconds
with two rates of the reference CPU (CPU_FLOPS_PER_S, CPU_WEIGHT_BYTES_PER_S), so estimates
are in CPU seconds there; on another machine they scale, but their order does not change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from charrnn.batching import eval_streams
from charrnn.evaluate import CHUNK_BYTES, bytes_per_position
from charrnn.model import CharRNN

# One thread of the reference CPU (Intel Xeon with AVX512-BF16 and AMX), fp32: the rates of evaluation at 64
# streams (arithmetic) and of a one-row read of 4,048 characters (weights). `python bench/cost.py --calibrate`
# prints every estimate here against the time the work takes.
CPU_FLOPS_PER_S = 120e9
CPU_WEIGHT_BYTES_PER_S = 45e9
# Python objects per scored character: a SampledChar with its alternatives (list of (str, float) tuples).
SCORED_CHAR_BYTES = 120 + 110 * 5
# Beam search's own work per step and candidate (float64 log-softmax, top-k over width x vocabulary, bookkeeping).
BEAM_CANDIDATE_S = 4e-9
BEAM_STEP_S = 4e-4


@dataclass(frozen=True)
class Cost:
    """The estimate of one piece of work."""

    flops: float = 0.0  # arithmetic
    weight_bytes: float = 0.0  # bytes of weights read step after step (one-row reading is bound by this)
    peak_bytes: int = 0  # the most memory held at once, beyond the model and the inputs
    overhead_s: float = 0.0  # seconds of bookkeeping that is neither (beam search's per-step work)

    def __add__(self, other: Cost) -> Cost:
        """Two pieces done one after the other: the work adds up, the peak is the larger."""
        return Cost(self.flops + other.flops, self.weight_bytes + other.weight_bytes,
                    max(self.peak_bytes, other.peak_bytes), self.overhead_s + other.overhead_s)

    def seconds(self) -> float:
        """CPU seconds on the reference CPU."""
        return self.flops / CPU_FLOPS_PER_S + self.weight_bytes / CPU_WEIGHT_BYTES_PER_S + self.overhead_s

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 1e6


def rnn_flops(model: CharRNN) -> float:
    """FLOPs of the recurrent layers for one character of one row."""
    hidden, inputs = model.hidden_size, model.embedding_dim
    gates = 4 if model.cell == "lstm" else 3
    per_layer = [gates * hidden * ((inputs if k == 0 else hidden) + hidden) for k in range(model.num_layers)]
    return 2.0 * sum(per_layer)


def head_flops(model: CharRNN) -> float:
    """FLOPs of the output layer (and its softmax) for one character of one row."""
    return 2.0 * model.hidden_size * len(model.vocab) + 5.0 * len(model.vocab)


def rnn_weight_bytes(model: CharRNN) -> int:
    """Bytes of recurrent weights (fp32) one step reads."""
    return int(4 * rnn_flops(model) / 2)


def read_cost(model: CharRNN, chars: int, rows: int = 1, logits: bool = True) -> Cost:
    """Reading chars characters as `rows` parallel streams, in chunks (evaluate.positions_per_chunk):
    a prompt, a text to score or evaluate. logits: whether every position's output layer is computed."""
    chars, rows = max(0, chars), max(1, rows)
    flops = chars * (rnn_flops(model) + (head_flops(model) if logits else 0.0))
    steps = math.ceil(chars / rows)
    peak = min(CHUNK_BYTES, max(1, steps) * rows * bytes_per_position(model)) if chars else 0
    return Cost(flops, steps * rnn_weight_bytes(model), peak)


def evaluate_cost(model: CharRNN, chars: int) -> Cost:
    """evaluate.evaluate_ids over chars characters."""
    return read_cost(model, chars, eval_streams(chars))


def score_cost(model: CharRNN, chars: int, context_chars: int = 0) -> Cost:
    """insight.score_text: chars characters scored after context_chars read, and the result's objects."""
    read = read_cost(model, context_chars, logits=False) + read_cost(model, chars)
    return read + Cost(peak_bytes=chars * SCORED_CHAR_BYTES)


def generate_cost(model: CharRNN, length: int, prompt_chars: int = 0, rows: int = 1) -> Cost:
    """Sampling length characters in `rows` rows after priming a prompt: one fused step per character."""
    step_bytes = rnn_weight_bytes(model) + 4 * model.hidden_size * len(model.vocab)
    stepping = Cost(rows * length * (rnn_flops(model) + head_flops(model)), length * step_bytes,
                    4 * rows * len(model.vocab) * 64)  # each row's noise, 64 steps at a time
    return read_cost(model, prompt_chars, logits=False) + stepping


def beam_cost(model: CharRNN, width: int, length: int, prompt_chars: int = 0) -> Cost:
    """beam.beam_search: width beams stepped as one batch for length steps."""
    candidates = width * len(model.vocab)
    search = Cost(overhead_s=length * (BEAM_STEP_S + candidates * BEAM_CANDIDATE_S),
                  peak_bytes=8 * 4 * candidates)  # float64 candidates, their log-softmax, mask and top-k
    return generate_cost(model, length, prompt_chars, rows=width) + search


def influence_cost(model: CharRNN, window: int, before_chars: int = 0, method: str = "occlusion") -> Cost:
    """insight.influence: the state before the window read, then the window scored by occlusion or gradient."""
    state = read_cost(model, before_chars, logits=False)
    if method == "gradient":  # one forward and one backward pass over the window
        return state + Cost(3 * window * rnn_flops(model), 3 * window * rnn_weight_bytes(model),
                            window * bytes_per_position(model) * 3)
    from charrnn.insight import OCCLUSION_ROWS

    row_steps, steps = window, window  # the window itself once, unoccluded
    for lo in range(0, window, OCCLUSION_ROWS):
        row_steps += min(OCCLUSION_ROWS, window - lo) * (window - lo)
        steps += window - lo
    peak = min(CHUNK_BYTES, OCCLUSION_ROWS * window * bytes_per_position(model))
    return state + Cost(row_steps * rnn_flops(model), steps * rnn_weight_bytes(model), peak)


def activations_cost(model: CharRNN, chars: int) -> Cost:
    """insight.activations: every layer's h (and c) after each of chars characters, kept as float32 arrays."""
    kept = chars * model.num_layers * model.hidden_size * 4 * (2 if model.cell == "lstm" else 1)
    rebuild = chars * model.num_layers * 8 * model.hidden_size * model.hidden_size  # c from the gates
    return read_cost(model, chars, logits=False) + Cost(rebuild, 0, kept + CHUNK_BYTES)


def decode_cost(num_bytes: int, fold: bool = False) -> Cost:
    """text.read_corpus on num_bytes bytes: the bytes, the text (up to 4 bytes a character while decoding)
    and, when folding, the folded text and its pieces."""
    peak = num_bytes + 2 * num_bytes + (3 * num_bytes if fold else 0)
    return Cost(peak_bytes=peak, overhead_s=num_bytes * (5e-8 if fold else 1e-8))
