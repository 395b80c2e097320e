"""Beam search: the continuations the model itself finds most likely, rather than draws from it.

K beams are stepped as one batch. The prompt is primed once (sampling.prime) and its state
copied into K rows; at each step every (beam, character) pair is scored by the beam's total
log-probability plus the character's (fp32 log_softmax of the model's logits, temperature
1), the best K of all K * V pairs become the new beams, and the state rows are reordered
to match (index_select) before the next step (sampling.FusedStepper). The unknown symbol
(id 0) is never written.

Ranking. Without stop strings every beam writes exactly `length` characters, so beams are
ranked by their total log-probability: any length normalisation, GNMT's ((5 + length) / 6) **
alpha or the mean per character, divides every beam's total by the same number and cannot
change the order. BeamSettings.length_penalty is accepted and checked for that formula, and has
no effect.

Stop strings. With BeamSettings.stop, a beam that writes one (once it has written min_length
characters, as sampling counts them) is finished there: it keeps its total and leaves the
search, and the best K of the others go on (the top 2K candidates of each step are looked at, so
finishing beams do not thin the search). Results are ranked by total log-probability, the
probability of that whole text ending there; a finished text and one cut at `length` compete
alike. Totals only fall as beams grow, so the search ends early once num_results finished texts
are at least as likely as every beam still going.

Repetition. Beams of a character model settle into loops (the likeliest text repeats its
likeliest phrase), so no_repeat_ngram = n forbids a beam to write an n-gram of characters
it has already written in its continuation: for each beam the characters that would
complete one are masked before the top K is taken. Only if every candidate of every beam
is masked does the step go unmasked (a tiny vocabulary can run out of fresh n-grams).

Memory. What the beams wrote is kept as a parent and a character per beam and step, and
the prefix all beams share (they soon descend from one beam) is moved out into one text
now and then, so memory past that text stays bounded by how far the beams diverge.
"""

from __future__ import annotations

import math
import reprlib
import threading
import weakref
from dataclasses import dataclass, field

import torch

from charrnn.cancel import CancelSignal, check
from charrnn.engine import as_state, flat_state
from charrnn.model import CharRNN
from charrnn.sampling import MAX_SAMPLE_LENGTH, FusedStepper, checked_stops, prepare_prompt, prime

MAX_BEAM_WIDTH = 32  # beams per search: past this each step costs more and finds almost nothing likelier
MAX_NO_REPEAT_NGRAM = 64  # the longest n-gram blocking knows; longer repeats are the text's own business
COMMIT_EVERY = 64  # steps between looks for the prefix every beam shares (the wait doubles while there is none)


@dataclass(frozen=True)
class BeamSettings:
    # K: beams kept at every step, 1 to MAX_BEAM_WIDTH (1 is greedy decoding).
    width: int = 8
    # Characters every beam writes, 0 to sampling.MAX_SAMPLE_LENGTH.
    length: int = 200
    # N: how many of the best beams are returned, 1 to width.
    num_results: int = 1
    # GNMT's alpha in ((5 + length) / 6) ** alpha; all beams have one length, so it never changes the order.
    length_penalty: float = 0.0
    # 0: off; n (2 to MAX_NO_REPEAT_NGRAM): a beam never writes an n-gram of characters it has already written.
    no_repeat_ngram: int = 0
    # A beam is finished as soon as its text ends with one of these (it keeps the stop string), as in sampling.
    stop: tuple[str, ...] = ()
    # Characters a beam writes before a stop string may finish it.
    min_length: int = 0
    # The vocabulary size these settings were checked for (by checked()); None when unchecked.
    checked_for: int | None = field(default=None, compare=False, repr=False)

    def checked(self, vocab_size: int) -> BeamSettings:
        """These settings, or a one-line ValueError naming the first that cannot be used."""
        width, length, num_results, no_repeat = self.width, self.length, self.num_results, self.no_repeat_ngram
        if not _whole(width) or not 1 <= width <= MAX_BEAM_WIDTH:
            raise ValueError(f"beam width must be a whole number from 1 to {MAX_BEAM_WIDTH}, not {reprlib.repr(width)}")
        if not _whole(length) or length < 0:
            raise ValueError(f"length must be a whole number of characters, 0 or more, not {reprlib.repr(length)}")
        if length > MAX_SAMPLE_LENGTH:
            raise ValueError(f"length must be at most {MAX_SAMPLE_LENGTH:,} characters, not {length:,}")
        if not _whole(num_results) or not 1 <= num_results <= width:
            raise ValueError(f"the number of results must be a whole number from 1 to the beam width ({width}), "
                             f"not {reprlib.repr(num_results)}")
        penalty = self.length_penalty
        try:
            alpha = float(penalty)
        except (TypeError, ValueError):
            alpha = math.nan
        if isinstance(penalty, bool) or not math.isfinite(alpha) or alpha < 0:
            raise ValueError(f"length penalty must be a finite number, 0 or more, not {reprlib.repr(penalty)}")
        if not _whole(no_repeat) or not (no_repeat == 0 or 2 <= no_repeat <= MAX_NO_REPEAT_NGRAM):
            raise ValueError("no-repeat n-gram size must be 0 (off) or a whole number from 2 to "
                             f"{MAX_NO_REPEAT_NGRAM}, not {reprlib.repr(no_repeat)}")
        stop, min_length = checked_stops(self.stop, self.min_length)
        return BeamSettings(width=width, length=length, num_results=num_results, length_penalty=alpha,
                            no_repeat_ngram=no_repeat, stop=stop, min_length=min_length, checked_for=vocab_size)

    def for_vocab(self, vocab_size: int) -> BeamSettings:
        """These settings checked for a vocabulary of vocab_size: as they are when they already were."""
        return self if self.checked_for == vocab_size else self.checked(vocab_size)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class BeamResult:
    text: str  # the continuation: `length` characters, or fewer when it ends with a stop string
    log_prob: float  # its total log-probability under the model (natural log, temperature 1), given the prompt
    mean_log_prob: float  # log_prob per character (0.0 for an empty continuation)


