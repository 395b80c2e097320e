"""What a stranger can send the running app: every request's size is capped and refused in one line,
names never collide, and bad values in any field get a message naming the field.

Driven over HTTP with gradio_client against the shared app of tiny models.
"""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import gradio as gr
import pytest
from app_testing import shared_app, shared_demo, story_text

from webapp import limits
from webapp.generate_tab import Generator
from webapp.insight_box import InsightViews

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

SIZE = limits.DEFAULT_SIZE_PRESET
GENERIC = "upstream Gradio app has raised an exception"
HUB_ENDPOINTS = {  # the arguments around a Hub repo id, for every endpoint that takes one
    "/generate": lambda hub: ("Once", 0.8, 20, "1", "fairy-tales", hub, 0, 1.0),
    "/inspect": lambda hub: ("Once", "Once upon a time", "fairy-tales", hub),
    "/temperatures": lambda hub: ("Once", 20, "1", "fairy-tales", hub, 0, 1.0),
    "/originality": lambda hub: ("Once", "Once upon a time", "fairy-tales", hub),
    "/neurons": lambda hub: ("Once upon a time", 1, 0, "cell state c", "fairy-tales", hub),
}


@pytest.fixture(scope="module")
def client() -> Client:
    return Client(shared_app(), verbose=False)


def refusal(client: Client, *args, api_name: str) -> str:
    """The one-line message the app answered with (failing the test if it answered otherwise)."""
    with pytest.raises(AppError) as info:
        client.predict(*args, api_name=api_name)
    message = str(info.value)
    assert GENERIC not in message and message.strip() and "\n" not in message, message
    assert len(message) < 400, f"the message echoes its input: {message[:120]}…"
    return message


def test_inspect_refuses_a_text_longer_than_any_generation_in_one_line(client):
    started = time.monotonic()
    message = refusal(client, "Once", "a" * 100_000, "fairy-tales", "", api_name="/inspect")
    assert f"{limits.MAX_VIEW_CHARS:,}" in message and time.monotonic() - started < 10
    message = refusal(client, "Once", "a" * 100_000, "fairy-tales", "", api_name="/originality")
    assert f"{limits.MAX_VIEW_CHARS:,}" in message
    longest = "Once" + "a" * (limits.MAX_VIEW_CHARS - 4)
    html, data = client.predict("Once", longest, "fairy-tales", "", api_name="/inspect")
    assert len(data["chars"]) == limits.MAX_VIEW_CHARS - 4  # the longest text a generation writes is inspected in full


def test_every_text_box_has_a_cap(client):
    for api, args in (("/generate", ("x" * (limits.MAX_TEXT_CHARS + 1), 0.8, 20, "1", "fairy-tales", "", 0, 1.0)),
                      ("/neurons", ("x" * (limits.MAX_TEXT_CHARS + 1), 1, 0, "cell state c", "fairy-tales", ""))):
        assert f"{limits.MAX_TEXT_CHARS:,}" in refusal(client, *args, api_name=api)


@pytest.mark.parametrize("api", list(HUB_ENDPOINTS))
def test_a_hub_id_too_long_for_a_file_name_is_refused_clearly(client, api):
    for repo in ("o/" + "é" * 130, "é" * 130 + "/n", "owner/name@" + "é" * 130):  # over 255 bytes, under the box's cap
        assert "not a Hugging Face Hub repo id" in refusal(client, *HUB_ENDPOINTS[api](repo), api_name=api)
    assert f"at most {limits.MAX_NAME_CHARS}" in refusal(client, *HUB_ENDPOINTS[api]("o/" + "n" * 300), api_name=api)


def test_the_hub_id_box_never_looks_at_the_apps_own_files(client):
    """A repo id that names a file of the app gets the same answer as one that names nothing."""
    real, made_up = "webapp/session.py", "webapp/no-such-file.py"
    answers = [refusal(client, *HUB_ENDPOINTS["/generate"](repo), api_name="/generate").replace(repo, "REPO")
               for repo in (real, made_up)]
    assert answers[0] == answers[1]
    assert "directory" not in answers[0] and "local" not in answers[0].replace("local cache", "")


def test_text_or_null_in_a_number_field_names_the_field(client):
    for bad in ("hot", None, [1], {"v": 1}, True):
        assert "Temperature" in refusal(client, "Once", bad, 20, "1", "fairy-tales", "", 0, 1.0, api_name="/generate")
        assert "Length" in refusal(client, "Once", 0.8, bad, "1", "fairy-tales", "", 0, 1.0, api_name="/generate")
        assert "Layer" in refusal(client, "Once upon", bad, 0, "cell state c", "fairy-tales", "", api_name="/neurons")


