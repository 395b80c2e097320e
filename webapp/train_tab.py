"""The Train tab: fine-tune a model (or train one from scratch) on an uploaded text, then download or push it.

build() lays the tab out and wires its events. Uploads (webapp.upload_box) reads the upload and suggests
a base model, Trainer runs the training (waiting in the app's one line for the training slot) and streams its
progress, and push and archive hand a trained model over. Every user mistake is a gr.Error with a
one-line message.
"""

from __future__ import annotations

import math
import os
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pandas as pd
from gradio import processing_utils
from gradio.utils import get_upload_folder

from charrnn.card import CardInfo
from charrnn.checkpoint import STATE_DIR, CheckpointError
from charrnn.config import TrainConfig
from charrnn.hub import HubError, push_to_hub
from charrnn.memory import release_memory
from charrnn.prompts import prompt_suggestions
from charrnn.step import import_optimizer_machinery
from charrnn.text import TextError
from charrnn.train import TrainingStopped
from webapp import components as ui
from webapp import i18n, limits
from webapp.components import UI, shown
from webapp.inputs import name_input, text_input, whole_number
from webapp.jobs import LineFull, TrainJob, run_in_thread, visitor_gone
from webapp.models import SCRATCH, Studio
from webapp.session import Session, SessionModel
from webapp.upload_box import FOLD_CHOICES, Uploads, fold_setting

PLOT_COLUMNS = ["step", "loss", "curve"]
PROMPT_SUGGESTIONS = 4  # example prompts the Generate tab gets from a fine-tuned model's text
t = i18n.t  # a page text by key, shown in the browser's language


# --- layout and wiring ------------------------------------------------------------------------------

def build(studio: Studio, session: gr.State, generate: UI) -> UI:
    """The Train tab: upload a text, pick where to start and for how long, watch the loss and samples, download
    or push the model. generate: the Generate tab's parts (its model picker gets each trained model)."""
    uploads = Uploads(studio)
    trainer = Trainer(studio, uploads)
    # What the first run would import before its clock starts (seconds on a busy CPU), imported while the page
    # is read, so the first run's first sample comes as soon as a later run's.
    threading.Thread(target=import_optimizer_machinery, name="import-optimizer", daemon=True).start()
    default = studio.default_model()
    with gr.Tab(t("tab_train"), id="train"):
        with gr.Row():
            with gr.Column(scale=2):
                upload = ui.File(label=t("training_text"), file_types=[".txt"], file_count="single",
                                 elem_id="upload")
                upload_info = gr.Markdown(elem_id="upload-info")
                hint = gr.Markdown(elem_id="budget-hint")
                base = ui.Dropdown(studio.base_choices(), value=default or SCRATCH, label=t("start_from"),
                                   allow_custom_value=True,
                                   info=t("start_from_info"))
                size = ui.Dropdown(list(limits.SIZE_PRESETS), value=limits.DEFAULT_SIZE_PRESET,
                                   label=t("model_size"))
                minutes = ui.Slider(limits.MIN_TIME_BUDGET_MIN, limits.MAX_TIME_BUDGET_MIN,
                                    value=limits.DEFAULT_TIME_BUDGET_MIN, step=1, label=t("time_budget"),
                                    info=t("time_budget_info"), elem_id="time-budget")
                fold = ui.Radio(list(FOLD_CHOICES), value=FOLD_CHOICES[0], label=t("ascii_folding"),
                                info=t("ascii_folding_info"))
                with gr.Accordion(t("advanced"), open=False, elem_id="train-advanced"):
                    lr = ui.Number(0, label=t("learning_rate"), minimum=0, maximum=1)
                    max_steps = ui.Number(0, label=t("max_steps"),
                                          minimum=0, precision=0)
                with gr.Row():
                    start = gr.Button(t("start_training"), variant="primary")
                    stop = gr.Button(t("stop"), variant="stop")
            with gr.Column(scale=3):
                status = gr.Markdown(t("train_status"),
                                     elem_id="train-status")
                plot = gr.LinePlot(None, x="step", y="loss", color="curve", title=t("loss_title"),
                                   x_title="step", y_title="loss", height=300, elem_id="loss-plot")
                sample = gr.Textbox(label=t("latest_sample"), lines=6, interactive=False, elem_id="train-sample")
                download = gr.DownloadButton(t("download"), visible=False, elem_id="download")
                build_push_to_hub(session, generate.model)
        read_inputs = [upload, base, fold, session]
        upload.upload(uploads.inspect_upload, read_inputs, upload_info, api_name="read_upload").then(
            uploads.suggest_base, [upload, base, session], base, api_name="suggest_base")  # its change reports again
        base.change(uploads.inspect_upload, read_inputs, upload_info, api_name="read_upload_base",
                    show_progress="hidden")
        fold.change(uploads.inspect_upload, read_inputs, upload_info, api_name="read_upload_fold",
                    show_progress="hidden")
        upload.clear(lambda: "", None, upload_info, api_name="clear_upload")
        gr.on([upload.upload, upload.clear, base.change, minutes.change], uploads.hint,
              [upload, base, minutes, session], hint, api_name="budget_hint", show_progress="hidden")
        start.click(trainer.train, [upload, base, size, minutes, fold, lr, max_steps, session],
                    [status, plot, sample, generate.model, base, download, session], api_name="train",
                    # runs wait in the handler's own line
                    concurrency_limit=None, concurrency_id="train", show_progress_on=[status])
        stop.click(stop_training, [session], [status], api_name="stop_training", queue=False)
    return UI(dict(upload=upload, upload_info=upload_info, hint=hint, base=base, size=size, minutes=minutes,
                   fold=fold, lr=lr, max_steps=max_steps, start=start, stop=stop, status=status, plot=plot,
                   sample=sample, download=download))


