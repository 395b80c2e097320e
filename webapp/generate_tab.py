"""The Generate tab: write from a prompt (sampling or beam search), branch from any character, and see inside.

build() lays the tab out and wires its events; Generator streams the text (and branches), and
InsightViews draws the Insight box under it: each character coloured by its probability, why the
model wrote one, the same seed at several temperatures, and what was copied from the training text.
Handlers are plain methods over the engine, testable without a server; every user mistake is a
gr.Error with a one-line message.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
from collections.abc import Iterator
from typing import Any

import gradio as gr

from charrnn.beam import MAX_BEAM_WIDTH, BeamSettings, beam_search
from charrnn.engine import GenerationEngine
from charrnn.insight import (
    DEFAULT_TEMPERATURES,
    MAX_INFLUENCE_WINDOW,
    influence,
    prepare_text,
    score_text,
    temperature_sweep,
)
from charrnn.model import CharRNN
from charrnn.originality import copied_share, copied_spans, load_index
from charrnn.sampling import SampleSettings, prepare_prompt
from charrnn.text import normalize
from charrnn.vocab import UNK, fit_prompt, unknown_chars_note
from webapp import components as ui
from webapp import i18n, limits, render
from webapp.components import UI, shown
from webapp.inputs import STOP_CHOICES, is_whole, sample_settings, text_input, whole_number
from webapp.jobs import run_in_worker, stream_interval
from webapp.models import Studio
from webapp.session import Session

GENERATE_MODES = ("sample", "beam search")
BEAM_NO_REPEAT_NGRAM = 6  # beam search never writes the same 6 characters twice (bench/beam.py)
MAX_SWEEP_CHARS = 600  # each column of "temperature side by side" is at most this long
INFLUENCE_METHOD = "occlusion"  # found the opening quote far more often than gradient x input (bench/influence.py)
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


def build(studio: Studio, session: gr.State) -> UI:
    """The Generate tab: prompt, model and sampling settings on the left; the text and its Insight box on the right."""
    generator, views = Generator(studio), InsightViews(studio)
    default = studio.default_model()
    with gr.Tab(t("tab_generate"), id="generate"):
        with gr.Row():
            with gr.Column(scale=2):
                prompt = ui.Textbox(label=t("seed_prompt"), lines=3, max_length=limits.MAX_TEXT_CHARS,
                                    placeholder=t("seed_prompt_placeholder"), value="Once upon a time")
                # Openings that suit the picked model (Chinese ones for a Chinese model); a click fills the prompt.
                examples = gr.Dataset(components=[prompt], samples=studio.example_samples(default),
                                      label=t("example_prompts"), elem_id="example-prompts")
                model = ui.Dropdown(studio.model_choices(), value=default, label=t("model"), allow_custom_value=True,
                                    info=t("model_info"))
                hub_repo_id = ui.Textbox(label=t("hub_repo_id"), placeholder="owner/name", max_lines=1,
                                         max_length=limits.MAX_NAME_CHARS,
                                         info=t("hub_repo_id_info"))
                temperature = ui.Slider(0, 2, value=0.8, step=0.05, label=t("temperature"), info=t("temperature_info"),
                                        elem_id="temperature")
                length = ui.Slider(1, limits.MAX_GENERATE_CHARS, value=limits.DEFAULT_GENERATE_CHARS, step=1,
                                   label=t("length"))
                seed = ui.Textbox(label=t("random_seed"), placeholder=t("seed_placeholder"), max_lines=1,
                                  max_length=limits.MAX_NAME_CHARS,
                                  info=t("seed_info"))
                with gr.Accordion(t("advanced"), open=False):
                    top_k, top_p = ui.top_k_and_top_p()
                    stop_at, min_length, mode, beam_width = stop_and_mode()
                with gr.Row():
                    generate_btn = gr.Button(t("generate"), variant="primary")
                    stop_btn = gr.Button(t("stop"), variant="stop")
            with gr.Column(scale=3):
                output = ui.Textbox(label=t("generated_text"), lines=20, max_lines=40, max_length=limits.MAX_VIEW_CHARS,
                                    buttons=["copy"], elem_id="generated")
                seed_used = gr.Textbox(label=t("seed_used"), interactive=False, max_lines=1, elem_id="seed-used")
                undo = gr.Button(t("undo_branch"), size="sm", interactive=False, elem_id="undo-branch")
                insight = build_insight(views, session, prompt, output, model, hub_repo_id, length, seed, top_k,
                                        top_p)
        inputs = [prompt, temperature, length, seed, model, hub_repo_id, top_k, top_p, session, stop_at, min_length,
                  mode, beam_width]
        run = generate_btn.click(generator.generate, inputs, [output, seed_used], api_name="generate",
                                 concurrency_limit=limits.GENERATE_CONCURRENCY, concurrency_id="generate")
        submit = prompt.submit(generator.generate, inputs, [output, seed_used], api_name="generate_on_enter",
                               concurrency_id="generate")
        # A click on an alternative in the Inspect view keeps the text for Undo, then writes on from there.
        history = gr.State([])
        branch_in = [prompt, output, insight.branch_position, insight.branch_char, temperature, length, seed, model,
                     hub_repo_id, top_k, top_p, session]
        inspect_in = [prompt, output, model, hub_repo_id, session]
        branch = insight.view.select(
            pick_branch, [output, history], [insight.branch_position, insight.branch_char, history, undo, insight.why],
            api_visibility="private").success(generator.branch, branch_in, [output, seed_used], api_name="branch",
                                              concurrency_id="generate")
        branch.success(views.inspect, inspect_in, [insight.view, insight.data], api_visibility="private",
                       concurrency_id="generate")  # the view again, for the new text
        undo.click(undo_branch, [history], [output, history, undo], api_visibility="private").success(
            views.inspect, inspect_in, [insight.view, insight.data], api_visibility="private",
            concurrency_id="generate")
        stop_btn.click(None, None, None, cancels=[run, submit, branch], api_name="stop_generate")
        examples.click(lambda sample: sample[0], [examples], [prompt], api_visibility="private")  # the page only
        model.change(studio.example_update, [model, session], [examples], api_visibility="private",
                     show_progress="hidden")
    return UI(dict(prompt=prompt, model=model, hub_repo_id=hub_repo_id, temperature=temperature, length=length,
                   seed=seed, top_k=top_k, top_p=top_p, output=output, seed_used=seed_used, generate=generate_btn,
                   stop=stop_btn))


def build_insight(views: InsightViews, session: gr.State, prompt, output, model, hub_repo_id, length, seed, top_k,
                  top_p) -> UI:
    """Under the generated text: confidence colouring with alternatives (a click explains a character, or branches
    on an alternative), temperatures side by side, originality."""
    with gr.Accordion(t("insight"), open=True, elem_id="insight"):
        with gr.Row():
            inspect = gr.Button(t("inspect"), size="sm", elem_id="inspect-btn")
            sweep = gr.Button(t("sweep"), size="sm", elem_id="sweep-btn")
            original = gr.Button(t("originality"), size="sm", elem_id="originality-btn")
        view = gr.HTML(t("insight_help"),
                       css_template=render.CSS, js_on_load=render.JS_ON_LOAD, elem_id="insight-view")
        why = gr.HTML("", css_template=render.CSS, js_on_load=render.JS_ON_LOAD,
                      elem_id="influence-view")  # "Why this character?"
        # Filled from the Inspect view's clicks (see render.JS_ON_LOAD); the API's /influence and /branch inputs.
        why_position = ui.Number(None, label="position", visible=False)
        branch_position = ui.Number(None, label="position", visible=False)
        branch_char = ui.Textbox(label="alternative", visible=False, max_length=limits.MAX_NAME_CHARS)
        with gr.Accordion(t("as_data"), open=False):
            data = gr.JSON(elem_id="insight-data")
            why_data = gr.JSON(elem_id="influence-data")
    model_in = [model, hub_repo_id, session]
    view.click(pick_position, None, [why_position], api_visibility="private").success(
        views.influence, [prompt, output, why_position, *model_in], [why, why_data], api_name="influence",
        concurrency_id="generate")
    inspect.click(views.inspect, [prompt, output, *model_in], [view, data], api_name="inspect",
                  concurrency_id="generate")
    sweep.click(views.temperatures, [prompt, length, seed, model, hub_repo_id, top_k, top_p, session], [view, data],
                api_name="temperatures", concurrency_id="generate")
    original.click(views.originality, [prompt, output, *model_in], [view, data], api_name="originality",
                   concurrency_id="generate")
    return UI(dict(inspect=inspect, sweep=sweep, originality=original, view=view, data=data, why=why,
                   why_data=why_data, branch_position=branch_position, branch_char=branch_char))


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
        engine = GenerationEngine.for_model(net)
        request = engine.submit(prepare_prompt(net, text)[0], settings)  # it starts while the page shows text and seed
        try:
            yield text, used
            while not request.done and not self.studio.closing.is_set():
                interval = stream_interval(engine.active_rows + engine.waiting)
                new = request.take(interval)
                if new:
                    text += "".join(new)
                    yield text, used
                    request.wait_until_finished(interval)  # what arrives meanwhile goes out in one update
        finally:
            request.cancel()


# --- the page's glue for branching and "Why this character?" ---------------------------------------

def _event_data(evt: gr.EventData | None) -> dict:
    data = getattr(evt, "_data", None)
    return data if isinstance(data, dict) else {}


def pick_branch(text: str | None, history: list | None, evt: gr.EventData) -> tuple[int, str, list, dict, str]:
    """A click on an alternative in the Inspect view (its select event carries position and char).

    Returns the position and character for Generator.branch, the history with the text before the
    branch added (the last limits.MAX_BRANCH_HISTORY), the Undo button made clickable, and an empty
    "Why this character?" view (its positions belong to the text being replaced).
    """
    data = _event_data(evt)
    position, char = data.get("position"), data.get("char")
    if not is_whole(position, 0, limits.MAX_VIEW_CHARS) or not isinstance(char, str) or len(char) != 1:
        raise gr.Error(f"a branch needs a character's position and one alternative character, not {shown(data)}")
    kept = [*(history if isinstance(history, list) else []), text or ""][-limits.MAX_BRANCH_HISTORY:]
    return int(position), char, kept, gr.update(interactive=True), ""


def undo_branch(history: list | None) -> tuple[str, list, dict]:
    """"Undo branch": the text before the last branch, the history without it, and whether Undo stays clickable."""
    if not isinstance(history, list) or not history:
        raise gr.Error("There is no branch to undo.")
    *rest, previous = history
    return previous, rest, gr.update(interactive=bool(rest))


def pick_position(evt: gr.EventData) -> int:
    """A click on a character in the Inspect view (its click event carries the position), for InsightViews.influence."""
    position = _event_data(evt).get("position")
    if not is_whole(position, 0, limits.MAX_VIEW_CHARS):
        raise gr.Error(f"a click on a character carries its position, not {shown(position)}")
    return int(position)


# --- seeing inside ---------------------------------------------------------------------------------

def _split_generated(net: CharRNN, prompt: str, text: str) -> tuple[str, str]:
    """(context, generated): the Generate box holds the fitted prompt followed by what the model wrote."""
    fitted_text, changed = prepare_text(net, text)
    if changed:
        gr.Warning(unknown_chars_note(changed))
    fitted_prompt, _ = prepare_prompt(net, prompt)
    if fitted_prompt and fitted_text.startswith(fitted_prompt):
        return fitted_prompt, fitted_text[len(fitted_prompt):]
    return "", fitted_text


class InsightViews:
    """Handlers for the Insight box under the generated text: Inspect, "Why this character?", temperatures
    side by side, originality.

    studio is the app's webapp.models.Studio: its load() resolves the model picker
    (shipped, this session's, or a Hub repo id) exactly as generation does.
    """

    def __init__(self, studio: Any) -> None:
        self.studio = studio

    def inspect(self, prompt: str, text: str, model: str | None = None, hub_repo_id: str | None = None,
                session: Any = None) -> tuple[str, dict]:
        """Colour each generated character by the probability the model gave it; hover for the top 5."""
        prompt, text = text_input(prompt, "prompt"), text_input(text, "text to inspect", limits.MAX_VIEW_CHARS)
        net = self.studio.load(model, hub_repo_id, session)
        context, generated = _split_generated(net, prompt, text)
        if not generated:
            raise gr.Error("There is no generated text to inspect: press Generate first.")
        scored = run_in_worker(lambda: score_text(net, generated, context), "insight")
        spans = []
        for at, s in enumerate(scored):
            tip = render.alternatives_tip(s.char, s.prob, s.alternatives)
            # What a click needs: the position, and each alternative with its button label (see JS_ON_LOAD).
            choices = json.dumps([[c, f"{render.visible(c)} {render.percent(p)}"] for c, p in s.alternatives])
            extra = f' data-pos="{at}" data-alts="{html.escape(choices, quote=True)}"'
            spans.append(render.char_span(s.char, f"background:{render.probability_colour(s.prob)}", tip, extra=extra))
        legend = render.legend([(label, render.probability_colour(p)) for label, p in
                          (("0.1%", 0.001), ("1%", 0.01), ("10%", 0.1), ("50%", 0.5), ("99%", 0.99))],
                         "Probability the model gave each character (its own, at temperature 1):")
        mean_bits = -sum(math.log2(max(s.prob, 1e-12)) for s in scored) / len(scored)
        summary = (f"<p>{len(scored):,} characters, {mean_bits:.2f} bits of surprise per character on average. "
                   "Hover over a character (or click it) to see the five characters the model considered there. "
                   "A click also shows below why the model wrote it, and lists the five as buttons: "
                   "pick one to write on from there.</p>")
        body = f'<span class="prompt">{html.escape(context)}</span>' + "".join(spans)
        page = (f'<div class="charrnn-inspect">{legend}<div class="charrnn-text">{body}</div>'
                f'<div class="charrnn-detail"></div>{summary}</div>')
        data = {"prompt": context, "text": generated, "mean_bits_per_char": mean_bits,
                "chars": [{"char": s.char, "prob": s.prob, "alternatives": [[c, p] for c, p in s.alternatives]}
                          for s in scored]}
        return page, data

    def influence(self, prompt: str, text: str, position: int, model: str | None = None,
                  hub_repo_id: str | None = None, session: Any = None) -> tuple[str, dict]:
        """Why this character: the characters before it shaded by how much each moved its probability.

        position counts characters of the generated part, as inspect's data["chars"] does. Each of the
        (at most MAX_INFLUENCE_WINDOW) characters before it, the prompt's included, is scored by
        occlusion: log p(character) minus log p(character) with that one replaced by the unknown symbol,
        in nats; positive means it raised the probability. data["chars"][i]["offset"] is that character's
        position in the generated text (negative: in the prompt).
        """
        prompt, text = text_input(prompt, "prompt"), text_input(text, "text to explain", limits.MAX_VIEW_CHARS)
        net = self.studio.load(model, hub_repo_id, session)
        context, generated = _split_generated(net, prompt, text)
        if not generated:
            raise gr.Error("There is no generated text to explain: press Generate first.")
        if not is_whole(position, 0, len(generated) - 1):
            raise gr.Error(f"the position must be a whole number from 0 to {len(generated) - 1:,} (a character of "
                           f"the generated text), not {shown(position)}")
        at = int(position)
        found = run_in_worker(lambda: influence(net, generated, at, context, method=INFLUENCE_METHOD), "insight")
        char, prob = render.visible(found.char), found.prob
        scale = max((abs(v) for v in found.scores), default=0.0) or 1.0
        spans = []
        for i, (ch, v) in enumerate(zip(found.before, found.scores)):
            where = "the start (read as a newline)" if found.first + i < -len(context) else render.visible(ch)
            tip = f"{where}: {v:+.2f} nats\nwithout it, p({char}) would be {render.percent(prob * math.exp(-v))}"
            spans.append(render.char_span(ch, f"background:{render.influence_colour(v / scale)}", tip))
        chosen = render.char_span(found.char, "", f"{char}: {render.percent(prob)}", cls="chosen")
        after = generated[at + 1:].split("\n", 1)[0][:60]
        skipped = len(context) + found.first
        body = ((f'<span class="prompt">… ({skipped:,} earlier characters not weighed) </span>' if skipped > 0 else "")
                + "".join(spans) + chosen + f'<span class="prompt">{html.escape(after)}</span>')
        legend = render.legend([(label, render.influence_colour(v)) for label, v in
                          (("lowered", -1), ("−½", -0.5), ("0", 0), ("+½", 0.5), ("raised", 1))],
                         f"How much each character raised or lowered the probability of {char} "
                         f"(scaled to the strongest, {scale:.2f} nats):")
        strongest = [(offset, ch, v) for offset, ch, v in found.strongest(3) if v > 0]
        named = ", ".join(f"{render.visible(ch)} {at - offset} back ({v:+.2f} nats)" for offset, ch, v in strongest)
        summary = (f"<p><b>Why {html.escape(char)}?</b> At position {at:,} the model gave {html.escape(char)} "
                   f"{render.percent(prob)}. Each of the {len(found.before):,} characters before it"
                   f"{' (the prompt included)' if found.first < 0 else ''} is shaded by how much it moved that: "
                   "the probability is read again with that one character hidden (the unknown symbol in its place)."
                   f"{' Strongest: ' + html.escape(named) + '.' if named else ''}</p>")
        page = (f'<div class="charrnn-influence">{summary}{legend}<div class="charrnn-text">{body}</div>'
                f'<div class="charrnn-detail"></div></div>')
        data = {"position": at, "char": found.char, "prob": prob, "method": found.method,
                "window": MAX_INFLUENCE_WINDOW, "first": found.first,
                "chars": [{"offset": found.first + i, "char": ch, "influence": v}
                          for i, (ch, v) in enumerate(zip(found.before, found.scores))],
                "strongest": [[offset, ch, v] for offset, ch, v in found.strongest(5)]}
        return page, data

    def temperatures(self, prompt: str, length: int = 300, seed: str | int | None = None, model: str | None = None,
                     hub_repo_id: str | None = None, top_k: int | None = 0, top_p: float | None = 1.0,
                     session: Any = None) -> tuple[str, dict]:
        """The same prompt and seed at 0.2, 0.5, 0.8, 1.0 and 1.3, side by side."""
        prompt = text_input(prompt, "prompt")
        net = self.studio.load(model, hub_repo_id, session)
        settings = sample_settings(length, 1.0, top_k, top_p, seed, len(net.vocab), max_length=MAX_SWEEP_CHARS)
        n = settings.length
        fitted, changed = prepare_prompt(net, prompt)
        if changed:
            gr.Warning(unknown_chars_note(changed))
        samples = run_in_worker(lambda: temperature_sweep(net, fitted, settings, DEFAULT_TEMPERATURES), "insight")
        columns = "".join(
            f'<div><h4>temperature {t:g}</h4><div class="charrnn-text">'
            f'<span class="prompt">{html.escape(fitted)}</span>'
            f"{html.escape(text)}</div></div>" for t, text in samples)
        note = (f"<p>Seed {settings.seed}, {n} characters each: the same random draws at every temperature, "
                "so only the temperature differs. Low temperatures repeat the likeliest path; "
                "high ones take more chances.</p>")
        data = {"prompt": fitted, "seed": settings.seed, "length": n,
                "samples": [{"temperature": t, "text": text} for t, text in samples]}
        return f'<div class="charrnn-sweep">{note}<div class="charrnn-columns">{columns}</div></div>', data

    def originality(self, prompt: str, text: str, model: str | None = None, hub_repo_id: str | None = None,
                    session: Any = None) -> tuple[str, dict]:
        """Mark every stretch of 20 or more generated characters found word for word in the training text."""
        prompt, text = text_input(prompt, "prompt"), text_input(text, "text to check", limits.MAX_VIEW_CHARS)
        net = self.studio.load(model, hub_repo_id, session)
        try:
            index = load_index(net)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        if index is None:
            msg = ("The originality check is unavailable for this model: it has no index of its training text "
                   "(build one with `charrnn index MODEL_DIR CORPUS...`).")
            return render.message(msg), {"available": False, "message": msg}
        context, generated = _split_generated(net, prompt, text)
        if not generated:
            raise gr.Error("There is no generated text to check: press Generate first.")
        whole = context + generated
        # Spans are found in prompt + text, so a copy that carries on from the prompt is caught too;
        # only the generated part is marked and counted.
        spans = [(max(a, len(context)) - len(context), b - len(context))
                 for a, b in copied_spans(whole, index) if b > len(context)]
        share = copied_share(generated, spans)
        pieces, at = [], 0
        for a, b in spans:
            pieces += [html.escape(generated[at:a]), f'<mark class="copied">{html.escape(generated[a:b])}</mark>']
            at = b
        pieces.append(html.escape(generated[at:]))
        copied = sum(b - a for a, b in spans)
        summary = (f"<p><b>{100 * share:.1f}%</b> of the generated text ({copied:,} of {len(generated):,} characters, "
                   f"{len(spans)} span{'s' if len(spans) != 1 else ''}) appears word for word in the training text"
                   f"{' (' + html.escape(index.sources) + ')' if index.sources else ''}. Marked: every stretch of "
                   f"{index.n} or more characters found there verbatim.</p>")
        page = (f'<div class="charrnn-originality">{summary}<div class="charrnn-text"><span class="prompt">'
                f'{html.escape(context)}</span>{"".join(pieces)}</div></div>')
        return page, {"available": True, "share": share, "copied_chars": copied, "chars": len(generated),
                      "spans": [list(s) for s in spans], "n": index.n, "text": generated}
