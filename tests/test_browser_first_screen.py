"""The first screen a visitor meets, in headless chromium on the shipped models: at a desktop window
(1400x900) and a phone (390x844), in English and in Chinese.

What is checked: Generate lies within the first screen (and at 1400x900 the prompt, model, temperature
and the start of the generated text too); Stop is quiet (disabled, not red) until something runs,
and red while it runs; a Chinese browser opens on the Tang model with Chinese examples, whose titles
start a poem under them; the Model box is never empty once the page shows it. Screenshots go to
artifacts/first-screen-*.png (git-ignored); docs/ holds copies for the README.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
from app_testing import ARTIFACTS, CHROMIUM, serve

pytestmark = pytest.mark.browser

DESKTOP, PHONE = (1400, 900), (390, 844)
LOCALES = {"en": "en-US", "zh": "zh-CN"}
OPENS_ON = {"en": "fairy-tales (shipped)", "zh": "tang-poems (shipped)"}
FIRST_EXAMPLES = {"en": "Once upon a time there was a king", "zh": "春曉"}
SETTLE_MS = 6000  # the page's load events (models, then the examples) end well within this on an idle machine
# The Model box's value, the prompt and the examples' text, sampled every frame from the first paint.
WATCH_MODEL_BOX = """() => { window.__modelValues = []; const look = () => {
  const input = document.querySelector('#generate-model input');
  if (input) window.__modelValues.push(input.value);
  if (window.__modelValues.length < 2000) requestAnimationFrame(look); }; look(); }"""


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium through Playwright, and the app served on the shipped models (the Tang one among them)."""
    from charrnn.checkpoint import SHIPPED_ROOT

    chromium = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not chromium:
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (`make browser` installs it)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (requirements-dev.txt)")
    demo, url = serve(SHIPPED_ROOT)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with playwright_api.sync_playwright() as p:
            chrome = p.chromium.launch(executable_path=chromium, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update"])
            yield chrome, url
            chrome.close()
    finally:
        demo.close()


@contextlib.contextmanager
def first_screen(browser, language: str, size: tuple[int, int]):
    """A fresh page for a browser in language at size, once the Generate tab has settled on its model."""
    chrome, url = browser
    page = chrome.new_page(viewport={"width": size[0], "height": size[1]}, locale=LOCALES[language])
    page.set_default_timeout(60_000)
    page.add_init_script(f"window.addEventListener('DOMContentLoaded', {WATCH_MODEL_BOX})")
    try:
        page.goto(url)
        page.wait_for_function("(v => document.querySelector('#generate-model input')?.value === v)",
                               arg=OPENS_ON[language])
        page.get_by_text(FIRST_EXAMPLES[language]).first.wait_for()
        yield page
    finally:
        page.close()


def bottom(page, selector: str) -> float:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, f"{selector} is not shown"
    return box["y"] + box["height"]


def stop_state(page) -> dict:
    return page.locator("#stop-btn").evaluate(
        "b => ({disabled: b.disabled, red: b.classList.contains('stop'), bg: getComputedStyle(b).backgroundColor})")


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["1400x900", "390x844"])
@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_first_screen(browser, language, size):
    with first_screen(browser, language, size) as page:
        page.wait_for_timeout(500)  # anything still to come from the load events would have come by now
        height = size[1]
        assert bottom(page, "#generate-btn") <= height, "Generate is below the first screen"
        if size == DESKTOP:
            for part in ("#generate-model", "#temperature", "textarea"):  # the first textarea is the prompt
                assert bottom(page, part) <= height, f"{part} is below the first screen"
            assert page.locator("#generated textarea").bounding_box()["y"] < height / 2
        quiet = stop_state(page)
        assert quiet["disabled"] and not quiet["red"], f"Stop is as prominent as Generate with nothing running: {quiet}"
        values = page.evaluate("window.__modelValues")
        assert values and all(values), f"the Model box was empty while the page filled: {values[:5]}…"
        examples = page.locator("#example-prompts").inner_text()
        if language == "zh":
            assert "靜夜思" in examples and "Once upon" not in examples, examples
            assert page.locator("textarea").first.input_value() == "春曉\n"
        else:
            assert "Once upon a time there was a king" in examples and "靜夜思" not in examples, examples
        page.screenshot(path=str(ARTIFACTS / f"first-screen-{language}-{size[0]}x{size[1]}.png"))


def test_stop_is_red_while_the_text_is_written_and_quiet_again_after(browser):
    with first_screen(browser, "en", DESKTOP) as page:
        length = page.get_by_label("Length (characters)").first
        length.fill("2000")
        length.press("Enter")
        page.locator("#generate-btn").click()
        running = "(b => !b.disabled && b.classList.contains('stop'))(document.querySelector('#stop-btn'))"
        page.wait_for_function(running)  # set in the browser by the click, before the server answers
        page.wait_for_function("document.querySelector('#generated textarea').value.length >= 16 + 2000")
        page.wait_for_function("document.querySelector('#stop-btn').disabled")
        assert not stop_state(page)["red"]


def test_a_chinese_title_starts_a_poem_under_it(browser):
    with first_screen(browser, "zh", DESKTOP) as page:
        page.locator("#example-prompts").get_by_text("靜夜思", exact=True).click()
        page.wait_for_function("document.querySelector('textarea').value === '靜夜思\\n'")  # the title, then a new line
        length = page.get_by_label("长度（字符）").first
        length.fill("40")
        length.press("Enter")
        page.get_by_label("随机种子").fill("3")
        page.locator("#generate-btn").click()
        page.wait_for_function("document.querySelector('#generated textarea').value.length >= 4 + 40")
        title, first_line = page.locator("#generated textarea").input_value().split("\n")[:2]
        assert title == "靜夜思"
        assert sum("\u4e00" <= c <= "\u9fff" for c in first_line) >= 5, first_line  # a line of verse, not a title
