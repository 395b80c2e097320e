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

import numpy as np
import torch
from torch import nn

from charrnn.engine import GenerationEngine
from charrnn.model import CharRNN
from charrnn.sampling import DEFAULT_ALTERNATIVES, SampledChar, SampleSettings
from charrnn.text import normalize
from charrnn.vocab import fit_prompt

DEFAULT_TEMPERATURES = (0.2, 0.5, 0.8, 1.0, 1.3)
MIN_CHARS_FOR_CORRELATION = 20


def prepare_text(model: CharRNN, text: str) -> tuple[str, list[str]]:
    """Text as the model reads it (its normalisation; unknown characters folded or dropped), plus what changed."""
    return fit_prompt(normalize(text or "", model.ascii_fold), model.vocab)


def _start_context(model: CharRNN, prompt: str) -> str:
    # The same priming the sampler uses, so scoring a generated text gives the sampler's own probabilities.
    return prompt or ("\n" if "\n" in model.vocab else model.vocab.chars[1])


@torch.inference_mode()
def score_text(model: CharRNN, text: str, prompt: str = "",
               alternatives: int = DEFAULT_ALTERNATIVES) -> list[SampledChar]:
    """For each character of text (read after prompt): the probability the model gave it and its top alternatives.

    The probabilities are the model's own (temperature 1), as in sampling.stream, so a
    generated text scored afterwards shows what the model thought while writing it.
    text and prompt must already be in the model's vocabulary (see prepare_text).
    """
    if not text:
        return []
    context = _start_context(model, prompt)
    vocab = model.vocab
    ids = vocab.encode(context + text).to(model.device)
    was_training = model.training
    model.eval()
    try:
        logits, _ = model(ids[None, :-1])
    finally:
        model.train(was_training)
    probs = torch.softmax(logits[0, len(context) - 1 :].float(), -1)  # row i predicts text[i]
    targets = ids[len(context) :]
    chosen = probs.gather(1, targets[:, None])[:, 0].tolist()
    k = min(alternatives, len(vocab))
    top = torch.topk(probs, k, dim=-1)
    top_p, top_i = top.values.tolist(), top.indices.tolist()
    return [
        SampledChar(char=ch, prob=p, alternatives=[(vocab.chars[i], q) for q, i in zip(qs, idx)])
        for ch, p, qs, idx in zip(text, chosen, top_p, top_i)
    ]


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
def activations(model: CharRNN, text: str) -> Activations:
    """Hidden (and cell) state of every layer after each character of text, from a zero start.

    nn.LSTM returns h for every step but c only for the last, so each layer is run on its
    own and c is rebuilt from its gates: c_t = f_t * c_(t-1) + i_t * g_t.
    text must already be in the model's vocabulary (see prepare_text).
    """
    if not text:
        raise ValueError("there is no text to run through the model")
    ids = model.vocab.encode(text).to(model.device)
    x = model.embedding(ids[None]).float()
    hs, cs = [], []
    for layer in range(model.num_layers):
        one = _single_layer(model, layer).float()
        out, _ = one(x)
        h = out[0]  # [T, H]
        hs.append(h.cpu().numpy())
        if model.cell == "lstm":
            h_prev = torch.cat([torch.zeros_like(h[:1]), h[:-1]])
            gates = x[0] @ one.weight_ih_l0.t() + one.bias_ih_l0 + h_prev @ one.weight_hh_l0.t() + one.bias_hh_l0
            i, f, g, _ = gates.chunk(4, 1)
            forget = torch.sigmoid(f).cpu().numpy()
            write = (torch.sigmoid(i) * torch.tanh(g)).cpu().numpy()
            c = np.empty_like(write)
            running = np.zeros(write.shape[1], dtype=np.float32)
            for t in range(len(write)):
                running = forget[t] * running + write[t]
                c[t] = running
            cs.append(c)
        x = out  # dropout is off at inference
    return Activations(text=text, h=np.stack(hs, 1), c=np.stack(cs, 1) if cs else None)


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


def rank_cells(acts: Activations, top: int = 5, features: list[str] | None = None) -> dict[str, list[CellCorrelation]]:
    """The units whose value follows each feature most closely (largest |r|), best first.

    A feature that does not vary over the text (no quotes at all, say) gets an empty list:
    a correlation with a constant is undefined.
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


def find_cells(model: CharRNN, text: str, top: int = 5) -> dict[str, list[CellCorrelation]]:
    """rank_cells on the model's activations for text (normalised and fitted the model's way)."""
    fitted, _ = prepare_text(model, text)
    return rank_cells(activations(model, fitted), top)


# --- temperature side by side ---------------------------------------------------------------

def temperature_sweep(
    model: CharRNN, prompt: str, settings: SampleSettings, temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES
) -> list[tuple[float, str]]:
    """The same prompt and seed sampled at each temperature, so only the temperature differs.

    settings gives length, top-k, top-p and the seed (drawn once, then shared); its
    temperature is ignored. prompt must already be fitted (sampling.prepare_prompt).
    """
    engine, vocab_size = GenerationEngine.for_model(model), len(model.vocab)
    base = settings.for_vocab(vocab_size)
    each = [dataclasses.replace(base, temperature=t, checked_for=None).for_vocab(vocab_size) for t in temperatures]
    requests = engine.submit_many(prompt, each)  # stepped together, each with the one seed
    try:
        return [(float(t), request.text()) for t, request in zip(temperatures, requests)]
    finally:
        for request in requests:
            request.cancel()