def test_the_temperature_sweep_checks_top_k_as_generate_does(client):
    for api, args in (("/temperatures", ("Once", 20, "1", "fairy-tales", "", 2.5, 1.0)),
                      ("/generate", ("Once", 0.8, 20, "1", "fairy-tales", "", 2.5, 1.0))):
        assert "top-k" in refusal(client, *args, api_name=api).lower()
    # NaN is not JSON, so a client cannot send it; the handlers refuse it too.
    views, studio = InsightViews(shared_demo().studio), shared_demo().studio
    for call in (lambda: views.temperatures("Once", 20, "1", "fairy-tales", "", float("nan"), 1.0),
                 lambda: list(Generator(studio).generate("Once", 0.8, 20, "1", "fairy-tales", "", float("nan"),
                                                         1.0))):
        with pytest.raises(gr.Error, match="top-k"):
            call()


def test_long_inputs_are_not_echoed_in_errors(client):
    refusal(client, "Once", 0.8, 20, "1", "m" * 10_000, "", 0, 1.0, api_name="/generate")
    refusal(client, "Once", 0.8, 20, "9" * 5_000, "fairy-tales", "", 0, 1.0, api_name="/generate")
    refusal(client, "Once", 0.8, 20, "1", "fairy-tales", "x" * 10_000, 0, 1.0, api_name="/generate")


def test_pick_cell_works_over_the_api(client):
    rows, _ = client.predict(story_text(20), "fairy-tales", "", api_name="/find_cells")
    layer, unit, state = client.predict(rows, api_name="/pick_cell")
    first = rows["data"][0]
    assert (layer, unit, state) == (first[2], first[3], first[4])


def test_a_base_model_name_is_read_the_same_by_read_upload_and_train(client, tmp_path):
    upload = tmp_path / "newline.txt"
    upload.write_text(story_text(150, seed=8))
    info = client.predict(handle_file(str(upload)), "fairy-tales\n", "as the base model", api_name="/read_upload")
    assert "newline.txt" in info and "characters new to fairy-tales" in info
    status, *_ = client.predict(handle_file(str(upload)), "fairy-tales\n", SIZE, 1, "as the base model", 0, 3,
                                api_name="/train")
    assert "Done: newline" in status and "from fairy-tales" not in status.replace("from fairy-tales:", "")


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        type(self).hits += 1
        self.send_response(200)
        self.end_headers()
        self.wfile.write(story_text(150).encode())

    def log_message(self, *args):  # quiet
        pass


def test_a_link_in_place_of_an_upload_is_refused_and_never_fetched(client):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CountingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/story.txt"
        for api, rest in (("/read_upload", ("fairy-tales", "as the base model")),
                          ("/train", ("fairy-tales", SIZE, 1, "as the base model", 0, 3))):
            assert "links are not fetched" in refusal(client, handle_file(url), *rest, api_name=api)
        assert _CountingHandler.hits == 0
    finally:
        server.shutdown()


def test_an_upload_named_like_a_shipped_model_gets_a_name_of_its_own(tmp_path):
    """Every picker value names one model: a fine-tune of fairy-tales.txt never shadows the shipped fairy-tales."""
    upload = tmp_path / "fairy-tales.txt"
    upload.write_text(story_text(150, seed=12).replace("king", "wolf"))
    visitor = Client(shared_app(), verbose=False)
    status, _, _, picker, base_picker, download = visitor.predict(handle_file(str(upload)), "fairy-tales", SIZE, 1,
                                                                  "as the base model", 0, 30, api_name="/train")
    name = picker["value"]
    assert name != "fairy-tales" and name.casefold().startswith("fairy-tales") and f"Done: {name}" in status
    values = [value for _, value in picker["choices"]]
    assert len(values) == len(set(values)) and {"fairy-tales", name} <= set(values)
    assert len({value for _, value in base_picker["choices"]}) == len(base_picker["choices"])
    mine = visitor.predict("Once", 0.8, 200, "5", name, "", 0, 1.0, api_name="/generate")[0]
    shipped = visitor.predict("Once", 0.8, 200, "5", "fairy-tales", "", 0, 1.0, api_name="/generate")[0]
    assert mine != shipped  # the fine-tune is what generates under its own name
    assert Path(download["value"]).name == f"{name}.zip"
    session = next(s for s in shared_demo().studio.sessions._live.values() if s.id == visitor.session_hash)
    assert set(session.models) == {name}


def test_an_uploads_long_name_is_shortened_in_messages(client, tmp_path):
    upload = tmp_path / ("a-very-long-name-" * 12 + ".txt")
    upload.write_text("too short")
    message = refusal(client, handle_file(str(upload)), "fairy-tales", "as the base model", api_name="/read_upload")
    assert "too short" in message and upload.name not in message and len(message) < 200
