"""The page's Blocks and input components, which answer a bad value with one line naming the field.

Gradio processes each input before a handler runs. Text where a number belongs, a null, an
unknown choice, a file reference where no file belongs, or a link in place of an upload would
otherwise reach the visitor as Gradio's generic error, echo the whole input back, or make the
server fetch the link. The page uses Page and these components in place of gr's own.
"""

from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from gradio.i18n import I18nData
from gradio.server_messages import ProcessCompletedMessage
from gradio_client import utils as client_utils

from webapp.i18n import TEXTS, error_in, language, t
from webapp.limits import QUEUE_POLL_S

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 40
_SHORT.maxlong = 20
_SHORT.maxlevel = 2
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 3
SHOWN_CHARS = 60  # the most of a value an error message quotes
MAX_NESTING = 20  # lists and dicts inside each other in one input; deeper is refused unread
MAX_PATH_CHARS = 4096


def shown(value: Any) -> str:
    """A value as an error message may quote it: at most SHOWN_CHARS characters."""
    try:
        text = _SHORT.repr(value)
    except ValueError:  # an int too long for Python to print
        return f"a {type(value).__name__} too long to show"
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def _field(component: gr.components.Component) -> str:
    label = component.label
    if isinstance(label, I18nData):  # messages name a translated field by its English text
        label = TEXTS.get(label.key, (label.key,))[0]
    return str(label or "this field")


def checked_number(component: gr.components.Component, payload: Any) -> float:
    """payload as a finite number within the component's minimum and maximum, or a gr.Error."""
    low, high = getattr(component, "minimum", None), getattr(component, "maximum", None)
    bounds = f" from {low:g} to {high:g}" if low is not None and high is not None else ""
    if isinstance(payload, bool) or not isinstance(payload, (int, float)) or not math.isfinite(payload):
        raise gr.Error(f"{_field(component)} must be a number{bounds}, not {shown(payload)}")
    if (low is not None and payload < low) or (high is not None and payload > high):
        limits = [f"the minimum is {low:g}" if low is not None else "",
                  f"the maximum is {high:g}" if high is not None else ""]
        raise gr.Error(f"{_field(component)}: {shown(payload)} is out of range; {' and '.join(x for x in limits if x)}")
    return payload


class Number(gr.Number):
    def preprocess(self, payload: Any) -> float | int | None:
        return super().preprocess(checked_number(self, payload))


class Slider(gr.Slider):
    def preprocess(self, payload: Any) -> float:
        return super().preprocess(checked_number(self, payload))


class Textbox(gr.Textbox):
    """A text box that refuses values that are not text, and text over max_length, on the server too."""

    def preprocess(self, payload: Any) -> str | None:
        if isinstance(payload, (int, float)) and not isinstance(payload, bool):
            payload = str(payload)  # a client may send a seed or a prompt as a number
        if payload is not None and not isinstance(payload, str):
            raise gr.Error(f"{_field(self)} must be given as text, not {type(payload).__name__}")
        if payload is not None and self.max_length is not None and len(payload) > self.max_length:
            raise gr.Error(f"{_field(self)} is {len(payload):,} characters long; "
                           f"at most {self.max_length:,} are accepted")
        return super().preprocess(payload)


class _Choices:
    """A choice component whose unknown values are named shortly, with the choices."""

    def preprocess(self, payload: Any) -> Any:
        try:
            return super().preprocess(payload)  # type: ignore[misc]
        except gr.Error:
            names = ", ".join(str(value) for _, value in self.choices)  # type: ignore[attr-defined]
            raise gr.Error(f"{_field(self)} must be one of {names}, not {shown(payload)}") from None  # type: ignore[arg-type]


class Radio(_Choices, gr.Radio):
    pass


class Dropdown(_Choices, gr.Dropdown):
    pass


class Checkbox(gr.Checkbox):
    def preprocess(self, payload: Any) -> bool | None:
        if payload is not None and not isinstance(payload, bool):
            raise gr.Error(f"{_field(self)} must be true or false, not {shown(payload)}")
        return super().preprocess(payload)


class File(gr.File):
    """An upload box; what it accepts is checked by Page before Gradio reads it (check_input)."""


def _file_reference(value: Any) -> bool:
    return isinstance(value, dict) and ("path" in value or "meta" in value)


def _find_file_references(value: Any, depth: int = 0) -> bool:
    """Whether value holds a dict shaped like a file reference, at any depth (refused past MAX_NESTING)."""
    if depth > MAX_NESTING:
        raise gr.Error(f"a value is nested more than {MAX_NESTING} levels deep")
    if _file_reference(value):
        return True
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return any(_find_file_references(child, depth + 1) for child in children)


