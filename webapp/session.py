"""What the web app keeps per visitor: a Session owns a temp directory holding the models that
visitor fine-tuned; nobody else can name them, and the directory goes when the session ends or
expires. The shipped models are shared by every visitor, read-only.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from charrnn.checkpoint import SHIPPED_ROOT, WEIGHTS, is_checkpoint, load_model, process_temp_dir
from charrnn.model import CharRNN
from webapp import limits


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


class ModelCache:
    """Loaded models by directory, each reloaded when its weights file is replaced.

    The app keeps one for the shipped models, shared by every visitor, and each session one
    for its own. Callers must not modify a model they get: sampling and evaluation only read it.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._models: OrderedDict[tuple[str, str | None], tuple[int, CharRNN]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, device: str | None = None) -> CharRNN:
        stamp = _stamp(path)
        key = (str(path), device)
        with self._lock:
            cached = self._models.get(key)
            if cached is not None and cached[0] == stamp:
                self._models.move_to_end(key)
                return cached[1]
        model = load_model(path, device=device)
        with self._lock:
            self._models[key] = (stamp, model)
            self._models.move_to_end(key)
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return model

    def forget(self, path: Path) -> None:
        with self._lock:
            for key in [k for k in self._models if k[0] == str(path)]:
                del self._models[key]

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


def _stamp(path: Path) -> int:
    weights = path / WEIGHTS
    return weights.stat().st_mtime_ns if weights.exists() else 0


# --- sessions ------------------------------------------------------------------------------------

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def slug(text: str, fallback: str = "model") -> str:
    return _SAFE.sub("-", text).strip("-.")[:40] or fallback


@dataclass
class SessionModel:
    name: str  # what the picker shows and the API takes
    path: Path
    base: str  # the model it was fine-tuned from, or "scratch"
    prompts: list[str] = field(default_factory=list)  # openings taken from its training text: the Generate examples
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
        self._loaded = ModelCache(limits.MAX_SESSION_MODELS)
        self._lock = threading.Lock()
        # Copies Gradio made of this session's download zips in its own cache, which outlives
        # sessions by hours: removed with the session. (Not uploads: Gradio keeps one copy per
        # content, which another visitor's queued job may be about to read.)
        self.cached_files: set[Path] = set()
        self.web_dir: Path | None = None  # its models' web exports, served to its page (webapp/browser_runtime.py)

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
            while len(self.models) > limits.MAX_SESSION_MODELS:
                oldest = min(self.models.values(), key=lambda m: m.created)
                self.forget(oldest.name)

    def forget(self, name: str) -> None:
        gone = self.models.pop(name, None)
        if gone is not None:
            self._loaded.forget(gone.path)
            shutil.rmtree(gone.path, ignore_errors=True)
            (self.dir / f"{name}.zip").unlink(missing_ok=True)
            if self.web_dir is not None:
                shutil.rmtree(self.web_dir / gone.path.name, ignore_errors=True)

    def load(self, name: str, device: str | None = None) -> CharRNN | None:
        """This session's model by name, or None when it has no such model."""
        entry = self.models.get(name)
        if entry is None or not is_checkpoint(entry.path):
            return None
        return self._loaded.get(entry.path, device)

    def close(self) -> None:
        """End of the session: stop its training and delete everything it wrote."""
        self.closed = True
        self.cancel.set()
        self.models.clear()
        self._loaded.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.web_dir is not None:
            shutil.rmtree(self.web_dir, ignore_errors=True)
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

    def close_all(self, wait_s: float = limits.SHUTDOWN_WAIT_S) -> None:
        """Shutting down: stop every session's training, give it wait_s to stop, then remove every file."""
        sessions = list(self._live.values())
        self._live.clear()
        for session in sessions:
            session.close()
        deadline = time.monotonic() + wait_s
        for session in sessions:
            session.idle.wait(max(0.0, deadline - time.monotonic()))
        shutil.rmtree(self.root, ignore_errors=True)


