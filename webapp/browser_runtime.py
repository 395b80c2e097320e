"""Run in my browser: the Generate tab's models run by the page's own runtime (charrnn/web/), in the visitor's page.

A model is exported once in charrnn's web format (charrnn.export) into a folder the app serves as static files, and
the page fetches it once (the browser keeps the weights, named by their content). A shipped model goes into a folder
every visitor may read. A session's fine-tuned model goes into a folder under a random 256-bit name that only that
session's page is told; Gradio lists no folder, so nobody else can find it, and it is removed with the model or the
session. Generate then runs in the page (browser_generate.js): the server does no work per character.
"""

from __future__ import annotations

import atexit
import secrets
import shutil
import threading
from pathlib import Path
from urllib.parse import quote

import gradio as gr

from charrnn.checkpoint import WEIGHTS, process_temp_dir
from charrnn.export import SETTINGS, WEB_ASSETS, export_model
from webapp import i18n
from webapp.inputs import STOP_CHOICES, name_input
from webapp.models import Studio
from webapp.session import Session

TOKEN_BYTES = 32  # a session's export folder is named by this many random bytes
PAGE_CODE = Path(__file__).with_name("browser_generate.js")
MESSAGES = ("browser_loading", "browser_ready", "browser_beam", "browser_hub", "browser_failed")


def file_url(path: Path) -> str:
    """The address, relative to the app's root, where Gradio serves a static file or folder."""
    return "gradio_api/file=" + quote(str(path.resolve()) + ("/" if path.is_dir() else ""))


class BrowserExports:
    """The web exports of the models the page may run, made on first use and one at a time."""

    def __init__(self, studio: Studio, root: Path | None = None) -> None:
        self.studio = studio
        self.root = Path(root) if root else process_temp_dir("charrnn-web-")
        atexit.register(shutil.rmtree, self.root, True)
        self._lock = threading.Lock()  # one export at a time: the worst case of a request is one model's export
        gr.set_static_paths([self.root, WEB_ASSETS])

    def folder(self, model: str | None, session: Session | None) -> Path:
        """The web export of a shipped model or of one of this session's models, made now when it is missing
        or older than the model's weights."""
        name = name_input(model, "model") or self.studio.default_model()
        source = self.studio.model_dir(name, session)
        if source is None or name is None:
            raise gr.Error(f"There is no model called {name!r} here. Pick one from the list.")
        if name in self.studio.shipped():
            target = self.root / "shipped" / source.name
        else:
            target = self.session_folder(session) / source.name
        with self._lock:
            if not fresh(target, source):
                net = self.studio.load(name, None, session)
                export_model(net, target, "web", overwrite=True, name=name)
        if isinstance(session, Session) and session.closed:  # the session ended while its model was exported
            shutil.rmtree(target, ignore_errors=True)
            raise gr.Error("This session has ended: reload the page.")
        return target

    def session_folder(self, session: Session | None) -> Path:
        """The folder of a session's exports, named at random the first time and removed with the session."""
        if not isinstance(session, Session):
            raise gr.Error("There is no such model in this session.")
        if session.web_dir is None:
            session.web_dir = self.root / "sessions" / secrets.token_urlsafe(TOKEN_BYTES)
        return session.web_dir

    def runtime_state(self, enabled: bool | None, model: str | None, hub_repo_id: str | None,
                      session: Session | None = None, request: gr.Request | None = None) -> dict:
        """What the page's runtime needs for the picked model: the folder's address (exported now if needed),
        or a note saying why it runs on the server; and its messages in the visitor's language."""
        lang = i18n.language(request)
        state = {"on": bool(enabled), "url": "", "note": "", "runtime": file_url(WEB_ASSETS / "charrnn-web.js"),
                 "stops": {name: list(stops) for name, stops in STOP_CHOICES.items()},
                 "texts": {key: i18n.TEXTS[key][lang == "zh"] for key in MESSAGES}}
        if not enabled:
            return state
        if name_input(hub_repo_id, "Hub repo id"):
            return state | {"note": state["texts"]["browser_hub"]}
        folder = self.folder(model, session)
        return state | {"url": file_url(folder), "note": state["texts"]["browser_ready"].format(model=folder.name)}


def fresh(export: Path, source: Path) -> bool:
    """Whether export holds a web export written after source's weights."""
    try:
        return (export / SETTINGS).stat().st_mtime_ns >= (source / WEIGHTS).stat().st_mtime_ns
    except OSError:
        return False


def page_code() -> str:
    """The js_on_load of the runtime's gr.HTML: it defines window.charrnnBrowser (browser_generate.js)."""
    return PAGE_CODE.read_text(encoding="utf-8")


def build_runtime(exports: BrowserExports) -> gr.HTML:
    """The line under the switch that says where the text is written; it holds the runtime's state as its value."""
    return gr.HTML(value=exports.runtime_state(False, None, None), elem_id="browser-runtime",
                   html_template="<div class='browser-note'>${value && value.on ? value.note : ''}</div>",
                   js_on_load=page_code(), apply_default_css=True)


# The Generate button that runs in the page: its inputs, in the order browser_generate.js takes them.
GENERATE_JS = ("(prompt, temperature, length, seed, topK, topP, stopAt, minLength, mode, state) => "
               "window.charrnnBrowser.generate({prompt, temperature, length, seed, topK, topP, stopAt, minLength, "
               "mode}, state)")
STOP_JS = "() => { window.charrnnBrowser?.stop(); }"

# Which Generate button shows, the server's or the page's (in the browser: no call to the server).
SWAP_BUTTONS_JS = "(on) => [{__type__: 'update', visible: !on}, {__type__: 'update', visible: !!on}]"


def wire(exports: BrowserExports, switch: gr.Checkbox, runtime: gr.HTML, buttons: tuple[gr.Button, gr.Button],
         stop: tuple[gr.Button, object, object], settings: list, outputs: list, picked: list) -> None:
    """The switch's events: it swaps the server's Generate for the page's, and fetches the runtime's state for the
    picked model (picked: model, Hub repo id, session) whenever the switch or the model changes. The page's Generate
    runs in the browser alone (js, no function on the server); Stop ends it there too."""
    server_btn, browser_btn = buttons
    stop_btn, stop_running, stop_idle = stop
    switch.change(None, [switch], [server_btn, browser_btn], js=SWAP_BUTTONS_JS, api_visibility="private")
    state = dict(fn=exports.runtime_state, inputs=[switch, *picked], outputs=[runtime], show_progress="hidden",
                 concurrency_id="browser_model", concurrency_limit=1)
    switch.change(**state, api_name="browser_model")
    picked[0].change(**state, api_visibility="private")
    picked[1].change(**state, api_visibility="private", trigger_mode="always_last")
    browser_btn.click(stop_running, None, [stop_btn], js=True, api_visibility="private")
    run = browser_btn.click(None, [*settings, runtime], outputs, js=GENERATE_JS, api_visibility="private")
    run.then(stop_idle, None, [stop_btn], js=True, api_visibility="private")
    stop_btn.click(None, None, None, js=STOP_JS, api_visibility="private")
