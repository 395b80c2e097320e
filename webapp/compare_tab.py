"""The Compare & score tab: several models on one prompt, or on one text, as HTML and data.

build() lays the tab out and wires its events; CompareViews holds its handlers.

Compare streams two to MAX_COMPARE_MODELS models' texts side by side, each written with the same
prompt, seed and settings, each character coloured by its own model's confidence. Every column
is exactly what that model writes alone with that seed: each model generates in its own
engine, whose rows do not depend on their neighbours.

Score gives each chosen model's loss over a pasted or uploaded text, computed as
`charrnn eval MODEL FILE --split all` computes it (the text read as that file would be read,
then the same normalisation, encoding and evaluate_ids), with each character of the text's
start coloured by how surprising it was, and the stretches that surprised the model most.

Handlers load models through the Studio (shipped, this session's, or Hub repo ids), like
every tab's. Every user mistake is a gr.Error with a one-line message.
"""

from __future__ import annotations

import dataclasses
import html
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from charrnn.cancel import CancelSignal
from charrnn.cost import Cost, evaluate_cost, generate_cost, score_cost
from charrnn.engine import Generation, GenerationEngine
from charrnn.evaluate import evaluate_ids
from charrnn.insight import score_text
from charrnn.model import CharRNN
from charrnn.sampling import SampledChar, SampleSettings, prepare_prompt, resolve_seed
from charrnn.text import normalize
from charrnn.vocab import unknown_chars_note
from webapp import budget, i18n, limits, render
from webapp import components as ui
from webapp.components import UI, shown
from webapp.inputs import name_input, read_text, sample_settings, text_input, uploaded_file
from webapp.jobs import any_of, run_in_worker, stream_interval, visitor_gone
from webapp.models import Studio

MIN_COMPARE_MODELS = 2
STRETCH_CHARS = 20  # the length of a "most surprising stretch"
TOP_STRETCHES = 5  # stretches listed per model
# The compare page is sent whole at each update (its columns grow in the middle), so a large page
# goes out less often: about this many bytes a second to one visitor at most.
PAGE_BYTES_PER_S = 2_000_000
# The app's CPU seconds per character shown in a column: colouring it, and the page and data sent again at every
# update (bench/cost.py: 3 models x 2,000 characters took 11.7 s of CPU, of which ~3 s generating).
SHOWN_CHAR_S = 1.4e-3
MAX_HUB_IDS_CHARS = limits.MAX_COMPARE_MODELS * (limits.MAX_NAME_CHARS + 2)  # the comma-separated Hub repo ids box
_SURROGATES = re.compile("[\ud800-\udfff]")
_LEGEND_POINTS = (("0.1%", 0.001), ("1%", 0.01), ("10%", 0.1), ("50%", 0.5), ("99%", 0.99))

# Added to render.CSS in the components that show these views.
CSS = """
.charrnn-scores { border-collapse: collapse; margin: 4px 0 10px; font-size: 0.92em; }
.charrnn-scores th, .charrnn-scores td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
.charrnn-scores th:first-child, .charrnn-scores td:first-child { text-align: left; }
.charrnn-text span.stretch { border-bottom: 2px solid #b91c1c; }
.charrnn-score-model { margin: 10px 0 14px; }
.charrnn-score-model h4, .charrnn-column-summary { margin: 2px 0 4px; }
.charrnn-column-summary { font-size: 0.85em; color: #555; }
.charrnn-stretches { font-size: 0.88em; margin: 4px 0; }
.charrnn-stretches code { white-space: pre-wrap; }
"""

t = i18n.t  # a page text by key, shown in the browser's language


# --- layout and wiring ---------------------------------------------------------------------------------

def view_with_data(name: str) -> tuple[gr.HTML, gr.JSON]:
    """A Compare & score view: its HTML (#NAME-view) and, folded below it, the same as data (#NAME-data)."""
    view = gr.HTML(t(f"{name}_view"), css_template=render.CSS + CSS, js_on_load=render.JS_ON_LOAD,
                   elem_id=f"{name}-view")
    with gr.Accordion(t("as_data"), open=False):
        data = gr.JSON(elem_id=f"{name}-data")
    return view, data


