"""The Insight box under the generated text: see inside what the model wrote, and pick where to branch.

build_insight() lays the box out and wires its events; InsightViews draws it: each character coloured
by its probability, why the model wrote one, the same seed at several temperatures, and what was copied
from the training text. pick_branch, undo_branch and pick_position turn the view's clicks into the
inputs of Generator.branch and InsightViews.influence.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

import gradio as gr

from charrnn.cost import influence_cost
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
from charrnn.sampling import prepare_prompt
from charrnn.vocab import unknown_chars_note
from webapp import budget, i18n, limits, render
from webapp import components as ui
from webapp.components import UI, shown
from webapp.inputs import is_whole, sample_settings, text_input
from webapp.jobs import run_in_worker

MAX_SWEEP_CHARS = 600  # each column of "temperature side by side" is at most this long
INFLUENCE_METHOD = "occlusion"  # found the opening quote far more often than gradient x input (bench/influence.py)
t = i18n.t  # a page text by key, shown in the browser's language


# --- layout and wiring ------------------------------------------------------------------------------

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
        scored = run_in_worker(lambda cancel: score_text(net, generated, context, cancel=cancel), "insight")
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
        # The widest window one call's budget allows, with what comes before it read once.
        read = len(context) + at
        window = budget.largest(lambda w: influence_cost(net, min(w, read), read - min(w, read), INFLUENCE_METHOD),
                                MAX_INFLUENCE_WINDOW)
        found = run_in_worker(lambda cancel: influence(net, generated, at, context, window=window,
                                                       method=INFLUENCE_METHOD, cancel=cancel), "insight")
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
                "window": window, "first": found.first,
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
        samples = run_in_worker(
            lambda cancel: temperature_sweep(net, fitted, settings, DEFAULT_TEMPERATURES, cancel=cancel), "insight")
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
