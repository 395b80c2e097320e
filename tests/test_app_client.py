"""The running app driven over HTTP with gradio_client, as a program (or the browser) would."""

from __future__ import annotations

import zipfile

import pytest
from app_testing import shared_app, story_text

from webapp import limits

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


@pytest.fixture(scope="module")
def app_url():
    return shared_app()


def generate(client, prompt="Once upon", seed="5", model="fairy-tales", length=300):
    job = client.submit(prompt, 0.8, length, seed, model, "", 0, 1.0, api_name="/generate")
    updates = list(job)
    return updates, tuple(job.result())  # result() raises the app's error, if any


def test_generate_streams_and_reproduces_with_a_seed(app_url):
    client = Client(app_url, verbose=False)
    updates, (text, used) = generate(client)
    assert len(updates) >= 2 and text.startswith("Once upon") and len(text) == len("Once upon") + 300
    assert used == "5"
    assert generate(client)[1] == (text, used)
    assert generate(client, seed="6")[1][0] != text
    _, (_, drawn) = generate(client, seed="")
    assert drawn.isdigit()


def test_fine_tune_then_generate_with_it_in_this_session_only(app_url, tmp_path):
    upload = tmp_path / "fable.txt"
    upload.write_text(story_text(150, seed=9))
    client = Client(app_url, verbose=False)
    job = client.submit(handle_file(str(upload)), "fairy-tales", limits.DEFAULT_SIZE_PRESET, 1, "as the base model",
                        0, 30, api_name="/train")
    updates = list(job)
    status, plot, _, picker, _, download = job.outputs()[-1]
    assert len(updates) >= 3 and "Done: fable" in status
    assert {row[2] for row in plot["data"]} == {"train", "validation"}
    assert picker["value"] == "fable" and ["fable (yours, from fairy-tales)", "fable"] in picker["choices"]
    with zipfile.ZipFile(download["value"]) as zf:
        assert "fable/model.safetensors" in zf.namelist()
    _, (text, _) = generate(client, prompt="Once", model="fable", length=40)
    assert len(text) == 44
    stranger = Client(app_url, verbose=False)
    with pytest.raises(AppError, match="no model called 'fable'"):
        generate(stranger, model="fable")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"%PDF-1.4\n" + bytes(range(256)) * 10, "PDF document"),
        (b"Too short.\n", "too short"),
        (b"abc\x00def" * 300, "NUL bytes"),
    ],
)
def test_each_bad_upload_gets_its_error(app_url, tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    client = Client(app_url, verbose=False)
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(path)), "fairy-tales", "as the base model", api_name="/read_upload")
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(path)), "fairy-tales", limits.DEFAULT_SIZE_PRESET, 1, "as the base model", 0, 5,
                       api_name="/train")


def test_an_upload_over_the_size_cap_is_refused(app_url, tmp_path):
    path = tmp_path / "huge.txt"
    with open(path, "wb") as f:
        f.truncate(limits.MAX_UPLOAD_BYTES + 1)
    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="(?i)too large|size|limit"):
        client.predict(handle_file(str(path)), "fairy-tales", "as the base model", api_name="/read_upload")


def test_closing_the_session_deletes_its_models(app_url, tmp_path):
    import time

    from app_testing import shared_demo

    upload = tmp_path / "brief.txt"
    upload.write_text(story_text(120, seed=2))
    client = Client(app_url, verbose=False)
    client.predict(handle_file(str(upload)), "fairy-tales", limits.DEFAULT_SIZE_PRESET, 1, "as the base model", 0, 10,
                   api_name="/train")
    root = shared_demo().studio.sessions.root
    mine = [d for d in root.iterdir() if d.name.startswith(client.session_hash[:16])]
    assert mine and (mine[0] / "brief" / "model.safetensors").is_file()
    client.close()  # like closing the tab: the heartbeat stops, the app's unload runs
    deadline = time.monotonic() + 45
    while mine[0].exists() and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not mine[0].exists()


def test_generation_runs_several_at_once_and_training_one_at_a_time():
    from app_testing import shared_demo

    demo = shared_demo()
    limit: dict[str, set] = {}
    for fn in demo.fns.values():  # a group runs under the lowest limit any of its events sets
        value = demo._queue.default_concurrency_limit if fn.concurrency_limit == "default" else fn.concurrency_limit
        limit.setdefault(fn.concurrency_id, set()).add(value)
    assert min(limit["generate"]) == limits.GENERATE_CONCURRENCY >= 2
    # Training runs wait in the app's own line (where Stop reaches them), so Gradio lets them all in.
    assert limit["train"] == {None}
    assert demo.studio.training_line.slots == limits.TRAIN_CONCURRENCY == 1


def test_stop_frees_the_generation_row_and_leaves_other_visitors_writing(app_url, monkeypatch):
    """Stop (Gradio cancelling the event, as a closed tab does too) takes the request's row out of the
    batch at once; another visitor's request beside it still writes its whole length."""
    import time

    from app_testing import shared_demo

    from charrnn.engine import Generation
    from charrnn.sampling import FusedStepper

    real_step = FusedStepper.step
    monkeypatch.setattr(FusedStepper, "step",
                        lambda self, ids, state: (time.sleep(0.002), real_step(self, ids, state))[1])
    requests: list[Generation] = []
    real_put = Generation._put
    monkeypatch.setattr(Generation, "_put",
                        lambda self, item: (self in requests or requests.append(self), real_put(self, item))[1])
    assert shared_demo().studio is not None
    stopped, other = Client(app_url, verbose=False), Client(app_url, verbose=False)
    job = stopped.submit("Once", 1.0, 2000, "1", "fairy-tales", "", 0, 1.0, api_name="/generate")
    deadline = time.monotonic() + 30
    while not requests and time.monotonic() < deadline:
        time.sleep(0.01)
    kept = other.submit("Once", 1.0, 300, "2", "fairy-tales", "", 0, 1.0, api_name="/generate")
    time.sleep(0.3)
    job.cancel()
    while not requests[0].finished and time.monotonic() < deadline:
        time.sleep(0.01)
    assert requests[0].finished and requests[0].produced < 2000
    assert len(kept.result()[0]) == len("Once") + 300
