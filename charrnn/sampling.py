"""Generating text: prime on a prompt in one pass, then one character at a time.

At batch 1 an nn.LSTM call costs far more in dispatch than in arithmetic, so after priming
each step is a hand-fused product plus gate math over the model's own weights (FusedStepper);
the first layer's input projection is folded into a per-character table, so it costs a row
lookup. On a CPU that multiplies bf16 natively, priming and batched steps run their matrix
products in bf16 with fp32 state; a batch-1 step stays fp32, where the bf16 matrix-vector
product is slower. bench/sample_speed.py measures each choice (figures in bench/README.md).
"""

from __future__ import annotations

import math
import random
import re
import reprlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from charrnn.model import CharRNN, State, native_bf16, precision_autocast, resolve_precision
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
MAX_NUM_SAMPLES = 256  # samples generated together as one batch
DEFAULT_ALTERNATIVES = 5


@dataclass(frozen=True)
class SampleSettings:
    length: int = 500
    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None

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
        return SampleSettings(length=length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)


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


BATCH1_PARTITIONS = 4  # column blocks of a batch-1 step's recurrent matrices (see FusedStepper)
BF16_MIN_BATCH = 2  # batched steps multiply in bf16 from this batch on, where the CPU has it natively
PACKED_ROWS = 16  # the batch oneDNN's packed layout is tuned for; any batch multiplies correctly with it


def packed_for_onednn(weight: torch.Tensor) -> torch.Tensor:
    """weight ([out, in], fp32 or bf16) in oneDNN's blocked layout, fixed once instead of
    rearranged at every product; or as it was, where this torch or CPU cannot pack it or
    multiply it packed in each way FusedStepper does (tried once here)."""
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, PACKED_ROWS)
        x, out = torch.zeros(1, weight.shape[1], dtype=weight.dtype), torch.zeros(1, weight.shape[0], dtype=weight.dtype)
        torch.ops.mkldnn._linear_pointwise(x, packed, out[0], "none", [], "")
        torch.ops.mkldnn._linear_pointwise.binary(x, out, packed, None, "add")
        return packed
    except (AttributeError, RuntimeError, NotImplementedError):
        return weight


