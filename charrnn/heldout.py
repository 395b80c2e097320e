"""Scoring the held-out text: what each evaluation during training reads, how the best weights are
chosen, and the best model's final score for the card and the result (what `charrnn eval` reports)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from charrnn.batching import split_train_val
from charrnn.budget import Stopper
from charrnn.evaluate import evaluate_ids
from charrnn.model import CharRNN
from charrnn.vocab import Vocab

if TYPE_CHECKING:
    from charrnn import distributed

EVAL_CHARS_DURING_TRAINING = 131_072  # all of tinyshakespeare's and the fairy tales' held-out text
# The best model's final score: all held-out text up to this, else the start of each file's part.
EVAL_CHARS_AT_END = 524_288
FINAL_SCORE_SHARE = 0.05  # of a time budget, the most the final scoring may take (it stops where it is)


def held_out_parts(texts: list[str], val_fraction: float, cap: int) -> list[str]:
    """Each text's held-out part: all of them while they hold at most cap characters together,
    else the same share of the start of each, so every file is scored."""
    parts = [split_train_val([t], val_fraction)[1] for t in texts]
    total = sum(len(p) for p in parts)
    if total > cap:
        parts = [p[: max(2, cap * len(p) // total)] for p in parts]
    return parts


def quick_val_ids(texts: list[str], val_fraction: float, vocab: Vocab, cap: int | None = None) -> torch.Tensor:
    """The validation text scored at each evaluation: all of it up to cap (EVAL_CHARS_DURING_TRAINING
    by default), else the same share of every file's held-out part, so the best model is chosen on every file."""
    return vocab.encode("".join(held_out_parts(texts, val_fraction, cap or EVAL_CHARS_DURING_TRAINING)))


@dataclass


class ValScore:
    """A validation loss and what it covers, so a card never passes a sample off as the whole."""

    loss: float
    chars: int  # held-out characters covered
    held_out: int  # held-out characters in all
    files: int = 1
    whole: bool = True  # all the held-out text was scored
    first: bool = True  # what was scored is the start of each file's held-out part
    exact: bool = True  # what `charrnn eval MODEL FILE --split val` reports (the character-weighted mean over files)
    note: str = ""  # why less was scored than planned
    per_file: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """'over all 8,000 held-out characters', 'over the first 524,288 of 2,000,000 ...', and why, if cut short."""
        if self.whole:
            text = f"over all {self.held_out:,} held-out characters"
        else:
            span = f"the first {self.chars:,}" if self.first else f"{self.chars:,}"
            text = f"over {span} of {self.held_out:,} held-out characters"
            if self.files > 1 and self.first:
                text += " (the start of each file's part)"
        return f"{text}: {self.note}" if self.note else text


def _scored(results: dict[str, dict], parts: list[tuple[str, str]], held_out: int, complete: bool,
            why: str) -> ValScore:
    """The character-weighted mean of each file's score (exactly the one score for one file), as a ValScore."""
    chars = sum(r["chars"] for r in results.values())
    if len(results) == 1:
        loss = next(iter(results.values()))["loss"]
    else:
        loss = sum(r["loss"] * r["chars"] for r in results.values()) / chars
    covered = sum(len(part) for _, part in parts)
    whole = complete and covered == held_out
    return ValScore(loss=loss, chars=covered if complete else chars, held_out=held_out, files=len(parts),
                    whole=whole, first=complete, exact=whole,
                    note="" if complete else f"scoring stopped when {why}",
                    per_file={name: r["loss"] for name, r in results.items()} if len(results) > 1 else {})


def score_held_out(model: CharRNN, parts: list[tuple[str, str]], device: torch.device,
                   should_stop: Callable[[], bool]) -> tuple[dict[str, dict], bool]:
    """Each file's held-out part scored on its own (what `charrnn eval MODEL FILE --split val` does),
    until should_stop says so; the results by name, and whether every part was scored in full."""
    results: dict[str, dict] = {}
    for name, part in parts:
        if len(part) < 2:
            continue
        if results and should_stop():
            return results, False
        results[name] = evaluate_ids(model, model.vocab.encode(part).to(device), should_stop)
        if not results[name]["complete"]:
            return results, False
    return results, True


def final_parts(texts: list[str], names: list[str], val_fraction: float) -> list[tuple[str, str]]:
    """(file name, held-out part) for the final score: all of it up to EVAL_CHARS_AT_END, else the start of each."""
    return list(zip(names, held_out_parts(texts, val_fraction, EVAL_CHARS_AT_END)))


def score_quick(model: CharRNN, ids: torch.Tensor, ddp: distributed.Group | None,
                should_stop: Callable[[], bool], streams: int | None = None) -> dict:
    """One evaluation during training, of the quick validation ids in streams parallel streams (None: as
    `charrnn eval` reads them): evaluate_ids's result (under torchrun, every rank's mean, always complete)."""
    if ddp:
        return {"loss": ddp.mean_val_loss(model, ids), "chars": len(ids) - 1, "complete": True}
    return evaluate_ids(model, ids, should_stop, streams)


def is_better(val: float, complete: bool, best_val: float, best_complete: bool, have_best: bool,
              vocab_size: int) -> bool:
    """Whether an evaluation's weights become the best ones. Worse than guessing uniformly means the
    weights blew up (an absurd LR): never that. A partial evaluation (cut short by a cancel or the
    budget) is not comparable with a complete one: it counts only while there is no best yet, and
    the first complete one after it replaces it."""
    if not (math.isfinite(val) and val < math.log(vocab_size) + 1.0):
        return False
    if not have_best:
        return True
    return complete and (not best_complete or val < best_val)


def _within_share(stopper: Stopper, keep: float) -> tuple[Callable[[], bool], Callable[[], str]]:
    """should_stop for the final scoring: the stopper's, and FINAL_SCORE_SHARE of the time budget from
    now, so scoring a long held-out text never takes a short run's minutes; and why it said stop."""
    budget = stopper.clock.budget
    deadline = time.monotonic() + FINAL_SCORE_SHARE * budget if budget else math.inf
    asked = stopper.asker(keep=keep)
    reason = ""

    def should_stop() -> bool:
        nonlocal reason
        if asked():
            reason = stopper.reason
        elif time.monotonic() >= deadline:
            reason = f"its share of the time budget ({FINAL_SCORE_SHARE:.0%}) ran out"
        return bool(reason)

    return should_stop, lambda: reason


def final_score(model: CharRNN, quick_score: Callable[[str], ValScore], known: bool, parts: list[tuple[str, str]],
                 held_out: int, quick_chars: int, device: torch.device, stopper: Stopper) -> ValScore:
    """The best model's validation loss for the card and the result.

    known: training already scored exactly the whole held-out text with these weights, so that
    number is it. Otherwise each file's part is scored (up to EVAL_CHARS_AT_END in all) until
    the budget runs out or a cancel comes; when that covers less than training's measurement
    did, training's measurement is reported instead, saying so.
    """
    if known:
        return quick_score("")
    keep = stopper.clock.card_s()  # the card's samples and the checkpoint come after
    why = stopper.why(keep=keep)
    if why:
        return quick_score(f"as scored during training, since {why} before the final scoring")
    should_stop, why_stopped = _within_share(stopper, keep)
    results, complete = score_held_out(model, parts, device, should_stop)
    if not results:
        return quick_score("as scored during training")
    why = why_stopped()
    score = _scored(results, parts, held_out, complete, why)
    if not complete and quick_chars >= score.chars:
        return quick_score(f"as scored during training, since {why} during the final scoring")
    return score
