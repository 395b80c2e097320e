"""Branching on an alternative: Studio.branch called directly, the page's undo glue, and the /branch endpoint."""

from __future__ import annotations

import gradio as gr
import pytest
from app_testing import shared_app

from charrnn.vocab import UNK
from webapp import limits
from webapp.generate_tab import Generator
from webapp.insight_box import InsightViews, pick_branch, pick_position, undo_branch

PROMPT = "Once upon"
LENGTH = 100


@pytest.fixture
def written(studio) -> str:
    """The Generate box after a generation: the prompt, then LENGTH characters of the model's."""
    return list(Generator(studio).generate(PROMPT, 0.8, LENGTH, "7", "fairy-tales"))[-1][0]


def another_alternative(studio, text: str, position: int) -> str:
    """One of the five characters Inspect lists at position, other than the one written there."""
    _, data = InsightViews(studio).inspect(PROMPT, text, "fairy-tales")
    chosen = data["chars"][position]["char"]
    return next(c for c, _ in data["chars"][position]["alternatives"] if c != chosen)


def test_a_branch_writes_on_from_the_cut_with_the_alternative(studio, written):
    generated = written[len(PROMPT):]
    position = 20
    alternative = another_alternative(studio, written, position)
    outs = list(Generator(studio).branch(PROMPT, written, position, alternative, 0.8, LENGTH, "3", "fairy-tales"))
    texts = [text for text, _ in outs]
    cut = PROMPT + generated[:position] + alternative
    assert texts[0] == cut  # shown at once
    assert all(a == b[: len(a)] for a, b in zip(texts, texts[1:]))  # then grows, never rewrites
    assert len(texts[-1]) == len(PROMPT) + LENGTH and outs[-1][1] == "3"
    # The continuation is what generating from the cut writes with the same settings.
    again = list(Generator(studio).generate(cut, 0.8, LENGTH - position - 1, "3", "fairy-tales"))[-1]
    assert outs[-1] == again
    repeat = list(Generator(studio).branch(PROMPT, written, position, alternative, 0.8, LENGTH, "3", "fairy-tales"))
    assert repeat[-1] == outs[-1]


def test_a_branch_at_the_last_character_or_past_the_length_writes_nothing_more(studio, written):
    generated = written[len(PROMPT):]
    last = len(generated) - 1
    outs = list(Generator(studio).branch(PROMPT, written, last, "a", 0.8, LENGTH, "1", None))
    assert outs[-1] == (written[:-1] + "a", "1")
    # A shorter length than the cut (the slider moved since): the cut and the alternative, nothing after.
    text, _ = list(Generator(studio).branch(PROMPT, written, 50, "a", 0.8, 10, "1", None))[-1]
    assert text == PROMPT + generated[:50] + "a"


def test_a_branch_without_a_prompt_in_the_box_cuts_the_whole_text(studio, written):
    generated = written[len(PROMPT):]
    text, _ = list(Generator(studio).branch("", generated, 5, "e", 0.0, 30, "1", None))[-1]
    assert text.startswith(generated[:5] + "e") and len(text) == 30


@pytest.mark.parametrize(("position", "alternative", "message"), [
    (LENGTH, "a", f"position must be a whole number from 0 to {LENGTH - 1}"),
    (10**6, "a", "position"),
    (-1, "a", "position"),
    (2.5, "a", "not 2.5"),
    ("3", "a", "not '3'"),
    (None, "a", "position"),
    (3, "ab", "exactly one character, not 'ab'"),
    (3, "", "exactly one character"),
    (3, None, "exactly one character"),
    (3, "✓", "does not know the character '✓'"),
    (3, UNK, "does not know"),
])
def test_bad_branch_requests_get_a_one_line_error(studio, written, position, alternative, message):
    with pytest.raises(gr.Error, match=message) as error:
        list(Generator(studio).branch(PROMPT, written, position, alternative, 0.8, LENGTH, "1", "fairy-tales"))
    assert "\n" not in str(error.value)


def test_a_branch_needs_generated_text_and_good_settings(studio, written):
    with pytest.raises(gr.Error, match="Generate first"):
        list(Generator(studio).branch(PROMPT, PROMPT, 0, "a"))
    with pytest.raises(gr.Error, match="temperature"):
        list(Generator(studio).branch(PROMPT, written, 3, "a", -1))
    with pytest.raises(gr.Error, match="no model called 'nope'"):
        list(Generator(studio).branch(PROMPT, written, 3, "a", model="nope"))


def test_the_page_keeps_what_a_branch_replaced_for_undo():
    evt = gr.EventData(None, {"position": 12, "char": "e"})
    position, char, history, undo, why = pick_branch("the text", ["older"], evt)
    assert (position, char, history, why) == (12, "e", ["older", "the text"], "")
    assert undo["interactive"] is True
    full = [str(i) for i in range(limits.MAX_BRANCH_HISTORY)]
    assert pick_branch("new", full, evt)[2][-1] == "new"
    assert len(pick_branch("new", full, evt)[2]) == limits.MAX_BRANCH_HISTORY
    previous, rest, undo = undo_branch(["first", "second"])
    assert (previous, rest, undo["interactive"]) == ("second", ["first"], True)
    assert undo_branch(["only"])[2]["interactive"] is False
    with pytest.raises(gr.Error, match="no branch to undo"):
        undo_branch([])
    with pytest.raises(gr.Error, match="position"):
        pick_branch("text", [], gr.EventData(None, {"position": "x", "char": "e"}))
    assert pick_position(gr.EventData(None, {"position": 4})) == 4
    with pytest.raises(gr.Error, match="position"):
        pick_position(gr.EventData(None, {}))


def test_branch_and_influence_are_api_endpoints():
    """The calls docs/api.md documents, through gradio_client against the served app."""
    gradio_client = pytest.importorskip("gradio_client")
    c = gradio_client.Client(shared_app(), verbose=False)
    text, _ = c.predict(PROMPT, 0.8, 60, "1", "fairy-tales", "", 0, 1.0, api_name="/generate")
    branched, used = c.predict(PROMPT, text, 10, "e", 0.8, 60, "2", "fairy-tales", "", 0, 1.0, api_name="/branch")
    assert branched.startswith(text[: len(PROMPT) + 10] + "e") and len(branched) == len(text) and used == "2"
    _, data = c.predict(PROMPT, branched, 10, "fairy-tales", "", api_name="/influence")
    assert data["char"] == "e" and len(data["chars"]) == len(PROMPT) + 10 and data["method"] == "occlusion"
    with pytest.raises(Exception, match="exactly one character"):
        c.predict(PROMPT, text, 10, "ee", 0.8, 60, "2", "fairy-tales", "", 0, 1.0, api_name="/branch")
    with pytest.raises(Exception, match="position must be a whole number from 0 to 59"):
        c.predict(PROMPT, text, 60, "fairy-tales", "", api_name="/influence")
