"""The model: embedding, a multi-layer torch.nn.LSTM (or GRU), dropout and a linear head.

The constructor's arguments are the whole config: PyTorchModelHubMixin writes them to
config.json, so the vocabulary and the text normalisation travel with the weights.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin, constants, hf_hub_download
from torch import nn

from charrnn.vocab import UNK, Vocab

State = tuple[torch.Tensor, torch.Tensor] | torch.Tensor
CELLS = ("lstm", "gru")
MAX_LOADABLE_VOCAB = 65_536
MAX_LOADABLE_HIDDEN = 8_192
MAX_LOADABLE_LAYERS = 16
# Each size is capped above, but 16 layers of 8,192 would still be 34 GB of weights: the
# total is capped too, so a hostile config.json is refused before a tensor is allocated.
MAX_LOADABLE_PARAMETERS = 100_000_000
PRECISIONS = ("fp32", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether device multiplies bf16 in hardware: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX. Emulated bf16 is slower than fp32, so it is never a default there."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: stay in fp32
        return False


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """The precision to train in: as given, else bf16 where it is native (faster there; bench/time_to_quality.py
    prints both with --precision). The weights, optimizer and evaluation stay fp32."""
    if precision is None:
        return "bf16" if native_bf16(device) else "fp32"
    return check_precision(precision)


def check_precision(precision: str) -> str:
    """precision itself, or the one-line error a user sees for a name charrnn does not know."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


