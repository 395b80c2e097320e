"""Hostile input to the engine: every bad upload, prompt and parameter gets a clear message or
is handled, and none of them crashes or starts unbounded work.

The same inputs arriving through the web app's API are tested in test_isolation.py's app tests.
"""

from __future__ import annotations

import io
import math
import re
import time
import warnings
import zipfile

import pytest
import torch

from charrnn.checkpoint import save_checkpoint
from charrnn.cli import main as cli
from charrnn.engine import sample, stream
from charrnn.model import CharRNN
from charrnn.sampling import (
    MAX_NUM_SAMPLES,
    MAX_PROMPT_CHARS,
    MAX_SAMPLE_LENGTH,
    MAX_TEMPERATURE,
    PROMPT_WINDOW_CHARS,
    SampleSettings,
    prepare_prompt,
)
from charrnn.text import TextError, read_corpus
from charrnn.train import TrainConfig, train
from charrnn.vocab import DEFAULT_MAX_VOCAB, Vocab

STORY = "Once upon a time a little fox lived at the edge of a wood, and every night it sang.\n" * 40
TINY = {"num_layers": 1, "hidden_size": 16, "embedding_dim": 8, "max_steps": 2, "eval_interval": 1}


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("story.txt", STORY)
    return buf.getvalue()


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" * 30