def build_push_to_hub(session: gr.State, model: gr.components.Component) -> UI:
    """The "Push to Hub" box under a training run: upload one of this session's models.

    The token comes from the password box, or from the visitor's Hugging Face sign-in on a
    Space with `hf_oauth: true`, and goes straight into the one upload call: it is not stored,
    logged or shown back, and the box is emptied after a push.
    """
    signed_in = bool(os.environ.get("SPACE_ID") and os.environ.get("OAUTH_CLIENT_ID"))  # what hf_oauth sets on a Space
    with gr.Accordion(t("push_title"), open=False, elem_id="push-to-hub"):
        gr.Markdown(t("push_help"))
        if signed_in:
            gr.LoginButton()
        repo = ui.Textbox(label=t("repo"), placeholder="you/char-rnn-poems", max_lines=1,
                          max_length=limits.MAX_NAME_CHARS, elem_id="push-repo")
        token = ui.Textbox(label=t("token_signed_in" if signed_in else "token"),
                           type="password", placeholder="hf_…", max_lines=1, max_length=limits.MAX_NAME_CHARS,
                           elem_id="push-token", info=t("token_info"))
        private = ui.Checkbox(True, label=t("private_repo"))
        button = gr.Button(t("push_button"), elem_id="push-button")
        result = gr.Markdown(elem_id="push-result")
    button.click(push, [model, repo, token, private, session], [result, token], api_name="push",
                 concurrency_limit=2)
    return UI(dict(repo=repo, token=token, private=private, push=button, result=result))


# --- training -------------------------------------------------------------------------------------

def _format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def empty_plot() -> pd.DataFrame:
    """The loss plot with no point yet, its columns typed as the plot expects."""
    return pd.DataFrame({"step": pd.Series(dtype="int64"), "loss": pd.Series(dtype="float64"),
                         "curve": pd.Series(dtype="str")})


