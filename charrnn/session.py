"""What the web app keeps per visitor, and how it shares one machine between visitors.

Every limit a visitor could push against is a constant here, in one place (the README
lists them). A Session owns a temp directory holding the models that visitor fine-tuned;
nobody else can name them, and the directory goes when the session ends or expires.
Training runs in its own thread with its own torch thread count, so generation for other
visitors keeps a core; on a ZeroGPU Space it runs as a series of short GPU calls, each
resuming from the checkpoint the previous one wrote.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import os
import queue
import re
import shutil
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from charrnn.checkpoint import SHIPPED_ROOT, WEIGHTS, is_checkpoint, load_model, process_temp_dir
from charrnn.model import CharRNN
from charrnn.sampling import MAX_PROMPT_CHARS
from charrnn.text import Corpus
from charrnn.train import TrainConfig, TrainEvent, train

# --- limits (documented in the README's web-app section) -------------------------------------
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # uploads larger than this are refused before they are read
MAX_GENERATE_CHARS = 2000  # length slider's maximum
MAX_TEXT_CHARS = 100_000  # any text box (a prompt, a text to inspect); only a prompt's tail is read
MAX_VIEW_CHARS = MAX_PROMPT_CHARS + MAX_GENERATE_CHARS  # Inspect and originality: a prompt's tail and a full generation
MAX_NAME_CHARS = 256  # a model name or Hub repo id (with its @revision)
MAX_TRAIN_WAITING = 8  # training runs waiting for the slot, all visitors together; more are refused
SHUTDOWN_WAIT_S = 20  # on SIGTERM, how long training gets to stop and save before the app's files are removed
DEFAULT_GENERATE_CHARS = 500
MIN_TIME_BUDGET_MIN, MAX_TIME_BUDGET_MIN, DEFAULT_TIME_BUDGET_MIN = 1, 30, 5  # training time budget slider, minutes
MAX_SESSION_MODELS = 5  # fine-tuned models a session keeps; the oldest goes when a sixth is made
SESSION_TTL_S = 2 * 3600  # a session's models are deleted this long after its last training run
QUEUE_MAX_SIZE = 64  # events waiting in Gradio's queue, all visitors together
TRAIN_CONCURRENCY = 1  # training jobs running at once; others wait in line, see their position, and can be stopped
# Generations running at once. Measured with bench/load.py (20 visitors x 5 x 300 chars while one fine-tunes, 2 cores):
# with 2 at once the queue made p95 time to first character 4.9 s; with 24 every visitor starts at once
# and streams interleave: p95 1.6 s, at the cost of ~17% longer total time per request.
GENERATE_CONCURRENCY = 24
STREAM_INTERVAL_S = 0.05  # generated text reaches the browser at most this often
TRAIN_UPDATE_INTERVAL_S = 0.5  # progress, plot and samples reach the browser at most this often
TRAIN_SAMPLE_INTERVAL_STEPS = 50  # a short sample every this many optimizer steps
TRAIN_SAMPLE_CHARS = 200
# On CPU, training leaves one core to generation; a batch-1 generation gains nothing from more than one.
TRAIN_THREADS = max(1, (os.cpu_count() or 1) - 1)
GENERATE_THREADS = 1
# ZeroGPU runs a decorated function in a forked process with a time limit: train in slices this long.
ZEROGPU_SLICE_S = 45

SIZE_PRESETS: dict[str, dict] = {
    "tiny (1 layer × 128)": {"num_layers": 1, "hidden_size": 128, "embedding_dim": 32},
    "small (2 layers × 256)": {"num_layers": 2, "hidden_size": 256, "embedding_dim": 64},
    "medium (2 layers × 512)": {"num_layers": 2, "hidden_size": 512, "embedding_dim": 64},
}
DEFAULT_SIZE_PRESET = "small (2 layers × 256)"

try:  # Hugging Face's ZeroGPU helper; only present (and only needed) on a Space
    import spaces  # type: ignore[import-not-found]
except ImportError:
    spaces = None
ON_ZEROGPU = spaces is not None and os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


def gpu(duration: int):
    """spaces.GPU(duration=...) where the spaces package exists, else the function unchanged."""
    def wrap(fn):
        return spaces.GPU(duration=duration)(fn) if spaces is not None else fn
    return wrap


def checkpoints_root() -> Path:
    """Where the shipped models live; CHARRNN_CHECKPOINTS points the app elsewhere (tests do)."""
    return Path(os.environ.get("CHARRNN_CHECKPOINTS") or SHIPPED_ROOT)


def shipped_models(root: Path) -> dict[str, Path]:
    """The loadable model directories under root, fairy-tales first."""
    if not root.is_dir():
        return {}
    found = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and is_checkpoint(p))
    found.sort(key=lambda p: p.name != "fairy-tales")
    return {p.name: p for p in found}


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, stamp: int, device: str | None) -> CharRNN:  # noqa: ARG001 (stamp keys the cache)
    return load_model(path, device=device)


def load_readonly(path: Path, device: str | None = None) -> CharRNN:
    """A shipped model, loaded once and shared by all visitors; reloaded when its files are replaced.

    Callers must not modify it: sampling and evaluation only read the weights.
    """
    weights = path / WEIGHTS
    stamp = weights.stat().st_mtime_ns if weights.exists() else 0
    return _load_cached(str(path), stamp, device)


# --- sessions ------------------------------------------------------------------------------------

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def slug(text: str, fallback: str = "model") -> str:
    return _SAFE.sub("-", text).strip("-.")[:40] or fallback


@dataclass
class SessionModel:
    name: str  # what the picker shows and the API takes
    path: Path
    base: str  # the model it was fine-tuned from, or "scratch"
    created: float = field(default_factory=time.time)


class Session:
    """One visitor: their temp directory, their fine-tuned models, and their training job."""

    def __init__(self, root: Path, session_id: str) -> None:
        self.id = session_id
        self.dir = Path(tempfile.mkdtemp(prefix=f"{slug(session_id, 'session')[:16]}-", dir=root))
        self.models: dict[str, SessionModel] = {}
        self.cancel = threading.Event()
        self.training = False  # a run of this session is waiting for the slot or training
        self.idle = threading.Event()  # no training worker thread of this session is running
        self.idle.set()
        self.closed = False
        self._loaded: dict[str, tuple[int, CharRNN]] = {}
        self._lock = threading.Lock()
        # Copies Gradio made of this session's download zips in its own cache, which outlives
        # sessions by hours: removed with the session. (Not uploads: Gradio keeps one copy per
        # content, which another visitor's queued job may be about to read.)
        self.cached_files: set[Path] = set()

    def __deepcopy__(self, memo):  # gr.State copies values it is given; a session is shared, never copied
        return self

    def new_model_dir(self, label: str, taken: Iterable[str] = ()) -> tuple[str, Path]:
        """A fresh name and directory for a model about to be trained.

        The name never equals (ignoring case) one in taken (the shipped models) or another of
        this session's models, so every picker value means one model.
        """
        base = slug(Path(label).stem)
        used = {name.casefold() for name in [*taken, *self.models]}
        name, n = base, 1
        while name.casefold() in used or (self.dir / name).exists():
            n += 1
            name = f"{base}-{n}"
        return name, self.dir / name

    def add_model(self, model: SessionModel) -> None:
        with self._lock:
            self.models[model.name] = model
            while len(self.models) > MAX_SESSION_MODELS:
                oldest = min(self.models.values(), key=lambda m: m.created)
                self.forget(oldest.name)

    def forget(self, name: str) -> None:
        gone = self.models.pop(name, None)
        self._loaded.pop(name, None)
        if gone is not None:
            shutil.rmtree(gone.path, ignore_errors=True)
            (self.dir / f"{name}.zip").unlink(missing_ok=True)

    def load(self, name: str, device: str | None = None) -> CharRNN | None:
        """This session's model by name, or None when it has no such model."""
        entry = self.models.get(name)
        if entry is None or not is_checkpoint(entry.path):
            return None
        stamp = (entry.path / WEIGHTS).stat().st_mtime_ns
        cached = self._loaded.get(name)
        if cached is None or cached[0] != stamp:
            cached = (stamp, load_model(entry.path, device=device))
            self._loaded[name] = cached
        return cached[1]

    def close(self) -> None:
        """End of the session: stop its training and delete everything it wrote."""
        self.closed = True
        self.cancel.set()
        self.models.clear()
        self._loaded.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
        for path in list(self.cached_files):
            path.unlink(missing_ok=True)
            try:
                path.parent.rmdir()  # Gradio keeps each file in a directory of its own, named by its hash
            except OSError:
                pass
        self.cached_files.clear()


