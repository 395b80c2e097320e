"""The training loop as a user meets it: it learns, it stops when told, it resumes exactly, it fine-tunes."""

import json
import math
import random
import re
import threading
from collections import Counter

import pytest
import torch
from safetensors.torch import load_file

import charrnn.checkpoint
from charrnn.batching import split_train_val
from charrnn.card import CardInfo
from charrnn.checkpoint import CheckpointError, load_model, load_training_state
from charrnn.engine import sample
from charrnn.evaluate import evaluate_text
from charrnn.model import CharRNN
from charrnn.sampling import SampleSettings
from charrnn.text import TextError
from charrnn.train import EVAL_CHARS_DURING_TRAINING, TrainConfig, quick_val_ids, resolve, train
from charrnn.vocab import Vocab

REPEATED = "the quick brown fox jumps over the lazy dog. " * 60


def tiny(**overrides) -> TrainConfig:
    base = {"num_layers": 1, "hidden_size": 32, "embedding_dim": 16, "dropout": 0.0, "batch_size": 4, "seq_len": 16,
            "lr": 1e-2, "warmup_steps": 2, "max_steps": 20, "eval_interval": 10, "patience": None}
    return TrainConfig(**(base | overrides))


def run(corpora, out, config, **kw):
    events = list(train(corpora, out, config, **kw))
    assert events[0].kind == "start" and events[-1].kind == "done"
    return events, events[-1].result


def unigram_entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log(n / len(text)) for n in counts.values())


def weights(directory) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def state_weights(directory) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_training_state(directory)["tensors"].items() if k.startswith("model.")}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_tiny_model_overfits_repeated_text_far_below_unigram_entropy(tmp_path):
    config = tiny(batch_size=8, seq_len=32, lr=2e-2, max_steps=80, eval_interval=20, sample_interval=40,
                  sample_length=30)
    events, result = run([REPEATED], tmp_path / "m", config)
    assert result.best_val_loss < 0.25 * unigram_entropy(REPEATED)  # about 2.9 nats/char for a unigram model
    steps = [e for e in events if e.kind == "step"]
    assert steps[-1].step == 80 and steps[-1].train_loss < steps[0].train_loss
    assert all(e.chars_per_s and e.eta is not None for e in steps)
    assert [e.step for e in events if e.kind == "eval"] == [20, 40, 60, 80]
    assert [len(e.sample) for e in events if e.kind == "sample"] == [30, 30]
    assert "bits/char" in events[-1].message and result.stopped_because == "finished"
    model = load_model(tmp_path / "m")
    assert sample(model, "the quick ", SampleSettings(length=9, temperature=0, seed=0))[0] == "brown fox"


