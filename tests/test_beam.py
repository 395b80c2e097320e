"""Beam search: the likeliest continuations, found by K beams stepped as one batch."""

import math
from itertools import product

import pytest
import torch

from charrnn import beam as beam_module
from charrnn.beam import MAX_BEAM_WIDTH, BeamResult, BeamSettings, beam_search
from charrnn.cancel import Cancelled
from charrnn.engine import sample
from charrnn.insight import score_text
from charrnn.model import CharRNN
from charrnn.sampling import MAX_SAMPLE_LENGTH, FusedStepper, SampleSettings, prepare_prompt
from charrnn.vocab import UNK, Vocab

TEXT = "the quick brown fox jumps over the lazy dog. \n"
PROMPTS = ["the ", "fox", "", "lazy dog. ", "quick brown"]
FIXED = {"a": 0.5, "b": 0.3, "c": 0.15, "d": 0.05}  # the next character's distribution, whatever came before


def random_model(cell: str = "lstm", seed: int = 1, dropout: float = 0.0) -> CharRNN:
    torch.manual_seed(seed)
    return CharRNN(list(Vocab.build([TEXT]).chars), cell=cell, num_layers=2, hidden_size=32, embedding_dim=16,
                   dropout=dropout).eval()


def fixed_model() -> CharRNN:
    """A model whose output layer ignores the state: the likeliest texts are known in advance."""
    torch.manual_seed(0)
    model = CharRNN([UNK, *FIXED], num_layers=1, hidden_size=8, embedding_dim=4, dropout=0.0)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([-30.0] + [math.log(p) for p in FIXED.values()]))
    return model.eval()


def greedy(model: CharRNN, prompt: str, length: int) -> str:
    return sample(model, prompt, SampleSettings(length=length, temperature=0, seed=1))[0]


def log_prob(model: CharRNN, prompt: str, text: str) -> float:
    """text's total log-probability after prompt, scored by the model's own full-sequence pass."""
    return sum(math.log(s.prob) for s in score_text(model, text, prepare_prompt(model, prompt)[0]))


def ngrams(text: str, n: int) -> list[str]:
    return [text[k : k + n] for k in range(len(text) - n + 1)]


def test_the_same_call_gives_the_same_results():
    model = random_model()
    settings = BeamSettings(width=6, length=120, num_results=3)
    first = beam_search(model, "the ", settings)
    assert first == beam_search(model, "the ", settings)
    assert all(isinstance(r, BeamResult) and len(r.text) == 120 for r in first)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_width_one_is_greedy_decoding(cell):
    model = random_model(cell=cell)
    for prompt in PROMPTS:
        (best,) = beam_search(model, prompt, BeamSettings(width=1, length=150))
        assert best.text == greedy(model, prompt, 150), prompt


def test_the_best_beam_is_at_least_as_likely_as_greedy_and_its_log_prob_is_the_models():
    model = random_model(seed=3)
    gains = []
    for prompt in PROMPTS:
        best = beam_search(model, prompt, BeamSettings(width=8, length=100))[0]
        scored = log_prob(model, prompt, best.text)
        assert best.log_prob == pytest.approx(scored, rel=1e-5, abs=1e-3)  # the step's matrices may be fp16
        assert best.mean_log_prob == pytest.approx(best.log_prob / 100)
        gains.append(scored - log_prob(model, prompt, greedy(model, prompt, 100)))
    assert min(gains) >= -1e-4, gains
    assert max(gains) > 0.1, gains  # the search finds something greedy does not


def test_results_are_best_first_distinct_and_never_the_unknown_symbol():
    model = random_model()
    results = beam_search(model, "fox", BeamSettings(width=8, length=80, num_results=8))
    assert len(results) == 8
    scores = [r.log_prob for r in results]
    assert scores == sorted(scores, reverse=True)
    assert len({r.text for r in results}) == 8
    assert all(len(r.text) == 80 and UNK not in r.text for r in results)
    for r in results[:3]:
        assert r.log_prob == pytest.approx(log_prob(model, "fox", r.text), abs=1e-3)


def test_a_beam_as_wide_as_every_continuation_finds_them_all_in_order():
    model = fixed_model()
    results = beam_search(model, "ab", BeamSettings(width=16, length=2, num_results=16))
    expected = sorted(("".join(pair) for pair in product(FIXED, repeat=2)),
                      key=lambda t: -(FIXED[t[0]] * FIXED[t[1]]))
    assert sorted(r.text for r in results) == sorted(expected)
    assert [r.log_prob for r in results] == pytest.approx(
        [math.log(FIXED[t[0]] * FIXED[t[1]]) for t in expected], abs=1e-6)
    # fewer distinct continuations than asked for: only those come back
    assert [r.text for r in beam_search(model, "", BeamSettings(width=8, length=1, num_results=8))] == list(FIXED)


