"""Running the app's work off Gradio's threads: generators in threads of their own, training runs
in line for the one training slot, and ZeroGPU's time-limited calls as a series of resumed slices.

Training runs in its own thread with its own torch thread count: every core while no visitor is
generating, one fewer while a generation runs, so generation for other visitors keeps a core; on a
ZeroGPU Space it runs as a series of short GPU calls, each resuming from the checkpoint the previous
one wrote.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import torch

from charrnn.cancel import Cancelled, CancelSignal, is_cancelled
from charrnn.card import CardInfo
from charrnn.config import TrainConfig
from charrnn.engine import any_engine_busy
from charrnn.memory import release_memory
from charrnn.text import Corpus
from charrnn.train import TrainEvent, train
from webapp import limits

if TYPE_CHECKING:
    from webapp.session import Session

try:  # Hugging Face's ZeroGPU helper; only present (and only needed) on a Space
    import spaces  # type: ignore[import-not-found]
except ImportError:
    spaces = None
# Updates of an event lying unread this long mean its visitor is gone (never opened or stopped reading the stream).
UNREAD_GONE_S = 1.0
UNOPENED_GONE_S = 2.0  # the same before the stream was seen read: a client on a slow link is still opening it
WATCH_INTERVAL_S = 0.25  # how often work that cannot look at visitor_gone itself is looked after
ON_ZEROGPU = spaces is not None and os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


def gpu(duration: int):
    """spaces.GPU(duration=...) where the spaces package exists, else the function unchanged."""
    def wrap(fn):
        return spaces.GPU(duration=duration)(fn) if spaces is not None else fn
    return wrap


class LineFull(Exception):
    """Too many training runs are already waiting for the slot."""


class TrainingLine:
    """The training slots and the runs waiting for one, first come first served.

    A waiting run holds no slot and does no work, so its visitor's Stop ends it at once;
    Gradio's own queue could not tell a Stop about a job it had not started yet.
    """

    def __init__(self, slots: int | None = None, max_waiting: int | None = None) -> None:
        self.slots = limits.TRAIN_CONCURRENCY if slots is None else slots
        self.max_waiting = limits.MAX_TRAIN_WAITING if max_waiting is None else max_waiting
        self._running: set[object] = set()
        self._waiting: list[object] = []
        self._changed = threading.Condition()

    def join(self) -> object:
        """A ticket at the back of the line; LineFull when max_waiting runs are already waiting."""
        with self._changed:
            if len(self._running) >= self.slots and len(self._waiting) >= self.max_waiting:
                raise LineFull(f"the training queue is full ({len(self._waiting)} runs waiting); "
                               "try again in a few minutes")
            ticket = object()
            self._waiting.append(ticket)
            return ticket

    def wait(self, ticket: object, timeout: float) -> int:
        """0 once ticket holds a slot; else, after at most timeout seconds, how many runs are ahead of it."""
        with self._changed:
            self._changed.wait_for(lambda: self._admit(ticket), timeout)
            return 0 if ticket in self._running else len(self._running) + self._waiting.index(ticket)

    def leave(self, ticket: object) -> None:
        """The run ended (or never started): its slot or its place in line goes to the next."""
        with self._changed:
            self._running.discard(ticket)
            if ticket in self._waiting:
                self._waiting.remove(ticket)
            self._changed.notify_all()

    def _admit(self, ticket: object) -> bool:
        if ticket not in self._running and len(self._running) < self.slots and self._waiting[0] is ticket:
            self._running.add(self._waiting.pop(0))
        return ticket in self._running


@dataclass
class TrainJob:
    """A training run the app queues: train() on one uploaded corpus, maybe in resumed slices."""

    corpus: Corpus
    out_dir: Path
    config: TrainConfig
    init: Path | str | None  # the model to fine-tune; None trains from scratch
    card_info: CardInfo = field(default_factory=CardInfo)  # what the card says of where the model comes from


def _run_job(job: TrainJob, cancel: threading.Event, resume: bool = False) -> Iterator[TrainEvent]:
    return train([job.corpus], job.out_dir, job.config, init=None if resume else job.init, resume=resume,
                 cancel=cancel, card_info=job.card_info)


@gpu(duration=limits.ZEROGPU_SLICE_S + 30)
def _train_slice(job: TrainJob, resume: bool, slice_s: float) -> Iterator[TrainEvent]:
    """One short GPU call: train until slice_s passes (or the run ends), then save and return.

    A slice ends only after it has trained at least one step: a cancel that came before it would
    save nothing (the first slice would fail, a later one would make no progress), and starting
    up can take longer than a short slice on a busy machine.
    """
    cancel, due, stepped = threading.Event(), threading.Event(), threading.Event()

    def time_is_up() -> None:
        due.set()
        if stepped.is_set():
            cancel.set()

    timer = threading.Timer(slice_s, time_is_up)
    timer.start()
    try:
        for event in _run_job(job, cancel, resume):
            if event.kind == "step":
                stepped.set()
                if due.is_set():
                    cancel.set()
            yield event
    finally:
        timer.cancel()


def sliced_training(job: TrainJob, cancel: threading.Event, slice_s: float) -> Iterator[TrainEvent]:
    """Train as a series of short calls that resume each other, seen from outside as one run.

    A slice ends by cancelling itself, which saves a resumable checkpoint; the next slice
    picks up from it. A Stop from the user takes effect when the running slice ends.
    """
    resume = False
    while True:
        last = None
        for event in _train_slice(job, resume, slice_s):
            if event.kind == "done":
                last = event
                break
            if event.kind != "start" or not resume:
                yield event
        if last is None:
            return
        sliced_out = last.result is not None and last.result.stopped_because == "cancelled"
        if not sliced_out or cancel.is_set():
            if sliced_out and last.result is not None:
                last.message = last.message.replace("stopped: cancelled", "stopped: stopped by the user")
            yield last
            return
        resume = True


def in_thread(make: Callable[[], Iterator], torch_threads: int, stop: threading.Event, name: str = "worker",
              on_exit: Callable[[], None] | None = None, drain: bool = False) -> Iterator:
    """Run the iterator make() in one dedicated thread and yield its items here.

    Gradio resumes a generator handler on whichever pool thread is free; torch's
    thread-local modes (inference mode, the thread count) must not hop threads mid-run,
    so the engine's generators run start to finish in a thread of their own. Closing this
    generator sets stop: with drain=False the worker stops at the next item; with drain=True
    the iterator sees stop itself (train's cancel) and finishes its own way.
    """
    # A stoppable worker may run only a little ahead of its reader, so Stop saves the work.
    items: queue.Queue = queue.Queue(maxsize=0 if drain else 256)

    def put(item) -> bool:
        while True:
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                if stop.is_set():
                    return False

    def work() -> None:
        if not torch.cuda.is_available():
            torch.set_num_threads(torch_threads)
        try:
            for item in make():
                if not put(item) or (stop.is_set() and not drain):
                    break
        except BaseException as exc:  # handed to the consumer, which raises it as the user's error
            put(exc)
        finally:
            if on_exit is not None:
                on_exit()
            put(_END)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if thread.is_alive():
            stop.set()


def visitor_gone() -> Callable[[], bool]:
    """A cancel signal for the Gradio event this handler runs for: True once nobody waits for its result.

    Called in the handler's own thread (Gradio's context says which event it runs). The visitor is gone
    when the event is over for Gradio (its own cancel, Stop, the end of the call), when Gradio marked it
    dead (the event stream closed), or when its updates lie unread for UNREAD_GONE_S (UNOPENED_GONE_S before
    the stream was seen read: it was never opened, or is not read). Outside a Gradio event (a handler called
    directly) it never fires.
    """
    from gradio.context import LocalContext

    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue_ = getattr(blocks, "_queue", None)
    event = queue_.event_ids_to_events.get(event_id) if queue_ is not None and event_id else None
    if event is None:
        return lambda: False
    unread_since: list[float] = []
    read = [False]  # whether the visitor has been seen reading the event stream

    def gone() -> bool:
        if not event.alive or queue_.event_ids_to_events.get(event_id) is not event:
            return True
        messages = queue_.pending_messages_per_session.get(event.session_hash)
        if messages is None:
            return True
        if messages.qsize() == 0:
            unread_since.clear()
            read[0] = True
            return False
        if not unread_since:
            unread_since.append(time.monotonic())
        return time.monotonic() - unread_since[0] > (UNREAD_GONE_S if read[0] else UNOPENED_GONE_S)

    return gone


def any_of(*signals: CancelSignal) -> Callable[[], bool]:
    """One cancel signal that fires when any of signals does."""
    return lambda: any(is_cancelled(signal) for signal in signals)


def run_in_worker(fn: Callable[[CancelSignal], Any], name: str = "worker", cancel: CancelSignal = None,
                  release: bool = True) -> Any:
    """fn(cancel) in a thread of its own with the generate thread budget (see in_thread), for the views' engine
    work. cancel (default: this event's visitor_gone) reaches fn, which looks at it between steps or chunks; it
    raises charrnn.cancel.Cancelled once the visitor left. release: give the memory back once fn is done."""
    cancel = visitor_gone() if cancel is None else cancel
    stop = threading.Event()
    try:
        return next(in_thread(lambda: iter([fn(any_of(stop, cancel))]), limits.GENERATE_THREADS, stop, name=name))
    except Cancelled:
        raise gr.Error("Stopped: the request was cancelled or its page left.") from None
    finally:
        stop.set()
        if release:
            release_memory()


_END = object()


def training_threads() -> int:
    """Torch threads for training now: every core while no engine is generating, else one fewer."""
    return limits.TRAIN_THREADS if any_engine_busy() else limits.TRAIN_THREADS_IDLE


def sharing_cores(events: Iterator[TrainEvent]) -> Iterator[TrainEvent]:
    """events, with the training thread's torch thread count set after each to what training_threads says.
    Iterated in the training thread, so the count it sets is that thread's own; a CUDA run is left alone."""
    if torch.cuda.is_available():
        yield from events
        return
    threads = torch.get_num_threads()
    for event in events:
        yield event
        wanted = training_threads()
        if wanted != threads:
            torch.set_num_threads(wanted)
            threads = wanted


def cancel_when(gone: Callable[[], bool], cancel: threading.Event, done: threading.Event) -> None:
    """Set cancel once gone() says so, looking every WATCH_INTERVAL_S (in a thread of its own) until done is set:
    for work that only looks at an Event (training)."""
    def watch() -> None:
        while not done.wait(WATCH_INTERVAL_S):
            if gone():
                cancel.set()
                return

    threading.Thread(target=watch, name="watch", daemon=True).start()


def run_in_thread(job: TrainJob, session: Session, slice_s: float | None = None,
                  gone: Callable[[], bool] | None = None) -> Iterator[TrainEvent]:
    """Train in a worker thread with limits.TRAIN_THREADS torch threads (every core while nobody generates,
    see sharing_cores), yielding its events here.

    Closing this generator (a closed tab, a cancelled event), or gone() turning True (see visitor_gone),
    stops the run; the best checkpoint so far is kept, or deleted with the session if the session has ended.
    """
    cancel = session.cancel
    slice_s = slice_s if slice_s is not None else (limits.ZEROGPU_SLICE_S if ON_ZEROGPU else None)

    ended = threading.Event()

    def make() -> Iterator[TrainEvent]:
        session.idle.clear()  # set again by cleanup, when the worker ends
        if gone is not None:
            cancel_when(gone, cancel, ended)
        return sharing_cores(sliced_training(job, cancel, slice_s) if slice_s else _run_job(job, cancel))

    def cleanup() -> None:
        if session.closed:
            shutil.rmtree(session.dir, ignore_errors=True)
        ended.set()
        session.idle.set()
        release_memory()

    return in_thread(make, limits.TRAIN_THREADS, cancel, name=f"train-{session.id[:8]}", on_exit=cleanup, drain=True)


def stream_interval(streams: int) -> float:
    """How often one visitor's text is sent: every STREAM_INTERVAL_S, or less often when so many
    stream at once that together they would send more than MAX_STREAM_UPDATES_PER_S."""
    return max(limits.STREAM_INTERVAL_S, streams / limits.MAX_STREAM_UPDATES_PER_S)
