"""The web app's event handlers: plain functions over the engine, testable without a server.

app.py only lays out components and wires them to these. Every user mistake becomes a
gr.Error carrying the engine's own one-line message; nothing here does model math.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import gradio as gr
import pandas as pd
from gradio import processing_utils
from gradio.utils import get_upload_folder

from charrnn import i18n, limits
from charrnn.batching import min_chars_needed
from charrnn.beam import MAX_BEAM_WIDTH, BeamSettings, beam_search
from charrnn.card import CardInfo
from charrnn.checkpoint import STATE_DIR, CheckpointError, load_hub_model
from charrnn.components import shown
from charrnn.config import FINETUNE_DEFAULTS, TrainConfig
from charrnn.engine import GenerationEngine
from charrnn.hub import HubError, push_to_hub
from charrnn.jobs import LineFull, TrainingLine, TrainJob, return_freed_memory, run_in_thread, run_in_worker
from charrnn.model import CharRNN
from charrnn.sampling import MAX_STOP_CHARS, SampleSettings, prepare_prompt, unescape
from charrnn.session import ModelCache, Session, SessionModel, Sessions, checkpoints_root, shipped_models
from charrnn.text import Corpus, TextError, mostly_chinese, normalize, read_corpus
from charrnn.train import TrainingStopped
from charrnn.vocab import UNK, describe_chars, fit_prompt, unknown_chars_note

SCRATCH = "from scratch"
GENERATE_MODES = ("sample", "beam search")
BEAM_NO_REPEAT_NGRAM = 6  # beam search never writes the same 6 characters twice (bench/beam.py)
STOP_CHOICES = {"the length": (), "end of sentence": (".", "!", "?"), "end of line": ("\n",), "blank line": ("\n\n",)}
FOLD_CHOICES = ("as the base model", "fold to ASCII", "keep Unicode")
PLOT_COLUMNS = ["step", "loss", "curve"]
MAX_SHOWN_NAME_CHARS = 80  # an uploaded file's name as messages show it
MAX_SUGGEST_CHARS = 100_000  # the start of an upload that decides which shipped model it starts from
SHIPPED_MODELS_CACHED = 8  # shipped models kept loaded, shared by every visitor


def _format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _fold_setting(fold: str | bool | None) -> bool | None:
    if isinstance(fold, bool):
        return fold
    if fold in (None, "", FOLD_CHOICES[0]):
        return None
    if fold not in FOLD_CHOICES:
        raise gr.Error(f"ASCII folding must be one of {', '.join(FOLD_CHOICES)}, not {fold!r}")
    return fold == FOLD_CHOICES[1]


def uploaded_file(file: object) -> tuple[Path, str]:
    """An uploaded file's server-side path and the name to call it by, whatever shape Gradio or a client
    handed it in; a gr.Error when there is none, or it is over MAX_UPLOAD_BYTES."""
    if file is None:
        raise gr.Error("Upload a .txt file first.")
    path = getattr(file, "name", None) or (file.get("path") if isinstance(file, dict) else file)
    if not isinstance(path, (str, Path)) or not str(path):
        raise gr.Error(f"the upload must be a file, not {shown(file)}")
    path = Path(str(path))
    orig = getattr(file, "orig_name", None) or (file.get("orig_name") if isinstance(file, dict) else None)
    name = Path(str(orig or path.name)).name
    if len(name) > MAX_SHOWN_NAME_CHARS:  # a client picks the name: messages and the model's name quote it
        name = name[: MAX_SHOWN_NAME_CHARS - 5] + "…" + Path(name).suffix[-4:]
    try:
        size = path.stat().st_size
    except OSError:
        raise gr.Error(f"{name}: the upload could not be read; try again") from None
    if size > limits.MAX_UPLOAD_BYTES:
        raise gr.Error(f"{name} is {size / 2**20:.1f} MB; "
                       f"the upload limit is {limits.MAX_UPLOAD_BYTES / 2**20:.0f} MB")
    return path, name


def text_input(value: object, what: str, cap: int = limits.MAX_TEXT_CHARS) -> str:
    """A text box's value as text ("" for none), refused when it is not text or longer than cap."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise gr.Error(f"the {what} must be given as text, not {type(value).__name__}")
    if len(value) > cap:
        raise gr.Error(f"the {what} is {len(value):,} characters long; at most {cap:,} are read here")
    return value


