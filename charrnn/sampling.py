"""The arithmetic of generating text: settings, prompts, one step of the network, one draw.

A prompt is read in one pass of the model's own LSTM (prime); after that each step is a
hand-fused product plus gate math over the model's weights (FusedStepper), because at a
small batch an nn.LSTM call costs far more in dispatch than in arithmetic. draw_rows picks
every row's next character under that row's own settings. The loop that runs them for
every request is charrnn.engine's.
"""

from __future__ import annotations

import math
import random
import re
import reprlib
import weakref
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from charrnn.model import CharRNN, State, precision_autocast, resolve_precision
from charrnn.text import normalize
from charrnn.vocab import fit_prompt

MAX_PROMPT_CHARS = 2048  # only the tail of a longer prompt is read: an LSTM's memory is far shorter
PROMPT_WINDOW_CHARS = 4 * MAX_PROMPT_CHARS  # raw characters fitted to reach that tail: bounded work for any prompt
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_TEMPERATURE = 10.0
# Below this a temperature only overflows the scaled logits (1e-300 makes them inf): it means greedy.
MIN_TEMPERATURE = 1e-3
# The hard cap on one generation, for every caller (the app sets a lower one of its own): a
# request for ten million characters is refused rather than left to run for hours.
MAX_SAMPLE_LENGTH = 100_000
MAX_NUM_SAMPLES = 256  # samples generated together, with seeds seed, seed + 1, ...
DEFAULT_ALTERNATIVES = 5
MAX_STOP_STRINGS = 8  # stop strings one request may have
MAX_STOP_CHARS = 64  # the longest stop string


@dataclass(frozen=True)
class SampleSettings:
    length: int = 500  # characters to write at most
    temperature: float = 0.8  # 0: always the likeliest character
    top_k: int | None = None  # draw only from the k likeliest characters; None or 0: off
    top_p: float | None = None  # draw only from the smallest set of characters reaching this probability; None: off
    seed: int | None = None  # None: one is drawn (and kept in the checked settings, so the text can be repeated)
    stop: tuple[str, ...] = ()  # end the text as soon as it ends with one of these (it keeps the stop string)
    min_length: int = 0  # characters written before a stop string may end the text
    # The vocabulary size these settings were checked for (by checked()); None when unchecked.
    checked_for: int | None = field(default=None, compare=False, repr=False)

    def checked(self, vocab_size: int) -> SampleSettings:
        """Refuse what cannot mean anything, clamp what merely overshoots."""
        length, temperature, top_k, top_p, seed = self.length, self.temperature, self.top_k, self.top_p, self.seed
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ValueError(f"length must be a whole number of characters, 0 or more, not {reprlib.repr(length)}")
        if length > MAX_SAMPLE_LENGTH:
            raise ValueError(f"length must be at most {MAX_SAMPLE_LENGTH:,} characters, not {length:,}")
        try:
            temperature = float(temperature)
        except (TypeError, ValueError):
            raise ValueError(f"temperature must be a number, not {reprlib.repr(temperature)}") from None
        if not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be a finite number, 0 or more, not {reprlib.repr(temperature)}")
        temperature = 0.0 if temperature < MIN_TEMPERATURE else min(temperature, MAX_TEMPERATURE)
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
                raise ValueError(f"top-k must be a whole number, 0 or more (0 means off), not {reprlib.repr(top_k)}")
            top_k = None if top_k == 0 or top_k >= vocab_size else top_k
        if top_p is not None:
            try:
                top_p = float(top_p)
            except (TypeError, ValueError):
                raise ValueError(f"top-p must be a number in (0, 1], not {reprlib.repr(top_p)}") from None
            if not (0.0 < top_p <= 1.0):
                raise ValueError(f"top-p must be in (0, 1], not {reprlib.repr(top_p)}")
            top_p = None if top_p == 1.0 else top_p
        seed = resolve_seed(seed)
        stop, min_length = checked_stops(self.stop, self.min_length)
        return SampleSettings(length=length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                              stop=stop, min_length=min_length, checked_for=vocab_size)

    def for_vocab(self, vocab_size: int) -> SampleSettings:
        """These settings checked for a vocabulary of vocab_size: as they are when they already were."""
        return self if self.checked_for == vocab_size else self.checked(vocab_size)


