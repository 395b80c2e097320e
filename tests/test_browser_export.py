"""`charrnn export --format web` in headless Chromium: the folder served as static files by a local HTTP server,
driven from its address, writes the server's greedy text, repeats a seed, and stops.

A screenshot goes to artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path
from urllib.parse import urlencode

import pytest
import torch

from charrnn import SampleSettings, sample
from charrnn.checkpoint import SHIPPED, load_model
from charrnn.export import export_model
from charrnn.model import CharRNN
from charrnn.sampling import prepare_prompt
from charrnn.vocab import Vocab

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -r requirements-dev.txt)")
if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
    pytest.skip(f"no chromium at {CHROMIUM}: run `make browser` (apt-get install chromium)", allow_module_level=True)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002, ARG002
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A folder served on 127.0.0.1 as any static host would; exports go into it, one per subfolder."""
    root = tmp_path_factory.mktemp("site")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.fixture(scope="module")
def page():
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                     args=["--headless", "--no-sandbox", "--disable-gpu",
                                           "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.set_default_timeout(60_000)
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
        browser.close()
        assert not errors, errors


def tiny_gru() -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(list(Vocab.build(["the cat sat on a mat.\n"]).chars), cell="gru", num_layers=2, hidden_size=40,
                   embedding_dim=8)


MODELS = {"fairy-tales": ("Once upon a time", lambda: load_model(SHIPPED["fairy-tales"], device="cpu")),
          "tang-poems": ("春眠不覺曉", lambda: load_model(SHIPPED["tang-poems"], device="cpu")),
          "tiny-gru": ("the cat", tiny_gru)}


def open_page(page, url: str, **settings) -> str:
    """The page at url driven by its address; the text in #output once it is done."""
    page.goto(f"{url}/?{urlencode(settings | {'run': 1})}")
    sync_api.expect(page.locator("#output")).to_have_attribute("data-done", "true")
    return page.locator("#output").text_content()


@pytest.mark.parametrize("name", list(MODELS))
def test_the_page_writes_the_servers_greedy_text(name, served, page):
    root, url = served
    prompt, build = MODELS[name]
    model = build()
    export_model(model, root / name, "web", dtype="fp32" if name == "tiny-gru" else None, name=name)  # both dtypes
    expected = sample(model, prompt, SampleSettings(length=200, temperature=0))[0]
    shown = open_page(page, f"{url}/{name}", prompt=prompt, temperature=0, length=200, seed=1)
    assert shown == prepare_prompt(model, prompt)[0] + expected
    if name == "fairy-tales":
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web_export.png"), full_page=True)


def test_a_seed_writes_the_same_text_every_time_and_stop_ends_it(served, page):
    root, url = served
    export_model(load_model(SHIPPED["shakespeare"], device="cpu"), root / "seeded", "web")
    settings = {"prompt": "ROMEO:\n", "temperature": 0.9, "top_k": 20, "top_p": 0.95, "seed": 7, "length": 300}
    first = open_page(page, f"{url}/seeded", **settings)
    assert open_page(page, f"{url}/seeded", **settings) == first and len(first) == len("ROMEO:\n") + 300
    assert open_page(page, f"{url}/seeded", **settings | {"seed": 8}) != first
    stopped = open_page(page, f"{url}/seeded", **settings | {"stop": "\n"})
    assert stopped.endswith("\n") and "\n" not in stopped[len("ROMEO:\n"):-1]
    page.locator("#stop").fill("")
    page.locator("#length").fill("100000")
    page.get_by_role("button", name="Generate").click()
    sync_api.expect(page.locator("#output")).to_have_attribute("data-done", "false")
    page.get_by_role("button", name="Stop").click()
    sync_api.expect(page.locator("#output")).to_have_attribute("data-done", "true")
    assert len(page.locator("#output").text_content()) < 100_000
    open_page(page, f"{url}/seeded", **settings | {"temperature": -1})
    sync_api.expect(page.locator("#status")).to_contain_text("temperature must be a number, 0 or more")


@pytest.mark.parametrize("name", ["fairy-tales", "shakespeare"])
def test_the_page_reads_a_prompt_as_the_server_does(name, served, page):
    root, url = served
    model = load_model(SHIPPED[name], device="cpu")
    export_model(model, root / f"prompt-{name}", "web")
    prompt = "“Hello,” said the café’s owner — naïve!\r\nÆsop… ½"
    assert open_page(page, f"{url}/prompt-{name}", prompt=prompt, length=0) == prepare_prompt(model, prompt)[0]


def test_the_module_streams_into_a_textarea(served, page):
    """charrnn-web.js called as the Generate tab will call it: a textarea gets the prompt and the text, with input
    events, and the stop string ends it."""
    root, url = served
    model = load_model(SHIPPED["fairy-tales"], device="cpu")
    export_model(model, root / "module", "web")
    expected = sample(model, "The king", SampleSettings(length=300, temperature=0, stop=("\n",)))[0]
    page.goto(f"{url}/module/index.html")
    result = page.evaluate("""async () => {
      const {BrowserModel} = await import("./charrnn-web.js");
      const model = await BrowserModel.load(".");
      const box = document.body.appendChild(document.createElement("textarea"));
      let inputs = 0;
      box.addEventListener("input", () => inputs++);
      const run = model.generate({prompt: "The king", temperature: 0, length: 300, stop: "\\n"}, box);
      const done = await run.done;
      return {value: box.value, done: box.dataset.done, inputs, stoppedAt: done.stoppedAt, text: done.text};
    }""")
    assert result["value"] == "The king" + expected and result["text"] == expected
    assert result["done"] == "true" and result["stoppedAt"] == "\n" and result["inputs"] >= 2
