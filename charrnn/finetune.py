"""How to fine-tune a model on a new text within a wall-clock budget: the plan `charrnn train --init
MODEL --time-budget S` runs (any option the user did give is kept as given). It measures, on the
device it will train on, how fast the base model's architecture trains and scores, then applies
these rules. Where each constant came from, and the runs behind it, are in bench/README.md
("Fine-tuning in a time budget").

1. Shape: sequence SEQ_LEN and batch BATCH on a CPU (GPU_BATCH on a GPU). A short budget is
   spent best on many small updates: the base already knows the language, what it must learn is
   the new text's style, and that comes from the number of updates more than from their size.
2. Learning rate LR for a 512-wide base (x 512 / hidden, x sqrt(batch / BATCH) for another batch,
   at most MAX_LR), warmup of WARMUP_SHARE of the steps (at most MAX_WARMUP), cosine to 5% over
   the budget.
3. Dropout by the passes over the text the budget buys (dropout_for): none below one pass, where
   nothing is seen twice; half the base's below two; the base's own from two on.
4. Evaluations: EVALS in the run, spread by the speed its first steps measure, each reading at most
   what EVAL_SHARE of the budget can score in all, in streams of EVAL_STREAM_CHARS characters (many
   short streams score faster than `charrnn eval`'s long ones, within 0.01 nats/char of it). The
   best evaluation is the model's reported score: the end does not score it again.
5. Any of these the user gave is kept; given batch, sequence, lr, dropout and warmup all, there is
   nothing to plan and the run is as it would be without a plan. The seconds spent measuring come
   out of the budget.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from charrnn.autosize import measure_chars_per_s
from charrnn.device import pick_device
from charrnn.distributed import world_size
from charrnn.evaluate import evaluate_ids
from charrnn.model import CharRNN, resolve_precision

if TYPE_CHECKING:
    from charrnn.config import TrainConfig

SEQ_LEN = 64
BATCH = 16
GPU_BATCH = 64
LR = 2e-3  # for a 512-wide base; scaled as 512 / hidden, at most MAX_LR
MAX_LR = 5e-3
WARMUP_SHARE = 0.02
MAX_WARMUP = 20
EVALS = 2  # one halfway to catch a text learned too well, one where training stops
EVAL_SHARE = 0.03  # of the budget, for every evaluation of the run together
EVAL_STREAM_CHARS = 256
MIN_EVAL_CHARS = 2_048
MAX_EVAL_CHARS = 131_072
PROBE_EVAL_CHARS = 1_024  # scored once at start-up, to time evaluation
# The recipe: when the user gave all of it, the plan has nothing to choose and the run is as without a plan.
RECIPE = ("batch_size", "seq_len", "lr", "dropout", "warmup_steps")


def dropout_for(base_dropout: float, epochs: float) -> float:
    """Dropout by passes over the text: none while the budget reads the text less than once (nothing
    is seen twice, so nothing can be memorised), the base's own from two passes on."""
    if epochs < 1.0:
        return 0.0
    return base_dropout if epochs >= 2.0 else base_dropout / 2


def measure_eval_chars_per_s(base: CharRNN, device: torch.device, streams: int) -> float:
    """Held-out characters scored per second, in streams parallel streams, by the base's architecture."""
    model = base if base.device == device else copy.deepcopy(base).to(device)
    ids = torch.randint(1, len(base.vocab), (PROBE_EVAL_CHARS,))
    began = time.perf_counter()  # the first call pays for allocation too: the speed comes out low, never high
    evaluate_ids(model, ids, streams=streams)
    return PROBE_EVAL_CHARS / max(time.perf_counter() - began, 1e-6)


