"""On a CUDA GPU: the shipped model writes text (one sample, a batch, a stream), the fused step is
nn.LSTM's step, and training and fine-tuning run there. Skipped where there is no GPU, as in CI;
bench/gpu.sh's machine runs them."""

import pytest
import torch

from charrnn.checkpoint import DEFAULT_MODEL, load_model, resolve_shipped
from charrnn.engine import sample, stream
from charrnn.model import CharRNN
from charrnn.sampling import FusedStepper, SampleSettings
from charrnn.train import TrainConfig, train
from charrnn.vocab import Vocab

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def test_the_fused_step_is_nn_lstms_step_on_the_gpu():
    torch.manual_seed(0)
    model = CharRNN(list(Vocab.build(["abcdefgh ."]).chars), num_layers=2, hidden_size=64, embedding_dim=8,
                    dropout=0.0).to(CUDA).eval()
    ids = torch.randint(1, len(model.vocab), (4, 30), device=CUDA)
    with torch.inference_mode():
        expected, _ = model(ids)
        for batch in (1, 4):
            stepper = FusedStepper(model)
            state = (torch.zeros(2, batch, 64, device=CUDA), torch.zeros(2, batch, 64, device=CUDA))
            for t in range(ids.shape[1]):
                logits, state = stepper.step(ids[:batch, t], state)
                torch.testing.assert_close(logits, expected[:batch, t], atol=1e-3, rtol=1e-3)


def test_the_shipped_model_writes_on_the_gpu():
    model = load_model(resolve_shipped(DEFAULT_MODEL), device="cuda")
    settings = SampleSettings(length=200, temperature=0.8, seed=7)
    one = sample(model, "Once upon a time", settings)
    assert one == sample(model, "Once upon a time", settings)  # the seed reproduces it on the GPU too
    batch = sample(model, "Once upon a time", settings, num_samples=16)
    streamed = "".join(piece.char for piece in stream(model, "Once upon a time", settings))
    vocab = set(model.vocab.chars[1:])
    for text in [one[0], streamed, *batch]:
        assert len(text) == 200 and set(text) <= vocab and text.count(" ") > 20
    assert len(set(batch)) > 1


def test_training_and_fine_tuning_run_on_the_gpu(tmp_path):
    text = "the fox ran over the hill and the crow sat on the fence. " * 800
    config = TrainConfig(num_layers=2, hidden_size=64, embedding_dim=16, batch_size=16, seq_len=64, max_steps=60,
                         device="cuda")
    events = list(train([text], tmp_path / "base", config))
    assert events[-1].result.best_val_loss < 2.5
    assert "cuda" in str(load_model(tmp_path / "base", device="cuda").device)
    new_text = "der Fuchs lief über den Hügel, die Krähe saß am Zaun. " * 800  # ü, ß, ä are new to the model
    tuning = TrainConfig(max_steps=30, device="cuda")
    done = list(train([new_text], tmp_path / "tuned", tuning, init=tmp_path / "base"))[-1]
    tuned = load_model(tmp_path / "tuned")
    assert {"ü", "ß", "ä"} <= set(tuned.vocab.chars) and done.result.best_val_loss < 4.0