def build(studio: Studio, session: gr.State) -> UI:
    """Two to four models side by side on one prompt and seed, or scored on one text."""
    views = CompareViews(studio)
    shipped = list(studio.shipped())
    with gr.Tab(t("tab_compare"), id="compare") as tab:
        gr.Markdown(t("compare_help"))
        with gr.Row():
            models = ui.Dropdown(studio.model_choices(), value=shipped[:2], multiselect=True,
                                 max_choices=limits.MAX_COMPARE_MODELS, label=t("models"), allow_custom_value=True,
                                 elem_id="compare-models",
                                 info=t("models_info"))
            hub_repo_ids = ui.Textbox(label=t("hub_repo_ids"), placeholder="owner/name, owner/other", max_lines=1,
                                      max_length=MAX_HUB_IDS_CHARS, elem_id="compare-hub-ids",
                                      info=t("hub_repo_ids_info"))
        gr.Markdown(t("compare_heading"))
        with gr.Row():
            with gr.Column(scale=2):
                prompt = ui.Textbox(label=t("prompt"), lines=3, max_length=limits.MAX_TEXT_CHARS,
                                    value="Once upon a time", elem_id="compare-prompt")
                temperature = ui.Slider(0, 2, value=0.8, step=0.05, label=t("temperature"), info=t("temperature_info"))
                length = ui.Slider(1, limits.MAX_GENERATE_CHARS, value=300, step=1,
                                   label=t("compare_length"))
                seed = ui.Textbox(label=t("compare_seed"), placeholder=t("seed_placeholder"), max_lines=1,
                                  max_length=limits.MAX_NAME_CHARS, elem_id="compare-seed",
                                  info=t("compare_seed_info"))
                with gr.Accordion(t("advanced"), open=False):
                    top_k, top_p = ui.top_k_and_top_p()
                with gr.Row():
                    compare_btn = gr.Button(t("compare"), variant="primary", elem_id="compare-btn")
                    stop_btn = gr.Button(t("stop"), variant="stop", elem_id="compare-stop")
            with gr.Column(scale=3):
                compare_view, compare_data = view_with_data("compare")
        gr.Markdown(t("score_heading"))
        with gr.Row():
            with gr.Column(scale=2):
                text = ui.Textbox(label=t("score_text"), lines=8, max_lines=20, max_length=limits.MAX_TEXT_CHARS,
                                  elem_id="score-text", placeholder=t("score_placeholder"))
                upload = ui.File(label=t("score_upload"), file_types=[".txt"],
                                 file_count="single", elem_id="score-upload")
                score_btn = gr.Button(t("score"), variant="primary", elem_id="score-btn")
            with gr.Column(scale=3):
                score_view, score_data = view_with_data("score")
    tab.select(views.picker_update, [session], [models], api_name="compare_models", show_progress="hidden")
    run = compare_btn.click(views.compare, [prompt, temperature, length, seed, models, hub_repo_ids, top_k, top_p,
                                            session], [compare_view, compare_data], api_name="compare",
                            concurrency_id="generate")
    stop_btn.click(None, None, None, cancels=[run], api_name="stop_compare")
    score_btn.click(views.score, [text, upload, models, hub_repo_ids, session], [score_view, score_data],
                    api_name="score", concurrency_id="generate")
    return UI(dict(models=models, hub_repo_ids=hub_repo_ids, prompt=prompt, temperature=temperature, length=length,
                   seed=seed, top_k=top_k, top_p=top_p, compare=compare_btn, stop=stop_btn, compare_view=compare_view,
                   compare_data=compare_data, text=text, upload=upload, score=score_btn, score_view=score_view,
                   score_data=score_data))


# --- inputs ------------------------------------------------------------------------------------

