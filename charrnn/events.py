"""What a training run reports as it goes (TrainEvent), and what it ends with (TrainResult)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

EventKind = Literal["start", "step", "eval", "sample", "nan", "done"]


@dataclass


class TrainEvent:
    """What the run reports, as it goes: the CLI prints it, the app draws it."""

    kind: EventKind
    step: int = 0
    total_steps: int | None = None
    epoch: float = 0.0
    elapsed: float = 0.0
    eta: float | None = None
    progress: float = 0.0  # the share of the run done, by steps or by the time budget, whichever is further
    lr: float = 0.0
    train_loss: float | None = None
    val_loss: float | None = None
    best_val_loss: float | None = None
    chars_per_s: float | None = None
    sample: str | None = None
    message: str = ""
    result: TrainResult | None = None


@dataclass


class TrainResult:
    out_dir: Path
    best_val_loss: float
    steps: int
    elapsed: float
    stopped_because: str
    config: dict = field(default_factory=dict)
    rank_weights_sha256: list[str] | None = None  # under torchrun: each rank's final weights, equal when in step
    val_scope: str = ""  # what best_val_loss covers: "over all 8,000 held-out characters", "over the first ..."
    val_chars: int = 0  # held-out characters best_val_loss covers
    step_s: float = 0.0  # seconds this run (this process, when resumed) spent in optimizer steps
    run_s: float = 0.0  # seconds this run took, start-up, scoring, samples and saving included
    spent: dict[str, float] = field(default_factory=dict)  # seconds of this run outside optimizer steps, by use

    @property
    def learning_share(self) -> float:
        """The share of the run spent in optimizer steps: the rest went to start-up, scoring, samples, saving."""
        return self.step_s / self.run_s if self.run_s > 0 else 0.0