def test_length_zero_is_the_empty_continuation():
    assert beam_search(random_model(), "the", BeamSettings(width=4, length=0, num_results=4)) == [
        BeamResult(text="", log_prob=0.0, mean_log_prob=0.0)]


@pytest.mark.parametrize("n", [3, 5])
def test_no_repeat_ngram_writes_no_n_gram_twice(n):
    model = random_model(seed=2)
    plain = beam_search(model, "the ", BeamSettings(width=8, length=200))[0].text
    results = beam_search(model, "the ", BeamSettings(width=8, length=200, num_results=4, no_repeat_ngram=n))
    assert len(plain) == 200 and len(ngrams(plain, n)) > len(set(ngrams(plain, n)))  # unblocked, it repeats
    for r in results:
        assert len(r.text) == 200
        assert len(ngrams(r.text, n)) == len(set(ngrams(r.text, n))), r.text
        assert r.log_prob == pytest.approx(log_prob(model, "the ", r.text), abs=1e-3)  # still the model's own


def test_no_repeat_ngram_on_a_model_that_only_loops():
    model = fixed_model()
    assert beam_search(model, "", BeamSettings(width=4, length=30))[0].text == "a" * 30
    text = beam_search(model, "", BeamSettings(width=4, length=30, no_repeat_ngram=3))[0].text
    assert len(ngrams(text, 3)) == len(set(ngrams(text, 3))), text
    # 16 bigrams cannot fill 100 characters without repeats: the blocking gives way rather than fail
    assert len(beam_search(model, "", BeamSettings(width=4, length=100, no_repeat_ngram=2))[0].text) == 100


def test_the_shared_prefix_moved_out_along_the_way_changes_nothing(monkeypatch):
    model = random_model(seed=4)
    settings = BeamSettings(width=8, length=400, num_results=8, no_repeat_ngram=4)
    kept = beam_search(model, "lazy", settings)
    monkeypatch.setattr(beam_module, "COMMIT_EVERY", 10**9)  # never moved out
    assert beam_search(model, "lazy", settings) == kept
    monkeypatch.setattr(beam_module, "COMMIT_EVERY", 3)  # moved out at almost every step
    assert beam_search(model, "lazy", settings) == kept


def test_the_length_penalty_never_changes_the_order():
    model = random_model()
    plain = beam_search(model, "the", BeamSettings(width=5, length=60, num_results=5))
    assert beam_search(model, "the", BeamSettings(width=5, length=60, num_results=5, length_penalty=1.0)) == plain


def test_the_beams_run_as_one_batch(monkeypatch):
    model = random_model()
    primed = []
    handle = model.rnn.register_forward_pre_hook(lambda _module, args: primed.append(args[0].shape[0]))
    batches = []
    real_step = FusedStepper.step

    def counting_step(self, ids, state):
        batches.append(tuple(ids.shape))
        return real_step(self, ids, state)

    monkeypatch.setattr(FusedStepper, "step", counting_step)
    try:
        beam_search(model, "the quick", BeamSettings(width=8, length=50, num_results=2))
    finally:
        handle.remove()
    assert primed == [1]  # the prompt is read once, for one row
    assert batches == [(8,)] * 49  # the first character comes from the primed logits; then one step per character


def test_the_models_mode_is_kept_and_dropout_never_applies():
    model = random_model(dropout=0.5)
    settings = BeamSettings(width=4, length=60)
    expected = beam_search(model, "the", settings)
    model.train()
    assert beam_search(model, "the", settings) == expected
    assert model.training


def test_a_raw_prompt_is_fitted_first():
    model = random_model()
    settings = BeamSettings(width=3, length=40)
    assert beam_search(model, "the\u00a0QUICK \u2603", settings)[0].text == beam_search(
        model, prepare_prompt(model, "the\u00a0QUICK \u2603")[0], settings)[0].text


