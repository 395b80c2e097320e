"""The Neurons tab: colour a text by one LSTM cell, and find the cells that track simple features.

build() lays the tab out and wires its events; NeuronViews' handlers return HTML and the same
numbers as data. Every user mistake is a gr.Error with a one-line message.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np

from charrnn.insight import FEATURES, MIN_CHARS_FOR_CORRELATION, activations, prepare_text, rank_cells
from charrnn.model import CharRNN
from charrnn.vocab import unknown_chars_note
from webapp import components as ui
from webapp import i18n, limits, render
from webapp.components import UI, shown
from webapp.inputs import is_whole, text_input
from webapp.jobs import run_in_worker
from webapp.models import Studio

MAX_NEURON_CHARS = 4000  # the Neurons tab reads at most this much text (the first characters)
TOP_CELLS = 5  # cells listed per feature
STATES = {"cell state c": "c", "hidden state h": "h"}
NEURON_EXAMPLE = (
    'The old woman opened the door and looked out into the snow.\n'
    '"Who is there?" she asked. "It is only me," said the little boy, "and I am cold."\n\n'
    'She let him in, and they sat by the fire until morning. "Tell me a story," he begged,\n'
    'and so she told him about the king who had three daughters.\n'
)
t = i18n.t  # a page text by key, shown in the browser's language


def build(studio: Studio, session: gr.State, generate: UI) -> UI:
    """Colour a text by one LSTM cell, and find the cells that track quotes, line position and the like.

    generate: the Generate tab's parts (its model picker and text, which this tab reads)."""
    views = NeuronViews(studio)
    with gr.Tab(t("tab_neurons"), id="neurons"):
        gr.Markdown(t("neurons_help"))
        with gr.Row():
            with gr.Column(scale=2):
                text = ui.Textbox(NEURON_EXAMPLE, label=t("text"), lines=10, max_lines=20,
                                  max_length=limits.MAX_TEXT_CHARS, elem_id="neuron-text")
                use_last = gr.Button(t("use_last"), size="sm")
                with gr.Row():
                    layer = ui.Number(1, label=t("layer"), precision=0, minimum=1, elem_id="neuron-layer",
                                      info=t("layer_info"))
                    unit = ui.Number(0, label=t("unit"), precision=0, minimum=0, elem_id="neuron-unit",
                                     info=t("unit_info"))
                state = ui.Radio(list(STATES), value=next(iter(STATES)), label=t("state"),
                                 info=t("state_info"))
                with gr.Row():
                    show = gr.Button(t("colour_by_cell"), variant="primary", elem_id="neuron-show")
                    find = gr.Button(t("find_cells"), elem_id="neuron-find")
            with gr.Column(scale=3):
                view = gr.HTML(css_template=render.CSS, js_on_load=render.JS_ON_LOAD, elem_id="neuron-view")
                cells = gr.Dataframe(headers=["feature", "rank", "layer", "unit", "state", "r"], interactive=False,
                                     label=t("cells"), elem_id="cells")
                how = gr.Markdown(elem_id="cells-how")
                with gr.Accordion(t("as_data"), open=False):
                    data = gr.JSON()
    model_in = [generate.model, generate.hub_repo_id, session]
    use_last.click(None, generate.output, text, js="(generated) => generated")
    show.click(views.neurons, [text, layer, unit, state, *model_in], [view, data], api_name="neurons",
               concurrency_id="generate")
    find.click(views.find_cells, [text, *model_in], [cells, how], api_name="find_cells", concurrency_id="generate")
    cells.select(views.pick_cell, [cells], [layer, unit, state], api_name="pick_cell").then(
        views.neurons, [text, layer, unit, state, *model_in], [view, data], api_name="neurons_of_picked_cell",
        concurrency_id="generate")
    return UI(dict(text=text, layer=layer, unit=unit, state=state, show=show, find=find, view=view, cells=cells,
                   how=how, data=data))


def _whole(value: Any, name: str, low: int, high: int) -> int:
    if not is_whole(value, low, high):
        raise gr.Error(f"{name} must be a whole number from {low} to {high} for this model, not {shown(value)}")
    return int(value)


class NeuronViews:
    """Handlers for the neuron view and find-cells.

    studio is the app's webapp.models.Studio: its load() resolves the Generate tab's model picker
    (shipped, this session's, or a Hub repo id) exactly as generation does.
    """

    def __init__(self, studio: Any) -> None:
        self.studio = studio

    def _activations(self, net: CharRNN, text: str):
        fitted, changed = prepare_text(net, text_input(text, "text"))
        if changed:
            gr.Warning(unknown_chars_note(changed))
        if not fitted:
            raise gr.Error("Type or paste a text to run through the model (or use the last generated one).")
        if len(fitted) > MAX_NEURON_CHARS:
            gr.Warning(f"Read the first {MAX_NEURON_CHARS:,} of {len(fitted):,} characters.")
            fitted = fitted[:MAX_NEURON_CHARS]
        return run_in_worker(lambda cancel: activations(net, fitted, cancel), "insight")

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
        colour = render.activation_colour
        spans = [render.char_span(ch, f"background:{colour(float(v))}", f"{render.visible(ch)}: {shown_as} = {v:+.3f}")
                 for ch, v in zip(acts.text, display)]
        name = f"layer {layer}, unit {unit}, {'cell state c (shown as tanh(c))' if kind == 'c' else 'hidden state h'}"
        legend = render.legend([(label, colour(v)) for label, v in
                                (("−1", -1), ("−0.5", -0.5), ("0", 0), ("+0.5", 0.5), ("+1", 1))],
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
        ranked = run_in_worker(lambda cancel: rank_cells(acts, TOP_CELLS, cancel=cancel), "insight")
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

