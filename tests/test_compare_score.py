"""The Compare and Score views: handlers called directly, the `charrnn eval MODEL -` command, and the two API calls."""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import sys
from pathlib import Path

import gradio as gr
import pytest
import torch
from app_testing import make_checkpoints, serve, story_text

from charrnn.checkpoint import load_model
from charrnn.cli import main
from charrnn.engine import GenerationEngine, sample
from charrnn.sampling import SampleSettings, prepare_prompt
from charrnn.train import TrainConfig, train
from webapp import limits
from webapp.compare_tab import STRETCH_CHARS, TOP_STRETCHES, CompareViews
from webapp.models import Studio
from webapp.session import SessionModel, Sessions

PROMPT = "Once upon"


def add_second_model(root: Path, name: str = "other") -> Path:
    """root/name: a second tiny LSTM, trained from another seed on another text, so it writes differently."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    config = TrainConfig(num_layers=1, hidden_size=32, embedding_dim=16, batch_size=8, seq_len=32, max_steps=40,
                         eval_interval=20, lr=1e-2, seed=2)
    try:
        for _ in train([story_text(seed=5)], root / name, config):
            pass
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    return add_second_model(make_checkpoints(tmp_path_factory.mktemp("compare-models")))


@pytest.fixture
def views(checkpoints, tmp_path) -> CompareViews:
    return CompareViews(Studio(checkpoints, Sessions(tmp_path / "sessions")))


def final(outs: list) -> tuple[str, dict]:
    assert outs, "the handler yielded nothing"
    return outs[-1]


# --- compare -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("temperature", "top_k", "top_p"), [(0.8, 0, 1.0), (1.2, 5, 0.9), (0.0, 0, 1.0)])
def test_compare_gives_each_model_its_own_seeded_text(views, checkpoints, temperature, top_k, top_p):
    outs = list(views.compare(PROMPT, temperature, 150, "11", ["fairy-tales", "other"], "", top_k, top_p))
    page, data = final(outs)
    assert [m["name"] for m in data["models"]] == ["fairy-tales", "other"]
    assert data["seed"] == 11
    for entry in data["models"]:
        net = load_model(checkpoints / entry["name"])  # another object than the app's: its own engine
        settings = SampleSettings(length=150, temperature=temperature, top_k=top_k, top_p=top_p,
                                  seed=11).checked(len(net.vocab))
        fitted = prepare_prompt(net, PROMPT)[0]
        assert entry["prompt"] == fitted
        assert entry["text"] == sample(net, fitted, settings)[0]  # what the model writes alone
        assert len(entry["probs"]) == 150 and all(0 < p <= 1 for p in entry["probs"])
    if temperature:
        assert data["models"][0]["text"] != data["models"][1]["text"]
    assert page.count('class="charrnn-column"') == 2
    assert len(re.findall(r'<span style="background:hsl\(\d+, 80%, 80%\)" data-tip="', page)) == 300
    texts = [[m["text"] for m in d["models"]] for _, d in outs]
    for earlier, later in zip(texts, texts[1:]):  # the columns grow, never rewrite
        assert all(later[i].startswith(earlier[i]) for i in range(2))


def test_compare_with_no_seed_draws_one_for_every_model(views):
    _, data = final(list(views.compare(PROMPT, 1.0, 60, "", ["fairy-tales", "other"])))
    again = final(list(views.compare(PROMPT, 1.0, 60, str(data["seed"]), ["fairy-tales", "other"])))[1]
    assert [m["text"] for m in again["models"]] == [m["text"] for m in data["models"]]


def test_compare_takes_up_to_the_cap_with_a_model_named_in_the_repo_ids_box(views, monkeypatch):
    loaded = []
    real = views.studio.load

    def load(model, hub_repo_id=None, session=None):
        loaded.append((model, hub_repo_id))
        return real("other" if hub_repo_id else model, None, session)  # no network: a Hub id stands for "other"

    monkeypatch.setattr(views.studio, "load", load)
    _, data = final(list(views.compare(PROMPT, 0.8, 30, "1", ["fairy-tales", "other"], " me/a , me/b ")))
    assert [m["name"] for m in data["models"]] == ["fairy-tales", "other", "me/a", "me/b"]
    assert loaded[2:] == [(None, "me/a"), (None, "me/b")]
    assert data["models"][1]["text"] == data["models"][2]["text"]  # the same weights, the same seed: the same text


def test_a_sessions_fine_tune_is_in_its_picker_and_compares_against_the_base(views, checkpoints):
    session = views.studio.sessions.get(None, "visitor")
    path = session.dir / "my-tale"
    shutil.copytree(checkpoints / "other", path)
    session.add_model(SessionModel(name="my-tale", path=path, base="fairy-tales"))
    assert ("my-tale (yours, from fairy-tales)", "my-tale") in views.picker_update(session)["choices"]
    assert "my-tale" not in str(views.picker_update(None)["choices"])
    _, data = final(list(views.compare(PROMPT, 0.8, 40, "2", ["fairy-tales", "my-tale"], "", session=session)))
    assert [m["name"] for m in data["models"]] == ["fairy-tales", "my-tale"]
    with pytest.raises(gr.Error, match="no model called 'my-tale'"):  # another visitor cannot reach it
        list(views.compare(PROMPT, 0.8, 40, "2", ["fairy-tales", "my-tale"], ""))


@pytest.mark.parametrize(
    ("models", "hub_ids", "message"),
    [
        (["fairy-tales"], "", r"at least 2 models .*; 1 is picked"),
        ([], "", "at least 2 models"),
        (None, "   ", "at least 2 models"),
        (["fairy-tales", "other"], "a/b, c/d, e/f", "at most 4 models at once, not 5"),
        (["fairy-tales"] * 9, "", "at most 4 models at once, not 9"),
        (["fairy-tales", "fairy-tales"], "", "'fairy-tales' is picked twice"),
        (["fairy-tales", "nope"], "", "no model called 'nope'"),
        ({"a": 1}, "", "must be a list of model names"),
        (["fairy-tales", 3], "", "model must be given as text"),
    ],
)
def test_compare_refuses_too_few_too_many_twice_or_unknown_models(views, models, hub_ids, message):
    with pytest.raises(gr.Error, match=message) as caught:
        list(views.compare(PROMPT, 0.8, 30, "1", models, hub_ids))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("kwargs", "message"),
                         [({"temperature": -1}, "temperature"), ({"length": 10**6}, "at most 2,000"),
                          ({"seed": "abc"}, "seed must be a whole number"), ({"top_p": 0}, "top-p")])
def test_compare_refuses_bad_settings(views, kwargs, message):
    args = {"prompt": PROMPT, "temperature": 0.8, "length": 30, "seed": "1", "models": ["fairy-tales", "other"]}
    with pytest.raises(gr.Error, match=message):
        list(views.compare(**(args | kwargs)))


def test_compare_cancels_every_request_when_the_reader_stops(views, monkeypatch):
    submitted = []
    real_submit = GenerationEngine.submit

    def submit(engine, *args, **kwargs):
        submitted.append(real_submit(engine, *args, **kwargs))
        return submitted[-1]

    monkeypatch.setattr(GenerationEngine, "submit", submit)
    run = views.compare(PROMPT, 0.8, limits.MAX_GENERATE_CHARS, "1", ["fairy-tales", "other"])
    next(run)
    run.close()  # as Gradio does on Stop or a closed tab
    assert len(submitted) == 2 and all(r.cancelled for r in submitted)
    assert all(r.produced < limits.MAX_GENERATE_CHARS for r in submitted)  # stopped before the end
    for r in submitted:
        r.wait_until_finished(5)
        assert r.finished


# --- score -------------------------------------------------------------------------------------

def eval_json(capsys, *args: str, stdin: bytes | None = None, monkeypatch=None) -> tuple[int, dict | None, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    code = main(["eval", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else None, err


FIGURES = ("loss", "bpc", "chars", "unknown_chars")


def test_score_gives_the_loss_charrnn_eval_gives(views, checkpoints, capsys, monkeypatch, tmp_path):
    text = story_text(60, seed=9) + "Zebra quiz, naïve ✓\r\nThe end.\n"
    page, data = views.score(text, None, ["fairy-tales", "other"])
    assert [m["name"] for m in data["models"]] == ["fairy-tales", "other"]
    path = tmp_path / "text.txt"
    path.write_bytes(text.encode("utf-8"))
    for entry in data["models"]:
        model = str(checkpoints / entry["name"])
        code, from_stdin, _ = eval_json(capsys, model, "-", stdin=text.encode("utf-8"), monkeypatch=monkeypatch)
        assert code == 0 and from_stdin["split"] == "all"
        code, from_file, _ = eval_json(capsys, model, str(path), "--split", "all")
        assert code == 0
        assert {k: entry[k] for k in FIGURES} == {k: from_stdin[k] for k in FIGURES} == \
               {k: from_file[k] for k in FIGURES}
        assert entry["unknown_chars"] >= 1  # ✓ is no character of the tiny models
        assert math.isclose(entry["bpc"], entry["loss"] / math.log(2), rel_tol=1e-5)
        assert f"{entry['loss']:.4f} nats/char" in page
    assert "<table" in page and page.count('class="charrnn-score-model"') == 2


def test_score_reads_an_upload_as_charrnn_eval_reads_the_file(views, checkpoints, capsys, tmp_path):
    body = story_text(40, seed=4).replace("king", "k\xf6nig")
    path = tmp_path / "book.txt"
    path.write_bytes(("The Project Gutenberg eBook\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n" + body +
                      "*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence\n").replace("\n", "\r\n")
                     .encode("cp1252"))
    page, data = views.score("this box is ignored when a file is given", {"path": str(path)}, ["fairy-tales"])
    code, expected, _ = eval_json(capsys, str(checkpoints / "fairy-tales"), str(path), "--split", "all")
    assert code == 0
    assert {k: data["models"][0][k] for k in FIGURES} == {k: expected[k] for k in FIGURES}
    assert any("Gutenberg" in note for note in data["notes"]) and "cp1252" in page
    assert data["chars"] == len(body.replace("\r\n", "\n").strip("\n") + "\n")


def test_score_colours_the_start_and_finds_the_most_surprising_stretches(views):
    text = story_text(300, seed=2)
    assert len(text) > limits.MAX_VIEW_CHARS
    page, data = views.score(text, None, "fairy-tales")
    entry = data["models"][0]
    assert data["chars"] == len(text) and data["viewed_chars"] == limits.MAX_VIEW_CHARS
    assert entry["chars"] > limits.MAX_VIEW_CHARS  # the loss covers the whole text
    assert len(entry["probs"]) == limits.MAX_VIEW_CHARS and entry["text"] == text[: limits.MAX_VIEW_CHARS]
    assert f"the first {limits.MAX_VIEW_CHARS:,} characters of {len(text):,}" in page
    stretches = entry["stretches"]
    assert len(stretches) == TOP_STRETCHES
    losses = [s["loss"] for s in stretches]
    assert losses == sorted(losses, reverse=True)
    spans = sorted((s["start"], s["end"]) for s in stretches)
    assert all(b - a == STRETCH_CHARS for a, b in spans) and all(b <= c for (_, b), (c, _) in zip(spans, spans[1:]))
    surprise = [-math.log(p) for p in entry["probs"]]
    windows = [sum(surprise[i : i + STRETCH_CHARS]) / STRETCH_CHARS for i in range(len(surprise) - STRETCH_CHARS + 1)]
    assert losses[0] == pytest.approx(max(windows))
    assert all(s["text"] == entry["text"][s["start"] : s["end"]] for s in stretches)
    assert page.count('class="stretch"') == TOP_STRETCHES * STRETCH_CHARS


@pytest.mark.parametrize(("text", "file", "message"), [
    ("", None, "no text to score"),
    (None, None, "no text to score"),
    (" \n\t ", None, "no text to score"),
    ("a", None, "at least 2 characters"),
    ("ab\x00cd", None, "NUL bytes"),
    (12, None, "must be given as text"),
    ("fine text", {"nope": 1}, "must be a file"),
])
def test_score_refuses_empty_or_unusable_text_in_one_line(views, text, file, message):
    with pytest.raises(gr.Error, match=message) as caught:
        views.score(text, file, ["fairy-tales"])
    assert "\n" not in str(caught.value)


def test_score_refuses_empty_and_too_long_uploads(views, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(gr.Error, match="empty.txt is empty"):
        views.score(None, str(empty), ["fairy-tales"])
    long = tmp_path / "long.txt"
    long.write_text("once upon a time " * (limits.MAX_TEXT_CHARS // 10))
    with pytest.raises(gr.Error, match=f"at most {limits.MAX_TEXT_CHARS:,} are scored"):
        views.score(None, str(long), ["fairy-tales"])


@pytest.mark.parametrize(("models", "message"), [([], "Pick a model"), (["a", "b", "c", "d", "e"], "at most 4"),
                                                 (["nope"], "no model called 'nope'")])
def test_score_takes_one_to_the_cap_of_known_models(views, models, message):
    with pytest.raises(gr.Error, match=message):
        views.score("Once upon a time", None, models)


# --- the command line ---------------------------------------------------------------------------

def test_eval_reads_standard_input_as_the_whole_text(checkpoints, capsys, monkeypatch):
    model = str(checkpoints / "fairy-tales")
    text = story_text(30, seed=3)
    code, result, _ = eval_json(capsys, model, "-", stdin=text.encode("utf-8"), monkeypatch=monkeypatch)
    assert code == 0 and result["split"] == "all" and result["chars"] > 0.9 * len(text)
    code, val, _ = eval_json(capsys, model, "-", "--split", "val", stdin=text.encode("utf-8"), monkeypatch=monkeypatch)
    assert code == 0 and val["split"] == "val" and val["chars"] < 0.2 * len(text)


def test_eval_of_an_empty_standard_input_is_one_line_and_exit_2(checkpoints, capsys, monkeypatch):
    code, _, err = eval_json(capsys, str(checkpoints / "fairy-tales"), "-", stdin=b"", monkeypatch=monkeypatch)
    assert code == 2
    assert err == "charrnn: error: standard input is empty\n"


# --- through the API --------------------------------------------------------------------------------

def test_compare_and_score_through_gradio_client(checkpoints):
    client_module = pytest.importorskip("gradio_client")
    demo, url = serve(checkpoints)
    try:
        client = client_module.Client(url, verbose=False)
        html, data = client.predict(PROMPT, 0.8, 80, "5", ["fairy-tales", "other"], "", 0, 1.0, api_name="/compare")
        assert 'class="charrnn-column"' in html
        for entry in data["models"]:
            net = load_model(checkpoints / entry["name"])
            settings = SampleSettings(length=80, temperature=0.8, seed=5).checked(len(net.vocab))
            assert entry["text"] == sample(net, prepare_prompt(net, PROMPT)[0], settings)[0]
        html, data = client.predict("Once upon a time there was a king.\n", None, ["fairy-tales", "other"], "",
                                    api_name="/score")
        assert len(data["models"]) == 2 and all(m["loss"] > 0 for m in data["models"])
        client.close()
    finally:
        demo.close()