def picked_models(models: object, hub_repo_ids: object, minimum: int) -> list[tuple[str, str]]:
    """The models asked for, as (kind, name) with kind "model" (the picker) or "hub" (a repo id).

    models is the multiselect's list of names (a single name is taken as a list of one); hub_repo_ids
    is text, repo ids separated by commas. From minimum to MAX_COMPARE_MODELS of them, each once.
    """
    cap = limits.MAX_COMPARE_MODELS
    if models is None or models == "":
        models = []
    elif isinstance(models, str):
        models = [models]
    if not isinstance(models, (list, tuple)):
        raise gr.Error(f"the models must be a list of model names, not {shown(models)}")
    if len(models) > cap:
        raise gr.Error(f"at most {cap} models at once, not {len(models):,}")
    names = [name_input(name, "model") for name in models]
    ids = [name_input(repo, "Hub repo id")
           for repo in text_input(hub_repo_ids, "Hub repo ids", MAX_HUB_IDS_CHARS).split(",")]
    picked = [("model", n) for n in names if n] + [("hub", r) for r in ids if r]
    if len(picked) > cap:
        raise gr.Error(f"at most {cap} models at once, not {len(picked)}: pick fewer")
    if len(picked) < minimum:
        what = f"at least {minimum} models" if minimum > 1 else "a model"
        raise gr.Error(f"Pick {what} (from the list, or Hub repo ids separated by commas); "
                       f"{len(picked)} {'is' if len(picked) == 1 else 'are'} picked")
    seen = set()
    for _, name in picked:
        if name in seen:
            raise gr.Error(f"{shown(name)} is picked twice: pick each model once")
        seen.add(name)
    return picked


def _stretches(losses: np.ndarray, width: int, top: int) -> list[tuple[int, int, float]]:
    """The top windows of width characters by mean loss, none overlapping another: (start, end, mean loss)."""
    width = min(width, len(losses))
    if width == 0:
        return []
    sums = np.convolve(losses, np.ones(width), mode="valid")
    found: list[tuple[int, int, float]] = []
    for start in np.argsort(-sums, kind="stable"):
        start = int(start)
        if all(start + width <= a or start >= b for a, b, _ in found):
            found.append((start, start + width, float(sums[start] / width)))
            if len(found) == top:
                break
    return found


# --- compare -----------------------------------------------------------------------------------

@dataclass
class _Column:
    """One model's column of a comparison, as it streams in."""

    name: str
    net: CharRNN
    fitted: str
    settings: SampleSettings
    chars: list[str] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    spans: list[str] = field(default_factory=list)  # each character's coloured span, drawn once

    def add(self, char: str, prob: float) -> None:
        self.chars.append(char)
        self.probs.append(prob)
        tip = f"{render.visible(char)}: {render.percent(prob)}"
        self.spans.append(render.char_span(char, f"background:{render.probability_colour(prob)}", tip))

    def mean_bits(self) -> float | None:
        if not self.probs:
            return None
        return -sum(math.log2(max(p, 1e-12)) for p in self.probs) / len(self.probs)


def _compare_cost(columns: list[_Column], length: int) -> Cost:
    """Every column's generation of length characters, and the page that shows them."""
    total = Cost(overhead_s=len(columns) * length * SHOWN_CHAR_S)
    for col in columns:
        total += generate_cost(col.net, length, len(col.fitted))
    return total


def _compare_page(columns: list[_Column], settings: SampleSettings, finished: bool) -> str:
    legend = render.legend([(label, render.probability_colour(p)) for label, p in _LEGEND_POINTS],
                     "Probability each model gave the character it wrote:")
    parts = []
    for col in columns:
        bits = col.mean_bits()
        state = "" if finished else " so far"
        summary = (f"{len(col.chars):,} characters{state}" +
                   (f", {bits:.2f} bits of surprise per character" if bits is not None else ""))
        parts.append(f'<div class="charrnn-column"><h4>{html.escape(col.name)}</h4>'
                     f'<p class="charrnn-column-summary">{summary}</p>'
                     f'<div class="charrnn-text"><span class="prompt">{html.escape(col.fitted)}</span>'
                     f'{"".join(col.spans)}</div></div>')
    sampling = f"temperature {settings.temperature:g}"
    if settings.top_k:
        sampling += f", top-k {settings.top_k}"
    if settings.top_p:
        sampling += f", top-p {settings.top_p:g}"
    note = (f"<p>Seed {settings.seed}, {sampling}, {settings.length:,} characters each. Each column is what its "
            "model writes alone with this seed and these settings. Hover over a character (or click it) "
            "for its probability.</p>")
    return (f'<div class="charrnn-compare">{note}{legend}<div class="charrnn-detail"></div>'
            f'<div class="charrnn-columns">{"".join(parts)}</div></div>')


