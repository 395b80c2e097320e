"""The app's handlers called directly, as Gradio would call them, without a server."""

from __future__ import annotations

import threading
import time
import zipfile
from pathlib import Path

import gradio as gr
import pytest
from app_testing import story_text

from charrnn.checkpoint import load_model
from charrnn.train import TrainConfig
from webapp import jobs, limits
from webapp.generate_tab import Generator
from webapp.jobs import TrainJob, run_in_thread
from webapp.models import SCRATCH
from webapp.session import Session
from webapp.train_tab import Trainer, loss_plot, stop_training
from webapp.upload_box import Uploads


@pytest.fixture
def upload(tmp_path) -> Path:
    path = tmp_path / "my story.txt"
    path.write_text(story_text(200, seed=3).replace("king", "kïng") + "Zebra quiz!\n", encoding="utf-8")
    return path


def test_generate_streams_and_a_seed_reproduces_it(studio):
    outs = list(Generator(studio).generate("Once upon", 0.8, 300, "7", "fairy-tales"))
    texts = [text for text, _ in outs]
    assert len(outs) >= 2 and all(a == b[: len(a)] for a, b in zip(texts, texts[1:]))  # grows, never rewrites
    assert texts[-1].startswith("Once upon") and len(texts[-1]) == len("Once upon") + 300
    assert outs[-1][1] == "7"
    assert list(Generator(studio).generate("Once upon", 0.8, 300, "7", "fairy-tales"))[-1] == outs[-1]
    assert list(Generator(studio).generate("Once upon", 0.8, 300, "8", "fairy-tales"))[-1][0] != texts[-1]


def test_empty_seed_draws_one_and_shows_it(studio):
    text, used = list(Generator(studio).generate("The", 1.0, 80, "", None))[-1]
    assert used.isdigit()
    assert list(Generator(studio).generate("The", 1.0, 80, used, None))[-1][0] == text


def test_unknown_prompt_characters_are_named_in_a_warning(studio):
    with pytest.warns(UserWarning, match="'✓'"):
        text, _ = list(Generator(studio).generate("Once ✓ upon", 0.0, 20, "1", "fairy-tales"))[-1]
    assert "✓" not in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -1}, "temperature"),
        ({"length": 10**7}, "at most 2,000"),
        ({"top_p": 0}, "top-p"),
        ({"seed": "abc"}, "seed"),
        ({"model": "nope"}, "no model called 'nope'"),
        ({"hub_repo_id": "/etc"}, "not a Hugging Face Hub repo id"),
    ],
)
def test_bad_generate_settings_get_a_clear_error(studio, kwargs, message):
    args = {"prompt": "Once", "temperature": 0.8, "length": 50, "seed": "1", "model": "fairy-tales"} | kwargs
    with pytest.raises(gr.Error, match=message):
        list(Generator(studio).generate(**args))


