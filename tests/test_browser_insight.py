"""The Inspect view and the Neurons tab in a real browser (Debian's headless chromium driven by Playwright).

Screenshots go to artifacts/ (git-ignored): insight-inspect.png, insight-sweep.png, insight-neurons.png.
"""

from __future__ import annotations

import re

import pytest
from app_testing import ARTIFACTS, browser_page, make_checkpoints

pytestmark = pytest.mark.browser

LENGTH = 120


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    with browser_page(make_checkpoints(tmp_path_factory.mktemp("shipped"))) as page:
        yield page


def generate(page) -> str:
    page.locator("#generated textarea").wait_for()
    prompt = page.get_by_label("Seed prompt")
    prompt.fill("Once upon a time")
    length = page.get_by_label("Length (characters)").first  # the slider's number box
    length.fill(str(LENGTH))
    length.press("Enter")
    page.get_by_label("Random seed").fill("7")
    page.get_by_role("button", name="Generate", exact=True).click()
    written = len("Once upon a time") + LENGTH
    page.wait_for_function(f"document.querySelector('#generated textarea').value.length >= {written}")
    return page.locator("#generated textarea").input_value()


def test_inspect_colours_generated_text_and_shows_alternatives_on_hover(page):
    text = generate(page)
    page.get_by_role("button", name="Inspect", exact=True).click()
    chars = page.locator("#insight-view span[data-tip]")
    chars.nth(LENGTH - 1).wait_for()
    assert chars.count() == LENGTH
    assert "Once upon a time" in page.locator("#insight-view .prompt").inner_text()
    fifth = chars.nth(4)
    assert re.search(r"^.+: [\d.e-]+%\nthe model's top 5:\n1\. ", fifth.get_attribute("data-tip"))
    assert fifth.evaluate("el => getComputedStyle(el).backgroundColor") not in ("", "rgba(0, 0, 0, 0)")
    fifth.hover()
    tooltip = fifth.evaluate("el => getComputedStyle(el, '::after').content")
    assert "the model's top 5" in tooltip  # the hover tooltip is drawn
    page.screenshot(path=str(ARTIFACTS / "insight-inspect.png"))
    fifth.click()
    # A click pins it, for touch screens.
    assert "the model's top 5" in page.locator("#insight-view .charrnn-detail").inner_text()
    assert text.startswith("Once upon a time")


def test_temperature_side_by_side_and_originality(page):
    page.get_by_role("button", name="Temperature side by side").click()
    page.locator("#insight-view .charrnn-columns h4").nth(4).wait_for()
    headers = page.locator("#insight-view .charrnn-columns h4").all_inner_texts()
    assert headers == [f"temperature {t}" for t in ("0.2", "0.5", "0.8", "1", "1.3")]
    page.screenshot(path=str(ARTIFACTS / "insight-sweep.png"))
    page.get_by_role("button", name="Originality check").click()
    page.get_by_text("appears word for word in the training text").wait_for()


def test_neurons_tab_colours_by_a_cell_and_finds_cells(page):
    page.get_by_role("tab", name="Neurons").click()
    page.get_by_role("button", name="Colour by this cell").click()
    cells = page.locator("#neuron-view span[data-tip]")
    cells.first.wait_for()
    assert "tanh(c) = " in cells.first.get_attribute("data-tip")
    page.get_by_role("button", name="Find interesting cells").click()
    page.locator("#cells-how").get_by_text("Pearson").wait_for()
    cell = page.locator("#cells [data-testid='cell-0-3']")  # first row, unit column
    cell.wait_for()
    feature, rank, layer, unit = (page.locator(f"#cells [data-testid='cell-0-{i}']").inner_text().strip()
                                  for i in range(4))
    assert feature == "position in line" and rank == "1"  # the test model never saw a quote, so quotes are not ranked
    cell.click()  # one click shows that cell
    page.wait_for_function(f"document.querySelector('#neuron-unit input').value === '{unit}'")
    page.locator("#neuron-view .charrnn-legend").get_by_text(f"layer {layer}, unit {unit}").wait_for()
    page.screenshot(path=str(ARTIFACTS / "insight-neurons.png"), full_page=True)
