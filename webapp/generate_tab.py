"""The web app's "see inside the model" views: plain handlers that return HTML and data, testable without a server.

Each handler loads the model the Generate tab points at (through the Studio), calls the
engine (charrnn.insight, charrnn.originality) and draws the result as self-contained
HTML, plus the same numbers as plain data for gradio_client users. app.py only lays
them out. Every user mistake is a gr.Error with a one-line message.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

import gradio as gr
import numpy as np

from charrnn import limits
from charrnn.components import shown
from charrnn.handlers import is_whole, sample_settings, text_input
from charrnn.insight import (
    DEFAULT_TEMPERATURES,
    FEATURES,
    MAX_INFLUENCE_WINDOW,
    MIN_CHARS_FOR_CORRELATION,
    activations,
    influence,
    prepare_text,
    rank_cells,
    score_text,
    temperature_sweep,
)
from charrnn.jobs import run_in_worker
from charrnn.model import CharRNN
from charrnn.originality import copied_share, copied_spans, load_index
from charrnn.sampling import prepare_prompt
from charrnn.vocab import unknown_chars_note

MAX_NEURON_CHARS = 4000  # the Neurons tab reads at most this much text (the first characters)
MAX_SWEEP_CHARS = 600  # each column of "temperature side by side" is at most this long
TOP_CELLS = 5  # cells listed per feature
STATES = {"cell state c": "c", "hidden state h": "h"}
INFLUENCE_METHOD = "occlusion"  # found the opening quote far more often than gradient x input (bench/influence.py)

# Scoped to the gr.HTML component that shows the views (its css_template).
CSS = """
.charrnn-text { white-space: pre-wrap; font-family: ui-monospace, Menlo, Consolas, monospace; line-height: 1.7;
                font-size: 0.95em; overflow-wrap: anywhere; }