def beam_search(model: CharRNN, prompt: str, settings: BeamSettings,
                cancel: CancelSignal = None) -> list[BeamResult]:
    """The num_results likeliest continuations beam search finds after prompt, best first, all distinct.

    prompt may be raw: it is fitted as sampling.prepare_prompt says. Deterministic: the same
    model, prompt and settings give the same results. Fewer than num_results come back only
    when fewer distinct continuations exist (a length of 0 has one: the empty text; a tiny
    vocabulary may have fewer than N of a short length). Raises ValueError for bad settings,
    and charrnn.cancel.Cancelled when cancel asks it to stop (looked at every step).
    """
    settings = settings.for_vocab(len(model.vocab))
    fitted = prepare_prompt(model, prompt)[0]
    if settings.length == 0:
        return [BeamResult(text="", log_prob=0.0, mean_log_prob=0.0)]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return _search(model, fitted, settings, cancel)
    finally:
        model.train(was_training)


def _search(model: CharRNN, fitted: str, settings: BeamSettings, cancel: CancelSignal) -> list[BeamResult]:
    width, length, vocab_size = settings.width, settings.length, len(model.vocab)
    device = model.device
    # Totals in float64 where the device has it: a sum of 100,000 fp32 terms would lose the digits ranking needs.
    total_dtype = torch.float32 if device.type == "mps" else torch.float64
    stepper = _stepper(model)
    logits, state = prime(model, fitted)  # one pass over the prompt, batch 1
    # Every beam starts as the primed row ([1, H] per layer, expanded to [K, H] without a copy);
    # only the first counts, the others start at -inf.
    parts = [part.expand(width, -1) for part in flat_state(state)]
    scores = torch.full((width,), -math.inf, dtype=total_dtype, device=device)
    scores[0] = 0.0
    logits = logits.expand(width, vocab_size)
    history = _History(model.vocab.chars)
    blocker = _NgramBlocker(settings.no_repeat_ngram, width, model.vocab.chars) if settings.no_repeat_ngram else None
    stops = _Stops(settings, width, model.vocab.chars) if settings.stop else None
    next_commit = COMMIT_EVERY
    for step in range(length):
        check(cancel)
        candidates = scores[:, None] + torch.log_softmax(logits.float(), -1).to(total_dtype)
        candidates[:, 0] = -math.inf  # the unknown symbol is never written
        top = _best(candidates, blocker, scores, width if stops is None else min(2 * width, width * vocab_size))
        values, parents, ids = top.values, top.indices // vocab_size, top.indices % vocab_size
        if stops is not None:
            values, parents, ids = stops.split(values, parents, ids, step + 1, history)
            if stops.settled(values):
                scores = torch.full_like(values, -math.inf)  # the beams still going are unfinished: none counts
                break
        scores = values
        parent_list, id_list = parents.tolist(), ids.tolist()
        history.append(parent_list, id_list)
        if blocker is not None:
            blocker.advance(parent_list, id_list)
        if len(history.steps) >= next_commit:
            live = [b for b, s in enumerate(scores.tolist()) if s > -math.inf]
            before = history.shared_tail
            piece = history.commit(live)
            if blocker is not None and piece:
                blocker.rebase(history, before, piece, live)
            next_commit = max(COMMIT_EVERY, 2 * len(history.steps))
        if step + 1 < length:
            parts = [part.index_select(0, parents) for part in parts]
            logits, state = stepper.step(ids, as_state(model, parts))
            parts = flat_state(state)
    ranked = [(s, history.text(b)) for b, s in enumerate(scores.tolist()) if s > -math.inf]
    ranked += stops.finished if stops is not None else []
    ranked.sort(key=lambda pair: -pair[0])  # stable: among equal totals, beams before finished texts
    results: dict[str, float] = {}
    for s, text in ranked:
        if text not in results and len(results) < settings.num_results:
            results[text] = s
    return [BeamResult(text=text, log_prob=s, mean_log_prob=s / len(text) if text else 0.0)
            for text, s in results.items()]


