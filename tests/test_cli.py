"""`charrnn train | sample | eval` as a user types them: output, exit codes, one-line errors."""

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

from charrnn.batching import split_train_val
from charrnn.checkpoint import load_model
from charrnn.cli import main
from charrnn.evaluate import evaluate_text

TEXT = "the quick brown fox jumps over the lazy dog.\n" * 60
TINY = ["--layers", "1", "--hidden", "24", "--embedding", "8", "--batch-size", "4", "--seq-len", "16", "--quiet"]


def cli(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "fox.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, corpus) -> Path:
    out = tmp_path_factory.mktemp("models") / "fox"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    assert main(["train", str(corpus), "--out", str(out), "--max-steps", "40", "--lr", "0.02", "--eval-interval", "20",
                 *TINY]) == 0
    torch.set_num_threads(before)
    return out


def test_train_writes_a_complete_checkpoint(model_dir):
    assert {"config.json", "model.safetensors", "README.md", "training_state"} <= {p.name for p in model_dir.iterdir()}
    model = load_model(model_dir)
    assert (model.hidden_size, model.num_layers) == (24, 1)


def test_train_reports_progress_and_the_validation_loss(capsys, corpus, tmp_path):
    code, out, err = cli(capsys, "train", corpus, "--out", tmp_path / "m", "--max-steps", "12", "--eval-interval", "6",
                         *TINY[:-1])
    assert code == 0 and out == ""
    assert ("parameters" in err and "best validation loss" in err and "bits/char" in err
            and f"saved {tmp_path / 'm'}" in err)
    assert "loss=" in err and "eta=" in err  # the tqdm progress line


def test_train_says_when_it_strips_a_gutenberg_licence(capsys, tmp_path):
    book = tmp_path / "book.txt"
    book.write_text("*** START OF THE PROJECT GUTENBERG EBOOK FOX ***\n" + TEXT
                    + "*** END OF THE PROJECT GUTENBERG EBOOK FOX ***\nLicence.\n")
    code, _, err = cli(capsys, "train", book, "--out", tmp_path / "m", "--max-steps", "2", *TINY)
    assert code == 0 and "book.txt: stripped the Project Gutenberg header and licence" in err


def test_train_refuses_to_replace_a_model_unless_told(capsys, corpus, model_dir, tmp_path):
    code, _, err = cli(capsys, "train", corpus, "--out", model_dir, "--max-steps", "2", *TINY)
    assert code == 2 and "--overwrite" in err
    out = tmp_path / "again"
    assert cli(capsys, "train", corpus, "--out", out, "--max-steps", "2", *TINY)[0] == 0
    assert cli(capsys, "train", corpus, "--out", out, "--max-steps", "2", "--overwrite", "--seed", "3", *TINY)[0] == 0


def test_resume_continues_a_run(capsys, corpus, tmp_path):
    out = tmp_path / "m"
    assert cli(capsys, "train", corpus, "--out", out, "--max-steps", "6", "--eval-interval", "3", *TINY)[0] == 0
    code, _, err = cli(capsys, "train", corpus, "--out", out, "--resume", "--max-steps", "12", "--quiet")
    assert code == 0 and "best validation loss" in err
    assert json.loads((out / "training_state" / "state.json").read_text())["step"] == 12


def test_fine_tuning_from_the_command_line_grows_the_vocabulary(capsys, model_dir, tmp_path):
    new = tmp_path / "new.txt"
    new.write_text("Øresund! Ærø? 42 ÅÅ\n" * 80)
    code, _, err = cli(capsys, "train", new, "--out", tmp_path / "tuned", "--init", model_dir, "--max-steps", "4",
                       "--quiet")
    assert code == 0, err
    grown, base = load_model(tmp_path / "tuned"), load_model(model_dir)
    assert (grown.vocab.chars[: len(base.vocab)] == base.vocab.chars
            and {"Ø", "Æ", "Å", "4", "!"} <= set(grown.vocab.chars))


def test_sample_streams_reproducible_text(capsys, model_dir):
    code, out, err = cli(capsys, "sample", model_dir, "--prompt", "the ", "--seed", "1", "--length", "50")
    assert code == 0 and err == ""
    assert out.startswith("the ") and len(out) == len("the ") + 50 + 1
    assert cli(capsys, "sample", model_dir, "--prompt", "the ", "--seed", "1", "--length", "50")[1] == out
    assert cli(capsys, "sample", model_dir, "--prompt", "the ", "--seed", "2", "--length", "50")[1] != out
    code, out, err = cli(capsys, "sample", model_dir, "--length", "20", "--temperature", "0")
    assert code == 0 and "seed" in err and len(out) == 21  # no prompt is fine; the drawn seed is shown


def test_sample_several_at_once_with_top_k_and_top_p(capsys, model_dir):
    code, out, _ = cli(capsys, "sample", model_dir, "--num-samples", "3", "--length", "30", "--seed", "4",
                       "--top-k", "5", "--top-p", "0.9")
    assert code == 0
    headers = [line for line in out.splitlines() if line.startswith("===")]
    assert headers == [f"=== sample {k} (seed {3 + k}) ===" for k in (1, 2, 3)]


def test_beam_search_stops_where_sampling_would(capsys, model_dir):
    """Width 1 is greedy decoding: with --stop-at and --min-length it ends where greedy sampling ends."""
    args = ("sample", model_dir, "--prompt", "the ", "--length", "200", "--stop-at", " ", "--min-length", "10")
    code, greedy, _ = cli(capsys, *args, "--temperature", "0", "--seed", "1")
    code_beam, beam, err = cli(capsys, *args, "--beam", "1")
    assert code == code_beam == 0 and err == ""
    assert beam == greedy and greedy.endswith(" \n") and len("the ") + 10 < len(greedy) < len("the ") + 200


def test_sample_warns_about_prompt_characters_it_does_not_know(capsys, model_dir):
    code, out, err = cli(capsys, "sample", model_dir, "--prompt", "thé ★ fox", "--length", "5", "--seed", "1")
    assert code == 0 and out.startswith("the  fox")
    assert "'é'" in err and "'★'" in err and "Traceback" not in err


def test_eval_prints_json_for_the_whole_file_and_its_validation_split(capsys, model_dir, corpus):
    code, out, _ = cli(capsys, "eval", model_dir, corpus, "--split", "val")
    val = json.loads(out)
    assert code == 0 and {"loss", "bpc", "chars"} <= val.keys()
    held_out = split_train_val([TEXT], 0.1)[1]
    assert val["loss"] == pytest.approx(evaluate_text(load_model(model_dir), held_out)["loss"], abs=1e-5)
    assert val["bpc"] == pytest.approx(val["loss"] / 0.6931471805599453, abs=1e-5)
    whole = json.loads(cli(capsys, "eval", model_dir, corpus, "--split", "all")[1])
    assert whole["chars"] == len(TEXT) - 1 and val["chars"] < 0.11 * len(TEXT)


def bad_inputs(tmp: Path, model: Path, corpus: Path) -> list[list]:
    (tmp / "empty.txt").write_text("")
    (tmp / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (tmp / "short.txt").write_text("too short")
    (tmp / "not-a-model").mkdir(exist_ok=True)
    (tmp / "not-a-model" / "notes.txt").write_text("hello")
    return [
        ["train", tmp / "missing.txt", "--out", tmp / "o1"],
        ["train", tmp / "image.png", "--out", tmp / "o2"],
        ["train", tmp / "empty.txt", "--out", tmp / "o3"],
        ["train", tmp / "short.txt", "--out", tmp / "o4"],
        ["train", corpus, "--out", tmp / "o5", "--max-steps", "-3"],
        ["train", corpus, "--out", tmp / "o6", "--lr", "fast"],
        ["train", corpus, "--out", tmp / "o7", "--init", tmp / "not-a-model"],
        ["train", corpus, "--out", tmp / "o8", "--device", "tpu"],
        ["sample", model, "--length", "-5"],
        ["sample", model, "--length", "many"],
        ["sample", model, "--temperature", "nan"],
        ["sample", model, "--top-p", "2"],
        ["sample", model, "--device", "tpu"],
        ["sample", tmp / "not-a-model"],
        ["sample", tmp / "nowhere"],
        ["eval", model, tmp / "missing.txt"],
        ["eval", model, tmp / "image.png"],
        ["eval", tmp / "not-a-model", corpus],
        ["eval", model, corpus, "--split", "test"],
        ["convert", tmp / "not-a-model", "--dtype", "fp16"],
        ["convert", model, "--dtype", "int4"],
        ["train", corpus, "--out", tmp / "o9", "--precision", "fp8"],
    ]


def test_every_bad_input_is_one_line_on_stderr_and_exit_code_2(capsys, tmp_path, model_dir, corpus):
    for argv in bad_inputs(tmp_path, model_dir, corpus):
        code, out, err = cli(capsys, *argv)
        lines = err.strip().splitlines()
        assert code == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith("charrnn") and "error" in lines[0], (argv, err)
        assert "Traceback" not in err and out == ""
    assert not any((tmp_path / f"o{k}").exists() for k in range(1, 10))  # nothing half-written


def test_python_dash_m_and_the_console_script_work(model_dir):
    ok = subprocess.run([sys.executable, "-m", "charrnn", "sample", str(model_dir), "--length", "20", "--seed", "3"],
                        capture_output=True, text=True, timeout=180)
    assert ok.returncode == 0 and len(ok.stdout) == 21, (ok.returncode, ok.stdout, ok.stderr)
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["charrnn"] == "charrnn.cli:main"


def test_convert_to_fp16_halves_the_weights_and_keeps_the_loss(capsys, model_dir, corpus, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    copy = tmp_path / "fox16"
    shutil.copytree(model_dir, copy)
    before = json.loads(cli(capsys, "eval", copy, corpus)[1])["loss"]
    size = (copy / "model.safetensors").stat().st_size
    code, _, err = cli(capsys, "convert", copy, "--dtype", "fp16")
    assert code == 0 and "fp16" in err
    assert (copy / "model.safetensors").stat().st_size < 0.55 * size
    assert all(t.dtype == torch.float16 for t in load_file(str(copy / "model.safetensors")).values())
    model = load_model(copy)  # strict, and computing in fp32 again
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert json.loads(cli(capsys, "eval", copy, corpus)[1])["loss"] == pytest.approx(before, abs=0.002)
    assert cli(capsys, "sample", copy, "--length", "20", "--seed", "1")[0] == 0

    # A weight fp16 cannot hold is refused, and the stored model is left as it was.
    weights = load_file(str(copy / "model.safetensors"))
    weights = {k: v.float() for k, v in weights.items()}
    next(iter(weights.values()))[0] = 1e6
    save_file(weights, str(copy / "model.safetensors"))
    stored = (copy / "model.safetensors").read_bytes()
    code, _, err = cli(capsys, "convert", copy, "--dtype", "fp16")
    assert code == 2 and "does not fit in fp16" in err
    assert (copy / "model.safetensors").read_bytes() == stored
