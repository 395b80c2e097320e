"""Generating text: seeds, temperature, top-k/top-p, batches, streaming, long samples."""

import math
import resource
from collections import Counter

import pytest
import torch

from charrnn.engine import sample, stream
from charrnn.model import CharRNN
from charrnn.sampling import SampleSettings, prepare_prompt
from charrnn.vocab import UNK, Vocab

# A model whose next-character distribution is fixed whatever it has read: its output layer
# ignores the hidden state, so the sampler's filters can be checked against known numbers.
FIXED = {"a": 0.5, "b": 0.3, "c": 0.15, "d": 0.05}



def fixed_model(unknown_logit: float = 5.0) -> CharRNN:
    torch.manual_seed(0)
    chars = [UNK, *FIXED]
    model = CharRNN(chars, num_layers=2, hidden_size=16, embedding_dim=8, dropout=0.0)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([unknown_logit] + [math.log(p) for p in FIXED.values()]))
    return model.eval()


def random_model(text: str = "the quick brown fox jumps over the lazy dog\n") -> CharRNN:
    torch.manual_seed(1)
    return CharRNN(list(Vocab.build([text]).chars), num_layers=2, hidden_size=32, embedding_dim=16, dropout=0.0).eval()


def settings(**kw) -> SampleSettings:
    return SampleSettings(**({"length": 200, "temperature": 1.0, "seed": 7} | kw)).checked(5)


def test_same_seed_same_text_other_seed_other_text():
    model = random_model()
    one = sample(model, "the ", settings(seed=3))[0]
    assert len(one) == 200
    assert sample(model, "the ", settings(seed=3))[0] == one
    assert sample(model, "the ", settings(seed=4))[0] != one


def test_stream_and_sample_agree_for_the_same_seed():
    model = random_model()
    streamed = "".join(piece.char for piece in stream(model, "fox", settings(seed=11, top_k=10)))
    assert streamed == sample(model, "fox", settings(seed=11, top_k=10))[0]


def test_the_unknown_symbol_is_never_sampled_and_frequencies_match_the_model():
    text = sample(fixed_model(unknown_logit=5.0), "", settings(length=4000))[0]  # UNK the likeliest of all
    counts = Counter(text)
    assert UNK not in counts
    for char, p in FIXED.items():
        assert abs(counts[char] / 4000 - p) < 0.035, (char, counts)


def test_temperature_zero_is_greedy():
    model = random_model()
    pieces = list(stream(model, "the", settings(temperature=0.0, seed=1)))
    assert all(piece.char == piece.alternatives[0][0] for piece in pieces)
    assert "".join(p.char for p in pieces) == sample(model, "the", settings(temperature=0.0, seed=2))[0]
    assert set(sample(fixed_model(), "", settings(temperature=0.0))[0]) == {"a"}


def test_top_k_and_top_p_keep_only_the_likeliest_characters():
    model = fixed_model()
    assert set(sample(model, "", settings(top_k=2, length=400))[0]) == {"a", "b"}
    assert set(sample(model, "", settings(top_p=0.75, length=400))[0]) == {"a", "b"}  # 0.5 + 0.3 reaches 0.75
    assert set(sample(model, "", settings(top_p=0.5, length=400))[0]) == {"a"}
    assert set(sample(model, "", settings(top_p=0.9, length=2000))[0]) == {"a", "b", "c"}


def test_streaming_yields_each_character_with_its_probability_and_alternatives():
    pieces = list(stream(fixed_model(unknown_logit=-30.0), "ab", settings(length=50), alternatives=3))
    assert len(pieces) == 50
    for piece in pieces:
        assert piece.prob == pytest.approx(FIXED[piece.char], rel=1e-3)
        assert [c for c, _ in piece.alternatives] == ["a", "b", "c"]
        assert [p for _, p in piece.alternatives] == sorted((p for _, p in piece.alternatives), reverse=True)