def checked_stops(stop: object, min_length: object) -> tuple[tuple[str, ...], int]:
    """Stop strings as a tuple of distinct non-empty strings (at most MAX_STOP_STRINGS, each at most
    MAX_STOP_CHARS long), and the minimum length as a whole number of characters."""
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, (tuple, list)) or not all(isinstance(s, str) for s in stop):
        raise ValueError(f"stop strings must be a list of texts, not {reprlib.repr(stop)}")
    stop = tuple(dict.fromkeys(s for s in stop if s))
    if len(stop) > MAX_STOP_STRINGS:
        raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings, not {len(stop)}")
    if any(len(s) > MAX_STOP_CHARS for s in stop):
        raise ValueError(f"a stop string may be at most {MAX_STOP_CHARS} characters long")
    if isinstance(min_length, bool) or not isinstance(min_length, int) or not 0 <= min_length <= MAX_SAMPLE_LENGTH:
        raise ValueError(f"the minimum length must be a whole number of characters from 0 to {MAX_SAMPLE_LENGTH:,}, "
                         f"not {reprlib.repr(min_length)}")
    return stop, min_length


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def unescape(text: str) -> str:
    """A stop string as typed on a command line or in a text box: \\n is a newline, \\t a tab, \\\\ a backslash."""
    return re.sub(r"\\([nt\\])", lambda m: _ESCAPES[m.group(1)], text)


def resolve_seed(seed: int | str | None) -> int:
    """A concrete seed, drawn at random when none is given, so any output can be reproduced."""
    if seed is None or (isinstance(seed, str) and not seed.strip()):
        return random.SystemRandom().randrange(2**31)
    if isinstance(seed, bool):
        raise ValueError(f"seed must be a whole number, not {reprlib.repr(seed)}")
    if isinstance(seed, float):
        if not seed.is_integer():
            raise ValueError(f"seed must be a whole number, not {reprlib.repr(seed)}")
        seed = int(seed)
    if isinstance(seed, str):
        try:
            seed = int(seed.strip())
        except ValueError:
            raise ValueError(f"seed must be a whole number, not {reprlib.repr(seed)}") from None
    if not isinstance(seed, int):
        raise ValueError(f"seed must be a whole number, not {reprlib.repr(seed)}")
    return seed % 2**63


@dataclass(frozen=True)
class SampledChar:
    char: str
    prob: float  # the model's own probability (temperature 1) for the character chosen
    alternatives: list[tuple[str, float]]  # the top characters it considered, with those probabilities


def prepare_prompt(model: CharRNN, prompt: str) -> tuple[str, list[str]]:
    """The prompt as the model reads it: normalised its way, unknown characters folded or dropped."""
    tail = (prompt or "")[-PROMPT_WINDOW_CHARS:]
    invalid = list(dict.fromkeys(_SURROGATE.findall(tail)))  # lone surrogates: no character at all
    fitted, changed = fit_prompt(normalize(_SURROGATE.sub("", tail), model.ascii_fold), model.vocab)
    return fitted[-MAX_PROMPT_CHARS:], invalid + changed


PACKED_ROWS = 16  # the batch oneDNN's packed layout is tuned for; any batch multiplies correctly with it


