"""The Generate tab: write from a prompt (sampling or beam search), and branch from any character.

build() lays the tab out and wires its events; Generator streams the text (and branches). The Insight
box under the text lives in webapp/insight_box.py. Handlers are plain methods over the engine, testable
without a server; every user mistake is a gr.Error with a one-line message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import gradio as gr

from charrnn.beam import MAX_BEAM_WIDTH, BeamSettings, beam_search
from charrnn.cost import beam_cost, generate_cost
from charrnn.engine import GenerationEngine
from charrnn.model import CharRNN
from charrnn.sampling import SampleSettings, prepare_prompt
from charrnn.text import normalize
from charrnn.vocab import UNK, fit_prompt, unknown_chars_note
from webapp import browser_runtime, budget, i18n, limits
from webapp import components as ui
from webapp.components import UI, shown
from webapp.inputs import STOP_CHOICES, is_whole, sample_settings, stop_strings, text_input, whole_number
from webapp.insight_box import InsightViews, build_insight, pick_branch, undo_branch
from webapp.jobs import run_in_worker, stream_interval, visitor_gone
from webapp.models import Studio
from webapp.session import Session

GENERATE_MODES = ("sample", "beam search")
BEAM_NO_REPEAT_NGRAM = 6  # beam search never writes the same 6 characters twice (bench/beam.py)
t = i18n.t  # a page text by key, shown in the browser's language


# --- layout and wiring ------------------------------------------------------------------------------

def stop_and_mode() -> tuple[gr.components.Component, ...]:
    """Generate's Stop at, Minimum length, Mode and Beam width (under Advanced)."""
    stop_at = ui.Dropdown(list(STOP_CHOICES), value="the length", label=t("stop_at"), allow_custom_value=True,
                          info=t("stop_at_info"))
    min_length = ui.Number(value=0, precision=0, minimum=0, maximum=limits.MAX_GENERATE_CHARS,
                           label=t("min_length"), info=t("min_length_info"))
    mode = ui.Radio(list(GENERATE_MODES), value="sample", label=t("mode"),
                    info=t("mode_info"))
    beam_width = ui.Slider(1, MAX_BEAM_WIDTH, value=8, step=1, label=t("beam_width"),
                           info=t("beam_width_info"))
    return stop_at, min_length, mode, beam_width


def stop_idle() -> gr.Button:
    """Stop as it looks when nothing runs, quiet and disabled (run in the browser: js=True)."""
    return gr.Button(variant="secondary", interactive=False)


def stop_running() -> gr.Button:
    """Stop as it looks while the text is written (run in the browser: js=True)."""
    return gr.Button(variant="stop", interactive=True)