class FusedStepper:
    """One step of the network at a small batch, as matrix products plus gate math on the model's weights.

    matmul_dtype bf16 stores the recurrent matrices in bf16 and multiplies in it (with the table
    rows and biases it adds); the gate math, state and output layer stay fp32. partitions > 1
    stores each recurrent matrix as that many column blocks multiplied by one bmm, which torch
    spreads over its threads (it runs a one-row addmm on one). Otherwise, on a CPU, the matrices
    are stored in oneDNN's blocked layout (packed_for_onednn), as torch.compile's CPU backend
    stores them, and oneDNN adds the bias, or layer 0's table rows, inside the product.

    The gate math needs no tanh: the cell-input gate's rows are stored doubled, so one sigmoid
    over all four gates gives sigmoid(2g), and tanh(g) = 2 sigmoid(2g) - 1 (likewise for the cell
    state). The sigmoid runs in fp32 on the product's output: a bf16 sigmoid would round forget
    gates near 1 and shorten the cell's memory.
    """

    def __init__(self, model: CharRNN, matmul_dtype: torch.dtype = torch.float32, partitions: int = 1) -> None:
        self.model = model
        self.lstm = model.cell == "lstm"
        self.dtype = matmul_dtype
        self.partitions = partitions
        self.packed = False
        if not self.lstm:
            return
        rnn, layers, hidden = model.rnn, model.num_layers, model.hidden_size
        doubled_g = torch.ones(4 * hidden, device=rnn.weight_hh_l0.device)
        doubled_g[2 * hidden : 3 * hidden] = 2.0  # gate order i, f, g, o

        def out_in(w: torch.Tensor) -> torch.Tensor:  # [4H, in] with the g rows doubled, in matmul_dtype
            return (w.float() * doubled_g[:, None]).to(matmul_dtype).contiguous()

        def in_blocks(w: torch.Tensor) -> torch.Tensor:  # [4H, in] -> [partitions, in, 4H / partitions]
            w = w.t()
            return w.reshape(w.shape[0], partitions, w.shape[1] // partitions).permute(1, 0, 2).contiguous()

        with torch.inference_mode():
            w0 = rnn.weight_ih_l0.float()
            self.table = ((model.embedding.weight.float() @ w0.t() + rnn.bias_ih_l0 + rnn.bias_hh_l0) * doubled_g).contiguous()
            self.w_hh0 = out_in(rnn.weight_hh_l0)
            self.w_cat = [out_in(torch.cat([getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")], 1)) for k in range(1, layers)]
            self.b_cat = [(getattr(rnn, f"bias_ih_l{k}") + getattr(rnn, f"bias_hh_l{k}")).float() * doubled_g for k in range(1, layers)]
            # fp32 always (small, and the logits stay exact), as [in, out]: addmm on that is 30% faster at 16 rows
            self.w_head = model.head.weight.float().t().contiguous()
            self.b_head = model.head.bias.float()
            if partitions > 1:
                self.w_hh0 = in_blocks(self.w_hh0)
                self.w_cat = [in_blocks(w) for w in self.w_cat]
            elif self.table.device.type == "cpu":
                packed = [packed_for_onednn(w) for w in [self.w_hh0, *self.w_cat]]
                if all(w.is_mkldnn for w in packed):  # oneDNN then adds the table row or bias inside the product
                    self.packed = True
                    self.w_hh0, *self.w_cat = packed
                    self.table = self.table.to(matmul_dtype)
                    self.b_cat = [b.to(matmul_dtype) for b in self.b_cat]

    @classmethod
    def for_model(cls, model: CharRNN, batch_size: int = 1) -> FusedStepper:
        """The model's stepper for this batch size, kept on the model and rebuilt only when its
        weights change (training, loading or moving them changes their version or storage):
        building one copies every weight, a few ms that would otherwise delay each request's
        first character."""
        dtype = torch.bfloat16 if batch_size >= BF16_MIN_BATCH and model.device.type == "cpu" and native_bf16(model.device) else torch.float32
        partitions = BATCH1_PARTITIONS if batch_size == 1 and model.device.type == "cpu" else 1
        key = tuple((p.data_ptr(), p._version) for p in model.parameters())
        cache = model.__dict__.setdefault("_fused_steppers", {})
        cached = cache.get((dtype, partitions))
        if cached is None or cached[0] != key:
            cached = (key, cls(model, dtype, partitions))
            cache[(dtype, partitions)] = cached
        return cached[1]

    def _project(self, bias: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if weight.dim() == 3:  # column blocks: one bmm, then the blocks side by side again
            return torch.bmm(x.expand(weight.shape[0], -1, -1), weight).permute(1, 0, 2).reshape(x.shape[0], -1) + bias
        if weight.is_mkldnn:  # bias (per column) or rows to add (table rows, per row) inside oneDNN's product
            if bias.dim() == 2:
                return torch.ops.mkldnn._linear_pointwise.binary(x.to(weight.dtype), bias, weight, None, "add").float()
            return torch.ops.mkldnn._linear_pointwise(x.to(weight.dtype), weight, bias, "none", [], "").float()
        if weight.dtype == torch.float32:
            return F.linear(x, weight, bias)
        return F.linear(x.to(weight.dtype), weight).float() + bias

    def logits(self, top: torch.Tensor) -> torch.Tensor:
        """The output layer on the top layer's h."""
        return torch.addmm(self.b_head, top, self.w_head)

    def weight_bytes(self) -> int:
        """Bytes of weights read per step: the physical floor for batch-1 sampling."""
        if not self.lstm:
            return sum(p.numel() * p.element_size() for p in self.model.parameters())
        row = self.table.shape[1] * self.table.element_size()  # one table row
        mats = [self.w_hh0, *self.w_cat, self.w_head]
        return row + sum(m.numel() * m.element_size() for m in mats)

    def step(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The logits for the next character and the new state. The state is (h, c), each indexable
        by layer: the [layers, batch, H] tensors nn.LSTM gives, or the per-layer lists this returns."""
        if not self.lstm:
            logits, state = self.model(ids[:, None], state)
            return logits[:, -1].float(), state
        h, c = state
        hs, cs = [], []
        x = None
        for k in range(self.model.num_layers):
            if k == 0:
                gates = self._project(self.table.index_select(0, ids), h[0], self.w_hh0)
            else:
                gates = self._project(self.b_cat[k - 1], torch.cat([x, h[k]], 1), self.w_cat[k - 1])
            i, f, g2, o = torch.sigmoid(gates).chunk(4, 1)  # g2 = sigmoid(2g): its rows are stored doubled
            c_new = torch.addcmul(f * c[k], i, g2, value=2.0).sub_(i)  # f c + i tanh(g), as tanh(g) = 2 g2 - 1
            x = torch.addcmul(o.neg(), o, torch.sigmoid(c_new * 2.0), value=2.0)  # o tanh(c_new)
            hs.append(x)
            cs.append(c_new)
        return self.logits(x), (hs, cs)


def filter_logits(logits: torch.Tensor, settings: SampleSettings) -> torch.Tensor:
    """Temperature, top-k and top-p, in that order; the unknown symbol is never sampled."""
    logits = logits / settings.temperature
    logits[:, 0] = -math.inf
    if settings.top_k is not None:
        kth = torch.topk(logits, settings.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if settings.top_p is not None:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = torch.softmax(sorted_logits, -1).cumsum(-1)
        drop = cum - torch.softmax(sorted_logits, -1) >= settings.top_p  # keep the smallest set reaching top_p
        sorted_logits = sorted_logits.masked_fill(drop, -math.inf)
        logits = torch.full_like(logits, -math.inf).scatter(-1, order, sorted_logits)
    return logits


def draw(logits: torch.Tensor, settings: SampleSettings, generator: torch.Generator) -> torch.Tensor:
    """One id per row: the most likely at temperature 0, else a draw from the filtered distribution.

    The draw is torch.multinomial's own for one sample (argmax of p / q, q ~ Exp(1) from the
    generator), so a seed writes the text it wrote before, but without multinomial's checks of
    the probabilities (reductions read back one by one): at batch 1 it takes 4.4 us against
    multinomial's 11.1. The probabilities cannot be invalid here: a loaded model's weights are
    finite, so are its logits, and filtering always keeps a character.
    """
    if settings.temperature == 0:
        masked = logits.clone()
        masked[:, 0] = -math.inf
        return masked.argmax(-1)
    probs = torch.softmax(filter_logits(logits, settings), -1)  # filter_logits divides into a copy
    return torch.argmax(probs / torch.empty_like(probs).exponential_(generator=generator), -1)


def generate_ids(model: CharRNN, prompt: str, settings: SampleSettings, batch_size: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (chosen ids [B], the model's logits [B, V] they were drawn from) per step; constant memory
    however long. Logits, not probabilities: only a caller that shows them pays for the softmax.

    A raw prompt or unchecked settings are made safe here too (both steps are idempotent), so a
    library caller cannot crash it; prepare_prompt tells what was changed, for a warning.
    """
    vocab = model.vocab
    settings = settings.checked(len(vocab))
    prompt = prepare_prompt(model, prompt)[0]
    # inference_mode is entered around each computation, never across a yield: a mode held
    # while suspended would leak into the caller's code between characters.
    with torch.inference_mode():
        was_training = model.training
        model.eval()
        device = model.device
        generator = torch.Generator(device=device).manual_seed(settings.seed)
        context = prompt or ("\n" if "\n" in vocab else vocab.chars[1])
        with precision_autocast(device, resolve_precision(None, device)):  # once, then copied to every row of the batch
            out, state = model.rnn(model.embedding(vocab.encode(context).to(device)[None]))
        # The output layer in fp32 and for the last position only: the first character's probability is exact.
        logits = model.head(out[:, -1].float()).expand(batch_size, -1).contiguous()
        if isinstance(state, tuple):
            state = tuple(part.float().expand(-1, batch_size, -1).contiguous() for part in state)
        else:
            state = state.float().expand(-1, batch_size, -1).contiguous()
        stepper = FusedStepper.for_model(model, batch_size)
    try:
        for n in range(settings.length):
            with torch.inference_mode():
                chosen = draw(logits, settings, generator)
            yield chosen, logits
            if n + 1 < settings.length:
                with torch.inference_mode():
                    logits, state = stepper.step(chosen, state)
    finally:
        model.train(was_training)


def stream(model: CharRNN, prompt: str, settings: SampleSettings, alternatives: int = DEFAULT_ALTERNATIVES) -> Iterator[SampledChar]:
    """One sample, character by character, with the probability and top alternatives of each.

    settings must already be checked (SampleSettings.checked), so the seed is concrete.
    """
    vocab = model.vocab
    k = min(alternatives, len(vocab))
    for chosen, logits in generate_ids(model, prompt, settings):
        probs = torch.softmax(logits, -1)
        top = torch.topk(probs[0], k)
        idx = int(chosen[0])
        yield SampledChar(
            char=vocab.chars[idx],
            prob=float(probs[0, idx]),
            alternatives=[(vocab.chars[i], float(p)) for p, i in zip(top.values.tolist(), top.indices.tolist())],
        )


def sample(model: CharRNN, prompt: str, settings: SampleSettings, num_samples: int = 1) -> list[str]:
    """num_samples continuations generated together as one batch."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or not 1 <= num_samples <= MAX_NUM_SAMPLES:
        raise ValueError(f"the number of samples must be a whole number from 1 to {MAX_NUM_SAMPLES}, not {num_samples!r}")
    columns = [chosen.tolist() for chosen, _ in generate_ids(model, prompt, settings, num_samples)]
    return [model.vocab.decode(row) for row in zip(*columns)] if columns else [""] * num_samples
