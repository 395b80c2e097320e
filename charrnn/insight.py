"""Looking inside a model: how sure it was of each character, what its cells hold, which cells mean something.

Everything returns plain data (lists, numpy arrays, dataclasses) so the app, the CLI and
a notebook can all draw it their own way. Karpathy's "unreasonable effectiveness" post
made char-RNNs famous with exactly these views: a cell that tracks quotes, one that
counts the position in a line.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from charrnn.cancel import CancelSignal, check
from charrnn.engine import GenerationEngine
from charrnn.evaluate import positions_per_chunk
from charrnn.model import CharRNN
from charrnn.sampling import DEFAULT_ALTERNATIVES, SampledChar, SampleSettings
from charrnn.text import normalize
from charrnn.vocab import fit_prompt

DEFAULT_TEMPERATURES = (0.2, 0.5, 0.8, 1.0, 1.3)
MIN_CHARS_FOR_CORRELATION = 20
# Earlier characters weighed when explaining one character: well past what a char-LSTM's memory
# reaches in practice, and cheap for one backward pass.
MAX_INFLUENCE_WINDOW = 300
INFLUENCE_METHODS = ("gradient", "occlusion")
SWEEP_POLL_S = 0.05  # how often a temperature sweep looks at its cancel while the engine writes
OCCLUSION_ROWS = 64  # occluded copies of the window read as one batch


def prepare_text(model: CharRNN, text: str) -> tuple[str, list[str]]:
    """Text as the model reads it (its normalisation; unknown characters folded or dropped), plus what changed."""
    return fit_prompt(normalize(text or "", model.ascii_fold), model.vocab)


def _start_context(model: CharRNN, prompt: str) -> str:
    # The same priming the sampler uses, so scoring a generated text gives the sampler's own probabilities.
    return prompt or ("\n" if "\n" in model.vocab else model.vocab.chars[1])


@torch.inference_mode()
def score_text(model: CharRNN, text: str, prompt: str = "", alternatives: int = DEFAULT_ALTERNATIVES,
               cancel: CancelSignal = None) -> list[SampledChar]:
    """For each character of text (read after prompt): the probability the model gave it and its top alternatives.

    The probabilities are the model's own (temperature 1), as in sampling.stream, so a
    generated text scored afterwards shows what the model thought while writing it.
    text and prompt must already be in the model's vocabulary (see prepare_text).
    The text is read in chunks with the state carried across them (evaluate.positions_per_chunk),
    so memory past the result stays bounded for any length and vocabulary; cancel is looked at
    before each chunk (charrnn.cancel).
    """
    if not text:
        return []
    context = _start_context(model, prompt)
    vocab = model.vocab
    ids = vocab.encode(context + text).to(model.device)
    step = positions_per_chunk(model)
    k = min(alternatives, len(vocab))
    scored: list[SampledChar] = []
    was_training = model.training
    model.eval()
    try:
        state = None
        for start in range(0, len(context) - 1, step):  # the context but its last character: no prediction needed
            check(cancel)
            _, state = model.rnn(model.embedding(ids[None, start : min(start + step, len(context) - 1)]), state)
        for start in range(len(context) - 1, len(ids) - 1, step):
            check(cancel)
            logits, state = model(ids[None, start : min(start + step, len(ids) - 1)], state)
            at = start + 1 - len(context)  # the text position the chunk's first row predicts
            scored += _scored_chunk(logits[0], ids[start + 1 : start + 1 + step], text[at : at + step], vocab.chars, k)
    finally:
        model.train(was_training)
    return scored


def _scored_chunk(logits: torch.Tensor, targets: torch.Tensor, text: str, chars: tuple[str, ...],
                  k: int) -> list[SampledChar]:
    """SampledChar for each row of logits (row i predicts targets[i], the character text[i])."""
    probs = torch.softmax(logits.float(), -1)
    chosen = probs.gather(1, targets[:, None])[:, 0].tolist()
    top = torch.topk(probs, k, dim=-1)
    top_p, top_i = top.values.tolist(), top.indices.tolist()
    return [SampledChar(char=ch, prob=p, alternatives=[(chars[i], q) for q, i in zip(qs, idx)])
            for ch, p, qs, idx in zip(text, chosen, top_p, top_i)]


# --- why this character -------------------------------------------------------------------------

@dataclass(frozen=True)
class Influence:
    """How much each earlier character moved the log-probability the model gave one character.

    scores[i] belongs to before[i], the character at position first + i of the text (a negative
    position is in the prompt). A positive score means that character raised log p(char), a
    negative one that it lowered it; the units are nats (see influence() for what is measured).
    """

    char: str  # the character explained
    position: int  # its index in the text
    prob: float  # the probability the model gave it (temperature 1), as score_text reports
    first: int  # the text position of before[0]
    before: str  # the earlier characters weighed, oldest first: at most the window
    scores: list[float]
    method: str  # "gradient" or "occlusion"

    def strongest(self, n: int = 5) -> list[tuple[int, str, float]]:
        """The n characters that raised log p(char) most, as (text position, character, score), strongest first."""
        order = sorted(range(len(self.scores)), key=lambda i: -self.scores[i])[:n]
        return [(self.first + i, self.before[i], self.scores[i]) for i in order]


def _read(model: CharRNN, batch: torch.Tensor, state, cancel: CancelSignal = None) -> tuple[torch.Tensor | None, Any]:
    """The RNN's last output ([rows, H], None for no steps) and its state after reading batch ([rows, T] ids)
    from state, a chunk of time steps at a time (evaluate.positions_per_chunk), looking at cancel before each."""
    step = positions_per_chunk(model, len(batch))
    last = None
    for t in range(0, batch.shape[1], step):
        check(cancel)
        out, state = model.rnn(model.embedding(batch[:, t : t + step]).float(), state)
        last = out[:, -1]
    return last, state


def _state_after(model: CharRNN, ids: torch.Tensor, cancel: CancelSignal = None):
    """The RNN's state after reading ids from a zero start (None for no ids): the context before the window."""
    if not len(ids):
        return None
    with torch.no_grad():
        return _read(model, ids[None], None, cancel)[1]


