"""A run's plan: every knob resolved (from the base model, the time budget or the defaults), the text
checked against it, the steps it will take and the learning rate at each; a resumed run keeps its own."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import fields

import torch

from charrnn import distributed
from charrnn.autosize import auto_config
from charrnn.batching import Streams, min_chars_needed
from charrnn.budget import Clock
from charrnn.config import FINETUNE_DEFAULTS, SCRATCH_DEFAULTS, TrainConfig
from charrnn.finetune import finetune_config
from charrnn.model import CharRNN
from charrnn.text import TextError


def resolve(config: TrainConfig, base: CharRNN | None, texts: list[str],
            check: Callable[[], None] | None = None) -> TrainConfig:
    """Fill every None in config from the base model or the defaults (check: see auto_config)."""
    resolved = copy.copy(config)
    if resolved.time_budget is not None and resolved.autosize is None:  # the budget picks batch, LR and schedule
        if base is None:
            resolved = auto_config(resolved, texts, check)  # and the size
        else:
            resolved = finetune_config(resolved, base, texts, check)
    defaults = FINETUNE_DEFAULTS if base is not None else SCRATCH_DEFAULTS
    if base is not None:
        for name in ("num_layers", "hidden_size", "embedding_dim", "cell"):
            setattr(resolved, name, getattr(base, name))
        if resolved.dropout is None:
            resolved.dropout = base.dropout_p
        if resolved.ascii_fold is None:
            resolved.ascii_fold = base.ascii_fold
    for name, value in defaults.items():
        by_other_budget = name == "max_epochs" and (resolved.max_steps or resolved.time_budget)
        if getattr(resolved, name) is None and not by_other_budget:
            setattr(resolved, name, value)
    if resolved.ascii_fold is None:
        resolved.ascii_fold = False
    # A short text cannot fill many long streams: shrink the batch before refusing the text.
    n_train = sum(len(t) for t in texts) * (1 - resolved.val_fraction)
    while resolved.batch_size > 1 and n_train < resolved.batch_size * (resolved.seq_len + 1) * 2:
        resolved.batch_size //= 2
    return resolved


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    warm = min(1.0, (step + 1) / (cfg.warmup_steps + 1)) if cfg.warmup_steps else 1.0
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * warm * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


def plan(config: TrainConfig, state: dict | None, base: CharRNN | None, texts: list[str], fold: bool,
         ddp: distributed.Group | None, clock: Clock, check: Callable[[], None]) -> TrainConfig:
    """The run's config: a new run's resolved (autosized, given a time budget and no size), a resumed
    run's as saved; under torchrun, rank 0's on every rank. It sets the clock's budget."""
    cfg = resolve(config, base, texts, check) if state is None else config
    if ddp:  # every rank runs rank 0's plan (autosize measures on each, and they may differ)
        cfg = ddp.from_main(cfg)
    check()
    clock.budget = cfg.time_budget
    if state is None and cfg.autosize is not None and config.autosize is None and config.time_budget:
        clock.before -= config.time_budget - cfg.time_budget  # autosize took its measuring time off the budget already
    cfg.ascii_fold = fold if state is None else cfg.ascii_fold
    return cfg


def check_long_enough(texts: list[str], cfg: TrainConfig) -> None:
    """Refuse a text too short for the run's batch and sequence, plus its validation part."""
    need = min_chars_needed(cfg.batch_size, cfg.seq_len, cfg.val_fraction)
    total_chars = sum(len(t) for t in texts)
    if total_chars < need:
        raise TextError(
            f"the text is too short to train on: {total_chars:,} characters, but at least {need:,} are needed "
            f"(batch {cfg.batch_size} × sequence {cfg.seq_len} for training "
            f"plus a {cfg.val_fraction:.0%} validation part)"
        )


def schedule(cfg: TrainConfig, train_ids: torch.Tensor, ddp: distributed.Group | None,
             default_warmup: bool) -> tuple[int, int, int | None]:
    """The streams one step reads (every rank's rows), the steps in an epoch, and the steps in the
    run (None: only the time budget or patience ends it); a default warmup is cut to fit a short run."""
    streams_batch = cfg.batch_size * (ddp.world_size if ddp else 1)  # under DDP each rank reads its slice
    # From offset 0, so a resumed run plans the same.
    steps_per_epoch = len(Streams(train_ids, streams_batch, cfg.seq_len))
    total_steps = cfg.max_steps
    if cfg.max_epochs is not None:
        by_epochs = int(cfg.max_epochs * steps_per_epoch)
        total_steps = min(total_steps, by_epochs) if total_steps else by_epochs
    if default_warmup and total_steps:
        cfg.warmup_steps = min(cfg.warmup_steps, max(1, total_steps // 10))  # a default warmup never eats a short run
    return streams_batch, steps_per_epoch, total_steps


RESUMABLE_OVERRIDES = ("max_steps", "max_epochs", "time_budget", "patience", "device", "sample_interval")


def merge_resume(given: TrainConfig, saved: dict) -> TrainConfig:
    """Resume with the saved run's settings; only budgets and the device may be changed."""
    merged = TrainConfig(**{f.name: saved[f.name] for f in fields(TrainConfig) if f.name in saved})
    default = TrainConfig()
    for name in RESUMABLE_OVERRIDES:
        if getattr(given, name) != getattr(default, name):
            setattr(merged, name, getattr(given, name))
    return merged
