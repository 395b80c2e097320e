"""The character vocabulary: ordered, capped, and forgiving about characters it does not know."""

import random
import warnings

import pytest

from charrnn.vocab import DEFAULT_MAX_VOCAB, UNK, Vocab, fit_prompt, warn_prompt


def test_vocab_is_ordered_with_unknown_first_and_round_trips():
    vocab = Vocab.build(["hello world"])
    assert vocab.chars == (UNK, " ", "d", "e", "h", "l", "o", "r", "w")
    assert vocab.decode(vocab.encode("hello world").tolist()) == "hello world"
    assert vocab.encode("hex").tolist() == [4, 3, 0]  # 'x' is unknown


def random_cjk(n_chars: int, seed: int = 0) -> str:
    """Text drawn uniformly from 50,000 CJK ideographs (extensions B and C), plus a few common ones."""
    rng = random.Random(seed)
    rare = [chr(0x20000 + rng.randrange(50_000)) for _ in range(n_chars)]
    return "".join(rare) + "的一是不了人我在有他" * 50


def test_random_cjk_text_gets_a_capped_vocabulary():
    text = random_cjk(150_000)
    assert len(set(text)) > 40_000
    vocab = Vocab.build([text])
    assert len(vocab) == DEFAULT_MAX_VOCAB == 4096
    assert all(c in vocab for c in "的一是不了人我在有他")  # the frequent characters are kept
    ids = vocab.encode(text)
    assert int((ids == 0).sum()) > 100_000  # the rare ones map to the unknown symbol
    assert len(Vocab.build([text], max_size=100)) == 100


def test_extending_keeps_old_indices_and_appends_new_characters():
    old = Vocab.build(["abc"])
    new = old.extended(["abcdé", "éé"])
    assert new.chars[: len(old)] == old.chars
    assert new.chars[len(old):] == ("é", "d")  # most frequent first
    assert old.extended(["xyz"], max_size=5).chars == (*old.chars, "x")


def test_prompt_characters_are_folded_or_dropped_and_named():
    vocab = Vocab.build(["plain ascii cafe text, \"quoted\""])
    fitted, changed = fit_prompt("“café” ★ text", vocab)
    assert fitted == "\"cafe\"  text"
    assert changed == ["“", "é", "”", "★"]
    with pytest.warns(UserWarning, match="'★'"):
        assert warn_prompt("cafe★", vocab) == "cafe"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_prompt("cafe", vocab) == "cafe"


def test_invalid_vocabularies_are_refused():
    with pytest.raises(ValueError, match="unknown symbol"):
        Vocab(("a", "b"))
    with pytest.raises(ValueError, match="repeated"):
        Vocab((UNK, "a", "a"))
    with pytest.raises(ValueError, match="at least 2"):
        Vocab.build(["abc"], max_size=1)