def test_upload_report_names_encoding_gutenberg_and_new_characters(studio, tmp_path):
    path = tmp_path / "book.txt"
    body = story_text(60) + "Über café!\n"
    book = ("*** START OF THE PROJECT GUTENBERG EBOOK X ***\n" + body
            + "*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence\n")
    path.write_bytes(book.encode("cp1252"))
    report = Uploads(studio).inspect_upload(str(path), "fairy-tales", "keep Unicode")
    assert "cp1252" in report and "stripped" in report
    assert report.count("Gutenberg") == 1  # said once, not again as a note
    assert "'Ü'" in report and "'é'" in report
    assert f"{len(body):,} characters" in report


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20, "PNG image"),
        (b"Once upon a time.\n", "too short"),
        (b"\xff\xfe\x00", "UTF-16"),
    ],
)
def test_bad_uploads_are_refused_before_training(studio, tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(gr.Error, match=message):
        Uploads(studio).inspect_upload(str(path), "fairy-tales")
    with pytest.raises(gr.Error, match=message):
        next(Trainer(studio).train(str(path), "fairy-tales", max_steps=5))
    assert not any(p.is_dir() for s in studio.sessions.root.iterdir() for p in s.iterdir())  # nothing was trained


def test_uploads_over_the_size_cap_are_refused(studio, tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_UPLOAD_BYTES", 10_000)
    path = tmp_path / "big.txt"
    path.write_text(story_text(400))
    with pytest.raises(gr.Error, match="upload limit"):
        Uploads(studio).inspect_upload(str(path), "fairy-tales")


def train_to_end(studio, upload, **kwargs):
    outs = list(Trainer(studio).train(str(upload), **({"base": "fairy-tales", "minutes": 1, "max_steps": 30} | kwargs)))
    return outs, outs[-1][-1]


def test_fine_tune_streams_progress_and_adds_a_session_model(studio, upload):
    outs, session = train_to_end(studio, upload)
    assert len(outs) >= 3
    status, plot, _, picker, base_picker, download, _ = outs[-1]
    assert "Done: my-story" in status
    assert set(plot["curve"]) == {"train", "validation"} and plot["step"].max() == 30
    assert ("my-story (yours, from fairy-tales)", "my-story") in picker["choices"] and picker["value"] == "my-story"
    assert (SCRATCH, SCRATCH) in base_picker["choices"]
    with zipfile.ZipFile(download["value"]) as zf:
        names = set(zf.namelist())
    assert {"my-story/README.md", "my-story/config.json", "my-story/model.safetensors"} <= names
    assert not any("training_state" in n for n in names)  # resume state stays behind
    model = load_model(session.models["my-story"].path)
    assert "ï" in model.vocab and "Z" in model.vocab  # the vocabulary grew to the upload's characters
    text, _ = list(Generator(studio).generate("Once", 0.5, 50, "1", "my-story", session=session))[-1]
    assert len(text) == 54
    # another visitor cannot reach it by name
    with pytest.raises(gr.Error, match="no model called 'my-story'"):
        other = Session(studio.sessions.root, "other")
        list(Generator(studio).generate("Once", 0.5, 50, "1", "my-story", session=other))


def test_train_from_scratch_uses_the_size_preset(studio, upload):
    _, session = train_to_end(studio, upload, base=SCRATCH, size="tiny (1 layer × 128)", max_steps=10)
    model = load_model(session.models["my-story"].path)
    assert (model.num_layers, model.hidden_size) == (1, 128)


def test_stop_keeps_the_best_checkpoint(studio, upload):
    session = studio.sessions.get(None, "stopper")
    outs = []
    gen = Trainer(studio).train(str(upload), "fairy-tales", minutes=1, session=session)
    for out in gen:
        outs.append(out)
        if len(outs) == 3:
            assert "Stopping" in stop_training(session)
    assert "Stopped early: my-story" in outs[-1][0] and "Done" not in outs[-1][0]
    assert load_model(session.models["my-story"].path).vocab


def test_closing_a_session_mid_training_leaves_no_files(studio, upload):
    session = studio.sessions.get(None, "leaver")
    gen = Trainer(studio).train(str(upload), "fairy-tales", minutes=1, session=session)
    next(gen)
    studio.sessions.end("leaver")  # what the app's unload does when the tab closes
    for _ in gen:
        pass
    assert not session.dir.exists()


@pytest.mark.alone  # its slices are timed
def test_zerogpu_style_training_runs_as_resumed_slices(checkpoints, upload, tmp_path, monkeypatch):
    calls = []
    real = jobs._train_slice

    def counted(job, resume, slice_s):
        calls.append(resume)
        return real(job, resume, slice_s)

    monkeypatch.setattr(jobs, "_train_slice", counted)
    session = Session(tmp_path, "zero")
    from charrnn.text import read_corpus

    job = TrainJob(corpus=read_corpus(upload), out_dir=session.dir / "m",
                   config=TrainConfig(max_steps=60, time_budget=60), init=checkpoints / "fairy-tales", card_info={})
    events = list(run_in_thread(job, session, slice_s=0.3))
    assert calls[0] is False and calls[1:] and all(calls[1:])  # several slices, each resuming
    steps = [e.step for e in events if e.kind == "step"]
    assert steps == sorted(steps) and [e.kind for e in events].count("start") == 1
    assert events[-1].kind == "done" and events[-1].result.steps == 60


def test_a_slice_shorter_than_start_up_still_trains_a_step_and_the_run_finishes(
        checkpoints, upload, tmp_path, monkeypatch):
    """On a busy machine starting up can outlast a slice; ending it before its first step used to
    fail the run ("training stopped before the first step")."""
    calls = []
    real = jobs._train_slice
    monkeypatch.setattr(jobs, "_train_slice",
                        lambda job, resume, slice_s: calls.append(resume) or real(job, resume, slice_s))
    session = Session(tmp_path, "busy")
    from charrnn.text import read_corpus

    job = TrainJob(corpus=read_corpus(upload), out_dir=session.dir / "m",
                   config=TrainConfig(max_steps=30, time_budget=60), init=checkpoints / "fairy-tales", card_info={})
    events = list(run_in_thread(job, session, slice_s=0.001))
    assert events[-1].kind == "done" and events[-1].result.steps == 30 and "finished" in events[-1].message
    assert len(calls) >= 3 and all(calls[1:])


def test_train_runs_in_its_own_thread_with_its_own_thread_count(studio, upload):
    seen = []
    original = jobs.in_thread

    def spy(make, torch_threads, stop, **kwargs):
        seen.append((torch_threads, threading.current_thread().name))
        return original(make, torch_threads, stop, **kwargs)

    jobs.in_thread = spy
    try:
        train_to_end(studio, upload, max_steps=10)
    finally:
        jobs.in_thread = original
    assert seen and seen[0][0] == limits.TRAIN_THREADS


def test_stopping_a_generation_frees_its_row(studio):
    from charrnn.engine import GenerationEngine

    gen = Generator(studio).generate("Once", 1.0, 2000, "1", "fairy-tales")
    next(gen), next(gen)
    engine = GenerationEngine.for_model(studio.load("fairy-tales"))
    assert engine.active_rows == 1
    gen.close()  # what Stop (Gradio cancelling the event) does
    deadline = time.monotonic() + 10
    while engine.active_rows and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.active_rows == 0


def test_samples_come_by_the_clock_from_the_texts_first_words_and_the_curve_from_the_first_step(studio, upload,
                                                                                                 monkeypatch):
    monkeypatch.setattr(limits, "TRAIN_SAMPLE_EVERY_S", 1)
    # Until the first sample by the clock (a fixed number of steps can end before it on a fast machine), then Stop.
    run, outs = Trainer(studio).train(str(upload), "fairy-tales", minutes=1), []
    for out in run:
        outs.append(out)
        if out[2]:
            break
    run.close()
    first_word = story_text(200, seed=3).split()[0]
    samples = [out[2] for out in outs if out[2]]
    assert samples and samples[-1].split("\n", 1)[1].startswith(first_word)  # "0:01 · step 7:\n<first words>..."
    curves = [out[1] for out in outs[:3] if hasattr(out[1], "columns") and len(out[1])]
    assert curves and set(curves[0]["curve"]) == {"train", "validation"}  # both in the legend from the first loss


def test_the_loss_plot_shows_the_train_curve_before_any_evaluation():
    plot = loss_plot([(1, 2.5, "train"), (2, 2.4, "train")])
    assert list(plot[plot.curve == "train"]["loss"]) == [2.5, 2.4]
    assert len(plot[plot.curve == "validation"]) == 1  # one point, so no line, until the first evaluation
    assert set(loss_plot([(1, 2.5, "train"), (2, 2.0, "validation")])["curve"]) == {"train", "validation"}


def test_the_budget_hint_says_when_a_minute_is_too_short_for_the_upload(studio, tmp_path, monkeypatch):
    uploads = Uploads(studio)
    monkeypatch.setattr(uploads, "finetune_speed", lambda _net: 100.0)  # 5,820 characters a minute
    path = tmp_path / "book.txt"
    path.write_text(story_text(300, seed=1), encoding="utf-8")
    hint = uploads.hint(str(path), "fairy-tales", 1)
    assert hint.startswith("A minute of training reads about 5,820 characters on this machine (measured)")
    assert uploads.hint(str(path), "fairy-tales", 30) == ""  # 30 minutes read it all
    assert uploads.hint(str(path), SCRATCH, 1) == "" and uploads.hint(None, "fairy-tales", 1) == ""


def test_the_speed_behind_the_hint_is_measured_once(studio):
    uploads = Uploads(studio)
    net = studio.load("fairy-tales")
    first = uploads.finetune_speed(net)
    assert first > 0 and uploads.finetune_speed(net) == first


def test_a_fine_tuned_model_offers_prompts_from_its_own_text(studio, tmp_path):
    upload = tmp_path / "my story.txt"
    upload.write_text(story_text(200, seed=3).replace(".\n", ".\n\n"), encoding="utf-8")  # paragraphs
    _, session = train_to_end(studio, upload, max_steps=5)
    samples = studio.example_samples("my-story", session)
    first_words = " ".join(story_text(200, seed=3).split()[:5])
    assert samples[0] == [first_words] and len(samples) == 4  # then lines that start paragraphs
    assert studio.example_samples("fairy-tales", session)[0][0] != first_words  # other models keep theirs
    other = Session(studio.sessions.root, "other")
    assert studio.example_samples("my-story", other) != samples  # another visitor does not get them
    _, prompt = studio.example_update("my-story", "Once upon a time", session)
    assert prompt["value"] == first_words


def test_training_takes_every_core_while_nobody_generates(studio, monkeypatch):
    from charrnn.engine import GenerationEngine

    monkeypatch.setattr(limits, "TRAIN_THREADS", 1)
    monkeypatch.setattr(limits, "TRAIN_THREADS_IDLE", 2)
    assert jobs.training_threads() == 2
    gen = Generator(studio).generate("Once", 1.0, 2000, "1", "fairy-tales")
    next(gen), next(gen)
    assert GenerationEngine.for_model(studio.load("fairy-tales")).active_rows == 1
    assert jobs.training_threads() == 1  # one core goes back to the generation
    gen.close()


def test_the_training_thread_changes_its_thread_count_between_events(monkeypatch):
    import torch

    counts = []

    def events():
        for _ in range(3):
            counts.append(torch.get_num_threads())
            yield object()

    def run():
        torch.set_num_threads(1)
        list(jobs.sharing_cores(events()))

    monkeypatch.setattr(jobs, "training_threads", lambda: 2)
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert counts == [1, 2, 2]