def fp16_product(weight: torch.Tensor, bias: torch.Tensor | None) -> object | None:
    """weight ([out, in], fp32) stored in fp16 for FBGEMM's product, which widens it back inside
    (fp32 inputs, sums and output, bias added inside): half the bytes a step reads. None where
    this torch or CPU has no such product or a weight does not fit in fp16 (tried once here)."""
    if weight.device.type != "cpu" or "fbgemm" not in torch.backends.quantized.supported_engines:
        return None
    if not bool(weight.abs().max() <= torch.finfo(torch.float16).max):  # also False for nan
        return None
    try:
        packed = torch.ops.quantized.linear_prepack_fp16(weight, bias)
        torch.ops.quantized.linear_dynamic_fp16(torch.zeros(1, weight.shape[1]), packed)
        return packed
    except (AttributeError, RuntimeError, NotImplementedError):
        return None


def packed_for_onednn(weight: torch.Tensor) -> torch.Tensor:
    """weight ([out, in], fp32) in oneDNN's blocked layout, fixed once instead of rearranged at
    every product; or as it was, where this torch or CPU cannot pack it or multiply it packed
    in each way FusedStepper does (tried once here)."""
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, PACKED_ROWS)
        x, out = torch.zeros(1, weight.shape[1]), torch.zeros(1, weight.shape[0])
        torch.ops.mkldnn._linear_pointwise(x, packed, out[0], "none", [], "")
        torch.ops.mkldnn._linear_pointwise.binary(x, out, packed, None, "add")
        return packed
    except (AttributeError, RuntimeError, NotImplementedError):
        return weight


def held_model(ref: weakref.ref, holder: str) -> CharRNN:
    """The model a weak reference holds; a RuntimeError naming the holder when the model is gone."""
    model = ref()
    if model is None:
        raise RuntimeError(f"{holder}'s model is gone")
    return model


