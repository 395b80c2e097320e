""""Why this character?": insight.influence and its view, on a model that learned to close brackets."""

from __future__ import annotations

import math
import random

import gradio as gr
import pytest
import torch

from charrnn.checkpoint import load_model
from charrnn.insight import MAX_INFLUENCE_WINDOW, influence, score_text
from charrnn.model import CharRNN
from charrnn.train import TrainConfig, train
from charrnn.vocab import UNK
from webapp.insight_box import InsightViews

PAIRS = {"(": ")", "[": "]", "{": "}"}
OPENING = {close: open_ for open_, close in PAIRS.items()}


def bracket_lines(lines: int, seed: int) -> str:
    """Lines such as "(fa cbhd egg)": only the opening bracket, 10 to 20 random characters back, says how to close."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        opening = rng.choice(list(PAIRS))
        filler = "".join(rng.choice("abcdefgh ") for _ in range(rng.randint(10, 20)))
        out.append(f"{opening}{filler}{PAIRS[opening]}\n")
    return "".join(out)


@pytest.fixture(scope="module")
def bracket_model(tmp_path_factory) -> CharRNN:
    config = TrainConfig(num_layers=1, hidden_size=32, embedding_dim=8, dropout=0.0, batch_size=16, seq_len=64,
                         lr=2e-2, warmup_steps=10, max_steps=300, eval_interval=300, patience=None, device="cpu",
                         seed=1)
    out = tmp_path_factory.mktemp("brackets") / "m"
    list(train([bracket_lines(3000, seed=0)], out, config))
    return load_model(out)


def hit_rate(model: CharRNN, text: str, method: str) -> tuple[float, float, int]:
    """(share of closing brackets whose strongest earlier character is their opening bracket, chance, cases)."""
    hits, chance, cases = 0, 0.0, 0
    for i, char in enumerate(text):
        if char not in OPENING:
            continue
        found = influence(model, text, i, method=method)
        opening = text.rindex(OPENING[char], 0, i)
        hits += found.strongest(1)[0][0] == opening
        chance += 1 / len(found.before)
        cases += 1
    return hits / cases, chance / cases, cases


@pytest.mark.parametrize(("method", "at_least"), [("occlusion", 0.6), ("gradient", 0.4)])
def test_a_closing_bracket_is_explained_by_its_opening_one(bracket_model, method, at_least):
    share, chance, cases = hit_rate(bracket_model, bracket_lines(40, seed=1), method)
    assert cases == 40
    # Measured: occlusion 0.85, gradient x input 0.68, chance 0.007 (1 / the characters in the window).
    assert share >= at_least and share > 20 * chance, (method, share, chance)


def test_influence_reads_the_text_after_the_prompt_and_leaves_the_model_as_it_was(bracket_model):
    model = bracket_model.train()  # dropout is 0 here, but the mode must come back as it was
    requires = [p.requires_grad for p in model.parameters()]
    prompt, text = "\n(abc dcb", " hgfcea)\n[a"
    scored = score_text(model, text, prompt)
    for method in ("gradient", "occlusion"):
        found = influence(model, text, 7, prompt, method=method)
        assert found.char == ")" and found.method == method
        assert found.prob == pytest.approx(scored[7].prob, rel=1e-5)  # the probability Inspect shows
        assert found.before == prompt + text[:7] and found.first == -len(prompt)
        assert len(found.scores) == len(found.before)
        assert model.training and [p.requires_grad for p in model.parameters()] == requires
        assert all(p.grad is None for p in model.parameters())
    model.eval()
    # Occlusion is exactly the drop in log p with that one character hidden.
    found = influence(model, text, 7, prompt, method="occlusion")
    hidden = score_text(model, text, prompt[:4] + UNK + prompt[5:])[7].prob
    assert found.scores[4] == pytest.approx(math.log(scored[7].prob) - math.log(hidden), abs=1e-4)
    assert found.strongest(1)[0][:2] == (-8, "(")


def test_influence_weighs_at_most_its_window_and_starts_from_the_state_before_it(bracket_model):
    text = bracket_lines(40, seed=2)
    at = len(text) - 2  # a closing bracket
    found = influence(bracket_model, text, at)
    assert len(found.before) == MAX_INFLUENCE_WINDOW and found.first == at - MAX_INFLUENCE_WINDOW
    assert found.before == text[at - MAX_INFLUENCE_WINDOW:at]
    assert found.prob == pytest.approx(score_text(bracket_model, text)[at].prob, rel=1e-5)
    short = influence(bracket_model, text, at, window=5)
    assert short.before == text[at - 5:at] and short.prob == pytest.approx(found.prob, rel=1e-5)
    # Without a prompt the model first reads a newline, as sampling primes it; that newline is weighed too.
    assert influence(bracket_model, "(ab)", 3).before == "\n(ab"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"position": 4}, "position must be a whole number from 0 to 3"),
    ({"position": -1}, "position"),
    ({"position": 1.0}, "position"),
    ({"window": 0}, "window"),
    ({"method": "saliency"}, "method must be one of gradient, occlusion"),
])
def test_bad_influence_arguments_are_refused(bracket_model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        influence(bracket_model, "(ab)", **({"position": 3} | kwargs))


class FakeStudio:
    def __init__(self, model: CharRNN) -> None:
        self.model = model

    def load(self, model, hub_repo_id=None, session=None):  # noqa: ARG002
        return self.model


def test_the_view_shades_earlier_characters_and_highlights_the_chosen_one(bracket_model):
    views = InsightViews(FakeStudio(bracket_model.eval()))
    prompt, generated = "\n[abc", " dcb hgfcea]\n(gh"
    page, data = views.influence(prompt, prompt + generated, 11)
    assert data["char"] == "]" and data["position"] == 11 and data["method"] == "occlusion"
    assert [c["char"] for c in data["chars"]] == list(prompt + generated[:11])
    assert [c["offset"] for c in data["chars"]] == list(range(-5, 11))
    assert data["strongest"][0][:2] == [-4, "["]  # the opening bracket, in the prompt
    assert 'class="chosen"' in page and "Why ]?" in page and "rgba(22, 163, 74" in page
    assert page.count("data-tip=") == len(prompt) + 11 + 1  # the weighed characters and the chosen one
    assert "raised" in page and "lowered" in page  # the legend
    assert "data-pos" not in page  # its characters are not clickable positions of the Inspect view


@pytest.mark.parametrize(("position", "message"), [
    (18, "from 0 to 17"),
    (-1, "from 0 to 17"),
    (2.5, "not 2.5"),
    ("3", "not '3'"),
    (None, "not None"),
    (True, "not True"),
])
def test_the_view_refuses_a_bad_position_in_one_line(bracket_model, position, message):
    views = InsightViews(FakeStudio(bracket_model))
    with pytest.raises(gr.Error, match=message) as error:
        views.influence("[ab", "[ab cd ef]\n(gh hgfcea", position)
    assert "\n" not in str(error.value) and "whole number" in str(error.value)


def test_the_view_needs_a_generated_text(bracket_model):
    with pytest.raises(gr.Error, match="Generate first"):
        InsightViews(FakeStudio(bracket_model)).influence("[ab", "[ab", 0)


def test_no_gradient_mode_of_the_caller_gets_in_the_way(bracket_model):
    with torch.inference_mode():
        found = influence(bracket_model, "(abc dcb hgfcea)", 15, method="gradient")
    assert found.strongest(1)[0][:2] == (0, "(")
    assert all(p.grad is None for p in bracket_model.parameters())