def finetune_config(config: TrainConfig, base: CharRNN, texts: list[str],
                    check: Callable[[], None] | None = None) -> TrainConfig:
    """config with every None the rules cover filled in for fine-tuning base on texts within
    config.time_budget, the measuring time taken off the budget, and cfg.autosize saying what was
    chosen and why. check is called before each measurement; it may raise to stop."""
    cfg = copy.copy(config)
    if all(getattr(cfg, name) is not None for name in RECIPE):
        return cfg
    began = time.perf_counter()
    device = pick_device(cfg.device)
    cfg.precision = resolve_precision(cfg.precision, device)
    batch = cfg.batch_size or (BATCH if device.type == "cpu" else GPU_BATCH)
    seq = cfg.seq_len or SEQ_LEN
    (check or (lambda: None))()
    train_cps = measure_chars_per_s(base.cell, base.num_layers, base.hidden_size, base.embedding_dim, len(base.vocab),
                                    batch, seq, device, steps=1, max_seconds=0.3, precision=cfg.precision)
    streams = max(1, min(64, PROBE_EVAL_CHARS // EVAL_STREAM_CHARS))
    eval_cps = measure_eval_chars_per_s(base, device, streams)
    budget = max(cfg.time_budget - (time.perf_counter() - began), 0.1 * cfg.time_budget)

    train_chars = sum(len(t) for t in texts) * (1 - cfg.val_fraction)
    steps = budget * (1 - EVAL_SHARE) * train_cps * world_size() / (batch * seq)
    epochs = steps * batch * seq / max(train_chars, 1.0)
    held_out = sum(len(t) for t in texts) - train_chars
    eval_chars = int(min(MAX_EVAL_CHARS, max(MIN_EVAL_CHARS, EVAL_SHARE * budget * eval_cps / EVALS)))
    lr = min(MAX_LR, LR * 512 / base.hidden_size * math.sqrt(batch / BATCH))
    chosen = {
        "batch_size": batch, "seq_len": seq, "lr": lr, "dropout": dropout_for(base.dropout_p, epochs),
        "warmup_steps": int(min(MAX_WARMUP, max(1, steps * WARMUP_SHARE))),
    }
    if cfg.eval_interval is None:  # how much each evaluation reads goes with how often it comes
        cfg.evaluations = cfg.evaluations or EVALS  # spread over the run by the speed its first steps measure
        cfg.eval_chars = cfg.eval_chars or eval_chars
        cfg.eval_streams = cfg.eval_streams or max(1, min(64, min(cfg.eval_chars, int(held_out)) // EVAL_STREAM_CHARS))
    for name, value in chosen.items():
        if getattr(cfg, name) is None:
            setattr(cfg, name, value)
    cfg.time_budget = budget
    evals = f"{cfg.evaluations} evaluations" if cfg.eval_interval is None else f"evaluations every {cfg.eval_interval}"
    held = f"{cfg.eval_chars:,}" if cfg.eval_chars else "all the"
    cfg.autosize = (f"fine-tuning in {config.time_budget:g}s: measured {train_cps:,.0f} training chars/s at batch "
                    f"{cfg.batch_size} x sequence {cfg.seq_len} and {eval_cps:,.0f} scored chars/s -> ~{steps:,.0f} "
                    f"steps, ~{epochs:.1f} passes over the text; lr {cfg.lr:.2g} (many small updates adapt fastest), "
                    f"dropout {cfg.dropout:g} (by passes), {evals} of {held} held-out characters")
    return cfg


def finetune_chars_per_s(base: CharRNN, device: str | torch.device | None = None,
                         precision: str | None = None) -> float:
    """Training characters per second that fine-tuning base runs at here, in the plan's shape (measured,
    in about a second: the figure budget_hint needs)."""
    device = pick_device(device)
    batch = BATCH if device.type == "cpu" else GPU_BATCH
    return measure_chars_per_s(base.cell, base.num_layers, base.hidden_size, base.embedding_dim, len(base.vocab),
                               batch, SEQ_LEN, device, steps=1, max_seconds=0.3,
                               precision=resolve_precision(precision, device))


def budget_hint(text_chars: int, budget_s: float, chars_per_s: float, val_fraction: float = 0.1) -> str:
    """One line for a budget too short to read the text's training part once at chars_per_s (measured by
    finetune_chars_per_s): what a minute reads here, and the budget that reads it all; '' otherwise."""
    train_chars = text_chars * (1 - val_fraction)
    per_minute = 60 * chars_per_s * (1 - EVAL_SHARE)
    read = budget_s / 60 * per_minute
    if read >= train_chars:
        return ""
    once_s = 60 * math.ceil(train_chars / per_minute)
    return (f"A minute of training reads about {per_minute:,.0f} characters on this machine (measured), so "
            f"{_duration(budget_s)} reads {read / train_chars:.0%} of this text's {train_chars:,.0f}: the model "
            f"takes on its style sooner with {_duration(once_s)}, which reads it all once.")


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    if minutes < 1:
        return f"{seconds:.0f} seconds"
    return "1 minute" if round(minutes) == 1 else f"{minutes:.0f} minutes"
