"""A restart leaves nothing behind: SIGTERM (what a Space restart or `docker stop` sends) stops
training and generation, and the app removes its session folders and staged indexes before it exits."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time

import pytest
from app_testing import start_app_process, story_text, tiny_checkpoints

from webapp import limits
from webapp.session import Sessions

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402


def test_sigterm_mid_training_stops_it_and_leaves_no_files(tmp_path):
    temp = tmp_path / "temp"  # the app's temp directory: whatever it leaves is here
    temp.mkdir()
    env = {"TMPDIR": str(temp), "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    proc, url = start_app_process(tiny_checkpoints(), env, tmp_path / "app.log")
    try:
        upload = tmp_path / "interrupted.txt"
        upload.write_text(story_text(300, seed=9))
        trainer, writer = Client(url, verbose=False), Client(url, verbose=False)
        job = trainer.submit(handle_file(str(upload)), "fairy-tales", limits.DEFAULT_SIZE_PRESET,
                             limits.MAX_TIME_BUDGET_MIN, "as the base model", 0, 0, api_name="/train")
        deadline = time.monotonic() + 60
        while not any("step" in str(o[0]) for o in job.outputs()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert any("step" in str(o[0]) for o in job.outputs()), "training never started"
        writer.submit("Once", 0.8, limits.MAX_GENERATE_CHARS, "1", "fairy-tales", "", 0, 1.0, api_name="/generate")
        assert list(temp.glob("charrnn-sessions-*/*")) and list(temp.glob("charrnn-index-*"))  # until the signal
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=limits.SHUTDOWN_WAIT_S + 20) == 0
        assert time.monotonic() - sent < limits.SHUTDOWN_WAIT_S + 10
        assert not list(temp.iterdir()), f"left behind: {sorted(p.name for p in temp.iterdir())}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_killed_apps_sessions_are_removed_by_the_next_start(tmp_path, monkeypatch):
    """Even SIGKILL, which no clean-up survives, leaves nothing once the app starts again."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = tmp_path / f"charrnn-sessions-{dead.pid}-abc"
    (leftover / "some-session" / "model").mkdir(parents=True)
    alive = tmp_path / f"charrnn-sessions-{os.getppid()}-abc"  # another app that still runs keeps its own
    alive.mkdir()
    sessions = Sessions()
    assert not leftover.exists() and alive.exists()
    assert sessions.root.parent == tmp_path and sessions.root.is_dir()
