"""Sampling reuses the fused step's weight copies between calls, but never stale ones."""

import copy

import torch

from charrnn.engine import GenerationEngine, sample
from charrnn.model import CharRNN
from charrnn.sampling import FusedStepper, SampleSettings, packed_for_onednn
from charrnn.vocab import Vocab


def tiny_model() -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(list(Vocab.build(["abcdefgh ."]).chars), num_layers=2, hidden_size=16, embedding_dim=8, dropout=0.0)


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


def test_the_fused_step_is_the_models_own_lstm_step():
    """The stepper's rewritten gate math (doubled g rows, sigmoid in place of tanh) must give the
    logits nn.LSTM gives, at one row and at a batch, or samples drift."""
    torch.manual_seed(0)
    model = CharRNN(list(Vocab.build(["abcdefgh ."]).chars), num_layers=2, hidden_size=64, embedding_dim=8,
                    dropout=0.0).eval()
    ids = torch.randint(1, len(model.vocab), (4, 40))
    batched = FusedStepper(model)  # fp32, one matrix a layer: packed for oneDNN where this torch and CPU can
    assert batched.packed == packed_for_onednn(torch.zeros(8, 4)).is_mkldnn
    with torch.inference_mode():
        expected, _ = model(ids)
        for stepper, rows in ((batched, ids[:1]), (batched, ids)):
            state = (torch.zeros(2, len(rows), 64), torch.zeros(2, len(rows), 64))
            for t in range(ids.shape[1]):
                logits, state = stepper.step(rows[:, t], state)
                torch.testing.assert_close(logits, expected[: len(rows), t], atol=1e-4, rtol=1e-4)


def test_where_weights_cannot_be_packed_the_plain_products_give_the_same_step(monkeypatch):
    """A torch or CPU without oneDNN's packed products (and every GPU) multiplies plain tensors."""
    import charrnn.sampling as sampling

    torch.manual_seed(0)
    model = CharRNN(list(Vocab.build(["abcdefgh ."]).chars), num_layers=2, hidden_size=64, embedding_dim=8,
                    dropout=0.0).eval()
    ids = torch.randint(1, len(model.vocab), (4, 40))
    monkeypatch.setattr(sampling, "packed_for_onednn", lambda weight: weight)
    plain = FusedStepper(model)
    assert not plain.packed
    with torch.inference_mode():
        expected, _ = model(ids)
        state = (torch.zeros(2, 4, 64), torch.zeros(2, 4, 64))
        for t in range(ids.shape[1]):
            logits, state = plain.step(ids[:, t], state)
            torch.testing.assert_close(logits, expected[:, t], atol=1e-4, rtol=1e-4)
