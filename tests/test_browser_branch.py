"""Branching on an alternative and "Why this character?" in a real browser (Debian's headless chromium, Playwright).

Screenshots go to artifacts/ (git-ignored): influence.png, branch.png.
"""

from __future__ import annotations

import pytest
from app_testing import ARTIFACTS, browser_page, make_checkpoints

pytestmark = pytest.mark.browser

PROMPT = "Once upon a time"
LENGTH = 120
AT = 30  # the generated character clicked


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    with browser_page(make_checkpoints(tmp_path_factory.mktemp("shipped")), height=1400) as page:
        yield page


def box(page) -> str:
    return page.locator("#generated textarea").input_value()


def generate_and_inspect(page) -> str:
    page.locator("#generated textarea").wait_for()
    page.get_by_label("Seed prompt").fill(PROMPT)
    length = page.get_by_label("Length (characters)").first  # the slider's number box
    length.fill(str(LENGTH))
    length.press("Enter")
    page.get_by_label("Random seed").fill("7")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.wait_for_function(f"document.querySelector('#generated textarea').value.length >= {len(PROMPT) + LENGTH}")
    page.get_by_role("button", name="Inspect", exact=True).click()
    page.locator("#insight-view span[data-pos]").nth(LENGTH - 1).wait_for()
    return box(page)


def test_clicking_a_character_shows_why_the_model_wrote_it(page):
    text = generate_and_inspect(page)
    page.locator("#insight-view span[data-pos]").nth(AT).click()
    chosen = page.locator("#influence-view .chosen")
    chosen.wait_for()
    written = text[len(PROMPT) + AT]
    assert chosen.get_attribute("data-tip").startswith({"\n": "↵", " ": "␣"}.get(written, written) + ": ")
    assert f"At position {AT}" in page.locator("#influence-view").inner_text()
    shaded = page.locator("#influence-view span[data-tip]")
    assert shaded.count() == len(PROMPT) + AT + 1  # every earlier character (the prompt's too), and the chosen one
    assert "nats" in shaded.first.get_attribute("data-tip")
    page.locator("#influence-view .charrnn-legend").get_by_text("raised", exact=True).wait_for()
    # The click also pinned the character's tip, with its five alternatives as buttons.
    assert "the model's top 5" in page.locator("#insight-view .charrnn-detail").inner_text()
    assert page.locator("#insight-view .charrnn-alt").count() == 5
    page.locator("#influence-view").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "influence.png"), full_page=True)


def test_clicking_an_alternative_branches_and_undo_brings_the_text_back(page):
    text = box(page)
    undo = page.get_by_role("button", name="Undo branch")
    assert undo.is_disabled()  # nothing to undo yet
    buttons = page.locator("#insight-view .charrnn-alt")
    written = text[len(PROMPT) + AT]
    pick = next(i for i in range(buttons.count()) if buttons.nth(i).get_attribute("data-char") != written)
    assert buttons.nth(pick).get_attribute("data-pos") == str(AT)
    alternative = buttons.nth(pick).get_attribute("data-char")
    buttons.nth(pick).click()
    cut = text[: len(PROMPT) + AT] + alternative
    page.wait_for_function("([cut, n]) => { const v = document.querySelector('#generated textarea').value;"
                           " return v.startsWith(cut) && v.length === n; }", arg=[cut, len(text)])
    branched = box(page)
    assert branched != text
    # The Inspect view is drawn again for the branched text.
    page.wait_for_function("(n) => document.querySelector('#insight-view span[data-pos=\"' + n + '\"]')"
                           "?.dataset.tip.startsWith(" + repr(_shown(alternative) + ": ") + ")", arg=AT)
    assert page.locator("#influence-view .chosen").count() == 0  # its positions belonged to the old text
    page.locator("#generated").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "branch.png"), full_page=True)
    page.wait_for_function("() => !document.querySelector('#undo-branch').disabled")
    undo.click()
    page.wait_for_function("(t) => document.querySelector('#generated textarea').value === t", arg=text)
    page.wait_for_function("() => document.querySelector('#undo-branch').disabled")
    assert box(page) == text


def _shown(char: str) -> str:
    return {"\n": "↵", "\t": "⇥", " ": "␣"}.get(char, char)
