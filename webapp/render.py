"""How every view of the web app draws text: coloured characters with tooltips, legends, percentages.

CSS and JS_ON_LOAD go with every gr.HTML that shows a view (its css_template and js_on_load);
the functions return HTML pieces that the views put together.
"""

from __future__ import annotations

import html
import math

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
# the character (a branch). generate_tab.py wires both events.
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


def visible(char: str) -> str:
    """A character as a tooltip shows it: newline, tab and space as marks one can see."""
    return {"\n": "↵", "\t": "⇥", " ": "␣"}.get(char, char)


def char_span(char: str, style: str, tip: str, cls: str = "", extra: str = "") -> str:
    """One character as a coloured span; a newline keeps its line break after the visible mark.

    extra: more attributes, already escaped.
    """
    shown = "↵" if char == "\n" else html.escape(char)
    attrs = (f' class="{cls}"' if cls else "") + extra
    span = f'<span{attrs} style="{style}" data-tip="{html.escape(tip, quote=True)}">{shown}</span>'
    return span + ("\n" if char == "\n" else "")


def alternatives_tip(char: str, prob: float, alternatives: list[tuple[str, float]]) -> str:
    """A character's tooltip in the probability views: its probability, then the model's top choices there."""
    ranked = "\n".join(f"{i + 1}. {visible(c)!s:<3} {percent(p)}" for i, (c, p) in enumerate(alternatives))
    return f"{visible(char)}: {percent(prob)}\nthe model's top {len(alternatives)}:\n{ranked}"


def probability_colour(prob: float) -> str:
    """Red for what surprised the model (under 0.1%), through yellow, to green for what it was sure of."""
    t = min(max((math.log10(max(prob, 1e-6)) + 3) / 3, 0.0), 1.0)
    return f"hsl({120 * t:.0f}, 80%, 80%)"


def activation_colour(value: float) -> str:
    """Karpathy's scheme: blue for negative, white for zero, red for positive (value in [-1, 1])."""
    v = min(max(value, -1.0), 1.0)
    rgb = "220, 38, 38" if v > 0 else "37, 99, 235"
    return f"rgba({rgb}, {abs(v) * 0.85:.2f})"


def legend(items: list[tuple[str, str]], title: str) -> str:
    """A row of labelled colour swatches after a title: (label, colour) items."""
    swatches = "".join(f'<span class="swatch" style="background:{colour}">{html.escape(label)}</span>'
                       for label, colour in items)
    return f'<div class="charrnn-legend"><span>{html.escape(title)}</span>{swatches}</div>'


def percent(p: float) -> str:
    """A probability as a percentage: one decimal, or two significant digits under 0.1%."""
    return f"{100 * p:.1f}%" if p >= 0.001 else f"{100 * p:.2g}%"


def message(text: str) -> str:
    """A line of text as a view's whole page."""
    return f"<p>{html.escape(text)}</p>"


def influence_colour(value: float) -> str:
    """Green for a character that raised the probability, pink for one that lowered it (value in [-1, 1])."""
    v = min(max(value, -1.0), 1.0)
    rgb = "22, 163, 74" if v > 0 else "219, 39, 119"
    return f"rgba({rgb}, {abs(v) * 0.8:.2f})"
