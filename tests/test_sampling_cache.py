"""Sampling reuses the fused step's weight copies between calls, but never stale ones."""

import copy

import torch

from charrnn.model import CharRNN
from charrnn.sampling import FusedStepper, SampleSettings, draw, filter_logits, packed_for_onednn, sample
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
    batched = FusedStepper(model)  # fp32, one matrix a layer: packed for oneDNN where this torch and CPU can
    assert batched.packed == packed_for_onednn(torch.zeros(8, 4)).is_mkldnn
    with torch.inference_mode():
        expected, _ = model(ids)
        for stepper, rows in ((FusedStepper.for_model(model), ids[:1]), (batched, ids)):
            state = (torch.zeros(2, len(rows), 64), torch.zeros(2, len(rows), 64))
            for t in range(ids.shape[1]):
                logits, state = stepper.step(rows[:, t], state)
                torch.testing.assert_close(logits, expected[: len(rows), t], atol=1e-4, rtol=1e-4)


def test_a_bf16_batch_keeps_long_memory_as_fp32_does(monkeypatch):
    """A forget gate near 1 is the model's memory; in bf16 0.9975 would round to 0.996 or 1,
    and after 200 steps the cell would hold 45% or 166% of what fp32 keeps."""
    import charrnn.sampling as sampling

    monkeypatch.setattr(sampling, "native_bf16", lambda _device: True)
    torch.manual_seed(0)
    model = CharRNN(list(Vocab.build(["abcdefgh ."]).chars), num_layers=2, hidden_size=32, embedding_dim=8, dropout=0.0).eval()
    with torch.no_grad():
        for p in model.rnn.parameters():
            p.zero_()
        for layer in (0, 1):
            getattr(model.rnn, f"bias_ih_l{layer}")[:32] = -30.0  # input gate shut: the cell only decays
            getattr(model.rnn, f"bias_ih_l{layer}")[32:64] = 6.0  # forget gate sigmoid(6) = 0.99753
    ids = torch.full((4,), 3)
    cells = []
    for stepper in (FusedStepper(model), FusedStepper.for_model(model, batch_size=4)):
        state = (torch.zeros(2, 4, 32), torch.ones(2, 4, 32))
        with torch.inference_mode():
            for _ in range(200):
                _, state = stepper.step(ids, state)
        cells.append(torch.stack(list(state[1])))
    assert FusedStepper.for_model(model, batch_size=4).dtype == torch.bfloat16
    torch.testing.assert_close(cells[0], torch.full((2, 4, 32), torch.sigmoid(torch.tensor(6.0)).item() ** 200), rtol=1e-4, atol=0)
    torch.testing.assert_close(cells[1], cells[0], rtol=0.01, atol=0)


def test_a_seed_draws_what_torch_multinomial_draws():
    """The draw skips multinomial's checks but not its randomness: the texts a seed wrote stay."""
    settings = SampleSettings(temperature=0.7, top_k=20, seed=3).checked(80)
    ours, theirs = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for batch in (1, 16):
        for _ in range(300):
            logits = torch.randn(batch, 80) * 4
            expected = torch.multinomial(torch.softmax(filter_logits(logits, settings), -1), 1, generator=theirs)[:, 0]
            assert torch.equal(draw(logits, settings, ours), expected)


def test_where_weights_cannot_be_packed_the_plain_products_give_the_same_step(monkeypatch):
    """A torch or CPU without oneDNN's packed products (and every GPU) multiplies plain tensors."""
    import charrnn.sampling as sampling

    torch.manual_seed(0)
    model = CharRNN(list(Vocab.build(["abcdefgh ."]).chars), num_layers=2, hidden_size=64, embedding_dim=8, dropout=0.0).eval()
    ids = torch.randint(1, len(model.vocab), (4, 40))
    monkeypatch.setattr(sampling, "packed_for_onednn", lambda weight: weight)
    monkeypatch.setattr(sampling, "native_bf16", lambda _device: True)
    plain_fp32, plain_bf16 = FusedStepper(model), FusedStepper.for_model(model, batch_size=4)
    assert not plain_fp32.packed and not plain_bf16.packed and plain_bf16.dtype == torch.bfloat16
    with torch.inference_mode():
        expected, _ = model(ids)
        for stepper, tolerance in ((plain_fp32, 1e-4), (plain_bf16, 0.05)):
            state = (torch.zeros(2, 4, 64), torch.zeros(2, 4, 64))
            for t in range(ids.shape[1]):
                logits, state = stepper.step(ids[:, t], state)
                torch.testing.assert_close(logits, expected[:, t], atol=tolerance, rtol=tolerance)
