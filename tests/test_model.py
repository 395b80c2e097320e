"""The model and its checkpoint files: safetensors + config.json, strict loading, growing the vocabulary."""

import json

import pytest
import torch

from charrnn.checkpoint import CheckpointError, load_model, save_checkpoint
from charrnn.model import CharRNN
from charrnn.vocab import Vocab


def tiny(cell: str = "lstm", text: str = "abcdefgh \n", **kw) -> CharRNN:
    torch.manual_seed(0)
    vocab = Vocab.build([text])
    sizes = {"num_layers": 2, "hidden_size": 16, "embedding_dim": 8, "dropout": 0.0}
    return CharRNN(list(vocab.chars), cell=cell, **(sizes | kw))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_forward_gives_logits_per_position_and_carries_state(cell):
    model = tiny(cell).eval()
    ids = torch.randint(0, len(model.vocab), (3, 7))
    logits, state = model(ids)
    assert logits.shape == (3, 7, len(model.vocab))
    # Reading in two halves with the state carried equals reading at once.
    first, state_half = model(ids[:, :4])
    second, _ = model(ids[:, 4:], state_half)
    torch.testing.assert_close(torch.cat([first, second], 1), logits)


def test_checkpoint_round_trips_through_from_pretrained_strict(tmp_path):
    model = tiny(ascii_fold=True).eval()
    save_checkpoint(tmp_path / "m", model, card="# card\n")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["vocab"] == list(model.vocab.chars) and config["ascii_fold"] is True and config["hidden_size"] == 16

    plain = CharRNN.from_pretrained(str(tmp_path / "m"), strict=True).eval()
    loaded = load_model(tmp_path / "m", device="cpu")  # where the ids are, also on a machine with a GPU
    ids = torch.randint(0, len(model.vocab), (2, 9))
    for other in (plain, loaded):
        assert other.vocab == model.vocab and other.ascii_fold
        torch.testing.assert_close(other(ids)[0], model(ids)[0], rtol=0, atol=0)


def test_weights_that_do_not_match_the_config_are_refused(tmp_path):
    save_checkpoint(tmp_path / "m", tiny(), card="")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps(config | {"hidden_size": 32}))
    with pytest.raises(CheckpointError, match="do not match config.json"):
        load_model(tmp_path / "m")


def test_pickle_only_directories_are_never_unpickled(tmp_path):
    save_checkpoint(tmp_path / "m", tiny(), card="")
    (tmp_path / "m" / "model.safetensors").unlink()
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(b"not even a pickle")
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(tmp_path / "m")


def test_growing_the_vocabulary_keeps_old_rows_and_old_predictions():
    model = tiny().eval()
    bigger = model.vocab.extended(["abcé€"])
    grown = model.grow_vocab(bigger).eval()
    n = len(model.vocab)
    assert grown.vocab.chars[:n] == model.vocab.chars and len(grown.vocab) == n + 2
    torch.testing.assert_close(grown.embedding.weight[:n], model.embedding.weight)
    torch.testing.assert_close(grown.head.weight[:n], model.head.weight)
    torch.testing.assert_close(grown.head.bias[:n], model.head.bias)
    assert torch.isfinite(grown.embedding.weight).all() and torch.isfinite(grown.head.weight).all()
    # Among old characters the grown model predicts exactly what the old one did; each new character
    # gets the geometric mean of the known characters' probabilities, which is small wherever the model is sure.
    ids = model.vocab.encode("abcdefgh ab")[None]
    old_probs = torch.softmax(model(ids)[0], -1)
    new_probs = torch.softmax(grown(ids)[0], -1)
    renormalised = new_probs[..., :n] / new_probs[..., :n].sum(-1, keepdim=True)
    torch.testing.assert_close(renormalised, old_probs)
    geometric_mean = new_probs[..., 1:n].log().mean(-1).exp()
    torch.testing.assert_close(new_probs[..., n], geometric_mean)


def test_absurd_configs_are_refused_before_allocating():
    with pytest.raises(ValueError, match="hidden_size"):
        tiny(hidden_size=10**6)
    with pytest.raises(ValueError, match="cell"):
        tiny(cell="transformer")


def test_device_is_chosen_automatically_and_can_be_overridden():
    from charrnn.device import pick_device

    best = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert pick_device(None).type == pick_device("auto").type == best
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            pick_device("cuda")
