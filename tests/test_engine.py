"""The generation engine: many requests stepped as one batch, each writing what it writes alone."""

import gc
import resource
import threading
import time

import pytest
import torch

from charrnn import engine as engine_module
from charrnn.checkpoint import SHIPPED, load_model
from charrnn.engine import GenerationEngine, batch_shapes, sample
from charrnn.model import CharRNN
from charrnn.sampling import SampleSettings
from charrnn.vocab import Vocab

TEXT = "the quick brown fox jumps over the lazy dog. \n"
MIXED = [  # temperature, top-k, top-p
    (0.0, None, None), (0.5, None, None), (1.0, 5, None), (1.3, None, 0.9), (0.8, 3, 0.5), (2.0, None, None),
    (0.2, 10, None), (1.0, None, 0.3),
]


def model_of(hidden: int = 64, layers: int = 2, cell: str = "lstm") -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(list(Vocab.build([TEXT]).chars), num_layers=layers, hidden_size=hidden, embedding_dim=16,
                   dropout=0.0, cell=cell).eval()


@pytest.fixture(scope="module")
def shipped_model() -> CharRNN:
    return load_model(SHIPPED["fairy-tales"], device="cpu")


def alone(model: CharRNN, prompt: str, settings: SampleSettings) -> str:
    """What the request writes with nobody else in the engine (a fresh one)."""
    return GenerationEngine(model).submit(prompt, settings).text()


def crowd_settings(k: int) -> SampleSettings:
    temperature, top_k, top_p = MIXED[k % len(MIXED)]
    return SampleSettings(length=150 + 7 * k, temperature=temperature, top_k=top_k, top_p=top_p, seed=100 + k)


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_seeded_request_writes_the_same_alone_and_among_fifteen_others(cell):
    model = model_of(cell=cell)
    target = SampleSettings(length=200, temperature=0.9, top_k=8, seed=7)
    expected = alone(model, "the ", target)
    for position in (0, 5, 15):  # the row it gets: first, among others, last
        engine = GenerationEngine(model)
        early = [engine.submit(TEXT[: k + 1], crowd_settings(k)) for k in range(position)]
        if early:
            wait_until(lambda early=early: all(r.produced >= 3 for r in early))  # it joins a batch already stepping
        mine = engine.submit("the ", target)
        late = [engine.submit(TEXT[k:], crowd_settings(k)) for k in range(position, 15)]
        assert mine.text() == expected
        for k, request in enumerate(early + late):
            assert len(request.text()) == crowd_settings(k).length


def test_every_crowd_member_writes_its_own_alone_text():
    model = model_of()
    engine = GenerationEngine(model)
    requests = [engine.submit(TEXT[:k], crowd_settings(k)) for k in range(16)]
    texts = [r.text() for r in requests]
    assert texts == [alone(model, TEXT[:k], crowd_settings(k)) for k in range(16)]


def test_the_shipped_model_writes_the_same_text_alone_and_in_a_crowd(shipped_model):
    settings = SampleSettings(length=300, temperature=0.8, seed=11)
    expected = alone(shipped_model, "Once upon a time", settings)
    engine = GenerationEngine(shipped_model)
    others = [engine.submit("The king", crowd_settings(k)) for k in range(63)]  # a batch of 64 rows
    wait_until(lambda: others[0].produced >= 5)
    assert engine.submit("Once upon a time", settings).text() == expected
    for request in others:
        request.cancel()


def test_where_shapes_disagree_every_step_runs_at_the_largest_and_text_still_matches(monkeypatch):
    """On a library or device whose kernels give a row other numbers at another batch shape,
    the engine notices before its first step and pads every step to max_rows."""
    model = model_of()
    stepper = GenerationEngine(model).stepper()
    real_step = type(stepper).step

    def shape_dependent(self, ids, state):
        logits, new_state = real_step(self, ids, state)
        return logits + 1e-4 * ids.shape[0], new_state  # a different rounding at each batch shape

    monkeypatch.setattr(type(stepper), "step", shape_dependent)
    assert batch_shapes(stepper, 16) == (16,)
    target = SampleSettings(length=120, temperature=1.0, seed=3)
    expected = alone(model, "the", target)
    engine = GenerationEngine(model, max_rows=16)
    others = [engine.submit("a", crowd_settings(k)) for k in range(6)]
    assert engine.submit("the", target).text() == expected
    assert all(len(r.text()) == crowd_settings(k).length for k, r in enumerate(others))


def test_requests_beyond_the_rows_wait_and_join_as_rows_free_up():
    model = model_of()
    engine = GenerationEngine(model, max_rows=3)
    requests = engine.submit_many("the", [crowd_settings(k) for k in range(8)])
    wait_until(lambda: engine.active_rows > 0)
    assert engine.active_rows <= 3
    assert [r.text() for r in requests] == [alone(model, "the", crowd_settings(k)) for k in range(8)]