def precision_autocast(device: torch.device, precision: str):
    """Matrix products in bf16 (weights and state stay fp32) when precision is bf16; else nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


class CharRNN(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="charrnn",
    tags=["char-rnn", "text-generation", "lstm"],
    pipeline_tag="text-generation",
):
    def __init__(
        self,
        vocab: list[str],
        ascii_fold: bool = False,
        cell: str = "lstm",
        num_layers: int = 2,
        hidden_size: int = 512,
        embedding_dim: int = 64,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        check_config(vocab=vocab, cell=cell, num_layers=num_layers, hidden_size=hidden_size,
                     embedding_dim=embedding_dim, dropout=dropout)
        self.vocab = Vocab(tuple(vocab))
        self.ascii_fold = ascii_fold
        self.cell = cell
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.embedding_dim = embedding_dim
        self.dropout_p = dropout
        self.embedding = nn.Embedding(len(vocab), embedding_dim)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(embedding_dim, hidden_size, num_layers, batch_first=True,
                       dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, len(vocab))

    @property
    def config(self) -> dict:
        return {
            "vocab": list(self.vocab.chars),
            "ascii_fold": self.ascii_fold,
            "cell": self.cell,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "embedding_dim": self.embedding_dim,
            "dropout": self.dropout_p,
        }

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        x = self.dropout(self.embedding(ids))
        out, state = self.rnn(x, state)
        return self.head(self.dropout(out)), state

    def set_dropout(self, p: float) -> None:
        """Train with dropout p from now on (between the layers, and on the embedding and the output)."""
        self.dropout_p = p
        self.dropout.p = p
        self.rnn.dropout = p if self.num_layers > 1 else 0.0

    def initial_state(self, batch_size: int) -> State:
        shape = (self.num_layers, batch_size, self.hidden_size)
        zeros = torch.zeros(shape, device=self.device)
        return (zeros, zeros.clone()) if self.cell == "lstm" else zeros

    def grow_vocab(self, new_vocab: Vocab) -> CharRNN:
        """A copy whose vocabulary is new_vocab (a superset); old rows are kept as they are.

        New characters start from the average embedding, and their output bias is set
        low, so until the fine-tune teaches them the model behaves exactly as before on
        the characters it knows.
        """
        if new_vocab.chars[: len(self.vocab)] != self.vocab.chars:
            raise ValueError("the new vocabulary must extend the old one")
        config = self.config | {"vocab": list(new_vocab.chars)}
        grown = CharRNN(**config).to(self.device)
        shared = {k: v for k, v in self.state_dict().items() if not k.startswith(("embedding.", "head."))}
        grown.load_state_dict(shared, strict=False)
        n = len(self.vocab)
        with torch.no_grad():
            old_emb, old_w, old_b = self.embedding.weight, self.head.weight, self.head.bias
            grown.embedding.weight[:n] = old_emb
            grown.head.weight[:n] = old_w
            grown.head.bias[:n] = old_b
            if len(new_vocab) > n:
                known = old_emb[1:] if n > 1 else old_emb
                noise = torch.randn(len(new_vocab) - n, old_emb.shape[1], device=old_emb.device)
                noise = noise * known.std(dim=0, keepdim=True)
                grown.embedding.weight[n:] = known.mean(dim=0, keepdim=True) + 0.5 * noise
                grown.head.weight[n:] = old_w[1:].mean(dim=0, keepdim=True) if n > 1 else 0.0
                # Output row and bias are the means of the known characters' (UNK aside), so a new character's
                # logit is the mean of theirs: its probability is their geometric mean, tiny wherever the model
                # is sure, yet a fine-tune lifts it in tens of steps (from 1e-6 it took thousands, since Adam
                # moves a bias by about the LR per step).
                grown.head.bias[n:] = old_b[1:].mean() if n > 1 else old_b.mean()
        grown.train(self.training)
        return grown

    @classmethod
    def _from_pretrained(  # type: ignore[override]
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs,
    ) -> CharRNN:
        """Load safetensors only: a pickle from a stranger can run code, so it is never opened."""
        model = cls(**model_kwargs)
        if Path(model_id).is_dir():
            model_file = str(Path(model_id) / constants.SAFETENSORS_SINGLE_FILE)
        else:
            model_file = hf_hub_download(
                repo_id=model_id,
                filename=constants.SAFETENSORS_SINGLE_FILE,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                token=token,
                local_files_only=local_files_only,
            )
        return cls._load_as_safetensor(model, model_file, map_location, strict)


def check_config(*, vocab: list[str], cell: str, num_layers: int, hidden_size: int, embedding_dim: int,
                 dropout: float) -> None:
    """Refuse configs that would crash or exhaust memory before any tensor is allocated."""
    if not isinstance(vocab, list) or not all(isinstance(c, str) for c in vocab):
        raise ValueError("config.json: 'vocab' must be a list of characters")
    if not 2 <= len(vocab) <= MAX_LOADABLE_VOCAB:
        raise ValueError(f"config.json: the vocabulary has {len(vocab):,} entries; "
                         f"charrnn allows 2 to {MAX_LOADABLE_VOCAB:,}")
    if vocab[0] != UNK:
        raise ValueError("config.json: the vocabulary does not start with the unknown symbol")
    if cell not in CELLS:
        raise ValueError(f"config.json: cell must be one of {', '.join(CELLS)}, not {cell!r}")
    sizes = [("num_layers", num_layers, MAX_LOADABLE_LAYERS), ("hidden_size", hidden_size, MAX_LOADABLE_HIDDEN),
             ("embedding_dim", embedding_dim, MAX_LOADABLE_HIDDEN)]
    for name, value, top in sizes:
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
            raise ValueError(f"config.json: {name} must be a whole number from 1 to {top}, not {value!r}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"config.json: dropout must be in [0, 1), not {dropout!r}")
    gates = 4 if cell == "lstm" else 3
    first_layer = gates * hidden_size * (embedding_dim + hidden_size + 2)
    rnn = first_layer + (num_layers - 1) * gates * hidden_size * (2 * hidden_size + 2)
    total = len(vocab) * embedding_dim + rnn + (hidden_size + 1) * len(vocab)
    if total > MAX_LOADABLE_PARAMETERS:
        raise ValueError(f"config.json: the model would have {total:,} parameters; "
                         f"charrnn allows at most {MAX_LOADABLE_PARAMETERS:,}")