@pytest.mark.parametrize(("fields", "message"), [
    ({"width": MAX_BEAM_WIDTH + 8}, f"beam width must be a whole number from 1 to {MAX_BEAM_WIDTH}, not 40"),
    ({"width": 0}, "beam width must be"),
    ({"width": True}, "beam width must be"),
    ({"width": 2.0}, "beam width must be"),
    ({"width": 4, "num_results": 5}, "the number of results must be a whole number from 1 to the beam width (4)"),
    ({"num_results": 0}, "the number of results must be"),
    ({"length": -1}, "length must be a whole number of characters, 0 or more, not -1"),
    ({"length": MAX_SAMPLE_LENGTH + 1}, "length must be at most"),
    ({"length": "10"}, "length must be a whole number"),
    ({"no_repeat_ngram": 1}, "no-repeat n-gram size must be 0 (off) or a whole number from 2 to"),
    ({"no_repeat_ngram": -3}, "no-repeat n-gram size must be"),
    ({"no_repeat_ngram": 1000}, "no-repeat n-gram size must be"),
    ({"length_penalty": math.nan}, "length penalty must be a finite number, 0 or more, not nan"),
    ({"length_penalty": -0.5}, "length penalty must be"),
    ({"length_penalty": "high"}, "length penalty must be"),
])
def test_bad_settings_are_refused_in_one_line(fields, message):
    model = random_model()
    with pytest.raises(ValueError) as caught:
        beam_search(model, "the", BeamSettings(**fields))
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_checked_settings_are_kept_and_rechecked_only_for_another_vocabulary():
    settings = BeamSettings(width=4, length=10, num_results=2).checked(30)
    assert settings.checked_for == 30 and settings.for_vocab(30) is settings
    assert settings == BeamSettings(width=4, length=10, num_results=2)


def test_weights_changed_in_place_are_the_ones_searched_with():
    model = random_model()
    before = beam_search(model, "the", BeamSettings(width=1, length=80))[0].text
    with torch.no_grad():
        model.rnn.weight_hh_l0.mul_(3.0)  # as a training step would: the same tensor, a new version
    after = beam_search(model, "the", BeamSettings(width=1, length=80))[0].text
    assert after != before
    assert after == greedy(model, "the", 80)


# --- stop strings, minimum length, cancel ---------------------------------------------------------

def test_a_stop_string_finishes_a_beam_and_the_likeliest_finished_texts_win():
    # Each character is independent: p(a) 0.5, p(b) 0.3. Ending at "b": "b" 0.3, "ab" 0.15, "aab" 0.075,
    # far above any 8-character text without a b (0.5 ** 8, about 0.004).
    results = beam_search(fixed_model(), "", BeamSettings(width=4, length=8, num_results=3, stop=("b",)))
    assert [r.text for r in results] == ["b", "ab", "aab"]
    assert [r.log_prob for r in results] == pytest.approx([math.log(0.3), math.log(0.15), math.log(0.075)])
    assert results[1].mean_log_prob == pytest.approx(math.log(0.15) / 2)


def test_a_stop_string_counts_only_after_the_minimum_length():
    results = beam_search(fixed_model(), "", BeamSettings(width=4, length=8, stop=("b",), min_length=3))
    assert [r.text for r in results] == ["aab"]


def test_a_stop_string_never_written_leaves_beams_at_the_length():
    plain = beam_search(random_model(), "the ", BeamSettings(width=3, length=60, num_results=2))
    assert beam_search(random_model(), "the ", BeamSettings(width=3, length=60, num_results=2, stop=("QQ",))) == plain


@pytest.mark.parametrize("prompt", PROMPTS)
def test_width_one_with_a_stop_string_ends_where_greedy_sampling_ends(prompt):
    model = random_model()
    settings = SampleSettings(length=150, temperature=0, seed=1, stop=(" ", "."), min_length=5)
    greedy_text = sample(model, prompt, settings)[0]
    found = beam_search(model, prompt, BeamSettings(width=1, length=150, stop=(" ", "."), min_length=5))
    assert [r.text for r in found] == [greedy_text]


def test_bad_stop_settings_are_refused_in_one_line():
    with pytest.raises(ValueError, match="stop strings must be a list of texts"):
        BeamSettings(stop=[["x"]]).checked(10)
    with pytest.raises(ValueError, match="minimum length"):
        BeamSettings(min_length=-1).checked(10)


def test_a_cancel_stops_the_search_within_a_step():
    steps = []

    def cancel() -> bool:
        steps.append(1)
        return len(steps) > 5

    with pytest.raises(Cancelled):
        beam_search(random_model(), "the ", BeamSettings(width=4, length=1000), cancel=cancel)
    assert len(steps) == 6