def _compare_data(prompt: str, columns: list[_Column], settings: SampleSettings) -> dict:
    # Fresh lists at every update: Gradio sends the difference from the last value it was given.
    return {"prompt": prompt, "seed": settings.seed, "temperature": settings.temperature, "length": settings.length,
            "top_k": settings.top_k or 0, "top_p": settings.top_p or 1.0,
            "models": [{"name": c.name, "prompt": c.fitted, "text": "".join(c.chars), "probs": list(c.probs)}
                       for c in columns]}


class CompareViews:
    """Handlers for the Compare & score tab.

    studio is the app's webapp.models.Studio: its load() resolves each model (shipped,
    this session's, or a Hub repo id) exactly as generation does.
    """

    def __init__(self, studio: Any) -> None:
        self.studio = studio

    def picker_update(self, session: Any = None) -> dict:
        """Fresh choices for the models picker: the shipped models and this session's fine-tunes."""
        return gr.update(choices=self.studio.model_choices(session))

    def _load(self, picked: list[tuple[str, str]], session: Any) -> list[tuple[str, CharRNN]]:
        return [(name, self.studio.load(name, None, session) if kind == "model" else
                 self.studio.load(None, name, session)) for kind, name in picked]

    def compare(
        self,
        prompt: str,
        temperature: float = 0.8,
        length: int = 300,
        seed: str | int | None = None,
        models: list[str] | str | None = None,
        hub_repo_ids: str | None = "",
        top_k: int | None = 0,
        top_p: float | None = 1.0,
        session: Any = None,
    ) -> Iterator[tuple[str, dict]]:
        """Stream (html, data): each model's text from one prompt, seed and settings, side by side.

        data["models"][i] holds model i's name, the prompt as it read it, its text and the
        probability it gave each character it wrote.
        """
        prompt = text_input(prompt, "prompt")
        picked = picked_models(models, hub_repo_ids, MIN_COMPARE_MODELS)
        try:
            seed_value = resolve_seed(seed)  # one seed for every model, drawn once when none is given
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        columns = []
        for name, net in self._load(picked, session):
            settings = sample_settings(length, temperature, top_k, top_p, seed_value, len(net.vocab))
            fitted, changed = prepare_prompt(net, prompt)
            if changed:
                gr.Warning(f"{name}: {unknown_chars_note(changed)}")
            columns.append(_Column(name, net, fitted, settings))
        asked = columns[0].settings.length
        allowed = budget.largest(lambda n: _compare_cost(columns, n), asked)
        if allowed < asked:
            budget.capped("length", asked, allowed, f"with {len(columns)} models")
            for col in columns:
                col.settings = dataclasses.replace(col.settings, length=allowed)
        shown_settings = columns[0].settings
        gone = visitor_gone()
        engines = [GenerationEngine.for_model(col.net) for col in columns]
        requests: list[Generation] = []
        try:
            for col, engine in zip(columns, engines):
                requests.append(engine.submit(col.fitted, col.settings, alternatives=1))
            page = _compare_page(columns, shown_settings, False)
            yield page, _compare_data(prompt, columns, shown_settings)
            while True:
                new = False
                for col, request in zip(columns, requests):
                    for item in request.take(0):
                        col.add(item.char, item.prob)
                        new = True
                finished = all(request.done for request in requests)
                if new or finished:
                    page = _compare_page(columns, shown_settings, finished)
                    yield page, _compare_data(prompt, columns, shown_settings)
                if finished or self.studio.closing.is_set() or gone():
                    return
                crowd = max(engine.active_rows + engine.waiting for engine in engines)
                interval = max(stream_interval(crowd), len(page) / PAGE_BYTES_PER_S)
                pending = next((r for r in requests if not r.finished), None)
                if pending is not None:
                    pending.wait_until_finished(interval)  # what arrives meanwhile goes out in one update
        finally:
            for request in requests:
                request.cancel()

    # --- score ---------------------------------------------------------------------------------

    def _read_text(self, text: object, file: object) -> tuple[str, str, list[str]]:
        """(the text as `charrnn eval` reads it from a file, what to call it, notes on how it was read)."""
        if file is not None:
            path, name = uploaded_file(file)
            source: str | Path | bytes = path
        else:
            text = text_input(text, "text to score")
            if not text.strip():
                raise gr.Error("There is no text to score: paste one, or upload a .txt file.")
            name = "the text"
            # The bytes a UTF-8 file of this text holds (a lone surrogate has none: it becomes U+FFFD).
            source = _SURROGATES.sub("\ufffd", text).encode("utf-8")
        corpus = read_text(source, name)
        if corpus.chars > limits.MAX_TEXT_CHARS:
            raise gr.Error(f"{name} holds {corpus.chars:,} characters; at most {limits.MAX_TEXT_CHARS:,} are scored "
                           "here (charrnn eval scores any length)")
        notes = list(corpus.notes)
        if file is not None and corpus.encoding not in ("utf-8", "utf-8-sig"):
            notes.append(f"{name}: read as {corpus.encoding}")
        return corpus.text, name, notes

    def _score_one(self, net: CharRNN, text: str, share: float) -> dict:
        """One model's figures over text, as charrnn eval gives them, and the view's start: over as much of the
        text as share of the call budget allows (the view first, up to a quarter of it; the loss over the rest)."""
        normalized = normalize(text, net.ascii_fold)
        if len(normalized) < 2:
            raise gr.Error("The text is too short to score: it needs at least 2 characters.")
        viewed_chars = budget.largest(lambda n: score_cost(net, n), min(len(normalized), limits.MAX_VIEW_CHARS),
                                      share=share / 4)
        view = score_cost(net, viewed_chars)
        scored_chars = budget.largest(lambda n: evaluate_cost(net, n) + view, len(normalized),
                                      least=min(2, len(normalized)), share=share)
        scored = normalized[:max(scored_chars, viewed_chars)]

        def work(cancel: CancelSignal) -> dict:
            result = evaluate_ids(net, net.vocab.encode(scored), should_stop=any_of(cancel, self.studio.closing))
            viewed = scored[:viewed_chars]
            return {"result": result, "viewed": viewed, "scored": score_text(net, viewed, cancel=cancel)}

        out = run_in_worker(work, "compare")
        if not out["result"]["complete"]:
            raise gr.Error("Stopped before the end: the app is shutting down, or the request was cancelled.")
        return out | {"unknown": net.vocab.unknown_in(normalized), "of": len(normalized)}

    def score(
        self,
        text: str | None,
        file: Any = None,
        models: list[str] | str | None = None,
        hub_repo_ids: str | None = "",
        session: Any = None,
    ) -> tuple[str, dict]:
        """Each model's loss over the text (the uploaded file when there is one), and where it was surprised.

        data["models"][i] holds model i's loss and bpc (as `charrnn eval MODEL FILE --split all`
        prints them), the characters scored, the probability it gave each character of the
        view (the first MAX_VIEW_CHARS) and its most surprising stretches there.
        """
        raw, name, notes = self._read_text(text, file)
        picked = picked_models(models, hub_repo_ids, 1)
        results, views = [], []
        for model_name, net in self._load(picked, session):  # in turn, each model's memory freed after it
            one = self._score_one(net, raw, share=1 / len(picked))
            if one["result"]["chars"] + 1 < one["of"]:
                notes.append(f"{model_name}: the loss covers the first {one['result']['chars'] + 1:,} characters "
                             f"of {one['of']:,}, what one call's budget allows with {len(picked)} model(s) "
                             "(charrnn eval scores any length)")
            scored, result = one["scored"], one["result"]
            losses = np.array([-math.log(max(s.prob, 1e-12)) for s in scored])
            stretches = _stretches(losses, STRETCH_CHARS, TOP_STRETCHES)
            views.append(scored)
            results.append({
                "name": model_name, "loss": round(result["loss"], 6), "bpc": round(result["bpc"], 6),
                "chars": result["chars"], "split": "all", "unknown_chars": len(one["unknown"]),
                "text": one["viewed"], "probs": [s.prob for s in scored],
                "stretches": [{"start": a, "end": b, "text": one["viewed"][a:b], "loss": loss}
                              for a, b, loss in stretches],
            })
        page = _score_page(results, views, len(raw), name, notes)
        return page, {"chars": len(raw), "viewed_chars": max((len(v) for v in views), default=0), "notes": notes,
                      "models": results}


