"""Isolation and limits of the running app, driven over HTTP as a hostile visitor would.

Two sessions cannot reach each other's models, Gradio's file routes serve nothing outside
the app's own folders, a closed tab frees its training slot and leaves no files behind,
and the limits in webapp/limits.py hold over the API and are the ones the README lists.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from app_testing import serve, shared_app, shared_demo, story_text, tiny_checkpoints

from webapp import limits

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIZE = limits.DEFAULT_SIZE_PRESET


@pytest.fixture(scope="module")
def app_url() -> str:
    return shared_app()


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def generate(client: Client, model: str = "fairy-tales", hub: str = "", length: int = 20, prompt: str = "Once"):
    return client.predict(prompt, 0.8, length, "1", model, hub, 0, 1.0, api_name="/generate")


def fine_tune(client: Client, upload: Path, max_steps: int = 8, minutes: int = 1) -> tuple:
    return client.predict(handle_file(str(upload)), "fairy-tales", SIZE, minutes, "as the base model", 0, max_steps,
                          api_name="/train")


def session_dirs(client: Client) -> list[Path]:
    root = shared_demo().studio.sessions.root
    return [d for d in root.iterdir() if d.name.startswith(client.session_hash[:16])]


# --- file routes ---------------------------------------------------------------------------------------

SECRET_PATHS = [
    "/etc/passwd", "../../../../etc/passwd", "..%2F..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "//etc/passwd",
    "/tmp/gradio/../../etc/passwd", "/proc/self/environ", "~/.bashrc", "app.py", str(ROOT / "app.py"),
    "checkpoints/../app.py", str(ROOT / "webapp" / "session.py"), "/work/../etc/shadow",
]


@pytest.mark.parametrize("path", SECRET_PATHS)
def test_file_routes_serve_nothing_outside_the_apps_folders(app_url, path):
    base = app_url.rstrip("/")
    for route in ("/gradio_api/file=", "/file=", "/gradio_api/file/", "/gradio_api/static/", "/static/", "/assets/"):
        status, body = fetch(base + route + path)
        assert status in (403, 404), f"{route}{path} answered {status}"
        assert b"root:" not in body and b"import " not in body and b"PATH=" not in body


def test_uploads_naming_server_files_are_refused(app_url):
    """A client can put any path in a FileData payload; the app must not read it."""
    client = Client(app_url, verbose=False)
    for path in ("/etc/passwd", "../../../../etc/passwd", str(tiny_checkpoints() / "fairy-tales" / "config.json")):
        payload = {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "story.txt"}
        for api, args in (("/read_upload", ("fairy-tales", "as the base model")),
                          ("/train", ("fairy-tales", SIZE, 1, "as the base model", 0, 5))):
            with pytest.raises(AppError) as info:
                client.predict(payload, *args, api_name=api)
            assert "root:" not in str(info.value)
    assert not session_dirs(client)  # nothing was trained


# --- two sessions ---------------------------------------------------------------------------------------

def test_a_session_cannot_see_pick_download_or_generate_with_anothers_model(app_url, tmp_path):
    upload = tmp_path / "alices-secret.txt"
    upload.write_text(story_text(150, seed=11))
    alice, bob = Client(app_url, verbose=False), Client(app_url, verbose=False)
    status, _, _, picker, _, download = fine_tune(alice, upload)
    assert "Done: alices-secret" in status and picker["value"] == "alices-secret"
    assert len(generate(alice, "alices-secret")[0]) == 24
    model_dir = session_dirs(alice)[0] / "alices-secret"
    assert (model_dir / "model.safetensors").is_file()

    # See: Bob's pickers list the shipped models only.
    generate_picker, base_picker = bob.predict(api_name="/models")
    assert "alices-secret" not in str(generate_picker) + str(base_picker)
    # Pick / generate: by name, by path, as a Hub repo id, with path tricks.
    guesses = ["alices-secret", str(model_dir), str(model_dir.parent), f"../{model_dir.parent.name}/alices-secret",
               str(model_dir / "model.safetensors")]
    for guess in guesses:
        with pytest.raises(AppError, match="no model called|not a Hugging Face Hub repo id"):
            generate(bob, model=guess)
        refused = "not a Hugging Face Hub repo id|no model called|not in the local cache|cannot be reached|not a valid"
        with pytest.raises(AppError, match=refused):
            generate(bob, hub=guess)
        with pytest.raises(AppError, match="no model called"):
            bob.predict(handle_file(str(upload)), guess, SIZE, 1, "as the base model", 0, 3, api_name="/train")
        with pytest.raises(AppError, match="no model called"):
            bob.predict(handle_file(str(upload)), guess, "as the base model", api_name="/read_upload")
    # Download: neither the checkpoint files nor the zip are served by path.
    base = app_url.rstrip("/")
    for path in (model_dir / "model.safetensors", model_dir / "config.json", model_dir.parent / "alices-secret.zip",
                 model_dir):
        status, body = fetch(f"{base}/gradio_api/file={urllib.parse.quote(str(path))}")
        assert status == 403 and body.startswith(b"{\"detail\"")
    # The insight endpoints take a model the same way: no way in there either.
    with pytest.raises(AppError, match="no model called"):
        bob.predict("Once", "Once upon", "alices-secret", "", api_name="/inspect")
    # And Alice still has it.
    assert len(generate(alice, "alices-secret")[0]) == 24
    assert download["value"].endswith("alices-secret.zip")


# --- closing the tab -----------------------------------------------------------------------------------

def wait_for(condition, timeout: float, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def test_closing_the_tab_mid_training_cancels_it_frees_the_slot_and_leaves_no_files(app_url, tmp_path):
    upload = tmp_path / "long-tale.txt"
    upload.write_text(story_text(300, seed=5))
    leaver, next_visitor = Client(app_url, verbose=False), Client(app_url, verbose=False)
    # A 30-minute budget: only the closed tab can end this run in time.
    leaving = leaver.submit(handle_file(str(upload)), "fairy-tales", SIZE, limits.MAX_TIME_BUDGET_MIN,
                            "as the base model", 0, 0, api_name="/train")
    started = wait_for(lambda: any("Training long-tale" in str(o[0]) for o in leaving.outputs()), 60)
    assert started, "training never started"
    mine = session_dirs(leaver)
    assert mine
    waiting = next_visitor.submit(handle_file(str(upload)), "fairy-tales", SIZE, 1, "as the base model", 0, 5,
                                  api_name="/train")
    time.sleep(1.0)
    assert not waiting.done()  # one training job at a time: the next visitor waits in the queue
    closed_at = time.monotonic()
    leaver.close()  # the heartbeat stops, as when the tab closes; the app's unload runs
    status = waiting.result(timeout=150)[0]
    assert "Done: long-tale" in status
    assert time.monotonic() - closed_at < 120  # long before the leaver's 30 minutes
    assert wait_for(lambda: not mine[0].exists(), 30), "the closed session's directory was left behind"
    # Nothing of the leaver is left in the sessions folder, not even the model being trained.
    assert not session_dirs(leaver)


def test_a_closed_session_leaves_no_files_behind(app_url, tmp_path):
    """Its models and the downloadable zip Gradio copied into its own cache go with it.

    (The upload's copy stays for Gradio's delete_cache: Gradio keeps one copy per content,
    which another visitor's queued job may share, as the closed-tab test above does.)
    """
    from gradio.utils import get_upload_folder

    cache = Path(get_upload_folder())
    upload = tmp_path / "short-lived.txt"
    upload.write_text(story_text(150, seed=3))
    before = set(cache.glob("*/short-lived.*"))
    visitor = Client(app_url, verbose=False)
    *_, download = fine_tune(visitor, upload, max_steps=5)
    client_copy = Path(download["value"])  # what gradio_client downloaded for us (same machine, same folder)
    server_copies = [p for p in cache.glob("*/short-lived.zip") if p not in before and p != client_copy]
    client_copy.unlink()
    assert len(server_copies) == 1
    mine = session_dirs(visitor)
    assert mine
    visitor.close()
    assert wait_for(lambda: not mine[0].exists(), 45), "the session directory was left behind"
    gone = wait_for(lambda: not any(p.exists() for p in server_copies), 10)
    assert gone, f"left behind: {[p for p in server_copies if p.exists()]}"
    for path in server_copies:
        status, _ = fetch(f"{app_url.rstrip('/')}/gradio_api/file={urllib.parse.quote(str(path))}")
        assert status in (403, 404)


# --- limits --------------------------------------------------------------------------------------------

def test_limits_hold_over_the_api(app_url, tmp_path):
    client = Client(app_url, verbose=False)
    with pytest.raises(AppError, match=f"{limits.MAX_GENERATE_CHARS}|{limits.MAX_GENERATE_CHARS:,}"):
        generate(client, length=limits.MAX_GENERATE_CHARS + 1)
    with pytest.raises(AppError, match="maximum|at most"):
        generate(client, length=10_000_000)
    upload = tmp_path / "budget.txt"
    upload.write_text(story_text(150, seed=4))
    for minutes in (limits.MAX_TIME_BUDGET_MIN + 1, 10**9, 0, -1):
        with pytest.raises(AppError, match=r"time budget|minimum|maximum|greater|less"):
            client.predict(handle_file(str(upload)), "fairy-tales", SIZE, minutes, "as the base model", 0, 0,
                           api_name="/train")
    for hostile in (["fairy-tales"], {"name": "fairy-tales"}, 7):
        with pytest.raises(AppError, match="no model called"):
            client.predict(handle_file(str(upload)), hostile, SIZE, 1, "as the base model", 0, 3, api_name="/train")
    assert not session_dirs(client)


def test_runs_wait_in_line_and_stop_leaves_it_before_they_start(tmp_path, monkeypatch):
    """One run trains; the next ones wait and see their place; one more is told the line is full.

    Stop on a waiting run ends it at once: it never starts, never reaches a step, and leaves no model.
    """
    monkeypatch.setattr(limits, "MAX_TRAIN_WAITING", 3)
    demo, url = serve(tiny_checkpoints())
    try:
        upload = tmp_path / "queue.txt"
        upload.write_text(story_text(150, seed=6))
        args = (handle_file(str(upload)), "fairy-tales", SIZE, 1, "as the base model", 0, 0)
        running, *waiting, refused = (Client(url, verbose=False) for _ in range(5))
        first = running.submit(*args, api_name="/train")
        assert wait_for(lambda: any("Training" in str(o[0]) for o in first.outputs()), 60)
        jobs = [client.submit(*args, api_name="/train") for client in waiting]
        places = {f"{n} run{'s' if n > 1 else ''} ahead" for n in range(1, len(jobs) + 1)}
        def place(job) -> str | None:
            return next((p for o in job.outputs() for p in places if p in str(o[0])), None)
        assert wait_for(lambda: all(place(job) for job in jobs), 30), [job.outputs()[-1:] for job in jobs]
        assert {place(job) for job in jobs} == places  # each its own place in line
        with pytest.raises(AppError, match="(?i)queue is full"):
            refused.predict(*args, api_name="/train")
        for client, job in zip(waiting, jobs):
            stopped_at = time.monotonic()
            assert "Stopping" in client.predict(api_name="/stop_training")
            status = job.result(timeout=30)[0]
            assert "Stopped" in status and "before it started" in status
            assert time.monotonic() - stopped_at < 5
            assert not any("Training" in str(o[0]) for o in job.outputs())
            assert not any(any(d.iterdir()) for d in session_dirs_of(demo, client))  # no model was begun
        running.predict(api_name="/stop_training")
        assert "Stopped early" in first.result(timeout=120)[0]
    finally:
        for session in list(demo.studio.sessions._live.values()):
            session.close()
        demo.close()


def session_dirs_of(demo, client: Client) -> list[Path]:
    return [d for d in demo.studio.sessions.root.iterdir() if d.name.startswith(client.session_hash[:16])]


def test_every_limit_is_one_constant_listed_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("**Limits.**") :]
    table = table[: table.index("\n\n", table.index("| --- |"))]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\|[^|\n]*\|[^|\n]*\|([^\n]*)\|$", table, re.M)}
    named = set(re.findall(r"`([A-Z_]+)`", "".join(rows)))
    assert named, "the README has no limits table"
    for name in named:
        assert hasattr(limits, name), f"the README names {name}, which webapp/limits.py does not define"
    for name in ("MAX_UPLOAD_BYTES", "MAX_GENERATE_CHARS", "MIN_TIME_BUDGET_MIN", "MAX_TIME_BUDGET_MIN",
                 "QUEUE_MAX_SIZE", "TRAIN_CONCURRENCY", "GENERATE_CONCURRENCY", "MAX_SESSION_MODELS", "SESSION_TTL_S"):
        assert name in named, f"{name} is a limit but the README's table does not list it"
    row = {name: next(r for k, r in rows.items() if f"`{name}`" in k) for name in named}
    assert f"{limits.MAX_UPLOAD_BYTES // 2**20} MB" in row["MAX_UPLOAD_BYTES"]
    assert f"{limits.MAX_GENERATE_CHARS:,}" in row["MAX_GENERATE_CHARS"]
    assert f"{limits.MIN_TIME_BUDGET_MIN} to {limits.MAX_TIME_BUDGET_MIN} minutes" in row["MAX_TIME_BUDGET_MIN"]
    assert f"{limits.QUEUE_MAX_SIZE}" in row["QUEUE_MAX_SIZE"]
    assert f"{limits.MAX_SESSION_MODELS}" in row["MAX_SESSION_MODELS"]
    assert f"{limits.SESSION_TTL_S // 3600} hours" in row["SESSION_TTL_S"]
    from charrnn.sampling import MAX_PROMPT_CHARS, MAX_SAMPLE_LENGTH

    assert f"{MAX_PROMPT_CHARS:,}" in readme and f"{MAX_SAMPLE_LENGTH:,}" in readme  # the engine's own caps


def test_a_closed_tab_leaves_nothing_in_gradios_session_state(app_url):
    """Gradio would keep a closed session's last values (an Inspect view's page and data, say) until
    10,000 newer sessions pushed them out: the app drops them when the tab closes."""
    visitor = Client(app_url, verbose=False)
    text, _ = generate(visitor, length=200)
    visitor.predict("Once", text, "fairy-tales", "", api_name="/inspect")
    holder = shared_demo().state_holder
    assert visitor.session_hash in holder.session_data
    visitor.close()
    assert wait_for(lambda: visitor.session_hash not in holder.session_data, 45), "the closed session's state was kept"