class FusedStepper:
    """One step of the network for a batch of rows, as matrix products plus gate math on the model's weights.

    The first layer's input projection is folded into a per-character table, so it costs a row
    lookup. The products are, in order of preference (`products` says which):
    - "fp16": on a CPU with FBGEMM, each matrix (the output layer's too) stored in fp16 and
      widened to fp32 inside the product, which adds the bias; a one-row step is bound by the
      bytes it reads, and these are half;
    - "onednn": on another CPU with oneDNN, fp32 matrices in oneDNN's blocked layout, which adds
      the bias or layer 0's table rows inside the product;
    - "plain": fp32 F.linear (a GPU, or a CPU with neither).
    Whichever it is, the engine checks before its first step that a row's numbers come out the
    same at every batch size and position it steps at (engine.batch_shapes).

    The gate math needs no tanh for the gates: the cell-input gate's rows are stored doubled, so
    one sigmoid over all four gates gives sigmoid(2g), and tanh(g) = 2 sigmoid(2g) - 1.
    """

    def __init__(self, model: CharRNN) -> None:
        # Held weakly: the engine caches its stepper per model, and a strong reference from the cache's value to
        # its key would keep every model that ever generated (each training run's, with its weights) alive.
        self._model = weakref.ref(model)
        self.lstm = model.cell == "lstm"
        self.products = "plain"
        if not self.lstm:
            return
        rnn, layers, hidden = model.rnn, model.num_layers, model.hidden_size
        doubled_g = torch.ones(4 * hidden, device=rnn.weight_hh_l0.device)
        doubled_g[2 * hidden : 3 * hidden] = 2.0  # gate order i, f, g, o

        def out_in(w: torch.Tensor) -> torch.Tensor:  # [4H, in] with the g rows doubled
            return (w.float() * doubled_g[:, None]).contiguous()

        with torch.inference_mode():
            w0 = rnn.weight_ih_l0.float()
            table = model.embedding.weight.float() @ w0.t() + rnn.bias_ih_l0 + rnn.bias_hh_l0
            self.table = (table * doubled_g).contiguous()
            weights = [out_in(rnn.weight_hh_l0)]
            weights += [out_in(torch.cat([getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")], 1))
                        for k in range(1, layers)]
            weights.append(model.head.weight.float().t().contiguous())  # [in, out]: addmm on that is faster
            biases = [None] + [(getattr(rnn, f"bias_ih_l{k}") + getattr(rnn, f"bias_hh_l{k}")).float() * doubled_g
                               for k in range(1, layers)] + [model.head.bias.float()]
            self.shapes = [tuple(w.shape) for w in weights[:-1]] + [tuple(weights[-1].shape[::-1])]  # [out, in]
            self.weights, self.biases = list(weights), biases  # [layer 0's recurrent one, each upper layer's, the head]
            if self.table.device.type == "cpu":
                self._store(weights, biases)

    @property
    def model(self) -> CharRNN:
        return held_model(self._model, "this stepper")

    def _store(self, weights: list[torch.Tensor], biases: list[torch.Tensor | None]) -> None:
        """Keep each matrix the fastest way this CPU multiplies it (see the class docstring)."""
        head = weights[-1].t().contiguous()  # [out, in] again
        fp16 = [fp16_product(w, b) for w, b in zip([*weights[:-1], head], biases)]
        if all(p is not None for p in fp16):
            self.products, self.weights = "fp16", fp16
            return
        packed = [packed_for_onednn(w) for w in weights[:-1]]
        if all(w.is_mkldnn for w in packed):
            self.products, self.weights[:-1] = "onednn", packed

    def _project(self, n: int, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """x times matrix n plus its bias, or plus rows (one per row of x) for layer 0's table."""
        weight, bias = self.weights[n], self.biases[n]
        if isinstance(weight, torch.ScriptObject):  # fp16, the bias inside
            # Without this, torch looks up __torch_function__ on the packed weight, a lookup that raises and
            # catches an exception inside: most of a small product's time. Nothing here is a tensor subclass.
            with torch._C.DisableTorchFunctionSubclass():
                out = torch.ops.quantized.linear_dynamic_fp16(x, weight)
            return out if rows is None else out.add_(rows)
        if weight.is_mkldnn:
            if rows is not None:
                return torch.ops.mkldnn._linear_pointwise.binary(x, rows, weight, None, "add")
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        if n == len(self.weights) - 1:  # the output layer, as [in, out]
            return torch.addmm(bias, x, weight)
        return F.linear(x, weight, bias if rows is None else rows)

    def weight_bytes(self) -> int:
        """Bytes of weights read per step: the physical floor for one-row sampling."""
        if not self.lstm:
            return sum(p.numel() * p.element_size() for p in self.model.parameters())
        sizes = [2 if isinstance(w, torch.ScriptObject) else 4 for w in self.weights]
        return self.table.shape[1] * 4 + sum(out * inp * size for (out, inp), size in zip(self.shapes, sizes))

    def step(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The logits for the next character and the new state. The state is (h, c), each indexable
        by layer: the [layers, batch, H] tensors nn.LSTM gives, or the per-layer lists this returns."""
        if not self.lstm:  # the model's own GRU, without its dropout
            was_training = self.model.training
            self.model.eval()
            try:
                logits, state = self.model(ids[:, None], state)
            finally:
                self.model.train(was_training)
            return logits[:, -1].float(), state
        h, c = state
        hs, cs = [], []
        x = None
        for k in range(self.model.num_layers):
            if k == 0:
                gates = self._project(0, h[0], self.table.index_select(0, ids))
            else:
                gates = self._project(k, torch.cat([x, h[k]], 1))
            i, f, g2, o = gates.sigmoid_().chunk(4, 1)  # g2 = sigmoid(2g): its rows are stored doubled
            c_new = torch.addcmul(f * c[k], i, g2, value=2.0).sub_(i)  # f c + i tanh(g), as tanh(g) = 2 g2 - 1
            x = torch.tanh(c_new).mul_(o)
            hs.append(x)
            cs.append(c_new)
        return self._project(self.model.num_layers, x), (hs, cs)


class RowSettings:
    """The sampling settings of a batch's rows as tensors, so one draw serves rows that differ."""

    def __init__(self, rows: list[SampleSettings], vocab_size: int, device: torch.device) -> None:
        self.greedy = torch.tensor([s.temperature == 0 for s in rows], device=device)
        self.all_greedy = all(s.temperature == 0 for s in rows)
        self.any_greedy = any(s.temperature == 0 for s in rows)
        self.temperature = torch.tensor([s.temperature or 1.0 for s in rows], device=device)[:, None]
        self.top_k = torch.tensor([s.top_k or vocab_size for s in rows], device=device)[:, None]
        self.top_p = torch.tensor([s.top_p or 2.0 for s in rows], device=device)[:, None]  # 2: keeps every character
        self.any_top_k = any(s.top_k for s in rows)
        self.any_top_p = any(s.top_p for s in rows)
        self.unknown_masked = torch.zeros(1, vocab_size, device=device)  # added to every row: -inf for id 0
        self.unknown_masked[0, 0] = -math.inf


def filter_rows(scaled: torch.Tensor, rows: RowSettings) -> torch.Tensor:
    """Top-k, then top-p, each row by its own settings, on logits already divided by the temperature.

    Each filter only masks characters out of the logits in their own order, so a row whose
    filters are off keeps exactly the numbers it had: what a row draws never depends on
    the settings of the rows beside it.
    """
    ordered = scaled.sort(-1, descending=True).values
    if rows.any_top_k:
        kth = ordered.gather(1, rows.top_k - 1)
        scaled = scaled.masked_fill(scaled < kth, -math.inf)
        ordered = ordered.masked_fill(ordered < kth, -math.inf)
    if rows.any_top_p:
        probs = torch.softmax(ordered, -1)
        kept = ((probs.cumsum(-1) - probs) < rows.top_p).sum(-1, keepdim=True)  # the smallest set reaching top_p
        scaled = scaled.masked_fill(scaled < ordered.gather(1, kept - 1), -math.inf)
    return scaled


def draw_rows(logits: torch.Tensor, rows: RowSettings, gumbel: torch.Tensor) -> torch.Tensor:
    """One id per row: the most likely at temperature 0, else a draw from the filtered distribution.

    The draw is the Gumbel-max trick: the argmax of logits / temperature plus each row's own
    Gumbel noise is a sample from the softmax, and every operation is per element or per row.
    The unknown symbol (id 0) is never chosen.
    """
    # logits / temperature, and -inf for the unknown symbol (a greedy row's temperature is 1: its logits as they are)
    scaled = torch.addcdiv(rows.unknown_masked, logits, rows.temperature)
    if rows.all_greedy:
        return scaled.argmax(-1)
    if rows.any_top_k or rows.any_top_p:
        scaled = filter_rows(scaled, rows)  # each row keeps its likeliest character: greedy picks stay
    drawn = (scaled + gumbel).argmax(-1)
    return torch.where(rows.greedy, scaled.argmax(-1), drawn) if rows.any_greedy else drawn


def prime(model: CharRNN, prompt: str) -> tuple[torch.Tensor, State]:
    """The logits for the first character ([1, V], fp32) and the state after reading the prompt,
    in one pass of the model's own LSTM. prompt must be fitted (prepare_prompt); an empty one
    reads as a newline (or the first character the model knows)."""
    vocab, device = model.vocab, model.device
    context = prompt or ("\n" if "\n" in vocab else vocab.chars[1])
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), precision_autocast(device, resolve_precision(None, device)):
            out, state = model.rnn(model.embedding(vocab.encode(context).to(device)[None]))
        with torch.inference_mode():
            # The output layer in fp32 and for the last position only: the first character's probability is exact.
            logits = model.head(out[:, -1].float())
            state = tuple(part.float() for part in state) if isinstance(state, tuple) else state.float()
    finally:
        model.train(was_training)
    return logits, state