def _check_upload(component: gr.components.Component, value: Any) -> None:
    """value must be what the page sends for an uploaded file: a file reference naming a local path."""
    meta = value.get("meta") if isinstance(value, dict) else None
    path = value.get("path") if isinstance(value, dict) else None
    if not isinstance(meta, dict) or meta.get("_type") != "gradio.FileData" or not isinstance(path, str):
        raise gr.Error(f"{_field(component)}: upload a file; {shown(value)} is not an uploaded file")
    if client_utils.is_http_url_like(path):
        raise gr.Error(f"{_field(component)}: upload the file itself; links are not fetched")
    if not path or "\x00" in path or len(path) > MAX_PATH_CHARS:
        raise gr.Error(f"{_field(component)}: {shown(path)} is not the path of an uploaded file")


def check_input(component: gr.components.Component, value: Any) -> None:
    """Refuse, in one line, what Gradio's own input processing would fail on unseen or act on.

    Gradio looks for file references in every input of every event and copies, or downloads,
    what they name before any component's preprocess runs; only an upload box takes one here.
    """
    if isinstance(component, gr.File):
        if value is not None:
            _check_upload(component, value)
    elif _find_file_references(value):
        raise gr.Error(f"{_field(component)} takes no file; {shown(value)} is not a value for it")


def cancelled_events_change_nothing() -> None:
    """Make the message that ends a cancelled event (Stop) leave its outputs as they are.

    Gradio's /cancel ends the event with a completion carrying no "data"; the page then fails
    to read it and, when that happens after Stop has settled, marks every output with an Error
    badge over the text written so far. An empty data list is read as "no change" for each output.
    """
    if getattr(ProcessCompletedMessage, "_charrnn_cancel_fix", False):
        return
    original = ProcessCompletedMessage.__init__

    def init(self: ProcessCompletedMessage, **fields: Any) -> None:
        if fields.get("output") == {} and fields.get("success"):  # only /cancel sends this
            fields["output"] = {"data": []}
        original(self, **fields)

    ProcessCompletedMessage.__init__ = init  # type: ignore[method-assign]
    ProcessCompletedMessage._charrnn_cancel_fix = True  # type: ignore[attr-defined]


class Page(gr.Blocks):
    """gr.Blocks whose events check every input (check_input) before Gradio processes it.

    Whatever Gradio's processing of an input still fails on becomes one line naming the event,
    not Gradio's generic error.
    """

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
        inputs = list(inputs or [])
        # A call written before an event gained inputs (new ones come last) gets their defaults.
        inputs += [getattr(component, "value", None) for component in block_fn.inputs[len(inputs):]]
        for component, value in zip(block_fn.inputs, inputs):
            if isinstance(component, gr.components.Component) and not component.stateful:
                check_input(component, value)
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error:
            raise
        except Exception as exc:  # a value of the wrong shape for its component
            name = block_fn.api_name or block_fn.name
            raise gr.Error(f"{name}: a value sent is not one its fields take ({type(exc).__name__})") from None

    async def process_api(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # A gr.Error is a visitor's mistake, answered in one line in the request's language (the handlers and
        # the inputs write English): the server's log gets no traceback of it.
        try:
            return await super().process_api(*args, **kwargs)
        except gr.Error as exc:
            request = kwargs.get("request", args[3] if len(args) > 3 else None)
            error = error_in(language(request[0] if isinstance(request, list) and request else request), exc)
            error.print_exception = False
            raise error from None

    page_i18n: gr.I18n | None = None  # the page's translations, used by launch unless it is given others

    def queue(self, *args: Any, **kwargs: Any) -> Page:
        super().queue(*args, **kwargs)
        self._queue.sleep_when_free = QUEUE_POLL_S
        self._queue.progress_update_sleep_when_free = QUEUE_POLL_S
        return self

    def launch(self, *args: Any, **kwargs: Any):
        cancelled_events_change_nothing()
        if kwargs.get("i18n") is None:
            kwargs["i18n"] = self.page_i18n
        return super().launch(*args, **kwargs)

    def forget_session(self, session_hash: str | None) -> None:
        """Drop what Gradio keeps of a session whose tab has closed: it holds the last value of every
        component the session changed until 10,000 newer sessions push it out."""
        holder = getattr(self, "state_holder", None)
        if holder is not None and session_hash:
            holder.session_data.pop(session_hash, None)
            holder.time_last_used.pop(session_hash, None)


@dataclass
class UI:
    """The components one tab exposes to the others (another tab's events may read or update them)."""

    parts: dict[str, gr.components.Component] = field(default_factory=dict)

    def __getattr__(self, name: str):
        try:
            return self.parts[name]
        except KeyError:
            raise AttributeError(name) from None


def top_k_and_top_p() -> tuple[gr.components.Component, gr.components.Component]:
    """The two filters every sampling view offers under Advanced."""
    top_k = Slider(0, 100, value=0, step=1, label="Top-k", info=t("top_k_info"))
    top_p = Slider(0.05, 1.0, value=1.0, step=0.05, label=t("top_p"), info=t("top_p_info"))
    return top_k, top_p
