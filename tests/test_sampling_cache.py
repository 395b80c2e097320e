"""Sampling reuses the fused step's weight copies between calls, but never stale ones."""

import copy

import torch

from charrnn.model import CharRNN
from charrnn.sampling import FusedStepper, SampleSettings, sample
from charrnn.vocab import Vocab


def tiny_model() -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(list(Vocab.build(["abcdefgh ."]).chars), num_layers=2, hidden_size=16, embedding_dim=8, dropout=0.0)


def test_stepper_is_reused_until_the_weights_change():
    model = tiny_model()
    settings = SampleSettings(length=60, temperature=1.0, seed=4)
    first = sample(model, "ab", settings)
    assert FusedStepper.for_model(model) is FusedStepper.for_model(model)
    assert sample(model, "ab", settings) == first
    opt = torch.optim.SGD(model.parameters(), lr=5.0)  # a training step changes the weights in place
    logits, _ = model(torch.tensor([[1, 2, 3]]))
    logits.sum().backward()
    opt.step()
    fresh = copy.deepcopy(model)
    fresh.__dict__.pop("_fused_stepper", None)
    assert sample(model, "ab", settings) == sample(fresh, "ab", settings)
    model.load_state_dict(tiny_model().state_dict())  # so does loading other weights
    assert sample(model, "ab", settings) == first