def test_training_on_cpu_is_deterministic_given_a_seed(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        run([REPEATED], tmp_path / name, tiny(max_steps=12, seed=seed, device="cpu"))
    assert_same(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert_same(state_weights(tmp_path / "a"), state_weights(tmp_path / "b"))
    assert not torch.equal(weights(tmp_path / "a")["head.weight"], weights(tmp_path / "c")["head.weight"])


def test_resuming_a_cancelled_run_ends_exactly_where_an_uninterrupted_run_does(tmp_path):
    # dropout: the RNG must resume too. On the CPU: a GPU's atomic adds may sum in another order.
    config = tiny(max_steps=40, eval_interval=10, dropout=0.1, num_layers=2, device="cpu")
    run([REPEATED], tmp_path / "whole", config)

    cancel = threading.Event()
    events = []
    for event in train([REPEATED], tmp_path / "split", config, cancel=cancel):
        events.append(event)
        if event.kind == "step" and event.step == 20:
            cancel.set()
    assert events[-1].result.stopped_because == "cancelled" and events[-1].result.steps == 20
    assert load_training_state(tmp_path / "split")["meta"]["step"] == 20

    with pytest.raises(CheckpointError, match="other text"):
        list(train([REPEATED + "!"], tmp_path / "split", TrainConfig(), resume=True))
    events, result = run([REPEATED], tmp_path / "split", TrainConfig(), resume=True)
    assert result.steps == 40 and [e.step for e in events if e.kind == "eval"] == [30, 40]
    assert_same(state_weights(tmp_path / "split"), state_weights(tmp_path / "whole"))
    assert_same(weights(tmp_path / "split"), weights(tmp_path / "whole"))


def test_a_gru_trains_resumes_and_samples(tmp_path):
    run([REPEATED], tmp_path / "m", tiny(cell="gru", num_layers=2, max_steps=10, eval_interval=5))
    _, result = run([REPEATED], tmp_path / "m", TrainConfig(max_steps=15), resume=True)
    model = load_model(tmp_path / "m")
    assert model.cell == "gru" and result.steps == 15
    assert len(sample(model, "the ", SampleSettings(length=40, seed=1), num_samples=2)[1]) == 40


def test_cancelling_from_another_thread_stops_cleanly_and_keeps_the_best_model(tmp_path):
    cancel, evaluated = threading.Event(), threading.Event()
    watcher = threading.Thread(target=lambda: evaluated.wait(30) and cancel.set())
    watcher.start()
    events = []
    for event in train([REPEATED], tmp_path / "m", tiny(max_steps=100_000, eval_interval=5), cancel=cancel):
        events.append(event)
        if event.kind == "eval":
            evaluated.set()
    watcher.join()
    result = events[-1].result
    assert result.stopped_because == "cancelled" and result.steps < 1000
    best = min(e.val_loss for e in events if e.kind == "eval")
    model = load_model(tmp_path / "m")
    val_text = split_train_val([REPEATED], 0.1)[1]
    assert evaluate_text(model, val_text)["loss"] == pytest.approx(best, rel=1e-5)


def test_best_model_is_kept_by_validation_loss_and_training_stops_when_it_stalls(tmp_path):
    # Random letters cannot be predicted better than uniformly: a big model memorises the
    # training part, validation gets worse, and patience ends the run.
    rng = random.Random(0)
    text = "".join(rng.choice("abcdefghijklmnop") for _ in range(3000))
    config = tiny(hidden_size=48, batch_size=4, seq_len=32, lr=3e-2, warmup_steps=0, max_steps=300, eval_interval=10,
                  patience=3)
    events, result = run([text], tmp_path / "m", config)
    assert result.stopped_because == "validation loss stopped improving" and result.steps < 300
    vals = [e.val_loss for e in events if e.kind == "eval"]
    assert vals[-1] > min(vals) and all(v > min(vals) for v in vals[-3:])
    assert result.best_val_loss == pytest.approx(min(vals), rel=1e-6)
    model = load_model(tmp_path / "m")
    assert evaluate_text(model, split_train_val([text], 0.1)[1])["loss"] == pytest.approx(min(vals), rel=1e-6)
    assert not torch.equal(weights(tmp_path / "m")["head.weight"], state_weights(tmp_path / "m")["model.head.weight"])


def test_validation_is_the_last_tenth_of_each_file(tmp_path):
    assert split_train_val(["a" * 10, "b" * 20], 0.1) == ("a" * 9 + "b" * 18, "a" + "bb")
    poem, code = "roses are red, violets are blue\n" * 40, "x = [i * 2 for i in range(10)]\n" * 80
    events, result = run([poem, code], tmp_path / "m", tiny(max_steps=10))
    assert f"{len(poem) + len(code) - 128 - 248:,} training and {128 + 248:,} validation" in events[0].message
    # The reported loss is the character-weighted mean of `charrnn eval FILE --split val` for each file.
    model = load_model(tmp_path / "m")
    per_file = [evaluate_text(model, split_train_val([t], 0.1)[1]) for t in (poem, code)]
    mean = sum(r["loss"] * r["chars"] for r in per_file) / sum(r["chars"] for r in per_file)
    assert result.best_val_loss == pytest.approx(mean, rel=1e-6)


def test_evaluation_during_training_samples_every_file_when_validation_is_long():
    vocab = Vocab.build(["ab"])
    ids = quick_val_ids(["a" * 2_000_000, "b" * 20_000], 0.1, vocab)
    assert len(ids) <= EVAL_CHARS_DURING_TRAINING
    assert (ids == vocab.index("b")).sum() > 500


def test_time_budget_stops_training(tmp_path):
    events, result = run([REPEATED], tmp_path / "m", tiny(max_steps=None, eval_interval=None, time_budget=1.0))
    assert result.stopped_because == "time budget reached"
    assert all(e.elapsed < 1.5 for e in events if e.kind == "step")  # no step starts after the budget
    # The budget covers the final evaluation and the card's samples too: see test_train_bounds.py.
    assert result.elapsed < 15


def test_max_epochs_counts_passes_over_the_text(tmp_path):
    # 900 training characters make 4 streams of 224 = 14 windows of 16; a shifted second epoch has 13.
    text = REPEATED[:1000]
    events, result = run([text], tmp_path / "m", tiny(max_steps=None, max_epochs=2.0))
    assert result.steps == 28
    assert not [e for e in events if e.kind == "nan"]
    assert events[-1].total_steps == 28


def test_too_little_text_says_how_much_is_needed(tmp_path):
    with pytest.raises(TextError, match=r"2,000 characters, but at least [\d,]+ are needed"):
        list(train(["x" * 2000], tmp_path / "m", TrainConfig(seq_len=256)))
    with pytest.raises(TextError, match="no training text"):
        list(train([""], tmp_path / "m", tiny()))
    assert not (tmp_path / "m").exists()


def test_random_cjk_text_trains_with_a_capped_vocabulary(tmp_path):
    rng = random.Random(0)
    text = "".join(chr(0x20000 + rng.randrange(50_000)) for _ in range(40_000))
    run([text], tmp_path / "m", tiny(hidden_size=16, max_steps=2))
    assert len(load_model(tmp_path / "m").vocab) == 4096


def test_fine_tuning_grows_the_vocabulary_and_keeps_the_old_text(tmp_path):
    run([REPEATED], tmp_path / "base", tiny(batch_size=8, seq_len=32, lr=2e-2, max_steps=80, eval_interval=40))
    base = load_model(tmp_path / "base")
    old_loss = evaluate_text(base, REPEATED)["loss"]

    danish = "Æbleskiver på 3 måder, søde og små. " * 60
    config = TrainConfig(max_steps=80, eval_interval=40, lr=5e-3, batch_size=8, seq_len=32, warmup_steps=2)
    _, result = run([danish], tmp_path / "tuned", config, init=str(tmp_path / "base"))
    assert result.config["hidden_size"] == 32 and result.config["dropout"] == 0.0  # the base model's architecture
    tuned = load_model(tmp_path / "tuned")
    n = len(base.vocab)
    assert tuned.vocab.chars[:n] == base.vocab.chars
    assert {"Æ", "å", "ø", "3"} <= set(tuned.vocab.chars[n:])
    # It still knows the old text ...
    assert evaluate_text(tuned, REPEATED)["loss"] < max(2 * old_loss, 0.25 * unigram_entropy(REPEATED))
    assert sample(tuned, "the quick ", SampleSettings(length=9, temperature=0, seed=1))[0] == "brown fox"
    # ... and has learned something of the new one.
    grown = base.grow_vocab(tuned.vocab)
    assert evaluate_text(tuned, danish)["loss"] < evaluate_text(grown, danish)["loss"] - 0.5
    written = sample(tuned, "søde og små. ", SampleSettings(length=200, temperature=0.5, seed=1))[0]
    assert {"Æ", "å", "ø"} <= set(written)


def test_an_ascii_folded_model_folds_everything_it_reads(tmp_path):
    run(["“Naïve” café, señor. " * 100], tmp_path / "m", tiny(ascii_fold=True, max_steps=5))
    model = load_model(tmp_path / "m")
    chars = set(model.vocab.chars)
    assert model.ascii_fold and {'"', "e", "i", "n"} <= chars and not {"“", "é", "ï", "ñ"} & chars
    assert evaluate_text(model, "“Naïve” café")["loss"] == pytest.approx(evaluate_text(model, '"Naive" cafe')["loss"])


def test_fine_tuning_has_its_own_gentler_defaults():
    base = CharRNN(list(Vocab.build([REPEATED]).chars), num_layers=1, hidden_size=16, embedding_dim=8, dropout=0.0)
    scratch, tuned = resolve(TrainConfig(), None, [REPEATED * 20]), resolve(TrainConfig(), base, [REPEATED * 20])
    assert tuned.lr < scratch.lr and tuned.max_epochs < scratch.max_epochs and tuned.warmup_steps < scratch.warmup_steps
    assert (tuned.hidden_size, tuned.num_layers) == (16, 1)


def test_a_nan_loss_is_reported_the_lr_cut_and_never_saved_as_best(tmp_path):
    events = []
    try:
        for event in train([REPEATED], tmp_path / "m", tiny(lr=1e6, warmup_steps=0, max_steps=15, eval_interval=5)):
            events.append(event)
    except CheckpointError as exc:  # the LR cuts never brought it back below guessing: then nothing is published
        assert "better than guessing" in str(exc)
        assert not (tmp_path / "m" / "model.safetensors").exists()
    nans = [i for i, e in enumerate(events) if e.kind == "nan"]
    assert nans, "an LR of 1e6 must blow up"
    first = events[nans[0]]
    assert "learning rate" in first.message
    later_steps = [e for e in events[nans[0]:] if e.kind == "step"]
    assert later_steps and all(e.lr <= first.lr * 0.1 * 1.0001 for e in later_steps)
    assert all(e.best_val_loss is None or math.isfinite(e.best_val_loss) for e in events if e.kind == "eval")
    if events[-1].kind == "done":
        assert math.isfinite(events[-1].result.best_val_loss)
        assert all(torch.isfinite(t).all() for t in weights(tmp_path / "m").values())


def test_a_failed_save_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    run([REPEATED], tmp_path / "m", tiny(max_steps=10))
    before = weights(tmp_path / "m")

    def disk_full(_tensors, filename, *_args, **_kwargs):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(charrnn.checkpoint, "save_file", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device"):
        list(train([REPEATED], tmp_path / "m", tiny(max_steps=10, seed=99), overwrite=True))
    monkeypatch.undo()
    assert_same(weights(tmp_path / "m"), before)
    load_model(tmp_path / "m")
    load_training_state(tmp_path / "m")
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no half-written staging directory left behind


def test_an_existing_model_is_never_replaced_unless_asked(tmp_path):
    run([REPEATED], tmp_path / "m", tiny(max_steps=5))
    before = weights(tmp_path / "m")
    with pytest.raises(CheckpointError, match="--overwrite"):
        list(train([REPEATED], tmp_path / "m", tiny(max_steps=5, seed=2)))
    assert_same(weights(tmp_path / "m"), before)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not empty"):
        list(train([REPEATED], tmp_path / "notes", tiny(max_steps=5)))
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        list(train([REPEATED], tmp_path / "notes", tiny(), resume=True))
    run([REPEATED], tmp_path / "m", tiny(max_steps=5, seed=2), overwrite=True)
    assert not torch.equal(weights(tmp_path / "m")["head.weight"], before["head.weight"])


def test_an_absurd_learning_rate_never_publishes_blown_up_weights(tmp_path):
    text = "the quick brown fox jumps over the lazy dog.\n" * 80
    config = TrainConfig(num_layers=1, hidden_size=16, embedding_dim=8, batch_size=4, seq_len=16, lr=1e30, max_steps=30,
                         eval_interval=5)
    # On a CPU the weights blow up but stay finite; on a GPU in bf16 the loss turns NaN: refused either way.
    with pytest.raises(CheckpointError, match="better than guessing|diverged"):
        for _ in train([text], tmp_path / "m", config):
            pass
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_precision_is_bf16_only_where_native_and_a_run_keeps_its_precision(tmp_path, monkeypatch):
    import charrnn.model as model_module
    from charrnn.model import resolve_precision

    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        TrainConfig(precision="fp16")
    monkeypatch.setattr(model_module, "native_bf16", lambda _device: False)
    assert resolve_precision(None, torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"  # asked for: given, even where emulated
    monkeypatch.setattr(model_module, "native_bf16", lambda _device: True)
    assert resolve_precision(None, torch.device("cpu")) == "bf16"

    # A bf16 run learns the text, records its precision, and a resume continues in it.
    events, result = run([REPEATED], tmp_path / "m", tiny(max_steps=60, precision=None))
    assert result.best_val_loss < unigram_entropy(REPEATED) - 0.5
    card = (tmp_path / "m" / "README.md").read_text()
    assert "| precision | bf16 |" in card
    monkeypatch.setattr(model_module, "native_bf16", lambda _device: False)
    events, _ = run([REPEATED], tmp_path / "m", tiny(max_steps=80, precision=None), resume=True)
    assert "| precision | bf16 |" in (tmp_path / "m" / "README.md").read_text()


def test_the_card_information_is_carried_through_a_run_and_a_resume(tmp_path):
    fields = {"name": "fox", "corpus": "fox.txt", "command": "charrnn train fox.txt",
              "eval_command": "charrnn eval m fox.txt --split val", "notes": ["A note."]}
    given = CardInfo(**fields)
    run([REPEATED], tmp_path / "m", tiny(max_steps=10), card_info=given)
    assert given == CardInfo(**fields)  # the run works on a copy
    card = (tmp_path / "m" / "README.md").read_text()
    assert "# fox\n" in card and "| command | `charrnn train fox.txt` |" in card and "A note.\n" in card
    assert "Reproduce: `charrnn eval m fox.txt --split val`" in card and "## Samples" in card

    # A dict of the same names is read as a CardInfo: the same card, but for the training time.
    run([REPEATED], tmp_path / "d", tiny(max_steps=10), card_info=dict(fields))
    timeless = re.compile(r"\| training time \| \d+ s \|")
    assert timeless.sub("", (tmp_path / "d" / "README.md").read_text()) == timeless.sub("", card)

    saved = load_training_state(tmp_path / "m")["meta"]["card_info"]
    assert CardInfo.from_meta(saved).unmeasured() == given
    run([REPEATED], tmp_path / "m", TrainConfig(max_steps=20), resume=True,
        card_info=CardInfo(command="charrnn train fox.txt --resume"))
    card = (tmp_path / "m" / "README.md").read_text()
    assert "# fox\n" in card and "A note.\n" in card and "| optimizer steps | 20 |" in card
    assert "| command | `charrnn train fox.txt`, then resumed with `charrnn train fox.txt --resume` |" in card


def test_a_resume_reads_the_plain_card_dict_older_checkpoints_saved(tmp_path):
    run([REPEATED], tmp_path / "m", tiny(max_steps=10))
    state_json = tmp_path / "m" / "training_state" / "state.json"
    meta = json.loads(state_json.read_text())
    # What older versions saved: only the keys that were set, val_loss as full_val_loss, and the end's
    # measurements, which a resumed run makes anew.
    meta["card_info"] = {"name": "old", "corpus": "fox.txt", "corpus_source": "a web app", "command": "charrnn train a",
                         "base_model": "someone/base", "notes": ["An old note."], "full_val_loss": 9.87654,
                         "val_scope": "over something stale", "val_reproducible": False, "val_losses": {"x": 9.0},
                         "samples": [{"temperature": 0.5, "seed": 1, "prompt": "", "text": "STALE SAMPLE"}],
                         "a key no version knows": 1}
    state_json.write_text(json.dumps(meta))
    _, result = run([REPEATED], tmp_path / "m", TrainConfig(max_steps=20), resume=True,
                    card_info={"command": "charrnn train a --resume"})
    card = (tmp_path / "m" / "README.md").read_text()
    assert "# old\n" in card and "| corpus source | a web app |" in card and "An old note.\n" in card
    assert "| base model (fine-tuned from) | someone/base |" in card and "base_model: someone/base" in card
    assert "| command | `charrnn train a`, then resumed with `charrnn train a --resume` |" in card
    assert f"**{result.best_val_loss:.4f} nats/char**" in card and "9.8765" not in card
    assert "stale" not in card and "STALE" not in card and "- x:" not in card
    assert CardInfo.from_meta(load_training_state(tmp_path / "m")["meta"]["card_info"]).name == "old"