def test_n_samples_are_one_batch_primed_in_one_forward_pass():
    model = random_model()
    calls = []
    handle = model.rnn.register_forward_pre_hook(lambda _module, args: calls.append(tuple(args[0].shape[:2])))
    try:
        texts = sample(model, "the lazy", settings(length=60), num_samples=4)
    finally:
        handle.remove()
    assert calls == [(1, len("the lazy"))]  # the prompt read once, for all four; steps use the fused cell
    assert len(texts) == 4 and all(len(t) == 60 for t in texts)
    assert len(set(texts)) == 4


def test_empty_prompt_and_zero_length_are_fine():
    model = random_model()
    assert len(sample(model, "", settings(length=30))[0]) == 30
    assert sample(model, "fox", settings(length=0), num_samples=2) == ["", ""]


def test_unknown_prompt_characters_are_folded_or_dropped_and_named():
    model = random_model()
    fitted, changed = prepare_prompt(model, "Thé ★ fox\r\n")
    assert fitted == "he  fox\n"  # 'T' unknown and unfoldable (the model knows no capitals), 'é' folded to 'e'
    assert changed == ["T", "é", "★"]
    assert len(sample(model, fitted, settings(length=20))[0]) == 20


def test_a_folding_model_reads_prompts_its_own_way():
    vocab = Vocab.build(['"quoted" cafe'])
    model = CharRNN(list(vocab.chars), ascii_fold=True, num_layers=1, hidden_size=8, embedding_dim=4, dropout=0.0)
    assert prepare_prompt(model, "“café”") == ('"cafe"', [])


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"length": -1}, "length"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": -0.5}, "temperature"),
        ({"top_p": 2.0}, "top-p"),
        ({"top_p": 0.0}, "top-p"),
        ({"top_k": -3}, "top-k"),
        ({"seed": "abc"}, "seed"),
    ],
)
def test_meaningless_settings_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        SampleSettings(**bad).checked(10)


def test_settings_that_merely_overshoot_are_clamped():
    checked = SampleSettings(temperature=1e9, top_k=500, top_p=1.0, seed=None).checked(10)
    assert checked.temperature == 10.0 and checked.top_k is None and checked.top_p is None
    assert isinstance(checked.seed, int)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def test_long_samples_run_in_constant_memory():
    # A 1,000-character vocabulary: if each step's probabilities were kept, 20,000 steps would hold 80 MB.
    text = "".join(chr(0x4E00 + i) for i in range(999))
    torch.manual_seed(0)
    model = CharRNN(list(Vocab.build([text]).chars), num_layers=1, hidden_size=16, embedding_dim=8, dropout=0.0).eval()
    before = None
    count = 0
    for count, piece in enumerate(stream(model, "", settings(length=20_000, seed=1), alternatives=1), 1):
        if count == 1000:
            before = rss_bytes()
        assert piece.char
    assert count == 20_000
    assert rss_bytes() - before < 30 * 2**20
    assert not torch.is_grad_enabled() or all(p.grad is None for p in model.parameters())


def test_library_callers_may_pass_raw_prompts_and_unchecked_settings():
    model = random_model()
    accented = sample(model, "Thé fox", SampleSettings(length=20, seed=5))[0]
    assert accented == sample(model, "he fox", settings(length=20, seed=5))[0]
    assert len(sample(model, "", SampleSettings(length=10, seed=None))[0]) == 10
    with pytest.raises(ValueError, match="top-p"):
        sample(model, "", SampleSettings(top_p=3.0))


def test_streaming_leaves_the_callers_grad_mode_alone_between_characters():
    model = random_model()
    pieces = stream(model, "the ", settings(length=5))
    next(pieces)
    assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()
    layer = torch.nn.Linear(2, 1)  # what the caller does between characters still trains
    layer(torch.ones(1, 2)).sum().backward()
    assert layer.weight.grad is not None
    assert len(list(pieces)) == 4
