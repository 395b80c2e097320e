"""Sampling reuses the fused step's weight copies between calls, but never stale ones."""

import copy

import pytest
import torch

from charrnn.engine import GenerationEngine, sample
from charrnn.model import CharRNN
from charrnn.sampling import FusedStepper, SampleSettings
from charrnn.vocab import Vocab


def tiny_model() -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(list(Vocab.build(["abcdefgh ."]).chars), num_layers=2, hidden_size=16, embedding_dim=8, dropout=0.0)


@torch.inference_mode()
def steps_beside_the_model(model: CharRNN, stepper: FusedStepper, rows: int, length: int):
    """(the stepper's logits, the model's own) at each step of rows random texts, both from a zero state."""
    ids = torch.randint(1, len(model.vocab), (rows, length))
    expected, _ = model(ids)
    zeros = torch.zeros(model.num_layers, rows, model.hidden_size)
    state = (zeros, zeros.clone())
    for t in range(length):
        logits, state = stepper.step(ids[:, t], state)
        yield logits, expected[:, t]


def test_stepper_is_reused_until_the_weights_change():
    model = tiny_model()
    settings = SampleSettings(length=60, temperature=1.0, seed=4)
    first = sample(model, "ab", settings)
    engine = GenerationEngine.for_model(model)
    assert engine.stepper() is engine.stepper()
    assert sample(model, "ab", settings) == first
    opt = torch.optim.SGD(model.parameters(), lr=5.0)  # a training step changes the weights in place
    logits, _ = model(torch.tensor([[1, 2, 3]]))
    logits.sum().backward()
    opt.step()
    fresh = copy.deepcopy(model)
    assert sample(model, "ab", settings) == sample(fresh, "ab", settings)
    model.load_state_dict(tiny_model().state_dict())  # so does loading other weights
    assert sample(model, "ab", settings) == first


def stepper_with(model: CharRNN, products: str, monkeypatch) -> FusedStepper:
    """model's stepper with products of that kind, as a CPU offering no better kind would store them."""
    import charrnn.sampling as sampling

    if products != "fp16":
        monkeypatch.setattr(sampling, "fp16_product", lambda *_: None)
    if products == "plain":
        monkeypatch.setattr(sampling, "packed_for_onednn", lambda weight: weight)
    stepper = FusedStepper(model)
    if stepper.products != products:
        pytest.skip(f"this torch or CPU has no {products} products")
    return stepper


def as_stored(model: CharRNN, products: str) -> CharRNN:
    """model with each matrix a step multiplies by rounded as the stepper stores it (fp16 for "fp16")."""
    if products != "fp16":
        return model
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for name in ["weight_hh_l0", "weight_ih_l1", "weight_hh_l1"]:
            getattr(rounded.rnn, name).copy_(getattr(model.rnn, name).half().float())
        rounded.head.weight.copy_(model.head.weight.half().float())
    return rounded


@pytest.mark.parametrize("products", ["fp16", "onednn", "plain"])
def test_the_fused_step_is_the_models_own_lstm_step(products, monkeypatch):
    """The stepper's rewritten gate math (doubled g rows, sigmoid in place of tanh) must give the
    logits nn.LSTM gives with the weights as the stepper stores them, at one row and at a batch,
    or samples drift."""
    torch.manual_seed(0)
    model = CharRNN(list(Vocab.build(["abcdefgh ."]).chars), num_layers=2, hidden_size=64, embedding_dim=8,
                    dropout=0.0).eval()
    ids = torch.randint(1, len(model.vocab), (4, 40))
    stepper = stepper_with(model, products, monkeypatch)
    with torch.inference_mode():
        expected, _ = as_stored(model, products)(ids)
        for rows in (ids[:1], ids):
            state = (torch.zeros(2, len(rows), 64), torch.zeros(2, len(rows), 64))
            for t in range(ids.shape[1]):
                logits, state = stepper.step(rows[:, t], state)
                torch.testing.assert_close(logits, expected[: len(rows), t], atol=1e-4, rtol=1e-4)


def test_fp16_weights_change_the_logits_by_no_more_than_their_rounding():
    """The fp16 products read half the bytes; the logits they give stay within fp16's rounding of the model's own."""
    torch.manual_seed(0)
    model = CharRNN(list(Vocab.build(["abcdefgh ."]).chars), num_layers=2, hidden_size=64, embedding_dim=8,
                    dropout=0.0).eval()
    stepper = FusedStepper(model)
    if stepper.products != "fp16":
        pytest.skip("this torch or CPU has no fp16 products")
    for stepped, expected in steps_beside_the_model(model, stepper, rows=4, length=40):
        torch.testing.assert_close(stepped, expected, atol=2e-3, rtol=2e-3)
        assert not torch.equal(stepped, expected)


def test_a_model_whose_weights_overflow_fp16_steps_in_fp32():
    torch.manual_seed(0)
    model = tiny_model().eval()
    with torch.no_grad():
        model.rnn.weight_hh_l1[0, 0] = 1e5  # beyond fp16's 65504
    stepper = FusedStepper(model)
    assert stepper.products in ("onednn", "plain")
    for stepped, expected in steps_beside_the_model(model, stepper, rows=2, length=20):
        torch.testing.assert_close(stepped, expected, atol=1e-4, rtol=1e-4)