def _line(text: str) -> str:
    """A stretch of text on one line: newlines and tabs as visible marks, spaces as they are."""
    return text.replace("\n", "↵").replace("\t", "⇥")


def _score_page(results: list[dict], views: list[list[SampledChar]], total: int, name: str,
                notes: list[str]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(r['name'])}</td><td>{r['loss']:.4f}</td><td>{r['bpc']:.4f}</td>"
        f"<td>{r['chars']:,}</td><td>{r['unknown_chars']:,}</td></tr>" for r in results)
    table = ('<table class="charrnn-scores"><tr><th>model</th><th>loss (nats/char)</th><th>bits/char</th>'
             f"<th>characters predicted</th><th>characters it does not know</th></tr>{rows}</table>")
    viewed = max((len(v) for v in views), default=0)
    coverage = ("every character" if viewed == total else f"the first {viewed:,} characters of {total:,}")
    whole = "the whole of " if all(r["chars"] + 1 >= total for r in results) else "as much as the notes say of "
    note = (f"<p>The loss is over {whole}{html.escape(name)} ({total:,} characters), computed as "
            "<code>charrnn eval MODEL FILE --split all</code> computes it; characters a model does not know count "
            f"as its unknown symbol. The colours show {coverage}: the probability each model gave each character "
            f"(hover or click for its top five). Underlined: each model's {TOP_STRETCHES} most surprising stretches "
            f"of {STRETCH_CHARS} characters there.</p>")
    notes_html = "".join(f"<p>Note: {html.escape(n)}</p>" for n in notes)
    legend = render.legend([(label, render.probability_colour(p)) for label, p in _LEGEND_POINTS],
                     "Probability the model gave each character:")
    sections = []
    for r, scored in zip(results, views):
        marked = set()
        for s in r["stretches"]:
            marked.update(range(s["start"], s["end"]))
        spans = []
        for i, s in enumerate(scored):
            tip = render.alternatives_tip(s.char, s.prob, s.alternatives)
            spans.append(render.char_span(s.char, f"background:{render.probability_colour(s.prob)}", tip,
                                    "stretch" if i in marked else ""))
        items = "".join(
            f"<li><code>{html.escape(_line(s['text']))}</code>: {s['loss']:.2f} nats/char "
            f"(characters {s['start'] + 1:,} to {s['end']:,})</li>" for s in r["stretches"])
        sections.append(
            f'<div class="charrnn-score-model"><h4>{html.escape(r["name"])}: {r["loss"]:.4f} nats/char, '
            f'{r["bpc"]:.4f} bits/char</h4><div class="charrnn-text">{"".join(spans)}</div>'
            f'<p class="charrnn-stretches">Most surprising stretches:</p><ol class="charrnn-stretches">{items}</ol>'
            "</div>")
    return (f'<div class="charrnn-score">{table}{note}{notes_html}{legend}<div class="charrnn-detail"></div>'
            f'{"".join(sections)}</div>')