def name_input(value: object, what: str) -> str:
    """A model name or Hub repo id as given, without surrounding whitespace ("" for none)."""
    return text_input(value, what, limits.MAX_NAME_CHARS).strip()


def is_whole(value: object, low: int, high: int) -> bool:
    """Whether value is a whole number from low to high (a float such as 3.0 counts; True does not)."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and float(value).is_integer())
    return ok and low <= value <= high


def whole_number(value: object, what: str, low: int, high: int) -> int:
    """value as a whole number from low to high, or a gr.Error."""
    if not is_whole(value, low, high):
        raise gr.Error(f"{what} must be a whole number, at least {low:,} and at most {high:,}, not {shown(value)}")
    return int(value)


def sample_settings(length: object, temperature: object, top_k: object, top_p: object, seed: object,
                    vocab_size: int, max_length: int = limits.MAX_GENERATE_CHARS, stop_at: object = None,
                    min_length: object = 0) -> SampleSettings:
    """The page's sampling inputs, converted and checked in one place for every view that samples."""
    length = whole_number(length, "length", 1, limits.MAX_GENERATE_CHARS)
    top_k = whole_number(0 if top_k is None else top_k, "top-k", 0, 10**6)
    min_length = whole_number(0 if min_length is None else min_length, "minimum length", 0, limits.MAX_GENERATE_CHARS)
    try:
        settings = SampleSettings(length=min(length, max_length), temperature=temperature, top_k=top_k or None,
                                  top_p=top_p, seed=seed, stop=stop_strings(stop_at), min_length=min_length)
        return settings.checked(vocab_size)
    except (TypeError, ValueError) as exc:
        raise gr.Error(str(exc)) from None


def stop_strings(stop_at: object) -> tuple[str, ...]:
    """The "Stop at" choice as stop strings: one of STOP_CHOICES, or any text typed (\\n is a newline)."""
    if stop_at is None or stop_at == "":
        return ()
    if stop_at in STOP_CHOICES:
        return STOP_CHOICES[stop_at]
    return (unescape(text_input(stop_at, "stop at", MAX_STOP_CHARS)),)


def stream_interval(streams: int) -> float:
    """How often one visitor's text is sent: every STREAM_INTERVAL_S, or less often when so many
    stream at once that together they would send more than MAX_STREAM_UPDATES_PER_S."""
    return max(limits.STREAM_INTERVAL_S, streams / limits.MAX_STREAM_UPDATES_PER_S)


def close_session(value: object) -> None:
    """gr.State's delete_callback: the session expired (TTL) or its tab closed an hour ago."""
    if isinstance(value, Session):
        value.close()


def empty_plot() -> pd.DataFrame:
    return pd.DataFrame({"step": pd.Series(dtype="int64"), "loss": pd.Series(dtype="float64"),
                         "curve": pd.Series(dtype="str")})


