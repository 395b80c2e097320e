"""Stop pressed during a generation, over and over, in headless chromium on the shipped model.

Each time, the text written so far stays in "Generated text" and the seed in "Seed used": no red
Error badge takes their place, and Stop is quiet again afterwards.
"""

from __future__ import annotations

import pytest
from app_testing import browser_page

pytestmark = pytest.mark.browser

ROUNDS = 15
OUTPUTS = "#generated, #seed-used"


@pytest.fixture(scope="module")
def page():
    from charrnn.checkpoint import SHIPPED_ROOT

    with browser_page(SHIPPED_ROOT) as page:
        yield page


def test_stop_never_leaves_an_error_badge_over_the_text(page):
    expect = pytest.importorskip("playwright.sync_api").expect
    length = page.get_by_label("Length (characters)").first  # the slider's number box
    length.fill("2000")
    length.press("Tab")
    text = page.locator("#generated textarea")
    seed = page.locator("#seed-used input, #seed-used textarea")
    stop = page.locator("#stop-btn")
    for round_ in range(ROUNDS):
        page.get_by_label("Random seed").fill(str(round_))
        page.locator("#generate-btn").click()
        expect(stop).to_be_enabled()
        page.wait_for_timeout(150 + 60 * (round_ % 5))  # Stop at different moments of the stream
        stop.click()
        page.wait_for_function("document.querySelector('#stop-btn').disabled")
        page.wait_for_timeout(400)  # what a late update or error would do has time to show
        assert page.locator(f":is({OUTPUTS}) .error").count() == 0, f"round {round_}: an Error badge"
        expect(seed).to_have_value(str(round_))
        assert text.input_value().startswith("Once upon a time"), f"round {round_}: {text.input_value()[:80]!r}"