def _best(candidates: torch.Tensor, blocker: _NgramBlocker | None, scores: torch.Tensor, k: int):
    """The top k (beam, character) pairs, leaving out those that would repeat an n-gram (unless that leaves none)."""
    if blocker is not None:
        rows, cols = blocker.blocked(scores)
        if rows:
            device = candidates.device
            masked = candidates.index_put((torch.tensor(rows, device=device), torch.tensor(cols, device=device)),
                                          torch.tensor(-math.inf, dtype=candidates.dtype, device=device))
            top = masked.view(-1).topk(k)
            if top.values[0].item() > -math.inf:
                return top
    return candidates.view(-1).topk(k)  # every candidate blocked: this step goes unmasked


class _Stops:
    """Which beams a step finishes (they wrote a stop string after min_length characters), the texts
    they finished with, and the last characters of every beam still going."""

    def __init__(self, settings: BeamSettings, width: int, chars: tuple[str, ...]) -> None:
        self.stop, self.min_length, self.width, self.chars = settings.stop, settings.min_length, width, chars
        self.keep = settings.num_results
        self.longest = max(map(len, self.stop))
        self.tails = [""] * width
        self.finished: list[tuple[float, str]] = []  # (total log-probability, text), the best `keep`, best first

    def split(self, values: torch.Tensor, parents: torch.Tensor, ids: torch.Tensor, written: int,
              history: _History) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """From the step's best candidates (best first): the finishing ones put aside, the best `width`
        of the others as the new beams (padded with dead rows at -inf)."""
        live: list[int] = []
        tails = []
        for k, (score, p, i) in enumerate(zip(values.tolist(), parents.tolist(), ids.tolist())):
            if score == -math.inf or len(live) == self.width:
                break
            tail = (self.tails[p] + self.chars[i])[-self.longest:]
            if written >= self.min_length and tail.endswith(self.stop):
                self._finish(score, history.text(p) + self.chars[i])
            else:
                live.append(k)
                tails.append(tail)
        dead = self.width - len(live)
        self.tails = tails + [""] * dead
        rows = torch.tensor(live + [0] * dead, dtype=torch.long, device=values.device)
        kept = values[rows].clone()
        kept[len(live):] = -math.inf
        return kept, parents[rows], ids[rows]

    def settled(self, values: torch.Tensor) -> bool:
        """Whether no beam still going can beat the finished texts kept (totals only fall), or none is going."""
        best_live = values[0].item()
        return best_live == -math.inf or (len(self.finished) >= self.keep and self.finished[-1][0] >= best_live)

    def _finish(self, score: float, text: str) -> None:
        if len(self.finished) < self.keep or score > self.finished[-1][0]:
            self.finished = sorted([*self.finished, (score, text)], key=lambda pair: -pair[0])[: self.keep]


_STEPPERS: weakref.WeakKeyDictionary[CharRNN, tuple[tuple, FusedStepper]] = weakref.WeakKeyDictionary()
_STEPPERS_LOCK = threading.Lock()


def _stepper(model: CharRNN) -> FusedStepper:
    """The model's stepper, rebuilt only when its weights change (training, loading or moving them
    changes their version or storage): building one copies and repacks every weight, about 20 ms
    for the shipped 2x512 model, a tenth of a 200-character search."""
    key = tuple((p.data_ptr(), p._version) for p in model.parameters())
    with _STEPPERS_LOCK:
        cached = _STEPPERS.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    stepper = FusedStepper(model)
    with _STEPPERS_LOCK:
        _STEPPERS[model] = (key, stepper)
    return stepper


