"""Heavy library work in bounded memory, stopped by a cancel, and estimated before it starts (charrnn.cost)."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from charrnn import cost
from charrnn.cancel import Cancelled, check, is_cancelled
from charrnn.evaluate import CHUNK_BYTES, evaluate_ids
from charrnn.insight import activations, influence, rank_cells, score_text, temperature_sweep
from charrnn.memory import release_memory, resident_mb, tune_malloc
from charrnn.model import CharRNN
from charrnn.sampling import SampleSettings
from charrnn.vocab import UNK

MB = 1e6
# A Tang-sized vocabulary on a small network: the logits of a long text are what used to fill memory.
CHINESE = [chr(0x4E00 + i) for i in range(4095)]


def wide_model(hidden: int = 64) -> CharRNN:
    torch.manual_seed(0)
    return CharRNN([UNK, *CHINESE], num_layers=2, hidden_size=hidden, embedding_dim=16, dropout=0.0).eval()


def chinese_text(chars: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return "".join(CHINESE[i] for i in rng.integers(0, 200, chars))


def peak_growth_mb(work) -> float:
    """How far the process's peak RSS rose above its RSS while work() ran (Linux's VmHWM, reset first)."""
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("needs Linux's /proc to read the peak memory")
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = resident_mb()
    work()
    peak = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
    return peak / 1000 - before


def test_scoring_a_long_text_with_a_large_vocabulary_stays_within_its_chunks():
    model, text = wide_model(), chinese_text(20_000)
    # All at once, the logits alone would be 20,000 x 4,096 x 4 bytes, 328 MB, and their softmax as much again.
    scored = []
    grew = peak_growth_mb(lambda: scored.extend(score_text(model, text)))
    assert len(scored) == len(text) and [s.char for s in scored[:50]] == list(text[:50])
    assert grew < (CHUNK_BYTES + 20_000 * cost.SCORED_CHAR_BYTES) / MB + 40


def test_chunked_scoring_gives_the_probabilities_of_one_pass():
    model, text = wide_model(), chinese_text(700, seed=1)
    with torch.inference_mode():
        ids = model.vocab.encode(model.vocab.chars[1] + text)  # with no newline in the vocabulary, its first character
        logits, _ = model(ids[None, :-1])
        whole = torch.softmax(logits[0].float(), -1).gather(1, ids[1:, None])[:, 0]
    chunked = [s.prob for s in score_text(model, text)]
    assert chunked == pytest.approx(whole.tolist(), rel=1e-4)


def test_evaluating_a_long_text_with_a_large_vocabulary_stays_within_its_chunks():
    model, text = wide_model(), chinese_text(60_000)
    ids = model.vocab.encode(text)
    result = {}
    grew = peak_growth_mb(lambda: result.update(evaluate_ids(model, ids)))
    assert result["complete"] and result["chars"] > 59_000
    assert grew < CHUNK_BYTES / MB + 40  # 64 streams x 256 characters x 4,096 logits would be 268 MB


def test_occlusion_over_the_full_window_stays_within_its_chunks():
    model = wide_model(hidden=256)
    text = chinese_text(1_000, seed=2)
    found = []
    grew = peak_growth_mb(lambda: found.append(influence(model, text, 999)))
    assert len(found[0].scores) == 300
    # 64 occluded copies of a 300-character window read at once held 64 x 300 x 4H floats per layer, 79 MB.
    assert grew < CHUNK_BYTES / MB + 40


def test_activations_read_in_chunks_match_one_pass():
    model, text = wide_model(), chinese_text(900, seed=3)
    acts = activations(model, text)
    with torch.inference_mode():
        out, (h, c) = model.rnn(model.embedding(model.vocab.encode(text)[None]))
    assert np.allclose(acts.h[:, -1], out[0].numpy(), atol=1e-5)
    assert np.allclose(acts.c[-1], c[:, 0].numpy(), atol=1e-4)  # the cell state after the last character


@pytest.mark.parametrize("signal", ["event", "callable"])
def test_a_cancel_stops_scoring_influence_and_activations(signal):
    model, text = wide_model(), chinese_text(3_000, seed=4)
    calls = []
    event = threading.Event()
    event.set()

    def after_two() -> bool:
        calls.append(1)
        return len(calls) > 2

    cancel = event if signal == "event" else after_two
    for work in (lambda: score_text(model, text, cancel=cancel),
                 lambda: influence(model, text, 2_999, cancel=cancel),
                 lambda: activations(model, text, cancel=cancel)):
        calls.clear()
        with pytest.raises(Cancelled):
            work()


def test_a_cancel_ends_evaluation_with_what_it_scored_and_ranking_before_the_next_feature():
    model = wide_model()
    stop = threading.Event()
    stop.set()
    part = evaluate_ids(model, model.vocab.encode(chinese_text(40_000)), stop)
    assert not part["complete"] and 0 < part["chars"] < 40_000
    acts = activations(model, chinese_text(100))
    with pytest.raises(Cancelled):
        rank_cells(acts, cancel=stop)


def test_a_cancel_ends_a_temperature_sweep_and_frees_its_rows():
    model = wide_model()
    stop = threading.Event()
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    with pytest.raises(Cancelled):
        temperature_sweep(model, "", SampleSettings(length=100_000, seed=1), cancel=stop)
    timer.cancel()


def test_cancel_signals():
    assert not is_cancelled(None) and is_cancelled(lambda: True) and not is_cancelled(threading.Event())
    with pytest.raises(Cancelled):
        check(lambda: True)


# --- estimates ------------------------------------------------------------------------------------

def test_estimates_grow_with_the_work_and_the_vocabulary():
    small, wide = wide_model(), CharRNN([UNK, *"abc"], num_layers=2, hidden_size=64, embedding_dim=16)
    assert cost.score_cost(small, 4_000).seconds() > cost.score_cost(small, 1_000).seconds()
    assert cost.score_cost(small, 1_000).seconds() > cost.score_cost(wide, 1_000).seconds()
    assert cost.beam_cost(small, 32, 2_000).seconds() > cost.beam_cost(small, 8, 2_000).seconds()
    assert cost.influence_cost(small, 300).seconds() > cost.influence_cost(small, 100).seconds()
    assert cost.influence_cost(small, 300, method="gradient").seconds() < cost.influence_cost(small, 300).seconds()
    assert cost.evaluate_cost(small, 100_000).seconds() > cost.evaluate_cost(small, 10_000).seconds()
    both = cost.read_cost(small, 100) + cost.read_cost(small, 200)
    assert both.flops == cost.read_cost(small, 300).flops


def test_estimated_peaks_stay_bounded_whatever_the_length():
    model = wide_model(hidden=512)
    assert cost.evaluate_cost(model, 10_000_000).peak_bytes <= CHUNK_BYTES
    assert cost.influence_cost(model, 300, before_chars=100_000).peak_bytes <= CHUNK_BYTES
    assert cost.decode_cost(20 * 2**20, fold=True).peak_mb < 150


def test_memory_helpers_run_and_report():
    assert tune_malloc() in (True, False)
    release_memory()
    assert resident_mb() > 0 or np.isnan(resident_mb())
