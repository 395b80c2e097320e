"""What every tab shares: the shipped models, the visitors' sessions, and finding a model by the pickers' values.

The Studio is the app's one shared object. Each tab's handlers take it, and load models through
it, so a picker value means the same model in every tab: a shipped one, one of this session's
fine-tunes, or a Hub repo id.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from charrnn.checkpoint import CheckpointError, load_hub_model, read_config
from charrnn.memory import release_memory
from charrnn.model import CharRNN
from webapp import i18n
from webapp.components import shown
from webapp.inputs import name_input
from webapp.jobs import TrainingLine
from webapp.session import ModelCache, Session, Sessions, checkpoints_root, shipped_models

SCRATCH = "from scratch"
SHIPPED_MODELS_CACHED = 8  # shipped models kept loaded, shared by every visitor


def close_session(value: object) -> None:
    """gr.State's delete_callback: the session expired (TTL) or its tab closed an hour ago."""
    if isinstance(value, Session):
        value.close()


class Studio:
    """What the tabs share: a checkpoints folder (read-only), an index of sessions, the one line for
    training runs and the shutdown flag; and the model lookup every tab's pickers go through."""

    def __init__(self, checkpoints: str | Path | None = None, sessions: Sessions | None = None,
                 device: str | None = None) -> None:
        self.checkpoints = Path(checkpoints) if checkpoints else checkpoints_root()
        self.sessions = sessions or Sessions()
        self.device = device
        self.shipped_models = ModelCache(SHIPPED_MODELS_CACHED)
        self.training_line = TrainingLine()
        self.closing = threading.Event()  # set on shutdown: generations end, no new training starts
        self.forget_state: Callable[[str | None], None] = lambda _session_hash: None

    def shutdown(self) -> None:
        """The app is stopping: end every generation and training run, then remove every session's files."""
        self.closing.set()
        self.sessions.close_all()

    def shipped(self) -> dict[str, Path]:
        """The shipped models by name (read from the checkpoints folder each time: one may have appeared)."""
        return shipped_models(self.checkpoints)

    def default_model(self, language: str = "en") -> str | None:
        """The model every picker starts on: for a Chinese page the first shipped model that writes Chinese,
        else (or when none does) the first shipped one; None when there is none."""
        shipped = self.shipped()
        if language == "zh":
            chinese = (name for name, path in shipped.items() if self.writes_chinese(path))
            return next(chinese, None) or next(iter(shipped), None)
        return next(iter(shipped), None)

    @staticmethod
    def writes_chinese(directory: Path) -> bool:
        """Whether the model in directory has a mostly Chinese vocabulary (read from its config, not loaded)."""
        try:
            return i18n.is_cjk_vocabulary(read_config(directory).get("vocab"))
        except CheckpointError:
            return False

    def model_choices(self, session: Session | None = None) -> list[tuple[str, str]]:
        """(label, value) pairs for the Generate picker: shipped models, then this session's."""
        choices = [(f"{name} (shipped)", name) for name in self.shipped()]
        if isinstance(session, Session):
            choices += [(f"{m.name} (yours, from {m.base})", m.name) for m in session.models.values()]
        return choices

    def base_choices(self, session: Session | None = None) -> list[tuple[str, str]]:
        """Where a training run can start: any model in the picker, or from scratch."""
        return [*self.model_choices(session), (SCRATCH, SCRATCH)]

    def model_dir(self, name: object, session: Session | None) -> Path | None:
        """The directory of a model in the picker, by its value; None when there is no such model."""
        if not isinstance(name, str):  # an API client can send a list or a dict
            return None
        name = name.strip()
        shipped = self.shipped()
        if name in shipped:
            return shipped[name]
        if isinstance(session, Session) and name in session.models:
            return session.models[name].path
        return None

    def load(self, model: str | None, hub_repo_id: str | None = None, session: Session | None = None) -> CharRNN:
        """The model the user picked: a Hub repo id when one is typed, else a shipped or session model.

        Other sessions' models and arbitrary paths are not reachable by name, whatever a
        client sends: a session model is found only in this session's own list, and a Hub
        repo id is only ever looked up on the Hub.
        """
        repo = name_input(hub_repo_id, "Hub repo id")
        name = name_input(model, "model") or self.default_model()
        if not repo and name is None:
            raise gr.Error(f"No model is available: {self.checkpoints} holds no checkpoint yet. "
                           "Train one in the Train tab.")
        try:
            if repo:
                return load_hub_model(repo, device=self.device)
            if name in self.shipped():
                return self.shipped_models.get(self.shipped()[name], self.device)
            found = session.load(name, self.device) if isinstance(session, Session) else None
        except (CheckpointError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        if found is None:
            raise gr.Error(f"There is no model called {shown(name)} here. "
                           "Pick one from the list, or type a Hub repo id.")
        return found

    def example_samples(self, model: object, session: Session | None = None) -> list[list[str]]:
        """The example prompts for a picked model, as Dataset samples: for a model this session trained, openings
        from its own training text; else Chinese openings for a model whose vocabulary is mostly Chinese
        characters, English ones otherwise (and when the model cannot be loaded)."""
        own = session.models.get(model) if isinstance(session, Session) and isinstance(model, str) else None
        if own is not None and own.prompts:
            return [[prompt] for prompt in own.prompts]
        try:
            chars = self.load(model if isinstance(model, str) else None, None, session).vocab.chars
        except gr.Error:
            chars = ()
        return [[prompt] for prompt in i18n.example_prompts(chars)]

    def example_update(self, model: object, prompt: object = None, session: Session | None = None) -> tuple[dict, dict]:
        """After the model picker changed: its example prompts, and the prompt box set to the first of them
        when it still holds one the page put there (the visitor's own text is kept)."""
        samples = self.example_samples(model, session)
        ours = [p for m in session.models.values() for p in m.prompts] if isinstance(session, Session) else []
        untouched = i18n.untouched_prompt(prompt) or prompt in ours
        prompt_update = gr.update(value=samples[0][0]) if untouched else gr.update()
        return gr.Dataset(samples=samples), prompt_update

    def picker_updates(self, session: Session | None = None, request: gr.Request | None = None) -> tuple[dict, dict]:
        """Fresh choices for both pickers (on page load: shipped models may have appeared), set on the model
        for the browser's language: a Chinese page opens on a model that writes Chinese."""
        choices = self.model_choices(session)
        value = self.default_model(i18n.language(request))
        return (gr.update(choices=choices, value=value),
                gr.update(choices=self.base_choices(session), value=value or SCRATCH))

    def end_session(self, request: gr.Request | None = None) -> None:
        """The tab was closed: stop its training, delete its models now rather than at TTL, and let
        the page forget the session (forget_state, set by the app)."""
        session_hash = getattr(request, "session_hash", None)
        self.sessions.end(session_hash)
        self.forget_state(session_hash)
        release_memory()