def _gradient_scores(model: CharRNN, window: torch.Tensor, target: int, state,
                     cancel: CancelSignal = None) -> tuple[list[float], float]:
    check(cancel)
    emb = model.embedding(window[None]).detach().float().requires_grad_(True)
    out, _ = model.rnn(emb, state)
    log_p = torch.log_softmax(model.head(out[0, -1]).float(), -1)[target]
    (grad,) = torch.autograd.grad(log_p, emb)  # the gradient of log p reaches the embeddings only
    return (grad * emb.detach()).sum(-1)[0].tolist(), math.exp(log_p.item())


def _occlusion_scores(model: CharRNN, window: torch.Tensor, target: int, state, cancel: CancelSignal = None,
                      rows_per_pass: int = OCCLUSION_ROWS) -> tuple[list[float], float]:
    def rows(s: torch.Tensor, n: int) -> torch.Tensor:
        return s.expand(-1, n, -1).contiguous()

    with torch.no_grad():
        def log_probs(batch: torch.Tensor, start) -> torch.Tensor:
            n = len(batch)
            if start is not None:
                start = tuple(rows(s, n) for s in start) if isinstance(start, tuple) else rows(start, n)
            last, _ = _read(model, batch, start, cancel)
            return torch.log_softmax(model.head(last).float(), -1)[:, target]

        base = log_probs(window[None], state)[0]
        scores: list[float] = []
        # Rows hiding characters lo..hi-1 all read window[:lo] unchanged: they start from the state after it.
        for lo in range(0, len(window), rows_per_pass):
            hi = min(len(window), lo + rows_per_pass)
            batch = window[lo:].repeat(hi - lo, 1)
            diagonal = torch.arange(hi - lo, device=window.device)
            batch[diagonal, diagonal] = 0  # the unknown symbol in place of one character
            scores += (base - log_probs(batch, state)).tolist()
            _, state = model.rnn(model.embedding(window[None, lo:hi]).float(), state)
    return scores, math.exp(base.item())


