"""Shared set-up for the app tests: a folder of tiny trained models and a served app."""

from __future__ import annotations

import atexit
import contextlib
import functools
import random
import shutil
import socket
import tempfile
from pathlib import Path

import torch

from charrnn.train import TrainConfig, train

WORDS = ("once upon a time there was a king who had three daughters and the youngest was so beautiful "
         "that the sun itself was astonished whenever it shone in her face").split()


def story_text(lines: int = 400, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "\n".join(" ".join(rng.choice(WORDS) for _ in range(10)).capitalize() + "." for _ in range(lines)) + "\n"


def make_checkpoints(root: Path) -> Path:
    """root/fairy-tales: a tiny LSTM trained for a few dozen steps, standing in for the shipped model."""
    # One thread: on a busy 2-core machine, OpenMP threads fighting for cores make a tiny LSTM ~7x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    config = TrainConfig(num_layers=1, hidden_size=32, embedding_dim=16, batch_size=8, seq_len=32, max_steps=40,
                         eval_interval=20, lr=1e-2, seed=1)
    try:
        for _ in train([story_text()], root / "fairy-tales", config):
            pass
    finally:
        torch.set_num_threads(threads)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@functools.cache
def tiny_checkpoints() -> Path:
    """One folder of tiny models for all the app tests in this pytest run."""
    root = Path(tempfile.mkdtemp(prefix="charrnn-test-checkpoints-"))
    atexit.register(shutil.rmtree, root, True)
    return make_checkpoints(root)


@functools.cache
def _shared():
    demo, url = serve(tiny_checkpoints())
    atexit.register(demo.close)
    return demo, url


def shared_app() -> str:
    """One served app for the client and browser tests (starting one costs seconds); returns its URL."""
    return _shared()[1]


def shared_demo():
    return _shared()[0]


def serve(checkpoints: Path):
    """Launch the app in this process on a free port; returns (demo, url)."""
    from app import build_app
    from webapp import limits

    demo = build_app(checkpoints)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=limits.MAX_UPLOAD_BYTES)
    return demo, f"http://127.0.0.1:{port}/"


def start_app_process(checkpoints: Path, env: dict[str, str], log: Path):
    """Run `python app.py` on a free port as a separate process; returns (process, url) once it answers."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    root = Path(__file__).resolve().parent.parent
    port = free_port()
    env = os.environ | {"CHARRNN_CHECKPOINTS": str(checkpoints), "GRADIO_ANALYTICS_ENABLED": "False"} | env
    proc = subprocess.Popen([sys.executable, str(root / "app.py"), "--port", str(port)], cwd=root, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"the app did not start: {log.read_text()[-2000:]}")


CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"  # screenshots for a person to look at (git-ignored)


@contextlib.contextmanager
def browser_page(checkpoints: Path, height: int = 1300, locale: str | None = None):
    """The app served on checkpoints, open in Debian's headless chromium through Playwright; skips the
    test when either is missing."""
    import pytest

    chromium = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not chromium:
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (`make browser` installs it)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (requirements-dev.txt)")
    demo, url = serve(checkpoints)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update"])
            page = browser.new_page(viewport={"width": 1400, "height": height},
                                    **({"locale": locale} if locale else {}))
            page.set_default_timeout(60_000)
            page.goto(url)
            yield page
            browser.close()
    finally:
        demo.close()
