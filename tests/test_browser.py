"""The app in headless Chromium: generate from the page, then fine-tune from an uploaded file.

Screenshots of both tabs go to artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from app_testing import shared_app, story_text

CHROMIUM = os.environ.get("CHARRNN_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -r requirements-dev.txt)")
if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
    pytest.skip(f"no chromium at {CHROMIUM}: run `make browser` (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def page():
    url = shared_app()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(60_000)
        sync_api.expect.set_options(timeout=60_000)  # the default 5 s is too short on a busy 2-core machine
        page.goto(url)
        yield page
        browser.close()


def test_generate_in_the_browser(page):
    ARTIFACTS.mkdir(exist_ok=True)
    prompt = page.get_by_label("Seed prompt")
    prompt.fill("Once upon a time")
    slider = page.locator("#temperature input[type=range]")
    slider.fill("1.2")
    sync_api.expect(page.locator("#temperature input[type=number]")).to_have_value("1.2")
    page.get_by_label("Random seed").fill("3")
    page.get_by_role("button", name="Generate", exact=True).click()
    output = page.locator("#generated textarea")
    sync_api.expect(output).to_have_value(re.compile(r"^Once upon a time.{20,}", re.S))
    sync_api.expect(page.locator("#seed-used input, #seed-used textarea")).to_have_value("3")
    page.screenshot(path=str(ARTIFACTS / "generate_tab.png"), full_page=True)


@pytest.mark.alone  # its run has a time budget
def test_fine_tune_in_the_browser(page, tmp_path):
    upload = tmp_path / "little story.txt"
    upload.write_text(story_text(150, seed=4))
    page.get_by_role("tab", name="Train").click()
    page.locator("#upload input[type=file]").set_input_files(str(upload))
    sync_api.expect(page.locator("#upload-info")).to_contain_text("characters")
    page.locator("#train-advanced").get_by_text("Advanced").click()
    steps = page.get_by_label("Stop after this many steps (0 = only the time budget)")
    steps.fill("150")
    steps.press("Tab")
    page.get_by_role("button", name="Start training").click()
    status = page.locator("#train-status")
    sync_api.expect(status).to_contain_text(re.compile(r"step [0-9,]+ · loss"))  # live progress
    sync_api.expect(status).to_contain_text("Done: little-story", timeout=120_000)
    sync_api.expect(page.locator("#loss-plot canvas, #loss-plot svg").first).to_be_visible()
    sync_api.expect(page.locator("#loss-plot")).to_contain_text("validation")  # both curves are drawn
    sync_api.expect(page.locator("#download")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "train_tab.png"), full_page=True)
