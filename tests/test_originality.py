"""The originality check: verbatim copies of 20+ characters are found, shorter ones are not, and the index is
small and safe."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from charrnn.checkpoint import INDEX, save_checkpoint
from charrnn.cli import main
from charrnn.model import CharRNN
from charrnn.originality import NgramIndex, build_index, copied_share, copied_spans, load_index, ngram_hashes
from charrnn.text import read_corpus
from charrnn.train import TrainConfig, train
from charrnn.vocab import Vocab


def lowercase_text(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(300)]
    return " ".join(rng.choice(words) for _ in range(n_words))


CORPUS = lowercase_text(3000)


def novel(n: int, seed: int) -> str:
    """Text that shares no character with the corpus, so a copied span cannot grow into it."""
    rng = random.Random(seed)
    return "".join(rng.choice("ABCDEFGHIJ0123456789") for _ in range(n))


def test_exact_spans_of_20_or_more_characters_are_marked_and_shorter_ones_are_not():
    index = build_index([CORPUS])
    parts = [novel(15, 1), CORPUS[1000:1035], novel(10, 2), CORPUS[5000:5019], novel(12, 3), CORPUS[9000:9020],
             novel(5, 4)]
    text = "".join(parts)
    starts = np.cumsum([0] + [len(p) for p in parts])
    spans = copied_spans(text, index)
    assert spans == [(starts[1], starts[2]), (starts[5], starts[6])]  # 35 and exactly 20 chars; the 19-char copy is not
    assert text[spans[0][0]:spans[0][1]] == CORPUS[1000:1035]
    assert copied_share(text, spans) == pytest.approx(55 / len(text))


def test_a_fully_copied_text_is_one_span_and_novel_text_has_none():
    index = build_index([CORPUS])
    piece = CORPUS[200:700]
    assert copied_spans(piece, index) == [(0, 500)]
    assert copied_share(piece, copied_spans(piece, index)) == 1.0
    fresh = lowercase_text(100, seed=99)  # same alphabet and word shapes, different words
    assert copied_spans(fresh, index) == []
    assert copied_spans("", index) == [] and copied_spans("short", index) == []


PIECE_MB = 48  # hashing one piece of CHUNK_CHARS characters: its codes, the rolling hash and its temporaries


def test_indexing_a_long_new_text_holds_little_more_than_its_index():
    """An upload of text never seen before (every window new) is indexed within the memory of its index and of the
    piece being hashed (PIECE_MB): the hashes are joined, sorted and made distinct in place, not copied at each step."""
    import tracemalloc

    text = "".join(random.Random(5).choices("abcdefghijklmnopqrstuvwxyz ,.\n", k=3_000_000))
    tracemalloc.start()
    try:
        index = build_index([text])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(index.hashes) > 0.99 * len(text)
    assert peak < index.hashes.nbytes + PIECE_MB * 1e6, \
        f"peak {peak / 1e6:.0f} MB for an index of {index.hashes.nbytes / 1e6:.0f}"


def test_hashes_see_every_character_and_unicode():
    a = "the cat sat on the mat and sang"
    b = a[:10] + "C" + a[11:]
    ha, hb = ngram_hashes(a), ngram_hashes(b)
    assert len(ha) == len(a) - 19
    assert (ha[:10] != hb[:10]).all() and (ha[11:] == hb[11:]).all()  # exactly the windows holding the change differ
    assert "Ünïcödé “quotes” — and 漢字 too" [:20] in build_index(["Ünïcödé “quotes” — and 漢字 too"])


def test_index_round_trips_through_safetensors_at_4_bytes_a_window(tmp_path):
    index = build_index([CORPUS], sources="words.txt", ascii_folded=True)
    path = index.save(tmp_path / INDEX)
    loaded = NgramIndex.load(path)
    assert np.array_equal(loaded.hashes, index.hashes)
    assert (loaded.sources, loaded.ascii_folded, loaded.n, loaded.chars) == ("words.txt", True, 20, len(CORPUS))
    assert path.stat().st_size < 4 * len(index.hashes) + 4 * 65536 + 1024
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_a_model_without_an_index_says_so_and_a_damaged_index_is_refused(tmp_path):
    assert load_index(tmp_path) is None
    assert load_index(object()) is None  # a model that was not loaded from a directory
    (tmp_path / INDEX).write_bytes(b"not safetensors at all")
    with pytest.raises(ValueError, match="unreadable"):
        load_index(tmp_path)
    save_file({"weights": np.zeros(3, dtype=np.float32)}, str(tmp_path / INDEX))
    with pytest.raises(ValueError, match="unreadable"):
        load_index(tmp_path)


def test_training_writes_the_index_and_fine_tuning_keeps_the_base_text(tmp_path):
    config = TrainConfig(num_layers=1, hidden_size=16, embedding_dim=8, dropout=0.0, batch_size=4, seq_len=32,
                         max_steps=4, eval_interval=2, device="cpu")
    base_text = lowercase_text(600, seed=5)
    list(train([read_corpus(base_text.encode(), name="base.txt")], tmp_path / "base", config))
    index = load_index(tmp_path / "base")
    assert index is not None and index.sources == "base.txt"
    assert copied_spans(base_text[100:160], index) == [(0, 60)]

    new_text = lowercase_text(600, seed=6).upper()
    list(train([read_corpus(new_text.encode(), name="new.txt")], tmp_path / "tuned", config, init=tmp_path / "base"))
    tuned = load_index(tmp_path / "tuned")
    assert copied_spans(new_text[:40], tuned) == [(0, 40)]
    assert copied_spans(base_text[:40], tuned) == [(0, 40)]  # still checked against what the base model learned from


def tiny_model_dir(tmp_path: Path, ascii_fold: bool) -> Path:
    torch.manual_seed(0)
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    model = CharRNN(list(Vocab.build(["".join(chars)]).chars), ascii_fold=ascii_fold, num_layers=1, hidden_size=8,
                    embedding_dim=4)
    return save_checkpoint(tmp_path / "model", model, "card")


def test_cli_indexes_an_existing_model_with_its_own_normalisation(tmp_path, capsys):
    model_dir = tiny_model_dir(tmp_path, ascii_fold=True)
    body = "\u201cWhere are you going?\u201d asked the little mermaid, and the prince smiled at her.\n" * 3
    book = ("The Project Gutenberg eBook of Tales, licence and boilerplate here\n"
            "*** START OF THE PROJECT GUTENBERG EBOOK TALES ***\n" + body +
            "*** END OF THE PROJECT GUTENBERG EBOOK TALES ***\nmore licence\n")
    corpus = tmp_path / "tales.txt"
    corpus.write_text(book, encoding="utf-8")
    assert main(["index", str(model_dir), str(corpus)]) == 0
    assert "indexed" in capsys.readouterr().err
    index = load_index(model_dir)
    assert index.sources == "tales.txt" and index.ascii_folded
    assert copied_spans('"Where are you going?" asked', index) == [(0, 28)]  # folded quotes, as the model writes them
    assert copied_spans("The Project Gutenberg eBook of Tales", index) == []  # boilerplate stripped, as in training


def test_cli_refuses_a_directory_that_is_not_a_model(tmp_path, capsys):
    corpus = tmp_path / "t.txt"
    corpus.write_text(CORPUS)
    assert main(["index", str(tmp_path), str(corpus)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("charrnn: error:") and "not a model directory" in err and "Traceback" not in err
    assert not (tmp_path / INDEX).exists()


def test_shipped_corpora_indexes_stay_under_5_mb(corpus_dir, tmp_path):
    shakespeare = read_corpus(corpus_dir / "tinyshakespeare.txt")
    path = build_index([shakespeare.text]).save(tmp_path / INDEX)
    assert path.stat().st_size < 5_000_000
    tales = [read_corpus(corpus_dir / name, fold=True)
             for name in ("andersen_fairy_tales.txt", "grimm_fairy_tales.txt")]
    path = build_index([c.text for c in tales]).save(tmp_path / "tales")
    assert path.stat().st_size < 5_000_000