def test_stopping_one_request_stops_only_its_row():
    model = model_of()
    engine = GenerationEngine(model)
    settings = [SampleSettings(length=3000, temperature=1.0, seed=k) for k in range(4)]
    requests = engine.submit_many("the", settings)
    wait_until(lambda: requests[1].produced >= 20)
    requests[1].cancel()
    texts = [r.text() for r in requests]
    assert len(texts[1]) < 3000
    assert [len(t) for k, t in enumerate(texts) if k != 1] == [3000] * 3
    assert texts[0] == alone(model, "the", settings[0])


def test_a_long_request_delays_a_new_ones_first_character_by_a_step_or_two(monkeypatch):
    model = model_of()
    engine = GenerationEngine(model)
    long = engine.submit("the", SampleSettings(length=2000, seed=1))
    wait_until(lambda: long.produced >= 50)
    seen: dict[str, int] = {}
    real_note = engine_module.Generation._note

    def note(self, char):  # the long one's count when the short one writes its first character
        if self is not long and "first" not in seen:
            seen["first"] = long.produced
        real_note(self, char)

    monkeypatch.setattr(engine_module.Generation, "_note", note)
    before = long.produced
    short = engine.submit("a", SampleSettings(length=5, seed=2))
    assert len(short.text()) == 5
    assert seen["first"] - before <= 2  # the step under way, then the one it joins at
    long.cancel()


def test_bad_settings_and_a_failing_prompt_reach_only_their_own_caller(monkeypatch):
    model = model_of()
    engine = GenerationEngine(model)
    running = engine.submit("the", SampleSettings(length=400, seed=1))
    with pytest.raises(ValueError, match="top-p"):
        engine.submit("the", SampleSettings(top_p=3.0))
    real_prime = engine_module.prime

    def prime(model, prompt):
        if prompt == "dog":
            raise RuntimeError("this prompt cannot be read")
        return real_prime(model, prompt)

    monkeypatch.setattr(engine_module, "prime", prime)
    failing = engine.submit("dog", SampleSettings(length=50, seed=2))
    with pytest.raises(RuntimeError, match="cannot be read"):
        failing.text()
    assert running.text() == alone(model, "the", SampleSettings(length=400, seed=1))


def test_the_library_sample_gives_each_sample_its_own_seed():
    model = model_of()
    settings = SampleSettings(length=80, temperature=1.0, seed=41)
    texts = sample(model, "the", settings, num_samples=3)
    assert texts[0] == sample(model, "the", settings)[0]
    assert texts[2] == sample(model, "the", SampleSettings(length=80, temperature=1.0, seed=43))[0]
    assert len(set(texts)) == 3


def test_alternatives_are_computed_only_for_requests_that_ask():
    model = model_of()
    engine = GenerationEngine(model)
    settings = SampleSettings(length=40, temperature=1.0, seed=5)
    plain, detailed = engine.submit("the", settings), engine.submit("the", settings, alternatives=3)
    plain_items, detailed_items = list(plain), list(detailed)
    assert all(isinstance(c, str) for c in plain_items)
    assert "".join(plain_items) == "".join(p.char for p in detailed_items)
    assert all(len(p.alternatives) == 3 and 0 < p.prob <= 1 for p in detailed_items)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def test_memory_stays_flat_over_many_joins_and_leaves_and_an_idle_engine_ends_its_thread(monkeypatch):
    monkeypatch.setattr(engine_module, "IDLE_EXIT_S", 0.2)
    model = model_of()
    engine = GenerationEngine(model)

    def rounds(n: int) -> None:
        for k in range(n):
            requests = engine.submit_many(TEXT[: k % 20], [crowd_settings(j) for j in range(k % 9 + 1)])
            requests[0].cancel()
            for request in requests[1:]:
                request.text()

    rounds(20)
    gc.collect()
    before = rss_bytes()
    rounds(80)
    gc.collect()
    assert rss_bytes() - before < 20 * 2**20
    wait_until(lambda: not any(t.name == "generation-engine" for t in threading.enumerate()), timeout=10)


def test_a_model_that_generated_is_freed_with_its_last_reference(monkeypatch):
    """Each training run samples with its own model: once the run is over, the engine that model got must not keep
    it (and its weights) alive."""
    import weakref

    monkeypatch.setattr(engine_module, "IDLE_EXIT_S", 0.2)
    model = model_of()
    sample(model, "the", SampleSettings(length=50, temperature=1.0, seed=1))
    wait_until(lambda: not any(t.name == "generation-engine" for t in threading.enumerate()), timeout=10)
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None, "the model is still referenced after its last user let it go"


def test_a_sampled_row_joining_greedy_rows_draws_its_own_noise_and_greedy_rows_stay_greedy():
    model = model_of()
    engine = GenerationEngine(model)
    greedy = engine.submit("the", SampleSettings(length=300, temperature=0.0, seed=1))
    wait_until(lambda: greedy.produced >= 9)  # a batch of greedy rows only draws no noise
    sampled = engine.submit("a", SampleSettings(length=100, temperature=1.0, seed=2))
    assert sampled.text() == alone(model, "a", SampleSettings(length=100, temperature=1.0, seed=2))
    assert greedy.text() == alone(model, "the", SampleSettings(length=300, temperature=0.0, seed=1))