class Sessions:
    """The app's index of live sessions by Gradio session hash, so a closed tab can be cleaned up.

    The sessions themselves live in gr.State; this holds them weakly and owns only the
    parent temp directory, removed when the process exits (or by the next app to start,
    when this one was killed).
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else process_temp_dir("charrnn-sessions-")
        self.root.mkdir(parents=True, exist_ok=True)
        self._live: weakref.WeakValueDictionary[str, Session] = weakref.WeakValueDictionary()
        atexit.register(shutil.rmtree, self.root, True)

    def peek(self, session: Session | None, session_id: str | None) -> Session | None:
        """The visitor's live session, without creating one (and its directory) for a request that may be refused."""
        if isinstance(session, Session) and not session.closed:
            return session
        live = self._live.get(session_id or "local")
        return live if live is not None and not live.closed else None

    def get(self, session: Session | None, session_id: str | None) -> Session:
        live = self.peek(session, session_id)
        if live is not None:
            return live
        session_id = session_id or "local"
        session = Session(self.root, session_id)
        self._live[session_id] = session
        return session

    def end(self, session_id: str | None) -> None:
        session = self._live.pop(session_id, None) if session_id else None
        if session is not None:
            session.close()

    def close_all(self, wait_s: float = SHUTDOWN_WAIT_S) -> None:
        """Shutting down: stop every session's training, give it wait_s to stop, then remove every file."""
        sessions = list(self._live.values())
        self._live.clear()
        for session in sessions:
            session.close()
        deadline = time.monotonic() + wait_s
        for session in sessions:
            session.idle.wait(max(0.0, deadline - time.monotonic()))
        shutil.rmtree(self.root, ignore_errors=True)


