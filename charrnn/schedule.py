"""When things happen in a run: the learning rate at each step, when to evaluate, when to sample, when to stop.

Schedule holds what these decisions read (the config, where the loop is, the clock) and the counts of
evaluations and samples by the clock so far; the training loop (charrnn.train) asks it before and after
each step. How many steps a run takes, and the learning rate's shape, are planned in charrnn.runplan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from charrnn import distributed
from charrnn.budget import Clock, Stopper
from charrnn.config import TrainConfig
from charrnn.runplan import lr_at
from charrnn.runstate import LoopState


@dataclass(eq=False)
class Schedule:
    """The "when" of a run from its first step on."""

    cfg: TrainConfig
    loop: LoopState  # the run's, shared: the schedule reads the step and sets the evaluation interval
    clock: Clock
    stopper: Stopper
    ddp: distributed.Group | None  # under torchrun: this rank and the process group
    total_steps: int | None  # None: the time budget (or a cancel) ends the run
    steps_per_epoch: int
    finish_chars: int  # what is left to score when training stops
    samples_taken: int = 0  # samples by the clock so far
    evals_by_clock: int = 0  # evaluations by the clock so far

    @property
    def chars_per_step(self) -> int:
        return self.cfg.batch_size * self.cfg.seq_len

    def progress(self, now_elapsed: float) -> float:
        """How far the run is, 0 to 1 (or past it): by steps, or by the time budget if that is further."""
        p = self.loop.step / self.total_steps if self.total_steps else 0.0
        if self.cfg.time_budget:
            p = max(p, now_elapsed / self.cfg.time_budget)
        return p

    def set_lr(self, optimizer: torch.optim.Optimizer, now: float) -> float:
        """The schedule's learning rate for the next step (cut after each non-finite loss), set on the optimizer."""
        lr = lr_at(self.cfg, self.loop.step, self.progress(now)) * self.loop.lr_scale
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def stop_reason(self, now: float) -> str:
        """Why training must stop before the next step ('' to go on); under torchrun, all ranks agree."""
        budget = self.cfg.time_budget
        if self.stopper.cancelled():  # from here a cancel's grace period runs
            stopped = "cancelled"
        elif self.total_steps is not None and self.loop.step >= self.total_steps:
            stopped = "finished"
        elif budget is not None and now >= budget - self.clock.finish_s(self.finish_chars, self.chars_per_step):
            stopped = "time budget reached"  # what is left is kept for the final evaluation and the card's samples
        elif self.cfg.patience is not None and self.loop.evals_since_best >= self.cfg.patience:
            stopped = "validation loss stopped improving"
        else:
            stopped = ""
        return self.ddp.agree_to_stop(stopped) if self.ddp else stopped

    def plan_evaluations(self, per_step: float) -> None:
        """With no interval given, cfg.evaluations (else about 20) per run, from the measured seconds per step."""
        by_budget = self.cfg.time_budget / per_step if self.cfg.time_budget else None
        planned = [s for s in (self.total_steps, by_budget) if s]
        if planned:
            self.loop.eval_interval = max(10, int(min(planned) / (self.cfg.evaluations or 20)))
        else:
            self.loop.eval_interval = max(10, min(self.steps_per_epoch, 500))
        if self.ddp:
            self.loop.eval_interval = self.ddp.from_main(self.loop.eval_interval)

    @property
    def by_clock(self) -> bool:
        """cfg.evaluations in a time budget with no interval given: evaluations come at even shares of the budget."""
        return bool(self.cfg.evaluations and self.cfg.time_budget and self.cfg.eval_interval is None)

    def evaluation_due(self, now: float) -> bool:
        """By the clock: whether the next of cfg.evaluations evenly spread over the budget is due (the last
        is where training stops)."""
        reached = int(now * self.cfg.evaluations / self.cfg.time_budget) if self.by_clock else 0
        if reached <= self.evals_by_clock:
            return False
        self.evals_by_clock = reached
        return True

    def sample_due(self, sampler_busy: bool) -> bool:
        """With sample_every_s: whether a sample started now is out by its due time (every sample_every_s of
        this run), judging by how long the last step and the last sample took; never while one is written."""
        if not self.cfg.sample_every_s or sampler_busy:
            return False
        since_start = time.monotonic() - self.clock.start
        due = self.samples_taken * self.cfg.sample_every_s + self.cfg.sample_every_s
        return since_start + self.clock.last_step_s + self.clock.last_sample_s >= due