class Studio:
    """The app's handlers, bound to a checkpoints folder (read-only) and an index of sessions."""

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

    # --- models -------------------------------------------------------------------------------

    def shipped(self) -> dict[str, Path]:
        return shipped_models(self.checkpoints)

    def default_model(self) -> str | None:
        return next(iter(self.shipped()), None)

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
        """The example prompts for a picked model, as Dataset samples: Chinese openings for a model whose vocabulary
        is mostly Chinese characters, English ones otherwise (and when the model cannot be loaded)."""
        try:
            chars = self.load(model if isinstance(model, str) else None, None, session).vocab.chars
        except gr.Error:
            chars = ()
        return [[prompt] for prompt in i18n.example_prompts(chars)]

    def example_update(self, model: object, session: Session | None = None) -> dict:
        return gr.Dataset(samples=self.example_samples(model, session))

    # --- generate ---------------------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        temperature: float = 0.8,
        length: int = limits.DEFAULT_GENERATE_CHARS,
        seed: str | int | None = None,
        model: str | None = None,
        hub_repo_id: str | None = None,
        top_k: int | None = 0,
        top_p: float | None = 1.0,
        session: Session | None = None,
        stop_at: str | None = "the length",
        min_length: int | None = 0,
        mode: str | None = "sample",
        beam_width: int | None = 8,
        request: gr.Request | None = None,
    ) -> Iterator[tuple[str, str]]:
        """Stream (text so far, seed used) as the model writes, at most every STREAM_INTERVAL_S; the text ends
        at its length, or earlier at the first stop string written after min_length characters. In beam-search
        mode the most likely continuation comes at once, when the search ends. Errors are in the request's
        language."""
        yield from i18n.translating(i18n.language(request), self._generate(
            prompt, temperature, length, seed, model, hub_repo_id, top_k, top_p, session, stop_at, min_length, mode,
            beam_width), statuses=False)

    def _generate(self, prompt: str, temperature: object, length: object, seed: object, model: str | None,
                  hub_repo_id: str | None, top_k: object, top_p: object, session: Session | None, stop_at: object,
                  min_length: object, mode: str | None, beam_width: object) -> Iterator[tuple[str, str]]:
        """generate, with its messages in English."""
        prompt = text_input(prompt, "prompt")
        net = self.load(model, hub_repo_id, session)
        if mode == "beam search":
            yield self._beam(net, prompt, length, beam_width)
            return
        settings = sample_settings(length, temperature, top_k, top_p, seed, len(net.vocab), stop_at=stop_at,
                                   min_length=min_length)
        fitted, changed = prepare_prompt(net, prompt)
        if changed:
            gr.Warning(unknown_chars_note(changed))
        yield from self._stream_continuation(net, fitted, settings)

    def _beam(self, net: CharRNN, prompt: str, length: object, width: object) -> tuple[str, str]:
        """(prompt + the most likely continuation, what to show as the seed) by beam search, blocking repeats."""
        length = whole_number(length, "length", 1, limits.MAX_GENERATE_CHARS)
        width = whole_number(8 if width is None else width, "beam width", 1, MAX_BEAM_WIDTH)
        settings = BeamSettings(width=width, length=length, no_repeat_ngram=BEAM_NO_REPEAT_NGRAM)
        fitted = prepare_prompt(net, prompt)[0]
        result = run_in_worker(lambda: beam_search(net, fitted, settings)[0], name="beam")
        return fitted + result.text, f"beam search, width {width} (no seed)"

    def branch(
        self,
        prompt: str,
        text: str,
        position: int,
        alternative: str,
        temperature: float = 0.8,
        length: int = limits.DEFAULT_GENERATE_CHARS,
        seed: str | int | None = None,
        model: str | None = None,
        hub_repo_id: str | None = None,
        top_k: int | None = 0,
        top_p: float | None = 1.0,
        session: Session | None = None,
    ) -> Iterator[tuple[str, str]]:
        """Write on from another character: stream (text so far, seed used) as generate does.

        text is the Generate box (the fitted prompt, then what the model wrote); position counts
        characters of the written part, as Inspect's data["chars"] does. The written part is cut
        there, alternative takes the place of the character at position, and the model writes
        length - position - 1 more characters (at least 0) with the same settings: the new request's
        prompt is the fitted prompt + written[:position] + alternative.
        """
        prompt = text_input(prompt, "prompt")
        text = text_input(text, "generated text", limits.MAX_VIEW_CHARS)
        net = self.load(model, hub_repo_id, session)
        settings = sample_settings(length, temperature, top_k, top_p, seed, len(net.vocab))
        fitted_text, changed = fit_prompt(normalize(text, net.ascii_fold), net.vocab)
        if changed:
            gr.Warning(unknown_chars_note(changed))
        fitted_prompt = prepare_prompt(net, prompt)[0]
        has_prompt = bool(fitted_prompt) and fitted_text.startswith(fitted_prompt)
        context = fitted_prompt if has_prompt else ""
        written = fitted_text[len(context):]
        if not written:
            raise gr.Error("There is no generated text to branch from: press Generate first.")
        if not is_whole(position, 0, len(written) - 1):
            raise gr.Error(f"the position must be a whole number from 0 to {len(written) - 1:,} (a character of the "
                           f"generated text), not {shown(position)}")
        if not isinstance(alternative, str) or len(alternative) != 1:
            raise gr.Error(f"the alternative must be exactly one character, not {shown(alternative)}")
        if alternative not in net.vocab or alternative == UNK:
            raise gr.Error(f"the model does not know the character {alternative!r}: pick one of the alternatives "
                           "Inspect shows")
        position = int(position)
        cut = context + written[:position] + alternative
        rest = dataclasses.replace(settings, length=max(0, settings.length - position - 1))
        yield from self._stream_continuation(net, cut, rest)

    def _stream_continuation(self, net: CharRNN, text: str, settings: SampleSettings) -> Iterator[tuple[str, str]]:
        """Stream (text + what the model writes after it, seed used), at most every STREAM_INTERVAL_S.

        The model reads text the way it reads a prompt (its last MAX_PROMPT_CHARS); all of text is shown.
        """
        used = str(settings.seed)
        if settings.length == 0:
            yield text, used
            return
        engine = GenerationEngine.for_model(net)
        request = engine.submit(prepare_prompt(net, text)[0], settings)  # it starts while the page shows text and seed
        try:
            yield text, used
            while not request.done and not self.closing.is_set():
                interval = stream_interval(engine.active_rows + engine.waiting)
                new = request.take(interval)
                if new:
                    text += "".join(new)
                    yield text, used
                    request.wait_until_finished(interval)  # what arrives meanwhile goes out in one update
        finally:
            request.cancel()

    # --- train ----------------------------------------------------------------------------------

    def read_upload(self, file, fold: str | bool | None = None, base: str | None = None,
                    session: Session | None = None) -> Corpus:
        """The uploaded text, or a gr.Error saying why it cannot be trained on."""
        path, name = uploaded_file(file)
        fold_flag = _fold_setting(fold)
        if fold_flag is None and base not in (None, "", SCRATCH):
            base_dir = self.model_dir(base, session)
            if base_dir is not None:
                fold_flag = self.load(base, None, session).ascii_fold
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                corpus = read_corpus(path, fold=bool(fold_flag), name=name)
        except TextError as exc:
            raise gr.Error(str(exc)) from None
        need = min_chars_needed(1, FINETUNE_DEFAULTS["seq_len"], TrainConfig().val_fraction)
        if corpus.chars < need:
            raise gr.Error(f"{name} is too short to train on: {corpus.chars:,} characters, "
                           f"but at least {need:,} are needed")
        return corpus

    def suggested_base(self, corpus: Corpus, session: Session | None = None) -> tuple[str | None, str]:
        """The shipped model to fine-tune an upload from by default, and why: one mostly in the upload's
        script (Chinese or not, by the share of CJK ideographs in the text and in each model's vocabulary)."""
        chinese = mostly_chinese(corpus.text[:MAX_SUGGEST_CHARS])
        for name in self.shipped():
            model = self.load(name, None, session)
            if mostly_chinese("".join(model.vocab.chars)) == chinese:
                script = "mostly Chinese" if chinese else "mostly not Chinese"
                return name, f"starting from {name}, a shipped model of the same script: the text is {script}"
        return None, ""

    def suggest_base(self, file, base: str | None = None, session: Session | None = None) -> dict:
        """After an upload: the base model set to a shipped model of the text's script, when the base is a
        shipped one (a fine-tune the visitor picked stays)."""
        if file is None or base not in (None, "", *self.shipped()):
            return gr.update()
        suggested, _ = self.suggested_base(self.read_upload(file, False, None, session), session)  # unfolded
        return gr.update(value=suggested) if suggested is not None else gr.update()

    def inspect_upload(self, file, base: str | None = None, fold: str | bool | None = None,
                       session: Session | None = None) -> str:
        """What the app read from the upload, as Markdown; empty when nothing is uploaded."""
        if file is None:
            return ""
        corpus = self.read_upload(file, fold, base, session)
        lines = [
            f"**{corpus.name}**: {corpus.chars:,} characters, {len(set(corpus.text)):,} distinct",
            f"- encoding: {corpus.encoding}",
            f"- Project Gutenberg header and licence: {'stripped' if corpus.gutenberg_stripped else 'none found'}",
            f"- ASCII folding: {'on' if corpus.ascii_folded else 'off'}",
        ]
        if base and base != SCRATCH:
            net = self.load(base, None, session)
            new = net.vocab.unknown_in(normalize(corpus.text, net.ascii_fold or corpus.ascii_folded))
            lines.append(f"- characters new to {base}: {describe_chars(new) if new else 'none'}"
                         + (f" ({len(new)}; fine-tuning adds them to the vocabulary)" if new else ""))
        if base in self.shipped():  # judged on the text as uploaded: folding turns Chinese into pinyin
            unfolded = self.read_upload(file, False, None, session) if corpus.ascii_folded else corpus
            suggested, why = self.suggested_base(unfolded, session)
            if suggested == base:
                lines.append(f"- base: {why}")
        lines += [f"- note: {n}" for n in corpus.notes]
        return "\n".join(lines)

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
        yield from i18n.translating(i18n.language(request), self._train(
            file, base, size, minutes, fold, lr, max_steps, session, request, progress))

    def _train(self, file, base, size, minutes, fold, lr, max_steps, session, request, progress) -> Iterator[tuple]:
        session_hash = getattr(request, "session_hash", None)
        existing = self.sessions.peek(session, session_hash)  # a refused request creates no session directory
        if existing is not None and existing.training:
            raise gr.Error("This session is already training a model; stop it or wait for it to finish.")
        if self.closing.is_set():
            raise gr.Error("The app is shutting down; try again in a minute.")
        base = (base.strip() if isinstance(base, str) else base) or self.default_model() or SCRATCH
        corpus = self.read_upload(file, fold, base, existing)
        init, config = self._train_plan(base, size, minutes, fold, lr, max_steps, existing)
        try:
            ticket = self.training_line.join()
        except LineFull as exc:
            raise gr.Error(f"{str(exc)[0].upper()}{str(exc)[1:]}.") from None
        try:
            session = self.sessions.get(session, session_hash)
            if session.training:
                raise gr.Error("This session is already training a model; stop it or wait for it to finish.")
            session.training = True
            session.cancel.clear()
            try:
                if (yield from self._wait_for_slot(ticket, session)):
                    name, out_dir = session.new_model_dir(corpus.name, taken=self.shipped())
                    card_info = CardInfo(name=name, corpus=corpus.name, corpus_source="uploaded to the charrnn web app")
                    job = TrainJob(corpus=corpus, out_dir=out_dir, config=config, init=init, card_info=card_info)
                    yield from self._run_training(job, name, base, session, progress)
            finally:
                session.training = False
        finally:
            self.training_line.leave(ticket)

    def _train_plan(self, base: str, size: object, minutes: object, fold: object, lr: object, max_steps: object,
                    session: Session | None) -> tuple[Path | None, TrainConfig]:
        """The model to start from and the run's config, from the Train tab's inputs; gr.Error when one is wrong."""
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or \
                not limits.MIN_TIME_BUDGET_MIN <= minutes <= limits.MAX_TIME_BUDGET_MIN:
            raise gr.Error(f"the time budget must be {limits.MIN_TIME_BUDGET_MIN} to {limits.MAX_TIME_BUDGET_MIN} "
                           f"minutes, not {shown(minutes)}")
        init = None
        if base != SCRATCH:
            init = self.model_dir(base, session)
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
                ascii_fold=_fold_setting(fold),
                sample_interval=limits.TRAIN_SAMPLE_INTERVAL_STEPS,
                sample_length=limits.TRAIN_SAMPLE_CHARS,
                device=self.device,
                **(limits.SIZE_PRESETS[size] if base == SCRATCH else {}),
            )
        except (TypeError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        return init, config

    def _wait_for_slot(self, ticket: object, session: Session) -> Iterator[tuple]:
        """Wait in line for the training slot, showing the place in line; True once it is ours, False on Stop."""
        skip = gr.skip()
        while ahead := self.training_line.wait(ticket, timeout=limits.TRAIN_UPDATE_INTERVAL_S):
            if session.cancel.is_set() or self.closing.is_set():
                yield "**Stopped** before it started: nothing was trained.", skip, skip, skip, skip, skip, session
                return False
            runs = f"{ahead} run{'s' if ahead > 1 else ''}"
            yield (f"Waiting for the training slot: {runs} ahead of you. Stop leaves the line.",
                   skip, skip, skip, skip, skip, session)
        return True

    def _run_training(self, job: TrainJob, name: str, base: str, session: Session,
                      progress: gr.Progress) -> Iterator[tuple]:
        """Train in a worker thread, turning its events into status, plot and sample updates."""
        rows: list[tuple[int, float, str]] = []
        status, sample_text, last_yield, first = "Starting…", "", 0.0, True
        skip = gr.skip()

        def plot(final: bool = False) -> pd.DataFrame | dict | None:
            # Gradio's plot fixes its colour legend from the first data it draws, so it gets
            # data once both curves have a point (the first evaluation); until then, no update.
            if final or any(curve == "validation" for _, _, curve in rows):
                return pd.DataFrame(rows, columns=PLOT_COLUMNS) if rows else empty_plot()
            return None if first else skip

        progress(0, desc="waiting for the first step")
        done = None
        try:
            for event in run_in_thread(job, session):
                eager = event.kind in ("start", "eval", "sample", "nan")
                if event.kind == "start":
                    status = f"Training {name} from {base}: {event.message}"
                elif event.kind == "step" and event.train_loss is not None:
                    rows.append((event.step, event.train_loss, "train"))
                    desc = f"step {event.step:,} · loss {event.train_loss:.3f} · ETA {_format_seconds(event.eta)}"
                    progress(event.progress, desc=desc)
                    status = f"Training {name} from {base}: {desc}"
                elif event.kind == "eval" and event.val_loss is not None and math.isfinite(event.val_loss):
                    rows.append((event.step, event.val_loss, "validation"))
                elif event.kind == "sample":
                    sample_text = f"step {event.step:,}:\n{event.sample}"
                elif event.kind == "nan":
                    gr.Warning(event.message)
                elif event.kind == "done":
                    done = event  # the last event; the loop ends when the worker has finished
                now = time.monotonic()
                if eager or now - last_yield >= limits.TRAIN_UPDATE_INTERVAL_S:
                    last_yield = now
                    yield status, plot(), sample_text, skip, skip, skip, session
                    first = False
        except TrainingStopped as exc:
            yield f"**Stopped**: {exc}.", plot(final=True), sample_text, skip, skip, skip, session
            return
        except (TextError, CheckpointError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        if done is None or session.closed:
            return
        yield self._trained(done, name, base, session, plot(final=True), sample_text)

    def _trained(self, done, name: str, base: str, session: Session, plot, sample_text: str) -> tuple:
        """The last update of a run: the model joins this session's pickers and can be downloaded."""
        session.add_model(SessionModel(name=name, path=done.result.out_dir, base=base))
        archive = self.archive(name, session)
        choices = self.model_choices(session)
        why = done.result.stopped_because
        stopped = why == "cancelled" or session.cancel.is_set()
        how = f"**Stopped early: {name}** (kept the best checkpoint so far)" if stopped else f"**Done: {name}** ({why})"
        status = (f"{how}. Best validation loss {done.val_loss:.4f} nats/char. "
                  f"It is now in the Generate tab's model list, for this session only.")
        return (status, plot, sample_text, gr.update(choices=choices, value=name),
                gr.update(choices=self.base_choices(session)), gr.update(value=str(archive), visible=True), session)

    def stop_training(self, session: Session | None = None) -> str:
        """Ask this session's run to stop, whether it is waiting for the slot or training; it keeps what it trained."""
        if not isinstance(session, Session) or not session.training:
            return "Nothing is training in this session."
        session.cancel.set()
        return "Stopping: saving the best checkpoint so far…"

    def push(self, name: object, repo_id: object, token_text: object, make_private: object, session: Session | None,
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

    def archive(self, name: str, session: Session | None) -> Path:
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

    def picker_updates(self, session: Session | None = None) -> tuple[dict, dict]:
        """Fresh choices for both pickers (on page load: shipped models may have appeared)."""
        choices = self.model_choices(session)
        value = self.default_model()
        return (gr.update(choices=choices, value=value),
                gr.update(choices=self.base_choices(session), value=value or SCRATCH))

    def end_session(self, request: gr.Request | None = None) -> None:
        """The tab was closed: stop its training, delete its models now rather than at TTL, and let
        the page forget the session (forget_state, set by the app)."""
        session_hash = getattr(request, "session_hash", None)
        self.sessions.end(session_hash)
        self.forget_state(session_hash)
        return_freed_memory()