REFUSED = {
    "empty": (b"", "is empty"),
    "png": (PNG, "is a PNG image, not a text file"),
    "zip": (_zip(), "is a ZIP archive, not a text file"),
    "pdf": (PDF, "is a PDF document, not a text file"),
    "nul in the middle": (STORY.encode()[:500] + b"\x00" + STORY.encode()[500:], "contains NUL bytes"),
    "utf-16 cut mid-character": (STORY.encode("utf-16") + b"x", "not valid UTF-16"),
    "only whitespace": (b"\n\r\n \t\n" * 10, "has no text in it"),
    "random bytes": (bytes(torch.randint(1, 256, (20_000,), generator=torch.Generator().manual_seed(0)).tolist()),
                     "control characters"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_unreadable_uploads_are_refused_saying_why(name):
    data, why = REFUSED[name]
    with pytest.raises(TextError, match=why) as info:
        read_corpus(data, name=f"{name}.txt")
    assert f"{name}.txt" in str(info.value) or "UTF-16" in str(info.value)  # the message names the file
    assert "\n" not in str(info.value)


def _trains(corpus, tmp_path, **overrides) -> CharRNN:
    from charrnn.checkpoint import load_model

    events = list(train([corpus], tmp_path / "model", TrainConfig(**(TINY | overrides))))
    assert events[-1].kind == "done"
    return load_model(tmp_path / "model", device="cpu")


def test_utf16_with_bom_is_decoded_and_trains(tmp_path):
    corpus = read_corpus(STORY.encode("utf-16"), name="story.txt")
    assert corpus.text == STORY
    _trains(corpus, tmp_path, batch_size=4, seq_len=16)


def test_utf16_and_utf32_without_the_usual_bom_are_text_not_binary():
    assert read_corpus(STORY.encode("utf-16-le"), name="s.txt").text == STORY
    assert read_corpus(STORY.encode("utf-16-be"), name="s.txt").text == STORY
    assert read_corpus(STORY.encode("utf-32"), name="s.txt").text == STORY


def test_cp1252_is_decoded_with_a_note(tmp_path):
    text = "Café déjà vu — the naïve “fox” said: 5 €.\n" * 60
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        corpus = read_corpus(text.encode("cp1252"), name="win.txt")
    assert corpus.text == text and corpus.encoding == "cp1252"
    assert any("cp1252" in note for note in corpus.notes)
    model = _trains(corpus, tmp_path, batch_size=4, seq_len=16)
    assert {"é", "€", "“"} <= set(model.vocab.chars)


def test_utf8_bom_and_crlf_are_removed(tmp_path):
    corpus = read_corpus(b"\xef\xbb\xbf" + STORY.replace("\n", "\r\n").encode(), name="dos.txt")
    assert corpus.text == STORY and "\r" not in corpus.text and "\ufeff" not in corpus.text
    model = _trains(corpus, tmp_path, batch_size=4, seq_len=16)
    assert "\r" not in model.vocab and "\ufeff" not in model.vocab


def test_invalid_bytes_after_a_utf8_bom_are_reported():
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        corpus = read_corpus(b"\xef\xbb\xbf" + b"caf\xe9 au lait\n" * 100, name="mixed.txt")
    assert any("not valid UTF-8" in note for note in corpus.notes)


def test_five_megabytes_without_a_newline_train(tmp_path):
    data = (b"the fox ran over the hill and the owl sat still " * 110_000)[:5_000_000]
    corpus = read_corpus(data, name="one-line.txt")
    assert corpus.chars == 5_000_000 and "\n" not in corpus.text
    model = _trains(corpus, tmp_path, batch_size=8, seq_len=32, max_steps=1)
    settings = SampleSettings(length=50, seed=1).checked(len(model.vocab))
    assert len(sample(model, "", settings)[0]) == 50  # no newline in the vocabulary: generation still starts


def test_fifty_thousand_distinct_cjk_characters_hit_the_vocabulary_cap(tmp_path):
    chars = [chr(0x4E00 + i) for i in range(20_992)] + [chr(0x20000 + i) for i in range(29_008)]
    common = "".join(chars[:100]) * 3  # some characters are frequent: those must survive the cap
    corpus = read_corpus(("".join(chars) + common).encode(), name="cjk.txt")
    assert len(set(corpus.text)) == 50_000
    model = _trains(corpus, tmp_path, batch_size=4, seq_len=16, max_steps=1)
    assert len(model.vocab) == DEFAULT_MAX_VOCAB
    assert set(chars[:100]) <= set(model.vocab.chars)


def test_emoji_and_combining_characters_are_kept(tmp_path):
    text = "The fox 🦊 met a family 👨\u200d👩\u200d👧 and waved 👋🏽; cafe\u0301 and n\u0303 stay as written.\n" * 40
    corpus = read_corpus(text.encode(), name="emoji.txt")
    assert corpus.text == text
    model = _trains(corpus, tmp_path, batch_size=4, seq_len=16)
    assert {"🦊", "\u0301", "\u200d", "🏽"} <= set(model.vocab.chars)


def test_one_character_is_refused_as_too_short(tmp_path):
    corpus = read_corpus(b"a", name="a.txt")
    with pytest.raises(TextError, match="too short to train on: 1 characters"):
        list(train([corpus], tmp_path / "m", TrainConfig(**TINY)))
    assert not (tmp_path / "m").exists()


def test_a_corpus_shorter_than_one_batch_trains_on_smaller_batches(tmp_path):
    text = STORY[:2000]  # a default batch is 32 × 129 characters
    assert len(text) < 32 * 129
    model = _trains(read_corpus(text.encode(), name="short.txt"), tmp_path, max_steps=1)
    assert len(model.vocab) > 10


def test_a_corpus_too_short_for_any_batch_is_refused_with_the_numbers(tmp_path):
    with pytest.raises(TextError, match=r"too short to train on: 500 characters, but at least [\d,]+ are needed"):
        list(train([read_corpus(STORY[:500].encode(), name="tiny.txt")], tmp_path / "m", TrainConfig(**TINY)))


# --- prompts ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model() -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(list(Vocab.build([STORY]).chars), num_layers=2, hidden_size=32, embedding_dim=8).eval()


def _generate(model, prompt, **settings) -> str:
    fitted, _ = prepare_prompt(model, prompt)
    checked = SampleSettings(**({"length": 40, "seed": 1} | settings)).checked(len(model.vocab))
    return "".join(piece.char for piece in stream(model, fitted, checked))


def test_empty_prompt_generates(model):
    assert len(_generate(model, "")) == 40


def test_long_prompt_reads_only_its_tail_in_bounded_time(model):
    tail = STORY[-MAX_PROMPT_CHARS:]
    prompt = "x" * 97_000 + STORY
    fitted, _ = prepare_prompt(model, prompt[-100_000:])
    assert fitted == tail
    assert prepare_prompt(model, prompt)[0] == prepare_prompt(model, prompt[-PROMPT_WINDOW_CHARS:])[0]
    # A million unknown characters, 65,000 of them distinct, took minutes when each was looked up in a list.
    hostile = "".join(chr(0xF0000 + i % 65_000) for i in range(1_000_000))
    start = time.perf_counter()
    fitted, changed = prepare_prompt(model, hostile)
    assert time.perf_counter() - start < 10
    assert fitted == "" and 0 < len(changed) <= PROMPT_WINDOW_CHARS
    assert len(_generate(model, hostile)) == 40


def test_prompt_of_only_unknown_characters_is_dropped_and_named(model):
    fitted, changed = prepare_prompt(model, "ЖЖЖ日本語🙂")
    assert fitted == "" and changed == ["Ж", "日", "本", "語", "🙂"]
    assert len(_generate(model, "ЖЖЖ日本語🙂")) == 40


def test_control_characters_in_a_prompt_are_dropped(model):
    fitted, changed = prepare_prompt(model, "a fox\x00\x1b[31m\x07\x7f\u202e\u200b ran")
    assert fitted.startswith("a fox") and fitted.endswith(" ran")
    assert {"\x00", "\x1b", "\x07", "\x7f", "\u202e", "\u200b"} <= set(changed)
    assert all(c.isprintable() or c == "\n" for c in _generate(model, "\x00\x1b\x07"))


def test_lone_surrogates_are_dropped_without_warnings(model):
    folding = CharRNN(list(model.vocab.chars), ascii_fold=True, num_layers=1, hidden_size=8, embedding_dim=4)
    for net in (model, folding):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # unidecode used to warn about "a narrow Python build"
            fitted, changed = prepare_prompt(net, "a fox\ud800 ran\udfff")
        assert fitted == "a fox ran"
        assert changed[:2] == ["\ud800", "\udfff"]
    assert len(_generate(model, "\udcff\ud83d")) == 40


# --- parameters bypassing the UI ------------------------------------------------------------------

REFUSED_SETTINGS = [
    ({"temperature": -1}, "temperature must be a finite number, 0 or more"),
    ({"temperature": math.nan}, "temperature must be a finite number"),
    ({"temperature": math.inf}, "temperature must be a finite number"),
    ({"temperature": "hot"}, "temperature must be a number"),
    ({"length": -5}, "length must be a whole number"),
    ({"length": 10_000_000}, f"length must be at most {MAX_SAMPLE_LENGTH:,}"),
    ({"length": 2.5}, "length must be a whole number"),
    ({"length": math.nan}, "length must be a whole number"),
    ({"length": "100"}, "length must be a whole number"),
    ({"top_k": -1}, "top-k must be a whole number"),
    ({"top_k": 2.5}, "top-k must be a whole number"),
    ({"top_p": 0}, r"top-p must be in \(0, 1\]"),
    ({"top_p": 1.5}, r"top-p must be in \(0, 1\]"),
    ({"top_p": -0.1}, r"top-p must be in \(0, 1\]"),
    ({"top_p": math.nan}, r"top-p must be in \(0, 1\]"),
    ({"top_p": "most"}, "top-p must be a number"),
    ({"seed": "abc"}, "seed must be a whole number"),
    ({"seed": 1.5}, "seed must be a whole number"),
    ({"seed": math.nan}, "seed must be a whole number"),
    ({"seed": math.inf}, "seed must be a whole number"),
    ({"seed": [1]}, "seed must be a whole number"),
    ({"seed": True}, "seed must be a whole number"),
]


@pytest.mark.parametrize(("given", "why"), REFUSED_SETTINGS, ids=[repr(g) for g, _ in REFUSED_SETTINGS])
def test_meaningless_settings_are_refused(given, why):
    with pytest.raises(ValueError, match=why):
        SampleSettings(**given).checked(30)


def test_overshooting_settings_are_clamped_and_still_generate(model):
    v = len(model.vocab)
    assert SampleSettings(temperature=1e30).checked(v).temperature == MAX_TEMPERATURE
    assert SampleSettings(top_k=0).checked(v).top_k is None  # 0 means off
    assert SampleSettings(top_k=10**6).checked(v).top_k is None  # more than the vocabulary: off
    assert SampleSettings(top_p=1.0).checked(v).top_p is None
    assert SampleSettings(seed=-5).checked(v).seed >= 0 and SampleSettings(seed=10**40).checked(v).seed < 2**63
    assert SampleSettings(seed=" 12 ").checked(v).seed == 12
    assert SampleSettings(length=0).checked(v).length == 0
    assert _generate(model, "fox", length=0) == ""
    for settings in ({"temperature": 1e30}, {"top_k": 10**6}, {"top_k": 1}, {"top_p": 1e-12}, {"seed": 10**40}):
        assert len(_generate(model, "fox", **settings)) == 40


@pytest.mark.parametrize("temperature", [1e-300, 5e-324, 1e-30, 1e-5])
def test_vanishing_temperatures_mean_greedy_instead_of_crashing(model, temperature):
    with torch.no_grad():
        sharp = CharRNN(**model.config).eval()
        sharp.load_state_dict(model.state_dict())
        sharp.head.weight.mul_(1000)  # large logits: 1e-300 used to overflow them to inf and crash multinomial
    assert _generate(sharp, "fox", temperature=temperature) == _generate(sharp, "fox", temperature=0)
    assert sample(sharp, "fox", SampleSettings(length=20, temperature=temperature, seed=1).checked(len(model.vocab)), 2)


def test_the_number_of_samples_is_bounded(model):
    settings = SampleSettings(length=5, seed=1).checked(len(model.vocab))
    for bad in (0, -1, MAX_NUM_SAMPLES + 1, 10**9, 2.0):
        with pytest.raises(ValueError, match="number of samples"):
            sample(model, "", settings, bad)


# --- the same through the command line: exit code 2 and one line, never a traceback ----------------

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, model):
    return save_checkpoint(tmp_path_factory.mktemp("cli") / "m", model, "card")


CLI_REFUSED = [
    (["--temperature", "-1"], "temperature must be a finite number"),
    (["--temperature", "nan"], "temperature must be a finite number"),
    (["--length", "-3"], "length must be a whole number"),
    (["--length", "10000000"], f"length must be at most {MAX_SAMPLE_LENGTH:,}"),
    (["--top-k", "-2"], "top-k must be a whole number"),
    (["--top-p", "0"], r"top-p must be in \(0, 1\]"),
    (["--top-p", "1.01"], r"top-p must be in \(0, 1\]"),
    (["--num-samples", "1000000000"], "number of samples"),
]


@pytest.mark.parametrize(("args", "why"), CLI_REFUSED, ids=[" ".join(a) for a, _ in CLI_REFUSED])
def test_cli_refuses_bad_sampling_parameters_in_one_line(model_dir, capsys, args, why):
    assert cli(["sample", str(model_dir), *args]) == 2
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert last.startswith("charrnn: error: ") and "Traceback" not in err
    assert re.search(why, last)


def test_cli_refuses_a_seed_that_is_not_an_integer(model_dir, capsys):
    with pytest.raises(SystemExit) as info:
        cli(["sample", str(model_dir), "--seed", "abc"])
    assert info.value.code == 2
    assert "invalid int value: 'abc'" in capsys.readouterr().err


def test_cli_clamps_and_handles_hostile_prompts(model_dir, capsys):
    assert cli(["sample", str(model_dir), "--temperature", "1e30", "--top-k", "0", "--length", "30",
                "--seed", "1"]) == 0
    assert len(capsys.readouterr().out) == 31
    # An undecodable byte in argv arrives as a lone surrogate (surrogateescape).
    assert cli(["sample", str(model_dir), "--prompt", "fox\udcff\x1b" + "q" * 100_000, "--length", "10",
                "--seed", "1"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "does not know" in captured.err
    assert len(captured.out) <= MAX_PROMPT_CHARS + 11


# --- the same through the running app's API (gradio_client, and raw HTTP for what it cannot send) ----------

@pytest.fixture(scope="module")
def app_url() -> str:
    pytest.importorskip("gradio_client")
    from app_testing import shared_app

    return shared_app()


APP_REFUSED = {**REFUSED, "one character": (b"a", "too short"),
               "utf-32 cut short": (STORY.encode("utf-32")[:-1], "not valid UTF-32")}


@pytest.mark.parametrize("name", list(APP_REFUSED))
def test_app_refuses_each_bad_upload_with_the_engines_message(app_url, tmp_path, name):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    data, why = APP_REFUSED[name]
    path = tmp_path / "upload.txt"
    path.write_bytes(data)
    client = Client(app_url, verbose=False)
    with pytest.raises(AppError, match=why):
        client.predict(handle_file(str(path)), "fairy-tales", "small (2 layers × 256)", 1, "as the base model", 0, 3,
                       api_name="/train")


def test_app_reads_awkward_but_readable_uploads(app_url, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    cjk = "".join(chr(0x4E00 + i) for i in range(20_992)) + "".join(chr(0x20000 + i) for i in range(29_008))
    uploads = {
        "utf-16": STORY.encode("utf-16"),
        "utf-16-le": STORY.encode("utf-16-le"),
        "cp1252": ("Café déjà vu — “fox”.\n" * 200).encode("cp1252"),
        "utf-8-sig": b"\xef\xbb\xbf" + STORY.replace("\n", "\r\n").encode(),
        "utf-8": ("The fox 🦊 and cafe\u0301\n" * 100 + cjk).encode(),
    }
    for encoding, data in uploads.items():
        path = tmp_path / f"{encoding}.txt"
        path.write_bytes(data)
        report = client.predict(handle_file(str(path)), "from scratch", "keep Unicode", api_name="/read_upload")
        assert f"encoding: {encoding}" in report
    assert "50,0" in report  # the CJK file: its 50,000+ distinct characters are reported, and it is accepted


def _raw_call(base: str, api: str, body: bytes, timeout: float = 60) -> tuple[str, str]:
    """POST to Gradio's HTTP API and read the SSE answer: (last event name, its data)."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{base}/gradio_api/call/{api}", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            event_id = json.loads(response.read())["event_id"]
    except urllib.error.HTTPError as exc:
        return f"http {exc.code}", exc.read().decode()
    with urllib.request.urlopen(f"{base}/gradio_api/call/{api}/{event_id}", timeout=timeout) as response:
        lines = response.read().decode("utf-8", "replace").splitlines()
    events = [line[len("event: "):] for line in lines if line.startswith("event: ")]
    data = [line[len("data: "):] for line in lines if line.startswith("data: ")]
    return events[-1], data[-1]


def _body(*values: str) -> bytes:
    defaults = ['"Once"', "0.8", "20", '"1"', '"fairy-tales"', '""', "0", "1.0"]
    given = [v if v is not None else d for v, d in zip(values + (None,) * 8, defaults)]
    return ('{"data": [' + ", ".join(given) + "]}").encode()


RAW_GENERATE = [
    # (what, JSON body, expected: "error:<message part>", "error" for Gradio's own refusal, or "complete")
    ("temperature NaN", _body(None, "NaN"), "error:Temperature must be a number"),
    ("temperature Infinity", _body(None, "Infinity"), "error:Temperature must be a number"),
    ("temperature -1", _body(None, "-1"), "error:the minimum is 0"),
    ("temperature a string", _body(None, '"hot"'), "error"),
    ("length NaN", _body(None, None, "NaN"), "error:Length (characters) must be a number"),
    ("length 1e400", _body(None, None, "1e400"), "error:Length (characters) must be a number"),
    ("length 10 million", _body(None, None, "10000000"), "error:the maximum is 2000"),
    ("length 0.5", _body(None, None, "20.5"), "error:length must be a whole number"),
    ("top-k NaN", _body(None, None, None, None, None, None, "NaN"), "error:Top-k must be a number"),
    ("top-k 1e9", _body(None, None, None, None, None, None, "1000000000"), "error:the maximum is 100"),
    ("top-p NaN", _body(None, None, None, None, None, None, None, "NaN"), "error:Top-p (nucleus) must be a number"),
    ("top-p 5", _body(None, None, None, None, None, None, None, "5"), "error:the maximum is 1"),
    ("seed 1e400", _body(None, None, None, '"1e400"'), "error:seed must be a whole number"),
    ("seed 1.5", _body(None, None, None, "1.5"), "error:seed must be a whole number"),
    ("seed a list", _body(None, None, None, "[1, 2]"), "error:Random seed must be given as text"),
    ("seed 30 digits", _body(None, None, None, "123456789012345678901234567890"), "complete"),
    ("model a list", _body(None, None, None, None, '["fairy-tales"]'), "error:must be given as text"),
    ("hub id a dict", _body(None, None, None, None, None, '{"a": 1}'), "error:must be given as text"),
    ("everything null", b'{"data": [null, null, null, null, null, null, null, null]}', "error"),
    ("too few values", b'{"data": ["Once"]}', "complete"),  # the missing ones take their defaults
    ("lone surrogates", _body('"On\\ud800ce\\udfff"'), "complete"),
    ("control characters", _body('"\\u0000\\u001b[31m\\u0007\\u202e"'), "complete"),
    ("a dict as prompt", _body('{"prompt": "Once"}'), "error:Seed prompt must be given as text"),
]


@pytest.mark.parametrize(("what", "body", "expected"), RAW_GENERATE, ids=[r[0] for r in RAW_GENERATE])
def test_app_generate_refuses_or_survives_anything_a_client_sends(app_url, what, body, expected):  # noqa: ARG001
    import json

    base = app_url.rstrip("/")
    event, data = _raw_call(base, "generate", body)
    kind, _, message = expected.partition(":")
    assert event == kind, data
    if message:
        assert message in json.loads(data)["error"]
    if kind == "complete":
        text, seed = json.loads(data)
        assert len(text) >= 20 and not any("\ud800" <= c <= "\udfff" for c in text) and seed.isdigit()
        assert all(c.isprintable() or c in "\n" for c in text)
    assert _raw_call(base, "generate", _body())[0] == "complete"  # and the app still serves the next visitor


def test_app_refuses_bodies_that_are_not_json_or_not_utf8(app_url):
    base = app_url.rstrip("/")
    assert _raw_call(base, "generate", b'{"data": [')[0].startswith("http 4")
    not_utf8 = b'{"data": ["On\xff\xfece", 0.8, 20, "1", "fairy-tales", "", 0, 1.0]}'
    assert _raw_call(base, "generate", not_utf8)[0].startswith("http 4")


def test_app_reads_only_the_tail_of_a_long_prompt_and_refuses_a_huge_one(app_url):
    import json

    from webapp import limits

    longest = ("once upon a time " * 6_000)[: limits.MAX_TEXT_CHARS]
    event, data = _raw_call(app_url.rstrip("/"), "generate", _body(json.dumps(longest)))
    assert event == "complete"
    text, _ = json.loads(data)
    assert len(text) == MAX_PROMPT_CHARS + 20
    event, data = _raw_call(app_url.rstrip("/"), "generate", _body(json.dumps("once upon a time " * 60_000)))  # 1 MB
    assert event == "error" and f"at most {limits.MAX_TEXT_CHARS:,}" in json.loads(data)["error"]


@pytest.mark.parametrize("stop_at, why", [
    (["."], "stop at must be one of the length, end of sentence, end of line, blank line or a text, not list"),
    ({"a": 1}, "stop at must be one of the length, end of sentence, end of line, blank line or a text, not dict"),
    ("x" * 65, "the stop at is 65 characters long; at most 64 are read here"),
])
def test_app_refuses_a_bad_stop_at_in_one_line_naming_it_without_a_traceback(app_url, capfd, stop_at, why):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False)
    with pytest.raises(AppError) as refused:
        client.predict("Once", 0.8, 20, "1", "fairy-tales", "", 0, 1.0, stop_at, api_name="/generate")
    assert str(refused.value.message) == why  # the message itself: not Python's text, not in quotes
    assert "Traceback" not in capfd.readouterr().err  # a visitor's mistake is not logged as a crash