.charrnn-text span[data-tip] { position: relative; border-radius: 2px; cursor: help; }
.charrnn-text span[data-tip]:hover { outline: 1px solid #333; }
.charrnn-text span[data-tip]:hover::after { content: attr(data-tip); position: absolute; left: 0; top: 1.6em;
    z-index: 20; white-space: pre; background: #111; color: #fff; padding: 4px 8px; border-radius: 4px;
    font-size: 0.85em; pointer-events: none; }
.charrnn-text .prompt { color: #888; }
.charrnn-text mark.copied { background: #fde68a; border-bottom: 2px solid #d97706; padding: 0; }
.charrnn-legend { font-size: 0.85em; margin: 4px 0 8px; display: flex; gap: 6px; flex-wrap: wrap; align-items: center; }
.charrnn-legend .swatch { display: inline-block; padding: 0 6px; border-radius: 3px;
                          font-family: ui-monospace, monospace; color: #111; }
.charrnn-detail { font-size: 0.85em; min-height: 1.4em; font-family: ui-monospace, monospace; margin-top: 6px; }
.charrnn-columns { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 10px; }
.charrnn-columns > div { border: 1px solid #ddd; border-radius: 6px; padding: 6px 8px; }
.charrnn-columns h4 { margin: 0 0 4px; }
.charrnn-text span[data-pos] { cursor: pointer; }
.charrnn-text .chosen { outline: 2px solid #2563eb; outline-offset: 1px; font-weight: bold; }
.charrnn-alts { margin-top: 4px; display: flex; gap: 6px; flex-wrap: wrap; align-items: center; }
.charrnn-alt { font-family: ui-monospace, monospace; border: 1px solid #888; border-radius: 4px; padding: 1px 8px;
               background: #f3f4f6; color: #111; cursor: pointer; }
.charrnn-alt:hover { background: #dbeafe; border-color: #2563eb; }
"""

# Clicking a character copies its tooltip into the line under the text (touch screens cannot hover).
# In the Inspect view a character also carries its position and alternatives (data-pos, data-alts):
# the click lists those alternatives as buttons and fires the view's click event with the position
# ("Why this character?"); a click on one of the buttons fires its select event with the position and
# the character (a branch). app.py wires both events.
JS_ON_LOAD = """
element.addEventListener('click', (event) => {
  const alt = event.target.closest('.charrnn-alt');
  if (alt) {
    trigger('select', {position: Number(alt.dataset.pos), char: alt.dataset.char});
    return;
  }
  const span = event.target.closest('[data-tip]');
  const detail = element.querySelector('.charrnn-detail');
  if (!span || !detail) return;
  detail.textContent = span.dataset.tip.replace(/\\n/g, '   ');
  if (span.dataset.pos === undefined) return;
  const row = document.createElement('div');
  row.className = 'charrnn-alts';
  row.append('Write on from here with:');
  for (const [char, label] of JSON.parse(span.dataset.alts || '[]')) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'charrnn-alt';
    button.dataset.pos = span.dataset.pos;
    button.dataset.char = char;
    button.textContent = label;
    row.append(button);
  }
  detail.append(row);
  trigger('click', {position: Number(span.dataset.pos)});
});
"""


# --- drawing -----------------------------------------------------------------------------------

def _visible(char: str) -> str:
    return {"\n": "↵", "\t": "⇥", " ": "␣"}.get(char, char)


def _char_span(char: str, style: str, tip: str, cls: str = "", extra: str = "") -> str:
    """One character as a coloured span; a newline keeps its line break after the visible mark.

    extra: more attributes, already escaped.
    """
    shown = "↵" if char == "\n" else html.escape(char)
    attrs = (f' class="{cls}"' if cls else "") + extra
    span = f'<span{attrs} style="{style}" data-tip="{html.escape(tip, quote=True)}">{shown}</span>'
    return span + ("\n" if char == "\n" else "")


def probability_colour(prob: float) -> str:
    """Red for what surprised the model (under 0.1%), through yellow, to green for what it was sure of."""
    t = min(max((math.log10(max(prob, 1e-6)) + 3) / 3, 0.0), 1.0)
    return f"hsl({120 * t:.0f}, 80%, 80%)"


def activation_colour(value: float) -> str:
    """Karpathy's scheme: blue for negative, white for zero, red for positive (value in [-1, 1])."""
    v = min(max(value, -1.0), 1.0)
    rgb = "220, 38, 38" if v > 0 else "37, 99, 235"
    return f"rgba({rgb}, {abs(v) * 0.85:.2f})"


def _legend(items: list[tuple[str, str]], title: str) -> str:
    swatches = "".join(f'<span class="swatch" style="background:{colour}">{html.escape(label)}</span>'
                       for label, colour in items)
    return f'<div class="charrnn-legend"><span>{html.escape(title)}</span>{swatches}</div>'


def _percent(p: float) -> str:
    return f"{100 * p:.1f}%" if p >= 0.001 else f"{100 * p:.2g}%"


def _message(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


# --- plumbing ------------------------------------------------------------------------------



def _whole(value: Any, name: str, low: int, high: int) -> int:
    if not is_whole(value, low, high):
        raise gr.Error(f"{name} must be a whole number from {low} to {high} for this model, not {shown(value)}")
    return int(value)


def _split_generated(net: CharRNN, prompt: str, text: str) -> tuple[str, str]:
    """(context, generated): the Generate box holds the fitted prompt followed by what the model wrote."""
    fitted_text, changed = prepare_text(net, text)
    if changed:
        gr.Warning(unknown_chars_note(changed))
    fitted_prompt, _ = prepare_prompt(net, prompt)
    if fitted_prompt and fitted_text.startswith(fitted_prompt):
        return fitted_prompt, fitted_text[len(fitted_prompt):]
    return "", fitted_text


def influence_colour(value: float) -> str:
    """Green for a character that raised the probability, pink for one that lowered it (value in [-1, 1])."""
    v = min(max(value, -1.0), 1.0)
    rgb = "22, 163, 74" if v > 0 else "219, 39, 119"
    return f"rgba({rgb}, {abs(v) * 0.8:.2f})"


# --- the page's glue for branching and "Why this character?" ---------------------------------------

def _event_data(evt: gr.EventData | None) -> dict:
    data = getattr(evt, "_data", None)
    return data if isinstance(data, dict) else {}


def pick_branch(text: str | None, history: list | None, evt: gr.EventData) -> tuple[int, str, list, dict, str]:
    """A click on an alternative in the Inspect view (its select event carries position and char).

    Returns the position and character for Studio.branch, the history with the text before the
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


class InsightViews:
    """Handlers for the Inspect, temperatures, originality, neurons and find-cells views.

    studio is the app's charrnn.handlers.Studio: its load() resolves the model picker
    (shipped, this session's, or a Hub repo id) exactly as generation does.
    """

    def __init__(self, studio: Any) -> None:
        self.studio = studio

    # --- Generate tab ---------------------------------------------------------------------------

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
            alts = "\n".join(f"{i + 1}. {_visible(c)!s:<3} {_percent(p)}" for i, (c, p) in enumerate(s.alternatives))
            tip = f"{_visible(s.char)}: {_percent(s.prob)}\nthe model's top {len(s.alternatives)}:\n{alts}"
            # What a click needs: the position, and each alternative with its button label (see JS_ON_LOAD).
            choices = json.dumps([[c, f"{_visible(c)} {_percent(p)}"] for c, p in s.alternatives])
            extra = f' data-pos="{at}" data-alts="{html.escape(choices, quote=True)}"'
            spans.append(_char_span(s.char, f"background:{probability_colour(s.prob)}", tip, extra=extra))
        legend = _legend([(label, probability_colour(p)) for label, p in
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
        char, prob = _visible(found.char), found.prob
        scale = max((abs(v) for v in found.scores), default=0.0) or 1.0
        spans = []
        for i, (ch, v) in enumerate(zip(found.before, found.scores)):
            where = "the start (read as a newline)" if found.first + i < -len(context) else _visible(ch)
            tip = f"{where}: {v:+.2f} nats\nwithout it, p({char}) would be {_percent(prob * math.exp(-v))}"
            spans.append(_char_span(ch, f"background:{influence_colour(v / scale)}", tip))
        chosen = _char_span(found.char, "", f"{char}: {_percent(prob)}", cls="chosen")
        after = generated[at + 1:].split("\n", 1)[0][:60]
        skipped = len(context) + found.first
        body = ((f'<span class="prompt">… ({skipped:,} earlier characters not weighed) </span>' if skipped > 0 else "")
                + "".join(spans) + chosen + f'<span class="prompt">{html.escape(after)}</span>')
        legend = _legend([(label, influence_colour(v)) for label, v in
                          (("lowered", -1), ("−½", -0.5), ("0", 0), ("+½", 0.5), ("raised", 1))],
                         f"How much each character raised or lowered the probability of {char} "
                         f"(scaled to the strongest, {scale:.2f} nats):")
        strongest = [(offset, ch, v) for offset, ch, v in found.strongest(3) if v > 0]
        named = ", ".join(f"{_visible(ch)} {at - offset} back ({v:+.2f} nats)" for offset, ch, v in strongest)
        summary = (f"<p><b>Why {html.escape(char)}?</b> At position {at:,} the model gave {html.escape(char)} "
                   f"{_percent(prob)}. Each of the {len(found.before):,} characters before it"
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
            return _message(msg), {"available": False, "message": msg}
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

    # --- Neurons tab ------------------------------------------------------------------------------

    def _activations(self, net: CharRNN, text: str):
        fitted, changed = prepare_text(net, text_input(text, "text"))
        if changed:
            gr.Warning(unknown_chars_note(changed))
        if not fitted:
            raise gr.Error("Type or paste a text to run through the model (or use the last generated one).")
        if len(fitted) > MAX_NEURON_CHARS:
            gr.Warning(f"Read the first {MAX_NEURON_CHARS:,} of {len(fitted):,} characters.")
            fitted = fitted[:MAX_NEURON_CHARS]
        return run_in_worker(lambda: activations(net, fitted), "insight")

    def neurons(self, text: str, layer: int = 1, unit: int = 0, state: str = "cell state c", model: str | None = None,
                hub_repo_id: str | None = None, session: Any = None) -> tuple[str, dict]:
        """Colour text by one cell's value after each character: Karpathy's visualisation."""
        net = self.studio.load(model, hub_repo_id, session)
        layer = _whole(layer, "layer", 1, net.num_layers)
        unit = _whole(unit, "unit", 0, net.hidden_size - 1)
        kind = STATES.get(state, state) if isinstance(state, str) else None
        if kind not in ("c", "h"):
            raise gr.Error(f"state must be one of {', '.join(STATES)}, not {shown(state)}")
        if kind == "c" and net.cell != "lstm":
            raise gr.Error("This model is a GRU: it has no cell state c, only the hidden state h.")
        acts = self._activations(net, text)
        raw = acts.of(kind)[:, layer - 1, unit]
        display = np.tanh(raw) if kind == "c" else raw  # c is unbounded; tanh(c) is what the cell outputs
        shown_as = "tanh(c)" if kind == "c" else "h"
        spans = [_char_span(ch, f"background:{activation_colour(float(v))}", f"{_visible(ch)}: {shown_as} = {v:+.3f}")
                 for ch, v in zip(acts.text, display)]
        name = f"layer {layer}, unit {unit}, {'cell state c (shown as tanh(c))' if kind == 'c' else 'hidden state h'}"
        legend = _legend([("−1", activation_colour(-1)), ("−0.5", activation_colour(-0.5)), ("0", activation_colour(0)),
                          ("+0.5", activation_colour(0.5)), ("+1", activation_colour(1))],
                         f"{name}, after reading each character:")
        page = (f'<div class="charrnn-neurons">{legend}<div class="charrnn-text">{"".join(spans)}</div>'
                f'<div class="charrnn-detail"></div></div>')
        return page, {"layer": layer, "unit": unit, "state": kind, "text": acts.text, "values": [float(v) for v in raw]}

    def find_cells(self, text: str, model: str | None = None, hub_repo_id: str | None = None,
                   session: Any = None) -> tuple[list[list], str]:
        """Rank every cell by correlation with simple text features; returns table rows and how it was computed."""
        net = self.studio.load(model, hub_repo_id, session)
        acts = self._activations(net, text)
        if len(acts.text) < MIN_CHARS_FOR_CORRELATION:
            raise gr.Error(f"Finding cells needs a text of at least {MIN_CHARS_FOR_CORRELATION} characters; "
                           "a few paragraphs work best.")
        ranked = run_in_worker(lambda: rank_cells(acts, TOP_CELLS), "insight")
        rows, absent = [], []
        for feature, cells in ranked.items():
            if not cells:
                absent.append(feature)
            for rank, cell in enumerate(cells, 1):
                state = "cell state c" if cell.kind == "c" else "hidden state h"
                rows.append([feature, rank, cell.layer + 1, cell.unit, state, round(cell.r, 3)])
        units = net.num_layers * net.hidden_size * len(acts.kinds())
        states = " and ".join("cell state c" if k == "c" else "hidden state h" for k in acts.kinds())
        how = (f"How: the text ({len(acts.text):,} characters) was run through the model, and after each character "
               f"every one of its {units:,} units ({net.num_layers} layer{'s' if net.num_layers > 1 else ''} × "
               f"{net.hidden_size}, {states}) was compared with each "
               "feature by Pearson correlation r: +1 means the unit rises and falls exactly with the feature, "
               "−1 exactly against it, 0 not at all. Listed: the units with the largest |r|. "
               "Click a row to colour the text by that unit.\n\n"
               + "\n".join(f"- **{f}**: {d}" for f, d in FEATURES.items()))
        if absent:
            how += f"\n\nNot ranked (the feature never changes in this text): {', '.join(absent)}."
        return rows, how

    def pick_cell(self, rows: Any, evt: gr.SelectData | None = None) -> tuple[int, int, str]:
        """A click on the find-cells table: that row's layer, unit and state, for the neuron view.

        Over the API there is no click: the first row is picked (the strongest cell found).
        """
        row = getattr(evt, "row_value", None)
        if not row:
            values = rows.values.tolist() if hasattr(rows, "values") else rows
            index = evt.index[0] if evt is not None and isinstance(evt.index, (list, tuple)) else 0
            if not isinstance(values, list) or not 0 <= index < len(values):
                raise gr.Error("There is no cell to pick: press \"Find interesting cells\" first.")
            row = values[index]
        try:
            _, _, layer, unit, state, _ = row
            return int(layer), int(unit), str(state)
        except (TypeError, ValueError):
            raise gr.Error(f"A row of the cells table is layer, unit and state among six columns, "
                           f"not {shown(row)}") from None
