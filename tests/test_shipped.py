"""The shipped checkpoints: the app's first second depends on them loading and writing sense."""

from pathlib import Path

import pytest

from charrnn.checkpoint import SHIPPED, load_model
from charrnn.engine import sample
from charrnn.sampling import SampleSettings
from charrnn.text import cjk_share, mostly_chinese


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoint_loads_strictly_and_writes_only_known_characters(name: str) -> None:
    directory: Path = SHIPPED[name]
    assert (directory / "model.safetensors").is_file(), f"{directory} is missing its weights"
    assert (directory / "README.md").is_file(), f"{directory} is missing its model card"
    model = load_model(directory, device="cpu")  # strict=True inside
    chinese = mostly_chinese("".join(model.vocab.chars))
    settings = SampleSettings(length=300, temperature=1.0, seed=3).checked(len(model.vocab))
    texts = sample(model, "春日" if chinese else "Once upon a time", settings, num_samples=2)
    for text in texts:
        assert len(text) == 300
        outside = "sampled a character outside the vocabulary (or the unknown symbol)"
        assert set(text) <= set(model.vocab.chars[1:]), outside
        if chinese:
            assert cjk_share(text) > 0.6, f"does not look like Chinese verse: {text!r}"
        else:
            assert " " in text and sum(c.isalpha() for c in text) > 150, f"does not look like prose: {text!r}"


def test_fairy_tales_is_the_default_model() -> None:
    from charrnn.checkpoint import DEFAULT_MODEL

    assert DEFAULT_MODEL == "fairy-tales"
    model = load_model(SHIPPED[DEFAULT_MODEL], device="cpu")
    assert model.ascii_fold, "the fairy-tale model was trained on ASCII-folded text"
    assert len(model.vocab) < 100


def test_shipped_checkpoints_are_small_and_pickle_free() -> None:
    for directory in SHIPPED.values():
        files = [p for p in directory.rglob("*") if p.is_file() and "training_state" not in p.parts]
        assert sum(p.stat().st_size for p in files) < 25 * 1024 * 1024
        assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_each_card_sample_is_what_its_seed_writes(name: str) -> None:
    """A card's samples name their seed; on the kind of CPU that wrote them the same call writes the same text.
    (Elsewhere the prompt is read in another precision, so the text may differ from the first character.)"""
    import ast
    import re

    import torch

    from charrnn.model import native_bf16

    if not native_bf16(torch.device("cpu")):
        pytest.skip("the cards were written on a CPU with native bf16; this one reads the prompt in fp32")
    card = (SHIPPED[name] / "README.md").read_text(encoding="utf-8")
    found = re.findall(r"Temperature ([\d.]+), seed (\d+), prompt ('.*?'):\n\n```text\n(.*?)\n```", card, re.S)
    assert len(found) == 3, "the card should show three samples"
    model = load_model(SHIPPED[name], device="cpu")
    for temperature, seed, prompt_repr, shown in found:
        prompt = ast.literal_eval(prompt_repr)
        settings = SampleSettings(length=len(shown) - len(prompt), temperature=float(temperature), seed=int(seed))
        assert prompt + sample(model, prompt, settings)[0] == shown, f"temperature {temperature}, seed {seed}"


@pytest.mark.alone  # scores on every core
@pytest.mark.skipif("tang-poems" not in SHIPPED, reason="no Tang model shipped")
def test_the_tang_model_keeps_the_form_and_scores_its_validation_split_as_its_card_says(corpus_dir) -> None:
    import os
    import re
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from tang_form import form

    from charrnn.batching import split_train_val
    from charrnn.evaluate import evaluate_ids
    from charrnn.text import normalize, read_corpus

    model = load_model(SHIPPED["tang-poems"], device="cpu")
    bodies = [t.strip() for t in sample(model, "春日\n", SampleSettings(length=200, temperature=0.8, seed=1,
                                                                       stop=("\n\n",)), num_samples=8)]
    five_or_seven, one_length, clauses, _ = form(bodies)
    assert clauses >= 16 and five_or_seven >= 0.8, bodies
    card = (SHIPPED["tang-poems"] / "README.md").read_text(encoding="utf-8")
    stated = float(re.search(r"Validation loss: \*\*([\d.]+) nats/char", card).group(1))
    text = normalize(read_corpus(corpus_dir / "tang_poems.txt").text, model.ascii_fold)
    _, val = split_train_val([text], 0.1)  # as charrnn eval --split val scores it
    torch.set_num_threads(os.cpu_count() or 1)  # 362,817 characters through a 4,096-character head: every core
    assert abs(evaluate_ids(model, model.vocab.encode(val))["loss"] - stated) < 1e-3
