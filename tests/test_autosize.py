"""A time budget chooses the model: bigger for longer budgets and faster devices, never over the
user's own options, and a budgeted run from the CLI finishes in about its budget."""

import time

import torch

from charrnn import autosize
from charrnn.autosize import auto_config, choose_size, count_parameters
from charrnn.checkpoint import load_model
from charrnn.cli import main
from charrnn.train import TrainConfig, train

CPU = torch.device("cpu")


def speed_like_this_cpu(_cell, layers, hidden, embedding, vocab_size, *_batch_seq_device, **_options):
    """chars/s falling with model size as measured on the 2-core CPU (2x256: ~39k chars/s), whatever the
    batch, sequence, device and options (a stand-in for measure_chars_per_s)."""
    return 3.4e10 / count_parameters(layers, hidden, embedding, vocab_size)


def test_a_longer_budget_buys_a_bigger_model(monkeypatch):
    monkeypatch.setattr(autosize, "measure_chars_per_s", speed_like_this_cpu)
    one_minute = choose_size("lstm", 60, 66, 1_000_000, CPU)
    five_minutes = choose_size("lstm", 300, 66, 1_000_000, CPU)
    ten_seconds = choose_size("lstm", 10, 66, 1_000_000, CPU)
    assert (one_minute.num_layers, one_minute.hidden_size) == (2, 256)
    assert (five_minutes.num_layers, five_minutes.hidden_size) == (2, 384)
    assert ten_seconds.parameters < one_minute.parameters < five_minutes.parameters


def test_a_faster_device_buys_a_bigger_model_but_the_text_caps_it(monkeypatch):
    monkeypatch.setattr(autosize, "measure_chars_per_s", lambda *a, **k: 5e6)  # noqa: ARG005 - GPU-like: size barely slows it
    big = choose_size("lstm", 300, 66, 1_000_000, CPU)
    assert big.hidden_size >= 768
    assert big.parameters <= autosize.PARAMS_PER_TRAIN_CHAR * 1_000_000
    small_text = choose_size("lstm", 300, 66, 50_000, CPU)
    assert small_text.parameters < big.parameters


def test_user_options_win_and_the_rest_is_filled(monkeypatch):
    monkeypatch.setattr(autosize, "measure_chars_per_s", speed_like_this_cpu)
    text = "the quick brown fox jumps over the lazy dog. " * 20_000
    cfg = auto_config(TrainConfig(time_budget=300, hidden_size=96, lr=3e-3, seq_len=100, device="cpu"), [text])
    assert (cfg.hidden_size, cfg.lr, cfg.seq_len) == (96, 3e-3, 100)
    assert cfg.num_layers == 2 and cfg.batch_size and cfg.dropout is not None and cfg.warmup_steps and cfg.eval_interval
    auto = auto_config(TrainConfig(time_budget=60, device="cpu"), [text])  # the CPU's rules
    assert auto.lr > 2e-3 and auto.seq_len == 64  # short runs learn faster with a high LR and short windows
    assert auto.time_budget <= 60 and "2x256" in auto.autosize


def test_budgeted_training_chooses_measures_and_keeps_to_its_budget(tmp_path, capsys):
    torch.set_num_threads(1)
    text_file = tmp_path / "t.txt"
    text_file.write_text("Once upon a time there was a small fox who lived by the river. " * 600, encoding="utf-8")
    start = time.monotonic()
    assert main(["train", str(text_file), "--out", str(tmp_path / "m"), "--time-budget", "4", "--quiet",
                 "--seed", "3"]) == 0
    took = time.monotonic() - start
    err = capsys.readouterr().err
    assert "time budget 4s:" in err and "chars/s" in err
    model = load_model(tmp_path / "m")
    supported = autosize.PARAMS_PER_TRAIN_CHAR * len(text_file.read_text())
    assert model.num_parameters() <= supported or model.hidden_size == 128
    assert took < 4 + 30  # the budget covers measuring and training; the rest is the final evaluation and samples


def test_fine_tuning_keeps_the_base_model_size(tmp_path):
    text = "a small text about a fox and a crow. " * 400
    config = TrainConfig(num_layers=1, hidden_size=16, embedding_dim=8, max_steps=3, batch_size=4, seq_len=16)
    for _ in train([text], tmp_path / "base", config):
        pass
    events = list(train([text], tmp_path / "ft", TrainConfig(time_budget=2), init=tmp_path / "base"))
    result = events[-1].result
    assert result.config["hidden_size"] == 16 and result.config["autosize"].startswith("fine-tuning in 2s")


def test_a_tiny_budget_still_trains_something(tmp_path):
    text = "x y z. " * 3000
    events = list(train([text], tmp_path / "m", TrainConfig(time_budget=0.5)))
    assert events[-1].kind == "done" and events[-1].result.steps >= 1


def test_on_a_gpu_the_batch_grows_only_while_the_text_needs_more_passes(monkeypatch):
    def batch_is_nearly_free(_cell, layers, hidden, embedding, vocab_size, batch, *_seq_device, **_options):
        return 100_000.0 * batch * 1e6 / count_parameters(layers, hidden, embedding, vocab_size)

    monkeypatch.setattr(autosize, "measure_chars_per_s", batch_is_nearly_free)
    gpu = torch.device("cuda")  # only its type is read: the speeds are the fake ones above
    small_text = choose_size("lstm", 180, 66, 1_000_000, gpu)
    big_text = choose_size("lstm", 180, 66, 100_000_000, gpu)
    # Tinyshakespeare is seen >= GPU_ENOUGH_EPOCHS times even so: more updates beat more passes.
    assert small_text.batch_size == 32
    assert big_text.batch_size > small_text.batch_size  # a 100 MB text is not: the batch buys characters
    assert 180 * small_text.chars_per_s / 1_000_000 >= autosize.GPU_ENOUGH_EPOCHS