class _History:
    """What the beams wrote: the prefix all of them share, as text, then a parent and a character
    per beam for each step since (steps[j] = (parent beam at step j - 1, character id), per beam)."""

    def __init__(self, chars: tuple[str, ...]) -> None:
        self.chars = chars
        self.shared: list[str] = []  # pieces of the shared prefix, in order
        self.shared_tail = ""  # its last MAX_NO_REPEAT_NGRAM characters
        self.steps: list[tuple[list[int], list[int]]] = []

    def append(self, parents: list[int], ids: list[int]) -> None:
        self.steps.append((parents, ids))

    def commit(self, live: list[int]) -> str:
        """Move the steps every live beam descends from into the shared prefix; the piece moved ("" if none)."""
        slots = set(live)
        for j in range(len(self.steps) - 1, 0, -1):
            slots = {self.steps[j][0][b] for b in slots}
            if len(slots) == 1:  # all live beams descend from one beam at step j - 1
                piece = self._trace(j - 1, slots.pop())
                self.shared.append(piece)
                self.shared_tail = (self.shared_tail + piece)[-MAX_NO_REPEAT_NGRAM:]
                del self.steps[:j]
                return piece
        return ""

    def window(self, beam: int) -> str:
        """What beam wrote after the shared prefix."""
        return self._trace(len(self.steps) - 1, beam)

    def text(self, beam: int) -> str:
        return "".join(self.shared) + self.window(beam)

    def _trace(self, last: int, beam: int) -> str:
        out = []
        for j in range(last, -1, -1):
            parents, ids = self.steps[j]
            out.append(self.chars[ids[beam]])
            beam = parents[beam]
        return "".join(reversed(out))


_NONE: frozenset[int] = frozenset()


class _NgramBlocker:
    """The n-grams each beam has written, as the characters (ids) written after each (n-1)-gram:
    one table for the shared prefix, and per beam one for what it wrote after that. A beam's
    table is copied only when a second beam descends from it; its sets are frozen, so a copy
    is shallow."""

    def __init__(self, n: int, width: int, chars: tuple[str, ...]) -> None:
        self.n = n
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}
        self.shared: dict[str, set[int]] = {}
        self.own: list[dict[str, frozenset[int]]] = [{} for _ in range(width)]
        self.tails = [""] * width  # each beam's last n - 1 characters

    def blocked(self, scores: torch.Tensor) -> tuple[list[int], list[int]]:
        """The (beam, character) pairs that would repeat an n-gram, for the live beams."""
        rows, cols = [], []
        context = self.n - 1
        for b, score in enumerate(scores.tolist()):
            tail = self.tails[b]
            if score == -math.inf or len(tail) < context:
                continue
            for i in self.shared.get(tail, _NONE) | self.own[b].get(tail, _NONE):
                rows.append(b)
                cols.append(i)
        return rows, cols

    def advance(self, parents: list[int], ids: list[int]) -> None:
        """Each new beam: its parent's n-grams, plus the one its character completes."""
        taken = set()
        own = []
        for p in parents:  # every copy is made before any table changes
            own.append(self.own[p] if p not in taken else dict(self.own[p]))
            taken.add(p)
        context = self.n - 1
        tails = []
        for b, (p, i) in enumerate(zip(parents, ids)):
            tail = self.tails[p]
            if len(tail) == context:
                own[b][tail] = own[b].get(tail, _NONE) | {i}
            tails.append((tail + self.chars[i])[-context:])
        self.own, self.tails = own, tails

    def rebase(self, history: _History, before: str, piece: str, live: list[int]) -> None:
        """After history.commit moved piece into the shared prefix (whose end had been before): its
        n-grams in the shared table, and each live beam's own table rebuilt from what it wrote after it."""
        context = self.n - 1
        for gram in _ngrams(before[-context:] + piece, self.n):
            self.shared.setdefault(gram[:-1], set()).add(self.index[gram[-1]])
        live_set = set(live)
        for b in range(len(self.own)):
            table: dict[str, frozenset[int]] = {}
            if b in live_set:
                for gram in _ngrams(history.shared_tail[-context:] + history.window(b), self.n):
                    table[gram[:-1]] = table.get(gram[:-1], _NONE) | {self.index[gram[-1]]}
            self.own[b] = table


def _ngrams(text: str, n: int) -> list[str]:
    return [text[k : k + n] for k in range(len(text) - n + 1)]
