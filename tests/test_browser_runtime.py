"""Run in my browser, in headless Chromium: the Generate tab's switch runs the model in the page and writes the
server's greedy text, without a call to the server; a fine-tuned model of a session runs there too, and its export
is reachable by that session's page alone and gone with the session.
"""

from __future__ import annotations

import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from app_testing import ARTIFACTS, CHROMIUM, shared_app, shared_demo, story_text, tiny_checkpoints

from charrnn import SampleSettings, sample
from charrnn.checkpoint import load_model
from charrnn.sampling import prepare_prompt
from webapp import limits

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -r requirements-dev.txt)")
if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
    pytest.skip(f"no chromium at {CHROMIUM}: run `make browser` (apt-get install chromium)", allow_module_level=True)
LENGTH = limits.DEFAULT_GENERATE_CHARS  # the page's length, left as it opens


@pytest.fixture(scope="module")
def page():
    url = shared_app()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                     args=["--headless", "--no-sandbox", "--disable-gpu",
                                           "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(60_000)
        sync_api.expect.set_options(timeout=60_000)  # the default 5 s is too short on a busy 2-core machine
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        yield page
        browser.close()
        assert not errors, errors


def generate_in_the_page(page, prompt: str) -> tuple[str, list[str]]:
    """Greedy text from the page's Generate with the switch on; and the server calls made meanwhile."""
    page.get_by_label("Seed prompt").fill(prompt)
    number = page.locator("#temperature input[type=number]")
    number.fill("0")
    number.press("Enter")
    calls = []
    listener = lambda request: calls.append(request.url) if "/queue/join" in request.url else None  # noqa: E731
    page.on("request", listener)
    page.locator("#browser-generate-btn").click()
    output = page.locator("#generated textarea")
    sync_api.expect(output).to_have_attribute("data-done", "true")
    sync_api.expect(page.locator("#stop-btn")).to_be_disabled()  # Stop is quiet again once the page is done
    page.remove_listener("request", listener)
    return output.input_value(), calls


def switch_on(page, model: str) -> None:
    page.get_by_label("Run in my browser").check()
    sync_api.expect(page.locator("#browser-runtime")).to_contain_text(f"{model} writes in your browser")
    sync_api.expect(page.locator("#generate-btn")).to_be_hidden()


def test_the_switch_writes_the_servers_greedy_text_in_the_page(page):
    switch_on(page, "fairy-tales")
    text, calls = generate_in_the_page(page, "Once upon a time")
    model = load_model(tiny_checkpoints() / "fairy-tales", device="cpu")
    expected = sample(model, "Once upon a time", SampleSettings(length=LENGTH, temperature=0))[0]
    assert text == prepare_prompt(model, "Once upon a time")[0] + expected
    assert calls == []  # nothing went through Gradio's queue for this text
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser_switch.png"), full_page=True)

    page.on("request", lambda request: calls.append(request.url) if "/queue/join" in request.url else None)
    page.get_by_label("Seed prompt").fill("The king")
    page.get_by_label("Seed prompt").press("Shift+Enter")  # the prompt's submit runs in the page too
    expected = sample(model, "The king", SampleSettings(length=LENGTH, temperature=0))[0]
    sync_api.expect(page.locator("#generated textarea")).to_have_value("The king" + expected)
    assert calls == []
    page.get_by_label("Run in my browser").uncheck()
    sync_api.expect(page.locator("#generate-btn")).to_be_visible()


def fine_tune(page, tmp_path: Path) -> str:
    """A tiny fine-tune from the Train tab; the name of the session's new model."""
    upload = tmp_path / "private story.txt"
    upload.write_text(story_text(150, seed=9))
    page.get_by_role("tab", name="Train").click()
    page.locator("#upload input[type=file]").set_input_files(str(upload))
    sync_api.expect(page.locator("#upload-info")).to_contain_text("characters")
    page.locator("#train-advanced").get_by_text("Advanced").click()
    steps = page.get_by_label("Stop after this many steps (0 = only the time budget)")
    steps.fill("20")
    steps.press("Tab")
    page.get_by_role("button", name="Start training").click()
    sync_api.expect(page.locator("#train-status")).to_contain_text("Done: private-story", timeout=120_000)
    page.get_by_role("tab", name="Generate").click()
    return "private-story"


def fetch_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_fine_tuned_model_runs_in_its_own_page_only(page, tmp_path):
    name = fine_tune(page, tmp_path)
    exported = []
    page.on("request", lambda r: exported.append(r.url) if r.url.endswith("/charrnn.json") else None)
    sync_api.expect(page.locator("#generate-model input")).to_have_value(re.compile(name))
    switch_on(page, name)
    text, calls = generate_in_the_page(page, "Once upon")
    studio = shared_demo().studio
    session = next(s for s in studio.sessions._live.values() if name in s.models)
    model = studio.load(name, None, session)
    assert text == "Once upon" + sample(model, "Once upon", SampleSettings(length=LENGTH, temperature=0))[0]
    assert calls == []

    (settings_url,) = set(exported)
    folder = settings_url.rsplit("/", 2)[0] + "/"  # the session's random folder
    assert fetch_status(settings_url) == 200  # the address works for the page that was told it
    assert fetch_status(folder) == 403 and fetch_status(folder.rsplit("/", 2)[0] + "/") == 403  # no listing
    from gradio_client import Client

    stranger = Client(shared_app(), verbose=False)  # another visitor, with a session of its own
    with pytest.raises(Exception, match="no model called"):
        stranger.predict(True, name, "", api_name="/browser_model")
    studio.sessions.end(session.id)
    assert fetch_status(settings_url) == 403  # gone with the session
