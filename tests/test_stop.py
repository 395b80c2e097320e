"""Stop conditions: a text ends at its first stop string once it has its minimum length, for every caller."""

import gradio as gr
import pytest
import torch

from charrnn.cli import main as cli
from charrnn.engine import sample
from charrnn.model import CharRNN
from charrnn.sampling import MAX_STOP_CHARS, MAX_STOP_STRINGS, SampleSettings, unescape
from charrnn.vocab import Vocab
from webapp.generate_tab import Generator
from webapp.inputs import STOP_CHOICES, sample_settings
from webapp.models import Studio

TEXT = "the cat sat. the dog ran! a bird sang?\nthe end.\n\n"


def model_of() -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(list(Vocab.build([TEXT]).chars), num_layers=1, hidden_size=32, embedding_dim=8, dropout=0.0).eval()


def test_a_stop_string_ends_the_text_with_it_and_the_text_is_the_start_of_the_unstopped_one():
    model = model_of()
    whole = sample(model, "the ", SampleSettings(length=400, temperature=1.0, seed=3))[0]
    for stop in (" ", "e", "t"):
        stopped = sample(model, "the ", SampleSettings(length=400, temperature=1.0, seed=3, stop=(stop,)))[0]
        assert stopped.endswith(stop) and whole.startswith(stopped)
        assert stop not in stopped[:-1]  # the first one ends it


def test_min_length_holds_a_stop_back_and_several_stops_end_at_the_first_of_them():
    model = model_of()
    whole = sample(model, "the ", SampleSettings(length=400, temperature=1.0, seed=4))[0]
    held = sample(model, "the ", SampleSettings(length=400, temperature=1.0, seed=4, stop=(" ",), min_length=30))[0]
    assert len(held) >= 30 and held.endswith(" ") and " " not in held[30:-1] and whole.startswith(held)
    first = sample(model, "the ", SampleSettings(length=400, temperature=1.0, seed=4, stop=("a", "e")))[0]
    assert first[-1] in "ae" and not set("ae") & set(first[:-1])


def test_without_a_stop_string_written_the_text_has_its_length():
    model = model_of()
    assert len(sample(model, "", SampleSettings(length=50, seed=1, stop=("zzzz",)))[0]) == 50


@pytest.mark.parametrize("settings, message", [
    (SampleSettings(stop=tuple("abcdefghi")), f"at most {MAX_STOP_STRINGS} stop strings"),
    (SampleSettings(stop=("x" * (MAX_STOP_CHARS + 1),)), "at most 64 characters"),
    (SampleSettings(min_length=-1), "minimum length"),
    (SampleSettings(stop=(3,)), "stop strings must be"),
])
def test_bad_stop_settings_are_refused_in_one_line(settings, message):
    with pytest.raises(ValueError, match=message):
        settings.checked(30)


def test_escapes_as_typed():
    assert unescape(r"\n") == "\n" and unescape(r"a\tb") == "a\tb"
    assert unescape(r"\\n") == "\\n" and unescape("é") == "é"


def test_the_cli_stops_at_an_escaped_newline_after_its_minimum_length(capsys, tmp_path):
    directory = tmp_path / "m"
    model_of().save_pretrained(directory)
    args = ["sample", str(directory), "--prompt", "the ", "--seed", "2", "--length", "300", "--temperature", "1"]
    assert cli([*args, "--stop-at", r"\n", "--stop-at", ".", "--min-length", "5"]) == 0
    out = capsys.readouterr().out[len("the "):-1]  # the command adds a newline at the end
    assert len(out) >= 5 and out[-1] in "\n." and not set("\n.") & set(out[5:-1])
    assert cli([*args, "--min-length", "-2"]) == 2
    assert "minimum length" in capsys.readouterr().err


def test_the_app_maps_its_stop_choices_and_keeps_old_calls_working(tmp_path):
    from app_testing import make_checkpoints

    studio = Studio(checkpoints=make_checkpoints(tmp_path))
    assert sample_settings(100, 1.0, 0, 1.0, 1, 40, stop_at="end of sentence").stop == STOP_CHOICES["end of sentence"]
    assert sample_settings(100, 1.0, 0, 1.0, 1, 40, stop_at=r"x\n").stop == ("x\n",)
    with pytest.raises(gr.Error, match="minimum length"):
        sample_settings(100, 1.0, 0, 1.0, 1, 40, min_length=-3)
    old = list(Generator(studio).generate("Once upon", 1.0, 300, "5", "fairy-tales"))[-1][0]
    new = list(Generator(studio).generate("Once upon", 1.0, 300, "5", "fairy-tales", "", 0, 1.0, None, "end of line",
                                          3))[-1][0]
    generated = new[len("Once upon"):]
    assert old.startswith(new) and len(generated) >= 3
    assert len(new) == len(old) or (generated.endswith("\n") and "\n" not in generated[3:-1])


def test_the_app_and_the_cli_write_the_same_beam_search(tmp_path, capsys):
    from app_testing import make_checkpoints

    root = make_checkpoints(tmp_path)
    studio = Studio(checkpoints=root)
    text, shown = list(Generator(studio).generate("Once upon", 1.0, 80, "", "fairy-tales", "", 0, 1.0, None,
                                                  "the length", 0, "beam search", 4))[-1]
    assert "beam search" in shown and len(text) == len("Once upon") + 80
    assert cli(["sample", str(root / "fairy-tales"), "--prompt", "Once upon", "--length", "80", "--beam", "4",
                "--no-repeat-ngram", "6"]) == 0
    assert capsys.readouterr().out == text + "\n"
    with pytest.raises(gr.Error, match="beam width"):
        list(Generator(studio).generate("Once", 1.0, 80, "", "fairy-tales", "", 0, 1.0, None, "the length", 0,
                                        "beam search", 99))
