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
    fresh.__dict__.pop("_fused_steppers", None)
    assert sample(model, "ab", settings) == sample(fresh, "ab", settings)
    model.load_state_dict(tiny_model().state_dict())  # so does loading other weights
    assert sample(model, "ab", settings) == first


def test_batched_steps_use_bf16_only_where_the_cpu_has_it_and_agree_with_fp32(monkeypatch):
    import charrnn.sampling as sampling

    torch.manual_seed(0)
    model = CharRNN(list(Vocab.build(["abcdefgh ."]).chars), num_layers=2, hidden_size=64, embedding_dim=8, dropout=0.0).eval()
    monkeypatch.setattr(sampling, "native_bf16", lambda _device: True)
    batched = FusedStepper.for_model(model, batch_size=16)
    assert batched.dtype == torch.bfloat16 and FusedStepper.for_model(model).dtype == torch.float32
    if sampling.packed_for_onednn(torch.zeros(8, 4, dtype=torch.bfloat16)).is_mkldnn:  # this torch and CPU can pack
        assert all(w.is_mkldnn for w in [batched.w_hh0, *batched.w_cat])
    exact = FusedStepper(model)
    ids = torch.randint(1, len(model.vocab), (16, 100))
    with torch.inference_mode():
        state_a = state_b = (torch.zeros(2, 16, 64), torch.zeros(2, 16, 64))
        for t in range(100):
            logits_a, state_a = exact.step(ids[:, t], state_a)
            logits_b, state_b = batched.step(ids[:, t], state_b)
    assert (logits_a.softmax(-1) - logits_b.softmax(-1)).abs().max() < 0.01
    texts = sample(model, "ab", SampleSettings(length=50, seed=1), num_samples=16)
    assert len(set(texts)) > 1 and all(len(t) == 50 and set(t) <= set("abcdefgh .") for t in texts)
    monkeypatch.setattr(sampling, "native_bf16", lambda _device: False)
    assert FusedStepper.for_model(model, batch_size=16).dtype == torch.float32


def test_the_batch_1_step_in_column_blocks_computes_the_same_as_one_matrix():
    torch.manual_seed(0)
    model = CharRNN(list(Vocab.build(["abcdefgh ."]).chars), num_layers=3, hidden_size=64, embedding_dim=8, dropout=0.0).eval()
    blocked, whole = FusedStepper.for_model(model), FusedStepper(model)
    assert blocked.partitions > 1 and blocked.w_hh0.dim() == 3
    with torch.inference_mode():
        state_a = state_b = (torch.zeros(3, 1, 64), torch.zeros(3, 1, 64))
        for t in range(50):
            ids = torch.tensor([1 + t % 9])
            logits_a, state_a = whole.step(ids, state_a)
            logits_b, state_b = blocked.step(ids, state_b)
    torch.testing.assert_close(logits_a, logits_b, atol=1e-4, rtol=1e-4)
    assert blocked.weight_bytes() == whole.weight_bytes()


def test_the_fused_step_is_the_models_own_lstm_step():
    """The stepper's rewritten gate math (doubled g rows, sigmoid in place of tanh) must give the
    logits nn.LSTM gives, at batch 1 (column blocks) and at a batch (one matrix), or samples drift."""
    torch.manual_seed(0)
    model = CharRNN(list(Vocab.build(["abcdefgh ."]).chars), num_layers=2, hidden_size=64, embedding_dim=8, dropout=0.0).eval()
    ids = torch.randint(1, len(model.vocab), (4, 40))
    with torch.inference_mode():
        expected, _ = model(ids)
        for stepper, rows in ((FusedStepper.for_model(model), ids[:1]), (FusedStepper(model), ids)):
            state = (torch.zeros(2, len(rows), 64), torch.zeros(2, len(rows), 64))
            for t in range(ids.shape[1]):
                logits, state = stepper.step(rows[:, t], state)
                torch.testing.assert_close(logits, expected[: len(rows), t], atol=1e-4, rtol=1e-4)
