"""Every knob of a training run, and the defaults a run falls back on: what train() takes and
autosize fills in for a time budget."""

from __future__ import annotations

import math
from dataclasses import dataclass

from charrnn.model import check_precision
from charrnn.vocab import DEFAULT_MAX_VOCAB

SCRATCH_DEFAULTS = {"num_layers": 2, "hidden_size": 512, "embedding_dim": 64, "dropout": 0.1,
                    "batch_size": 32, "seq_len": 128, "lr": 2e-3, "warmup_steps": 100, "max_epochs": 20.0}
# Fine-tuning starts from weights that already work: a gentler LR and a shorter schedule
# adapt them to the new text without wiping out what they knew.
FINETUNE_DEFAULTS = {"batch_size": 32, "seq_len": 128, "lr": 5e-4, "warmup_steps": 20, "max_epochs": 5.0}


@dataclass
class TrainConfig:
    """Every knob of a run. None means: chosen for you (from the base model, the time budget or defaults)."""

    # model (ignored when fine-tuning: the base model's architecture is kept)
    cell: str = "lstm"
    num_layers: int | None = None
    hidden_size: int | None = None
    embedding_dim: int | None = None
    dropout: float | None = None
    ascii_fold: bool | None = None
    max_vocab: int = DEFAULT_MAX_VOCAB
    # optimisation
    batch_size: int | None = None
    seq_len: int | None = None
    lr: float | None = None
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    warmup_steps: int | None = None
    grad_clip: float = 1.0
    # budgets and cadence
    max_steps: int | None = None
    max_epochs: float | None = None
    time_budget: float | None = None
    patience: int | None = 8
    eval_interval: int | None = None
    evaluations: int | None = None  # evaluations in a run with no eval_interval, spread by measured speed (None: ~20)
    eval_chars: int | None = None  # held-out characters each evaluation reads (None: all, up to 131,072)
    eval_streams: int | None = None  # parallel streams they are read in (None: as `charrnn eval` reads them)
    sample_interval: int | None = None
    sample_every_s: float | None = None  # a sample this often, by the clock, the first this long after start-up
    sample_length: int = 160
    sample_prompt: str = ""  # every sample during training continues this, with the run's seed
    val_fraction: float = 0.1
    seed: int = 1337
    device: str | None = None
    precision: str | None = None  # "fp32" or "bf16"; None: bf16 where the hardware has it natively
    autosize: str | None = None  # set by charrnn.autosize or charrnn.finetune: what a time budget chose and why

    def __post_init__(self) -> None:
        checks = [
            ("num_layers", 1, 16), ("hidden_size", 1, 8192), ("embedding_dim", 1, 8192), ("batch_size", 1, 4096),
            ("seq_len", 1, 65536), ("max_steps", 1, 10**9), ("warmup_steps", 0, 10**9), ("patience", 1, 10**6),
            ("eval_interval", 1, 10**9), ("sample_interval", 1, 10**9), ("max_vocab", 2, 65536),
            ("eval_chars", 2, 10**9), ("eval_streams", 1, 4096),
            ("evaluations", 1, 10**6),
        ]
        for name, low, high in checks:
            value = getattr(self, name)
            whole = isinstance(value, int) and not isinstance(value, bool)
            if value is not None and not (whole and low <= value <= high):
                raise ValueError(f"{name.replace('_', '-')} must be a whole number from {low} to {high}, not {value!r}")
        fractions = [("dropout", 0.0, 0.99), ("val_fraction", 0.001, 0.5), ("min_lr_ratio", 0.0, 1.0),
                     ("weight_decay", 0.0, 10.0)]
        for name, low, high in fractions:
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and low <= value <= high):
                raise ValueError(f"{name.replace('_', '-')} must be between {low} and {high}, not {value!r}")
        for name in ("lr", "max_epochs", "time_budget", "grad_clip", "sample_every_s"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name.replace('_', '-')} must be a positive number, not {value!r}")
        if self.cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be lstm or gru, not {self.cell!r}")
        if self.precision is not None:
            check_precision(self.precision)