class Trainer:
    """The Train button's handler: one run per session, waiting in the app's line for the training slot."""

    def __init__(self, studio: Studio, uploads: Uploads | None = None) -> None:
        self.studio = studio
        self.uploads = uploads or Uploads(studio)

    def train(
        self,
        file,
        base: str | None = None,
        size: str = limits.DEFAULT_SIZE_PRESET,
        minutes: float = limits.DEFAULT_TIME_BUDGET_MIN,
        fold: str | bool | None = None,
        lr: float | None = 0,
        max_steps: int | None = 0,
        session: Session | None = None,
        request: gr.Request | None = None,
        progress: gr.Progress = gr.Progress(),
    ) -> Iterator[tuple]:
        """Fine-tune (or train from scratch) on the upload, streaming progress, the loss plot and samples.

        Yields (status, plot, sample, generate picker, train base picker, download, session).
        The run first waits in line for the training slot; Stop ends it at any stage. Status lines
        and errors are in the request's language.
        """
        try:
            yield from i18n.translating(i18n.language(request), self._train(
                file, base, size, minutes, fold, lr, max_steps, session, request, progress))
        finally:
            release_memory()  # the upload's text and the run's data went with the generators above

    def _train(self, file, base, size, minutes, fold, lr, max_steps, session, request, progress) -> Iterator[tuple]:
        session_hash = getattr(request, "session_hash", None)
        existing = self.studio.sessions.peek(session, session_hash)  # a refused request creates no session directory
        if existing is not None and existing.training:
            raise gr.Error("This session is already training a model; stop it or wait for it to finish.")
        if self.studio.closing.is_set():
            raise gr.Error("The app is shutting down; try again in a minute.")
        base = (base.strip() if isinstance(base, str) else base) or self.studio.default_model() or SCRATCH
        corpus = self.uploads.read_upload(file, fold, base, existing)
        init, config = self._train_plan(base, size, minutes, fold, lr, max_steps, existing)
        prompts = prompt_suggestions(corpus.text, PROMPT_SUGGESTIONS)
        config.sample_prompt = next(iter(prompts), "")  # every sample goes on from it, so the change shows
        try:
            ticket = self.studio.training_line.join()
        except LineFull as exc:
            raise gr.Error(f"{str(exc)[0].upper()}{str(exc)[1:]}.") from None
        try:
            session = self.studio.sessions.get(session, session_hash)
            if session.training:
                raise gr.Error("This session is already training a model; stop it or wait for it to finish.")
            session.training = True
            session.cancel.clear()
            try:
                if (yield from self._wait_for_slot(ticket, session)):
                    name, out_dir = session.new_model_dir(corpus.name, taken=self.studio.shipped())
                    card_info = CardInfo(name=name, corpus=corpus.name, corpus_source="uploaded to the charrnn web app")
                    job = TrainJob(corpus=corpus, out_dir=out_dir, config=config, init=init, card_info=card_info)
                    yield from self._run_training(job, name, base, session, progress, prompts)
            finally:
                session.training = False
        finally:
            self.studio.training_line.leave(ticket)

    def _train_plan(self, base: str, size: object, minutes: object, fold: object, lr: object, max_steps: object,
                    session: Session | None) -> tuple[Path | None, TrainConfig]:
        """The model to start from and the run's config, from the Train tab's inputs; gr.Error when one is wrong."""
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or \
                not limits.MIN_TIME_BUDGET_MIN <= minutes <= limits.MAX_TIME_BUDGET_MIN:
            raise gr.Error(f"the time budget must be {limits.MIN_TIME_BUDGET_MIN} to {limits.MAX_TIME_BUDGET_MIN} "
                           f"minutes, not {shown(minutes)}")
        init = None
        if base != SCRATCH:
            init = self.studio.model_dir(base, session)
            if init is None:
                raise gr.Error(f"There is no model called {shown(base)} to fine-tune. "
                               f"Pick one from the list, or {SCRATCH!r}.")
        elif size not in limits.SIZE_PRESETS:
            raise gr.Error(f"the model size must be one of {', '.join(limits.SIZE_PRESETS)}, not {shown(size)}")
        steps = whole_number(max_steps or 0, "the number of steps", 0, 10**9)
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float))):
            raise gr.Error(f"the learning rate must be a number (0 = automatic), not {shown(lr)}")
        try:
            config = TrainConfig(
                time_budget=float(minutes) * 60,
                max_steps=steps or None,
                lr=float(lr) if lr else None,
                ascii_fold=fold_setting(fold),
                sample_every_s=limits.TRAIN_SAMPLE_EVERY_S,
                sample_length=limits.TRAIN_SAMPLE_CHARS,
                device=self.studio.device,
                **(limits.SIZE_PRESETS[size] if base == SCRATCH else {}),
            )
        except (TypeError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        return init, config

    def _wait_for_slot(self, ticket: object, session: Session) -> Iterator[tuple]:
        """Wait in line for the training slot, showing the place in line; True once it is ours, False on Stop."""
        skip, gone = gr.skip(), visitor_gone()
        while ahead := self.studio.training_line.wait(ticket, timeout=limits.TRAIN_UPDATE_INTERVAL_S):
            if session.cancel.is_set() or self.studio.closing.is_set() or gone():
                yield "**Stopped** before it started: nothing was trained.", skip, skip, skip, skip, skip, session
                return False
            runs = f"{ahead} run{'s' if ahead > 1 else ''}"
            yield (f"Waiting for the training slot: {runs} ahead of you. Stop leaves the line.",
                   skip, skip, skip, skip, skip, session)
        return True

    def _run_training(self, job: TrainJob, name: str, base: str, session: Session,
                      progress: gr.Progress, prompts: list[str]) -> Iterator[tuple]:
        """Train in a worker thread, turning its events into status, plot and sample updates."""
        rows: list[tuple[int, float, str]] = []
        samples: list[str] = []  # the latest first, each from the same prompt and seed: the change shows
        status, last_yield, first = "Starting…", 0.0, True
        skip = gr.skip()

        def plot() -> pd.DataFrame | dict | None:
            # No data until the first loss: the plot's legend is fixed by the first data it draws (the first
            # update only clears the last run's curves).
            return loss_plot(rows) if rows else None if first else skip
        progress(0, desc="waiting for the first step")
        done = None
        try:
            for event in run_in_thread(job, session, gone=visitor_gone()):
                eager = event.kind in ("start", "eval", "sample", "nan")
                if event.kind == "start":
                    status = f"Training {name} from {base}: {event.message}"
                elif event.kind == "step" and event.train_loss is not None:
                    rows.append((event.step, event.train_loss, "train"))
                    eager = eager or len(rows) == 1  # the curve starts with the first loss
                    desc = f"step {event.step:,} · loss {event.train_loss:.3f} · ETA {_format_seconds(event.eta)}"
                    progress(event.progress, desc=desc)
                    status = f"Training {name} from {base}: {desc}"
                elif event.kind == "eval" and event.val_loss is not None and math.isfinite(event.val_loss):
                    rows.append((event.step, event.val_loss, "validation"))
                elif event.kind == "sample":
                    samples = [f"{_format_seconds(event.elapsed)} · step {event.step:,}:\n{event.sample}",
                               *samples][: limits.TRAIN_SAMPLES_SHOWN]
                elif event.kind == "nan":
                    gr.Warning(event.message)
                elif event.kind == "done":
                    done = event  # the last event; the loop ends when the worker has finished
                now = time.monotonic()
                if eager or now - last_yield >= limits.TRAIN_UPDATE_INTERVAL_S:
                    last_yield = now
                    yield status, plot(), sample_box(samples), skip, skip, skip, session
                    first = False
        except TrainingStopped as exc:
            yield f"**Stopped**: {exc}.", loss_plot(rows), sample_box(samples), skip, skip, skip, session
            return
        except (TextError, CheckpointError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        if done is None or session.closed:
            return
        yield self._trained(done, name, base, session, loss_plot(rows), sample_box(samples), prompts)

    def _trained(self, done, name: str, base: str, session: Session, plot, sample_text: str,
                 prompts: list[str]) -> tuple:
        """The last update of a run: the model joins this session's pickers (with prompts from its text as the
        Generate tab's examples) and can be downloaded."""
        session.add_model(SessionModel(name=name, path=done.result.out_dir, base=base, prompts=prompts))
        zipped = archive(name, session)
        choices = self.studio.model_choices(session)
        why = done.result.stopped_because
        stopped = why == "cancelled" or session.cancel.is_set()
        how = f"**Stopped early: {name}** (kept the best checkpoint so far)" if stopped else f"**Done: {name}** ({why})"
        status = (f"{how}. Best validation loss {done.val_loss:.4f} nats/char. "
                  f"It is now in the Generate tab's model list, for this session only.")
        return (status, plot, sample_text, gr.update(choices=choices, value=name),
                gr.update(choices=self.studio.base_choices(session)), gr.update(value=str(zipped), visible=True),
                session)


def loss_plot(rows: list[tuple[int, float, str]]) -> pd.DataFrame:
    """The loss plot's data. Gradio's plot fixes its colour legend from the first data it draws, and a missing
    value stops it drawing, so until the first evaluation the validation curve is one point on the first
    training loss: a line of one point draws nothing, but the legend has both curves from the first step."""
    if not rows:
        return empty_plot()
    if not any(curve == "validation" for _, _, curve in rows):
        rows = [(rows[0][0], rows[0][1], "validation"), *rows]
    return pd.DataFrame(rows, columns=PLOT_COLUMNS)


def sample_box(samples: list[str]) -> str:
    """The latest samples, newest first, apart by a blank line."""
    return "\n\n".join(samples)


def stop_training(session: Session | None = None) -> str:
    """Ask this session's run to stop, whether it is waiting for the slot or training; it keeps what it trained."""
    if not isinstance(session, Session) or not session.training:
        return "Nothing is training in this session."
    session.cancel.set()
    return "Stopping: saving the best checkpoint so far…"


# --- handing a trained model over -----------------------------------------------------------------

def push(name: object, repo_id: object, token_text: object, make_private: object, session: Session | None,
         oauth_token: gr.OAuthToken | None = None) -> tuple[str, str]:
    """Upload one of this session's models to the Hub; the token is used for this upload only, never kept."""
    name = name_input(name, "model")
    if not isinstance(session, Session) or name not in session.models:
        raise gr.Error("Only a model you trained in this session can be pushed: train one, then push it from here.")
    if session.training:
        raise gr.Error("Training is still running: wait for it to finish (or press Stop), then push.")
    repo_id = name_input(repo_id, "repo")
    if not repo_id:
        raise gr.Error("Give the repo to push to, for example you/char-rnn-poems.")
    secret = (text_input(token_text, "token", limits.MAX_NAME_CHARS).strip()
              or (oauth_token.token if oauth_token is not None else None))
    try:
        url = push_to_hub(session.models[name].path, repo_id, token=secret, private=bool(make_private))
    except HubError as exc:
        raise gr.Error(str(exc)) from None
    return f"Pushed **{name}** to [{url}]({url}).", ""

def archive(name: str, session: Session | None) -> Path:
    """A zip of one of this session's models (weights, config, card; no resume state)."""
    if not isinstance(session, Session) or name not in session.models:
        raise gr.Error(f"There is no model called {name!r} in this session to download.")
    model_dir = session.models[name].path
    target = session.dir / f"{name}.zip"
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(model_dir.rglob("*")):
            rel = path.relative_to(model_dir)
            if path.is_file() and rel.parts[0] != STATE_DIR:
                zf.write(path, f"{name}/{rel.as_posix()}")
    tmp.replace(target)
    # The DownloadButton serves a copy in Gradio's cache, which would outlive the session.
    session.cached_files.add(Path(get_upload_folder()) / processing_utils.hash_file(target) / target.name)
    return target