def build(studio: Studio, session: gr.State) -> UI:
    """The Generate tab: prompt, model and sampling settings on the left; the text and its Insight box on the right."""
    generator, views = Generator(studio), InsightViews(studio)
    exports = browser_runtime.BrowserExports(studio)
    default = studio.default_model()
    with gr.Tab(t("tab_generate"), id="generate"):
        with gr.Row():
            with gr.Column(scale=2):
                prompt = ui.Textbox(label=t("seed_prompt"), lines=2, max_length=limits.MAX_TEXT_CHARS,
                                    placeholder=t("seed_prompt_placeholder"), value=i18n.DEFAULT_PROMPTS["en"],
                                    elem_id="prompt")
                # Openings that suit the picked model (Chinese ones for a Chinese model); a click fills the prompt.
                examples = gr.Dataset(components=[prompt], samples=studio.example_samples(default),
                                      label=t("example_prompts"), elem_id="example-prompts")
                model = ui.Dropdown(studio.model_choices(), value=default, label=t("model"), allow_custom_value=True,
                                    info=t("model_info"), elem_id="generate-model")
                temperature = ui.Slider(0, 2, value=0.8, step=0.05, label=t("temperature"), info=t("temperature_info"),
                                        elem_id="temperature")
                with gr.Row(equal_height=True):
                    generate_btn = gr.Button(t("generate"), variant="primary", scale=3, min_width=120,
                                             elem_id="generate-btn")
                    browser_btn = gr.Button(t("generate"), variant="primary", scale=3, min_width=120, visible=False,
                                            elem_id="browser-generate-btn")
                    stop_btn = gr.Button(t("stop"), variant="secondary", interactive=False, scale=1, min_width=60,
                                         elem_id="stop-btn")
                in_browser = ui.Checkbox(False, label=t("run_in_browser"), info=t("run_in_browser_info"),
                                         elem_id="run-in-browser")
                runtime = browser_runtime.build_runtime(exports)
                length = ui.Slider(1, limits.MAX_GENERATE_CHARS, value=limits.DEFAULT_GENERATE_CHARS, step=1,
                                   label=t("length"))
                seed = ui.Textbox(label=t("random_seed"), placeholder=t("seed_placeholder"), max_lines=1,
                                  max_length=limits.MAX_NAME_CHARS,
                                  info=t("seed_info"))
                hub_repo_id = ui.Textbox(label=t("hub_repo_id"), placeholder="owner/name", max_lines=1,
                                         max_length=limits.MAX_NAME_CHARS,
                                         info=t("hub_repo_id_info"))
                with gr.Accordion(t("advanced"), open=False):
                    top_k, top_p = ui.top_k_and_top_p()
                    stop_at, min_length, mode, beam_width = stop_and_mode()
            with gr.Column(scale=3):
                output = ui.Textbox(label=t("generated_text"), lines=20, max_lines=40, max_length=limits.MAX_VIEW_CHARS,
                                    buttons=["copy"], elem_id="generated")
                seed_used = gr.Textbox(label=t("seed_used"), interactive=False, max_lines=1, elem_id="seed-used")
                undo = gr.Button(t("undo_branch"), size="sm", interactive=False, elem_id="undo-branch")
                insight = build_insight(views, session, prompt, output, model, hub_repo_id, length, seed, top_k,
                                        top_p)
        inputs = [prompt, temperature, length, seed, model, hub_repo_id, top_k, top_p, session, stop_at, min_length,
                  mode, beam_width]
        # A click on an alternative in the Inspect view keeps the text for Undo, then writes on from there.
        history = gr.State([])
        pick = insight.view.select(
            pick_branch, [output, history], [insight.branch_position, insight.branch_char, history, undo, insight.why],
            api_visibility="private")
        # Stop is quiet until something runs. Set in the browser (js=True: no call to the server), and wired
        # before the events that write, since the page runs a trigger's events in the order they were added.
        for trigger in (generate_btn.click, prompt.submit, pick.success):
            trigger(stop_running, None, [stop_btn], js=True, api_visibility="private")
        run = generate_btn.click(generator.generate, inputs, [output, seed_used], api_name="generate",
                                 concurrency_limit=limits.GENERATE_CONCURRENCY, concurrency_id="generate")
        submit = prompt.submit(generator.generate, inputs, [output, seed_used], api_name="generate_on_enter",
                               concurrency_id="generate")
        branch_in = [prompt, output, insight.branch_position, insight.branch_char, temperature, length, seed, model,
                     hub_repo_id, top_k, top_p, session]
        branch = pick.success(generator.branch, branch_in, [output, seed_used], api_name="branch",
                              concurrency_id="generate")
        inspect_in = [prompt, output, model, hub_repo_id, session]
        branch.success(views.inspect, inspect_in, [insight.view, insight.data], api_visibility="private",
                       concurrency_id="generate")  # the view again, for the new text
        undo.click(undo_branch, [history], [output, history, undo], api_visibility="private").success(
            views.inspect, inspect_in, [insight.view, insight.data], api_visibility="private",
            concurrency_id="generate")
        stop_btn.click(None, None, None, cancels=[run, submit, branch], api_name="stop_generate")
        for started in (run, submit, branch):
            started.then(stop_idle, None, [stop_btn], js=True, api_visibility="private")
        stop_btn.click(stop_idle, None, [stop_btn], js=True, api_visibility="private")
        browser_runtime.wire(exports, in_browser, runtime, (generate_btn, browser_btn),
                             (stop_btn, stop_running, stop_idle),
                             [prompt, temperature, length, seed, top_k, top_p, stop_at, min_length, mode],
                             [output, seed_used], [model, hub_repo_id, session])
        examples.click(lambda sample: sample[0], [examples], [prompt], api_visibility="private")  # the page only
        model.change(studio.example_update, [model, prompt, session], [examples, prompt], api_visibility="private",
                     show_progress="hidden")
    return UI(dict(prompt=prompt, model=model, hub_repo_id=hub_repo_id, temperature=temperature, length=length,
                   seed=seed, top_k=top_k, top_p=top_p, output=output, seed_used=seed_used, generate=generate_btn,
                   stop=stop_btn))