# --- training jobs -------------------------------------------------------------------------------

class LineFull(Exception):
    """Too many training runs are already waiting for the slot."""


class TrainingLine:
    """The training slots and the runs waiting for one, first come first served.

    A waiting run holds no slot and does no work, so its visitor's Stop ends it at once;
    Gradio's own queue could not tell a Stop about a job it had not started yet.
    """

    def __init__(self, slots: int = TRAIN_CONCURRENCY, max_waiting: int | None = None) -> None:
        self.slots = slots
        self.max_waiting = MAX_TRAIN_WAITING if max_waiting is None else max_waiting
        self._running: set[object] = set()
        self._waiting: list[object] = []
        self._changed = threading.Condition()

    def join(self) -> object:
        """A ticket at the back of the line; LineFull when max_waiting runs are already waiting."""
        with self._changed:
            if len(self._running) >= self.slots and len(self._waiting) >= self.max_waiting:
                raise LineFull(f"the training queue is full ({len(self._waiting)} runs waiting); try again in a few minutes")
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
    corpus: Corpus
    out_dir: Path
    config: TrainConfig
    init: Path | str | None
    card_info: dict


def _run_job(job: TrainJob, cancel: threading.Event, resume: bool = False) -> Iterator[TrainEvent]:
    return train([job.corpus], job.out_dir, job.config, init=None if resume else job.init, resume=resume, cancel=cancel, card_info=job.card_info)


@gpu(duration=ZEROGPU_SLICE_S + 30)
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


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6") if sys.platform.startswith("linux") else None
    except OSError:
        return None


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's per-thread memory pools. Each generation runs in a thread of its own, and glibc
    would give threads up to 8 pools a core, each keeping its peak after the work is freed."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(M_ARENA_MAX, arenas)


def return_freed_memory() -> None:
    """Hand memory freed by finished work back to the system (glibc keeps it otherwise)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h


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


_END = object()


def run_in_thread(job: TrainJob, session: Session, slice_s: float | None = None) -> Iterator[TrainEvent]:
    """Train in a worker thread with TRAIN_THREADS torch threads, yielding its events here.

    Closing this generator (a closed tab, a cancelled event) stops the run; the best
    checkpoint so far is kept, or deleted with the session if the session has ended.
    """
    cancel = session.cancel
    slice_s = slice_s if slice_s is not None else (ZEROGPU_SLICE_S if ON_ZEROGPU else None)

    def make() -> Iterator[TrainEvent]:
        session.idle.clear()  # set again by cleanup, when the worker ends
        return sliced_training(job, cancel, slice_s) if slice_s else _run_job(job, cancel)

    def cleanup() -> None:
        if session.closed:
            shutil.rmtree(session.dir, ignore_errors=True)
        session.idle.set()
        return_freed_memory()

    return in_thread(make, TRAIN_THREADS, cancel, name=f"train-{session.id[:8]}", on_exit=cleanup, drain=True)
