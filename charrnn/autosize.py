"""What to train when the user gives a wall-clock budget instead of a model size.

`charrnn train --time-budget S` with no size options measures, on the device it will train
on, how many characters per second a few candidate models process, then applies these rules
(any option the user did give is kept as given). Where each constant came from, and the runs
behind it, are in bench/README.md ("Time budgets").

1. Size: the largest candidate whose measured speed lets it see CHARS_PER_PARAM training
   characters per parameter within the budget, and never more than PARAMS_PER_TRAIN_CHAR
   parameters per training character (past that a model only memorises).
2. Learning rate: lr = 0.01 x 256 / hidden (at least 1e-3), x sqrt(batch / 32), at most 1e-2:
   short runs need a high one, and Adam's best LR falls roughly as 1/width.
3. Shape: sequence 64 (twice the updates of 128; the state is carried across windows anyway).
   Batch 32 on a CPU; on a GPU the batch is raised while chars/s keeps rising by more than a
   third, until the budget covers GPU_ENOUGH_EPOCHS passes over the text.
4. Regularisation: dropout 0 below 2 epochs, 0.1 below 6, 0.2 below 15, 0.3 below 30, 0.4 beyond.
5. Schedule: warmup of ~2% of the steps (20 to 200), cosine to 5% over the budget; 4
   evaluations in a budget up to 2 minutes, 10 up to 10 minutes, then 20.
6. The seconds spent measuring (starting a GPU included) come out of the budget.
7. Speeds are measured in the precision the run will train in (bf16 where it is native).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from charrnn.device import pick_device
from charrnn.distributed import world_size
from charrnn.model import CharRNN, resolve_precision
from charrnn.step import train_step
from charrnn.vocab import UNK

if TYPE_CHECKING:
    from charrnn.config import TrainConfig

# (layers, hidden) in increasing cost; embedding 64 for all but the largest.
CANDIDATES = ((1, 128), (2, 128), (2, 256), (2, 384), (2, 512), (2, 768), (3, 1024), (3, 1536))
CHARS_PER_PARAM = 1.5
MAX_PROBE_SHARE = 0.03  # stop trying larger models once measuring has taken 3% of the budget
# With dropout, 2x768 (7.3M) on tinyshakespeare (1M chars) is about the most a text supports.
PARAMS_PER_TRAIN_CHAR = 8.0
START_CANDIDATE = 2  # 2x256: measured first, then up while it fits, down while it does not
CPU_BATCH, CPU_SEQ = 32, 64
GPU_BATCHES = (32, 64, 128, 256, 512)
GPU_ENOUGH_EPOCHS = 30


@dataclass
class SizePlan:
    """What autosize chose and why; the trainer reports `reason` at start-up."""

    num_layers: int
    hidden_size: int
    embedding_dim: int
    batch_size: int
    seq_len: int
    chars_per_s: float
    parameters: int
    probe_seconds: float
    reason: str


def count_parameters(num_layers: int, hidden: int, embedding: int, vocab_size: int) -> int:
    lstm = sum(4 * hidden * ((embedding if k == 0 else hidden) + hidden + 2) for k in range(num_layers))
    return vocab_size * embedding + lstm + hidden * vocab_size + vocab_size


def measure_chars_per_s(cell: str, num_layers: int, hidden: int, embedding: int, vocab_size: int, batch: int,
                        seq_len: int, device: torch.device, steps: int = 3, max_seconds: float = 1.0,
                        precision: str = "fp32") -> float:
    """Training characters per second of one (model, batch) on device: forward, backward, clip, AdamW.

    Times the trainer's own step (charrnn.step.train_step), so what is measured is what will run.
    """
    vocab = [UNK] + [chr(0x100 + i) for i in range(vocab_size - 1)]
    model = CharRNN(vocab, cell=cell, num_layers=num_layers, hidden_size=hidden, embedding_dim=embedding,
                    dropout=0.0).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, vocab_size, (batch, seq_len + 1), generator=gen).to(device)

    def one_step() -> None:
        train_step(model, model, opt, x[:, :-1], x[:, 1:], None, precision, grad_clip=1.0)

    one_step()  # first call pays for allocation and kernel selection
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    done = 0
    while done < steps and (done == 0 or time.perf_counter() - start < max_seconds):
        one_step()
        done += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return done * batch * seq_len / (time.perf_counter() - start)


class SizeSearch:
    """Rule 1 (and the batch part of rule 3): candidates measured on the device, against the budget left."""

    def __init__(self, cell: str, budget_s: float, vocab_size: int, train_chars: float, device: torch.device,
                 embedding_dim: int | None, batch_size: int | None, seq_len: int, precision: str,
                 check: Callable[[], None] | None = None) -> None:
        self.cell, self.budget_s, self.vocab_size, self.train_chars = cell, budget_s, vocab_size, train_chars
        self.device, self.embedding_dim, self.batch_size, self.seq_len = device, embedding_dim, batch_size, seq_len
        self.precision = precision
        self.check = check or (lambda: None)
        self.t0 = time.perf_counter()
        self.ranks = world_size()  # under torchrun every rank trains at the measured speed
        self.probe_s = min(1.0, 0.005 * budget_s)  # per measurement; at least one timed step is always taken

    def embedding_for(self, hidden: int) -> int:
        return self.embedding_dim or (64 if hidden <= 1024 else 128)

    def params_of(self, layers: int, hidden: int) -> int:
        return count_parameters(layers, hidden, self.embedding_for(hidden), self.vocab_size)

    def measure(self, layers: int, hidden: int, batch: int) -> float:
        self.check()
        return measure_chars_per_s(self.cell, layers, hidden, self.embedding_for(hidden), self.vocab_size, batch,
                                   self.seq_len, self.device, max_seconds=self.probe_s, precision=self.precision)

    def chars_in_budget_left(self, cps: float) -> float:
        return (self.budget_s - (time.perf_counter() - self.t0)) * cps * self.ranks

    def fits(self, cps: float, layers: int, hidden: int) -> bool:
        return self.chars_in_budget_left(cps) >= CHARS_PER_PARAM * self.params_of(layers, hidden)

    def batch_for(self, layers: int, hidden: int) -> tuple[int, float]:
        """(batch, chars/s): CPU_BATCH on a CPU; on a GPU raised while it pays and more passes are still of use."""
        if self.batch_size is not None or self.device.type == "cpu":
            batch = self.batch_size or CPU_BATCH
            return batch, self.measure(layers, hidden, batch)
        best_b, best_cps = GPU_BATCHES[0], self.measure(layers, hidden, GPU_BATCHES[0])
        for batch in GPU_BATCHES[1:]:
            if self.chars_in_budget_left(best_cps) / max(self.train_chars, 1.0) >= GPU_ENOUGH_EPOCHS:
                break
            cps = self.measure(layers, hidden, batch)
            if cps < 1.33 * best_cps:
                break
            best_b, best_cps = batch, cps
        return best_b, best_cps

    def largest_that_fits(self, candidates: list[tuple[int, int]]) -> tuple[int, tuple[int, float]]:
        """The index of the chosen candidate and its (batch, chars/s): up from START_CANDIDATE while each
        fits (until measuring has taken MAX_PROBE_SHARE of the budget), else down until one does."""
        probe_start = time.perf_counter()
        k = min(START_CANDIDATE, len(candidates) - 1)
        chosen = self.batch_for(*candidates[k])
        if self.fits(chosen[1], *candidates[k]):
            while k + 1 < len(candidates) and time.perf_counter() - probe_start < MAX_PROBE_SHARE * self.budget_s:
                bigger = self.batch_for(*candidates[k + 1])
                if not self.fits(bigger[1], *candidates[k + 1]):
                    break
                k, chosen = k + 1, bigger
            return k, chosen
        while k > 0:  # going down is never cut short: a smaller model is needed
            k -= 1
            chosen = self.batch_for(*candidates[k])
            if self.fits(chosen[1], *candidates[k]):
                break
        return k, chosen


def choose_size(cell: str, budget_s: float, vocab_size: int, train_chars: float, device: torch.device,
                num_layers: int | None = None, hidden_size: int | None = None, embedding_dim: int | None = None,
                batch_size: int | None = None, seq_len: int | None = None, precision: str = "fp32",
                check: Callable[[], None] | None = None) -> SizePlan:
    """Rule 1 (and the batch part of rule 3), by measuring candidates on device."""
    t0 = time.perf_counter()
    if device.type == "cuda":  # start the GPU now, so its one-off seconds do not cut the search short
        measure_chars_per_s(cell, 1, 32, 8, vocab_size, 2, 8, device, steps=1, precision=precision)
    seq = seq_len or (CPU_SEQ if device.type == "cpu" else 128)
    search = SizeSearch(cell, budget_s - (time.perf_counter() - t0), vocab_size, train_chars, device, embedding_dim,
                        batch_size, seq, precision, check)
    fixed_size = num_layers is not None or hidden_size is not None
    if fixed_size:
        layers, hidden = num_layers or 2, hidden_size or 512
        batch, cps = search.batch_for(layers, hidden)
    else:  # the text caps the size whatever the budget; the smallest is always allowed
        supported = [c for c in CANDIDATES if search.params_of(*c) <= PARAMS_PER_TRAIN_CHAR * train_chars]
        candidates = supported or [CANDIDATES[0]]
        k, (batch, cps) = search.largest_that_fits(candidates)
        layers, hidden = candidates[k]
    emb = search.embedding_for(hidden)
    params = count_parameters(layers, hidden, emb, vocab_size)
    spent = time.perf_counter() - t0
    ratio = max(budget_s - spent, 0.0) * cps / params
    why = "as given" if fixed_size else f"the largest that sees >= {CHARS_PER_PARAM} chars per parameter in the budget"
    reason = (f"time budget {budget_s:g}s: {layers}x{hidden} ({params:,} parameters, {why}), "
              f"batch {batch}, sequence {seq}, measured {cps:,.0f} chars/s -> ~{ratio:.1f} chars per parameter")
    return SizePlan(layers, hidden, emb, batch, seq, cps, params, spent, reason)


def auto_config(config: TrainConfig, texts: list[str], check: Callable[[], None] | None = None) -> TrainConfig:
    """config (a TrainConfig) with every None that the budget rules cover filled in, and the
    measuring time taken off the budget. Only for training from scratch with a time budget.
    check is called before each measurement; it may raise to stop (a cancelled run)."""
    cfg = copy.copy(config)
    device = pick_device(cfg.device)
    cfg.precision = resolve_precision(cfg.precision, device)  # measured in the precision it will train in
    vocab_size = min(len(set().union(*map(set, texts))) + 1, cfg.max_vocab)
    train_chars = sum(len(t) for t in texts) * (1 - cfg.val_fraction)
    plan = choose_size(cfg.cell, cfg.time_budget, max(vocab_size, 2), train_chars, device, cfg.num_layers,
                       cfg.hidden_size, cfg.embedding_dim, cfg.batch_size, cfg.seq_len, cfg.precision, check)
    budget = max(cfg.time_budget - plan.probe_seconds, 0.1 * cfg.time_budget)
    chars_in_budget = budget * plan.chars_per_s * world_size()
    epochs = chars_in_budget / max(train_chars, 1.0)
    steps = chars_in_budget / (plan.batch_size * plan.seq_len)
    evals = 4 if cfg.time_budget <= 120 else 10 if cfg.time_budget <= 600 else 20
    lr = min(1e-2, max(1e-3, 0.01 * 256 / plan.hidden_size) * math.sqrt(plan.batch_size / CPU_BATCH))
    chosen = {
        "num_layers": plan.num_layers, "hidden_size": plan.hidden_size, "embedding_dim": plan.embedding_dim,
        "batch_size": plan.batch_size, "seq_len": plan.seq_len, "lr": lr,
        "dropout": 0.0 if epochs < 2 else 0.1 if epochs < 6 else 0.2 if epochs < 15 else 0.3 if epochs < 30 else 0.4,
        "warmup_steps": int(min(200, max(20, steps * 0.02))),
        "eval_interval": max(10, int(steps / evals)),
    }
    for name, value in chosen.items():
        if getattr(cfg, name) is None:
            setattr(cfg, name, value)
    cfg.time_budget = budget
    cfg.autosize = f"{plan.reason}; ~{epochs:.1f} epochs, lr {cfg.lr:.2g}, dropout {cfg.dropout}"
    return cfg