# --- writing ----------------------------------------------------------------------------------------

class Generator:
    """Handlers for Generate and branching: stream what the model writes, at most every STREAM_INTERVAL_S."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio

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
        net = self.studio.load(model, hub_repo_id, session)
        if mode == "beam search":
            yield self._beam(net, prompt, length, beam_width, stop_at, min_length)
            return
        settings = sample_settings(length, temperature, top_k, top_p, seed, len(net.vocab), stop_at=stop_at,
                                   min_length=min_length)
        fitted, changed = prepare_prompt(net, prompt)
        if changed:
            gr.Warning(unknown_chars_note(changed))
        yield from self._stream_continuation(net, fitted, settings)

    def _beam(self, net: CharRNN, prompt: str, length: object, width: object, stop_at: object = None,
              min_length: object = 0) -> tuple[str, str]:
        """(prompt + the most likely continuation, what to show as the seed) by beam search, blocking repeats;
        the wider the beam, the shorter the length one call's budget allows."""
        length = whole_number(length, "length", 1, limits.MAX_GENERATE_CHARS)
        width = whole_number(8 if width is None else width, "beam width", 1, MAX_BEAM_WIDTH)
        min_length = whole_number(0 if min_length is None else min_length, "minimum length", 0,
                                  limits.MAX_GENERATE_CHARS)
        fitted = prepare_prompt(net, prompt)[0]
        allowed = budget.largest(lambda n: beam_cost(net, width, n, len(fitted)), length)
        length = budget.capped("length", length, allowed, f"at beam width {width}")
        settings = BeamSettings(width=width, length=length, no_repeat_ngram=BEAM_NO_REPEAT_NGRAM,
                                stop=stop_strings(stop_at), min_length=min(min_length, length))
        try:
            settings = settings.checked(len(net.vocab))
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        result = run_in_worker(lambda cancel: beam_search(net, fitted, settings, cancel=cancel)[0], name="beam")
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
        net = self.studio.load(model, hub_repo_id, session)
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
        fitted = prepare_prompt(net, text)[0]
        allowed = budget.largest(lambda n: generate_cost(net, n, len(fitted)), settings.length,
                                 share=limits.STREAM_ESTIMATE_SHARE)
        length = budget.capped("length", settings.length, allowed,
                               f"with a vocabulary of {len(net.vocab):,} characters")
        settings = dataclasses.replace(settings, length=length)
        engine = GenerationEngine.for_model(net)
        gone = visitor_gone()
        request = engine.submit(fitted, settings)  # it starts while the page shows text and seed
        try:
            yield text, used
            while not request.done and not self.studio.closing.is_set() and not gone():
                interval = stream_interval(engine.active_rows + engine.waiting)
                new = request.take(interval)
                if new:
                    text += "".join(new)
                    yield text, used
                    request.wait_until_finished(interval)  # what arrives meanwhile goes out in one update
        finally:
            request.cancel()
