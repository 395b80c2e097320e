"""Fine-tuning in a time budget as a user meets it: a plan chosen by measurement and said at start-up,
samples by the clock from the first seconds, a loss curve from the first step, a hint for a budget too
short for the text, and prompts taken from the text."""

import re

import pytest
import torch

from charrnn.cli import main
from charrnn.config import TrainConfig
from charrnn.engine import sample
from charrnn.finetune import BATCH, EVALS, SEQ_LEN, budget_hint, dropout_for, finetune_chars_per_s, finetune_config
from charrnn.model import CharRNN
from charrnn.prompts import prompt_suggestions
from charrnn.samples import card_samples
from charrnn.sampling import SampleSettings
from charrnn.train import train
from charrnn.vocab import Vocab

TALE = "Once upon a time there was a fox who lived by the river, and every day he went to fish.\n\n"
TEXT = "".join(f"{TALE}The crow number {i} sat in the tree and sang a song to the fox.\n\n" for i in range(300))


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> CharRNN:
    torch.manual_seed(0)
    model = CharRNN(list(Vocab.build([TEXT]).chars), num_layers=1, hidden_size=32, embedding_dim=8, dropout=0.2)
    out = tmp_path_factory.mktemp("base") / "base"
    model.save_pretrained(out)
    return model


def test_the_plan_fills_what_the_user_left_open_and_says_why(base):
    planned = finetune_config(TrainConfig(time_budget=60, lr=1e-3), base, [TEXT])
    assert (planned.batch_size, planned.seq_len, planned.lr) == (BATCH, SEQ_LEN, 1e-3)  # the given lr is kept
    assert planned.evaluations == EVALS and planned.eval_chars and planned.eval_streams
    assert 0 < planned.time_budget < 60  # the measuring came out of the budget
    assert planned.autosize.startswith("fine-tuning in 60s: measured") and "training chars/s" in planned.autosize
    everything = TrainConfig(time_budget=60, batch_size=8, seq_len=32, lr=1e-3, dropout=0.1, warmup_steps=5,
                             eval_interval=10)
    assert finetune_config(everything, base, [TEXT]) == everything  # nothing left to choose: nothing measured


def test_dropout_comes_in_only_once_the_budget_reads_the_text_more_than_once():
    assert dropout_for(0.3, 0.4) == 0.0 and dropout_for(0.3, 1.5) == 0.15 and dropout_for(0.3, 5) == 0.3


def test_a_budgeted_fine_tune_samples_by_the_clock_from_the_same_prompt_and_seed(base, tmp_path):
    config = TrainConfig(time_budget=5, sample_every_s=1.0, sample_prompt="Once upon", sample_length=40, seed=3,
                         lr=1e-30, warmup_steps=0)  # an lr that changes nothing: every sample must be the same
    events = list(train([TEXT], tmp_path / "m", config, init=base))
    start, samples = events[0], [e for e in events if e.kind == "sample"]
    assert "fine-tuning in 5s" in start.message
    assert len(samples) >= 2 and samples[0].elapsed <= 1.0 + 0.5
    assert all(e.sample.startswith("Once upon") for e in samples)
    assert len({e.sample for e in samples}) == 1  # same weights, prompt and seed: the same text
    steps = [e for e in events if e.kind == "step"]
    assert steps[0].step == 1 and steps[0].elapsed <= 2.0  # the loss curve starts with the first step
    result = events[-1].result
    assert 0 < result.learning_share <= 1 and "in optimizer steps" in events[-1].message


def test_samples_by_the_clock_change_as_the_weights_learn(base, tmp_path):
    config = TrainConfig(time_budget=5, sample_every_s=1.0, sample_prompt="Once upon", sample_length=40, lr=1e-2)
    samples = [e.sample for e in train([TEXT], tmp_path / "m", config, init=base) if e.kind == "sample"]
    assert len(set(samples)) >= 2


def test_the_card_samples_written_together_are_each_what_sampling_alone_writes(base):
    for written in card_samples(base, seed=7, should_stop=lambda: False):
        alone = sample(base, "", SampleSettings(length=400, temperature=written["temperature"], seed=7))[0]
        assert written["text"] == alone


def test_a_budget_too_short_for_the_text_gets_one_line_with_the_measured_speed(base):
    speed = finetune_chars_per_s(base, "cpu")
    assert speed > 0
    short = budget_hint(100 * 60 * int(speed), 60, speed)
    assert short.startswith("A minute of training reads about") and "\n" not in short
    assert re.search(r"reads \d+% of this text", short)
    assert budget_hint(int(10 * speed), 60, speed) == ""  # a minute reads this text many times over


def test_prompt_suggestions_come_from_the_text_itself():
    assert prompt_suggestions(TEXT)[0] == "Once upon a time there"
    assert all(s in TEXT for s in prompt_suggestions(TEXT))
    play = "ROMEO:\nBut soft, what light.\n\nJULIET:\nAy me.\n\nROMEO:\nShe speaks.\n\nNURSE:\nMadam!\n"
    assert prompt_suggestions(play)[:2] == ["ROMEO:\n", "JULIET:\n"]  # a speaker's name, then their line
    poems = "春曉\n春眠不覺曉，處處聞啼鳥。\n\n靜夜思\n床前明月光，疑是地上霜。\n\n登鸛雀樓\n白日依山盡，黃河入海流。\n"
    assert prompt_suggestions(poems) == ["春曉\n", "靜夜思\n", "登鸛雀樓\n"]
    assert prompt_suggestions("") == [] and prompt_suggestions("\n\n  \n") == []


def test_the_cli_prints_samples_by_the_clock_from_the_texts_first_words(capsys, base, tmp_path):
    text = tmp_path / "fox.txt"
    text.write_text(TEXT)
    base_dir = tmp_path / "base"
    base.save_pretrained(base_dir)
    code = main(["train", str(text), "--init", str(base_dir), "--out", str(tmp_path / "m"), "--time-budget", "4",
                 "--sample-every-s", "1", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 0 and "fine-tuning in 4s: measured" in err
    assert re.search(r"--- sample at step \d+, \d+ s ---\nOnce upon a time there", err)
    assert main(["train", str(text), "--init", str(base_dir), "--out", str(tmp_path / "n"), "--time-budget", "4",
                 "--sample-every-s", "-1"]) == 2
