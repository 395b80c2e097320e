"""A run's time budget and its cancel: the clock that measures what the finish will need, the
stopper that tells long work when to stop where it is, and the checks start-up calls between pieces.

A time budget covers the whole run: start-up, training, the final evaluation and the card's
samples; training stops early enough to leave the finish the time it was measured to need,
and any scoring left when the budget runs out stops where it is, saying so. A cancel is seen
between the pieces of start-up, between steps and between windows of scoring.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from charrnn.checkpoint import CheckpointError

FINISH_SHARE = 0.25  # at most this share of a time budget is kept back for the final evaluation and samples
FINISH_MARGIN = 1.5  # speeds vary on a shared machine: keep half again what the finish is estimated to take
FINISH_SLACK_S = 0.5  # and this for what is not measured (copying the best weights, being descheduled)
CANCEL_GRACE_S = 1.0  # after a cancel, the evaluation that picks the weights to save may run this much longer
START_CHUNK_CHARS = 1 << 20  # start-up reads the text in pieces this long, to notice a cancel between them


class TrainingStopped(CheckpointError):
    """The run was cancelled before it had a model to save, so nothing was saved.

    A stop the user asked for, not a failure; a CheckpointError, so callers that show those show it.
    """


class StoppedBeforeFirstStep(TrainingStopped):
    """The run was cancelled before its first step: nothing was trained, so nothing was saved."""

    def __init__(self) -> None:
        super().__init__("training was stopped before the first step; nothing was saved")


class Clock:
    """The run's time against its budget, start-up and the earlier runs of a resumed one included,
    and the measured speeds that say how much of the budget to keep back for the finish."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.before = 0.0  # seconds spent by the runs this one resumes, less what autosize already took off the budget
        self.budget: float | None = None
        self.eval_cps: float | None = None  # validation characters scored per second, as last measured
        self.train_cps: float | None = None  # training characters per second: a slower stand-in before any evaluation
        self.samples_s = 0.0  # what the card's samples will take, from a timed probe
        self.save_s = 0.0  # what writing a checkpoint took, last time
        self.step_s = 0.0  # seconds this run spent in optimizer steps: the rest is start-up, scoring, samples, saving
        self.last_step_s = 0.0  # what the last optimizer step took
        self.last_sample_s = 0.5  # what the last sample during training took (a guess before the first)
        self.spent: Counter[str] = Counter()  # seconds of this run by what they went to, optimizer steps aside

    def elapsed(self) -> float:
        return self.before + time.monotonic() - self.start

    def add_step(self, seconds: float) -> None:
        self.step_s += seconds
        self.last_step_s = seconds

    @contextlib.contextmanager
    def spending(self, what: str) -> Iterator[None]:
        """Count the seconds of the block as spent on what (start-up, evaluations, saving, samples...)."""
        began = time.monotonic()
        try:
            yield
        finally:
            self.spent[what] += time.monotonic() - began

    def left(self) -> float:
        return math.inf if self.budget is None else self.budget - self.elapsed()

    def card_s(self) -> float:
        """Seconds to keep back, when scoring at the end, for the card's samples and the checkpoint."""
        return FINISH_MARGIN * (self.samples_s + self.save_s) + FINISH_SLACK_S

    def finish_s(self, chars_to_score: int, chars_per_step: int) -> float:
        """Seconds to keep back for one more step, then scoring chars_to_score characters, writing the
        card's samples and the checkpoint (with FINISH_MARGIN), at most FINISH_SHARE of the budget;
        0 without a budget or before anything was measured."""
        speed = self.eval_cps or self.train_cps
        if self.budget is None or not speed or not self.train_cps:
            return 0.0
        finish = FINISH_MARGIN * chars_to_score / speed + self.card_s() + chars_per_step / self.train_cps
        return min(finish, FINISH_SHARE * self.budget)


class Stopper:
    """Says when long work must stop where it is: the time budget is spent, or the run was cancelled
    (the evaluation that picks the weights to save gets a grace period after the cancel)."""

    def __init__(self, cancel: threading.Event, clock: Clock) -> None:
        self.cancel, self.clock = cancel, clock
        self.cancelled_at: float | None = None  # when the run first saw the cancel
        self.reason = ""  # why an asker last said stop

    def cancelled(self) -> bool:
        if self.cancelled_at is None and self.cancel.is_set():
            self.cancelled_at = time.monotonic()
        return self.cancelled_at is not None

    def why(self, grace: float = 0.0, keep: float = 0.0) -> str:
        """Why the work must stop now, or '' while it may go on; keep: seconds of the budget it must leave."""
        if self.cancelled() and time.monotonic() - self.cancelled_at >= grace:
            return "the run was cancelled"
        return "the time budget ran out" if self.clock.left() <= keep else ""

    def asker(self, grace: float = 0.0, keep: float = 0.0) -> Callable[[], bool]:
        """should_stop for work done in pieces (windows, characters, samples): it also stops when what
        is left of the budget would not fit one more piece as long as the last one took."""
        last = time.monotonic()

        def should_stop() -> bool:
            nonlocal last
            now = time.monotonic()
            piece, last = now - last, now
            why = self.why(grace, keep + piece)
            self.reason = why or self.reason
            return bool(why)

        return should_stop


def cancel_check(cancel: threading.Event) -> Callable[[], None]:
    """A check for start-up's long steps: it raises StoppedBeforeFirstStep once cancel is set."""
    def check() -> None:
        if cancel.is_set():
            raise StoppedBeforeFirstStep
    return check


def pieces(texts: Iterable[str], check: Callable[[], None]) -> Iterator[str]:
    """The texts in pieces of START_CHUNK_CHARS, calling check before each, so a cancel is seen between them."""
    for text in texts:
        for start in range(0, len(text), START_CHUNK_CHARS):
            check()
            yield text[start : start + START_CHUNK_CHARS]