def influence(model: CharRNN, text: str, position: int, prompt: str = "", window: int = MAX_INFLUENCE_WINDOW,
              method: str = "occlusion", cancel: CancelSignal = None) -> Influence:
    """Why the model gave text[position] the probability it did: each earlier character's share in it.

    text is read after prompt, as score_text reads it, and the last `window` characters before
    position (prompt characters included) are weighed; what comes before the window still sets
    the state the window starts from, so prob is score_text's probability.

    method "occlusion" (a forward pass per character, batched): log p(char) minus log p(char) with
    that one character replaced by the unknown symbol. method "gradient" (gradient x input, one
    backward pass): for each earlier character, the sum over embedding dimensions of
    d log p(char) / d embedding times the embedding, a first-order estimate of how much log p
    would drop if that character's embedding were zeroed. Either way positive means it raised p.
    On a planted bracket task both find the opening bracket; on the shipped fairy-tales model's
    own texts occlusion names the opening quote as the strongest cause of a closing one 4x as
    often as the gradient does (the LSTM's gates saturate, so the local gradient misses what
    hiding a character changes), at about 10x the cost (bench/influence.py).

    The model runs in eval mode (its mode is restored after); gradients are taken with
    torch.autograd.grad on the embedding output, so no parameter's .grad is touched.
    text and prompt must already be in the model's vocabulary (see prepare_text). Long reads go
    in chunks of time steps, so memory stays bounded; cancel is looked at before each (charrnn.cancel).
    """
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < len(text):
        raise ValueError(f"position must be a whole number from 0 to {len(text) - 1}, not {position!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"the window must be a whole number of characters, at least 1, not {window!r}")
    if method not in INFLUENCE_METHODS:
        raise ValueError(f"method must be one of {', '.join(INFLUENCE_METHODS)}, not {method!r}")
    context = _start_context(model, prompt)
    at = len(context) + position
    start = max(0, at - window)
    was_training = model.training
    model.eval()
    try:
        # Gradients work even when the caller is in inference mode (the ids are made inside, as normal
        # tensors); cuDNN's RNN has no backward pass in eval mode, the plain kernels do.
        with torch.inference_mode(False), torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
            ids = model.vocab.encode(context + text[: position + 1]).to(model.device)
            state = _state_after(model, ids[:start], cancel)
            run = _gradient_scores if method == "gradient" else _occlusion_scores
            scores, prob = run(model, ids[start:at], int(ids[at]), state, cancel)
    finally:
        model.train(was_training)
    full = context + text
    return Influence(char=text[position], position=position, prob=prob, first=start - len(context),
                     before=full[start:at], scores=scores, method=method)


# --- activations ----------------------------------------------------------------------------

@dataclass
class Activations:
    """State after reading each character: h[t, layer, unit] and, for an LSTM, the cell state c."""

    text: str
    h: np.ndarray  # [T, layers, hidden] float32
    c: np.ndarray | None  # [T, layers, hidden] float32; None for a GRU

    def kinds(self) -> list[str]:
        return ["c", "h"] if self.c is not None else ["h"]

    def of(self, kind: str) -> np.ndarray:
        if kind == "c" and self.c is not None:
            return self.c
        if kind == "h":
            return self.h
        raise ValueError(f"no state {kind!r} for this model (it has {', '.join(self.kinds())})")


def _single_layer(model: CharRNN, layer: int) -> nn.Module:
    """Layer `layer` of the model's RNN as a one-layer torch module with the same weights."""
    rnn = model.rnn
    cls = nn.LSTM if model.cell == "lstm" else nn.GRU
    in_size = rnn.input_size if layer == 0 else rnn.hidden_size
    one = cls(in_size, rnn.hidden_size, 1, batch_first=True).to(model.device)
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    one.load_state_dict({f"{name}_l0": getattr(rnn, f"{name}_l{layer}") for name in names})
    return one


@torch.inference_mode()
def activations(model: CharRNN, text: str, cancel: CancelSignal = None) -> Activations:
    """Hidden (and cell) state of every layer after each character of text, from a zero start.

    nn.LSTM returns h for every step but c only for the last, so each layer is run on its
    own and c is rebuilt from its gates: c_t = f_t * c_(t-1) + i_t * g_t. The text is read in
    chunks with every layer's state carried across them, so memory past the result stays
    bounded; cancel is looked at before each chunk (charrnn.cancel).
    text must already be in the model's vocabulary (see prepare_text).
    """
    if not text:
        raise ValueError("there is no text to run through the model")
    ids = model.vocab.encode(text).to(model.device)
    layers = [_single_layer(model, layer).float() for layer in range(model.num_layers)]
    shape = (len(ids), model.num_layers, model.hidden_size)
    h = np.empty(shape, dtype=np.float32)
    c = np.empty(shape, dtype=np.float32) if model.cell == "lstm" else None
    states: list = [None] * model.num_layers
    step = positions_per_chunk(model)
    for start in range(0, len(ids), step):
        check(cancel)
        x = model.embedding(ids[None, start : start + step]).float()
        rows = slice(start, start + x.shape[1])
        for layer, one in enumerate(layers):
            out, state = one(x, states[layer])
            h[rows, layer] = out[0].cpu().numpy()
            if c is not None:
                c[rows, layer] = _cell_states(one, x[0], out[0], states[layer])
            states[layer], x = state, out  # dropout is off at inference
    return Activations(text=text, h=h, c=c)


def _cell_states(one: nn.LSTM, x: torch.Tensor, out: torch.Tensor, before) -> np.ndarray:
    """c after each step of a one-layer LSTM that read x ([T, in]) from the state before (None: zeros)
    and wrote out ([T, H]), rebuilt from its gates."""
    h0 = before[0][0] if before is not None else torch.zeros_like(out[:1])
    running = before[1][0, 0].cpu().numpy() if before is not None else np.zeros(out.shape[1], dtype=np.float32)
    h_prev = torch.cat([h0, out[:-1]])
    gates = x @ one.weight_ih_l0.t() + one.bias_ih_l0 + h_prev @ one.weight_hh_l0.t() + one.bias_hh_l0
    i, f, g, _ = gates.chunk(4, 1)
    forget = torch.sigmoid(f).cpu().numpy()
    write = (torch.sigmoid(i) * torch.tanh(g)).cpu().numpy()
    c = np.empty_like(write)
    for t in range(len(write)):
        running = forget[t] * running + write[t]
        c[t] = running
    return c


# --- what cells mean --------------------------------------------------------------------------

FEATURES: dict[str, str] = {
    "inside quotes": "1 inside a quotation in double or single quotes (an apostrophe as in don't is no quote; "
                     "a blank line closes any quote), else 0",
    "position in line": "the number of characters since the last newline",
    "inside a word": "1 on letters, 0 on spaces, punctuation and digits",
    "just after a newline": "1 right after reading a newline, else 0",
    "upper case": "1 on capital letters, else 0",
}


def text_features(text: str) -> dict[str, np.ndarray]:
    """Simple per-character features of text, each the value after reading that character."""
    quote, line = np.zeros(len(text)), np.zeros(len(text))
    double, single, column, previous = 0, 0, 0, "\n"
    for t, ch in enumerate(text):
        following = text[t + 1] if t + 1 < len(text) else "\n"
        if ch == '"':
            double = 1 - double
        elif ch in "\u201c\u00ab":
            double = 1
        elif ch in "\u201d\u00bb":
            double = 0
        elif ch in "'\u2018\u2019":  # Grimm quotes with these; they are apostrophes too, so look at the neighbours
            if (not single and (previous.isspace() or previous in '"([-\u201c') and following.isalnum()
                    and ch != "\u2019"):
                single = 1
            elif single and not following.isalnum() and not previous.isspace():
                single = 0
        if ch == "\n" and previous == "\n":
            double = single = 0
        column = 0 if ch == "\n" else column + 1
        quote[t], line[t], previous = double or single, column, ch
    return {
        "inside quotes": quote,
        "position in line": line,
        "inside a word": np.array([ch.isalpha() for ch in text], dtype=float),
        "just after a newline": np.array([ch == "\n" for ch in text], dtype=float),
        "upper case": np.array([ch.isupper() for ch in text], dtype=float),
    }


@dataclass(frozen=True)
class CellCorrelation:
    feature: str
    kind: str  # "c" (cell state) or "h" (hidden state, the layer's output)
    layer: int  # from 0
    unit: int  # from 0
    r: float  # Pearson correlation over the text's characters

    def name(self) -> str:
        state = "cell state c" if self.kind == "c" else "hidden state h"
        return f"layer {self.layer + 1}, unit {self.unit} ({state})"


def correlations(values: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson r of each column of values [T, N] with feature [T]; NaN where a column is constant."""
    v = values.astype(np.float64)
    v = v - v.mean(0)
    f = feature.astype(np.float64) - feature.mean()
    denom = np.sqrt((v * v).sum(0) * (f * f).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (v.T @ f) / np.where(denom > 0, denom, 1.0), np.nan)


def rank_cells(acts: Activations, top: int = 5, features: list[str] | None = None,
               cancel: CancelSignal = None) -> dict[str, list[CellCorrelation]]:
    """The units whose value follows each feature most closely (largest |r|), best first.

    A feature that does not vary over the text (no quotes at all, say) gets an empty list:
    a correlation with a constant is undefined. cancel is looked at before each feature.
    """
    if len(acts.text) < MIN_CHARS_FOR_CORRELATION:
        raise ValueError(f"correlations need a text of at least {MIN_CHARS_FOR_CORRELATION} characters")
    feats = text_features(acts.text)
    names = features or list(FEATURES)
    unknown = [n for n in names if n not in feats]
    if unknown:
        raise ValueError(f"unknown feature {unknown[0]!r}; known: {', '.join(FEATURES)}")
    ranked: dict[str, list[CellCorrelation]] = {}
    for name in names:
        check(cancel)
        f = feats[name]
        if f.std() == 0:
            ranked[name] = []
            continue
        found: list[CellCorrelation] = []
        for kind in acts.kinds():
            states = acts.of(kind)
            for layer in range(states.shape[1]):
                r = correlations(states[:, layer], f)
                order = np.argsort(-np.nan_to_num(np.abs(r), nan=-1.0))[:top]
                found += [CellCorrelation(name, kind, layer, int(u), float(r[u])) for u in order if math.isfinite(r[u])]
        ranked[name] = sorted(found, key=lambda cell: -abs(cell.r))[:top]
    return ranked


def find_cells(model: CharRNN, text: str, top: int = 5,
               cancel: CancelSignal = None) -> dict[str, list[CellCorrelation]]:
    """rank_cells on the model's activations for text (normalised and fitted the model's way)."""
    fitted, _ = prepare_text(model, text)
    return rank_cells(activations(model, fitted, cancel), top, cancel=cancel)


# --- temperature side by side ---------------------------------------------------------------

def temperature_sweep(
    model: CharRNN, prompt: str, settings: SampleSettings, temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES,
    cancel: CancelSignal = None,
) -> list[tuple[float, str]]:
    """The same prompt and seed sampled at each temperature, so only the temperature differs.

    settings gives length, top-k, top-p and the seed (drawn once, then shared); its
    temperature is ignored. prompt must already be fitted (sampling.prepare_prompt).
    cancel is looked at every SWEEP_POLL_S while the engine writes; it ends every row.
    """
    engine, vocab_size = GenerationEngine.for_model(model), len(model.vocab)
    base = settings.for_vocab(vocab_size)
    each = [dataclasses.replace(base, temperature=t, checked_for=None).for_vocab(vocab_size) for t in temperatures]
    requests = engine.submit_many(prompt, each)  # stepped together, each with the one seed
    try:
        for request in requests:
            while not request.wait_until_finished(SWEEP_POLL_S):
                check(cancel)
        check(cancel)
        return [(float(t), request.text()) for t, request in zip(temperatures, requests)]
    finally:
        for request in requests:
            request.cancel()
