"""The one training loop: from scratch, fine-tuning, resuming, for the CLI and the app alike.

train() is a generator of TrainEvent: the CLI shows them with tqdm, the app as a progress
bar and a live plot. The loop reads contiguous parallel streams with truncated BPTT,
carries the hidden state across windows, and keeps the best model by validation loss in
an atomically written checkpoint directory.

A run, in stages (_train reads them top to bottom): open_out_dir (and the training state, when
resuming), load_base, read_texts (charrnn.startup), plan (charrnn.runplan: resolve the config,
autosize for a time budget), check_long_enough, the originality index, build_model (new, fine-tuned
with a grown vocabulary, or resumed), _start_run (the data, the optimizer, restore), then _Run:
train_loop (next_epoch, set_lr, train_step, undo_step after a non-finite loss, after_step: the
report, evaluate_and_save, samples) and finish (score_best: the final evaluation of charrnn.heldout
and the card's samples of charrnn.samples; the last checkpoint). The budget's clock and stopper are
in charrnn.budget, the training state a resumed run restores in charrnn.runstate. What the model
card says of the run travels as a CardInfo, saved in the training state.
"""

from __future__ import annotations

import contextlib
import copy
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from charrnn import distributed
from charrnn.batching import Streams, split_train_val
from charrnn.budget import CANCEL_GRACE_S, Clock, StoppedBeforeFirstStep, Stopper, TrainingStopped, cancel_check
from charrnn.card import CardInfo, model_card
from charrnn.checkpoint import INDEX, CheckpointError, save_checkpoint
from charrnn.config import TrainConfig
from charrnn.device import hardware_name, pick_device
from charrnn.events import TrainEvent, TrainResult
from charrnn.heldout import (
    EVAL_CHARS_DURING_TRAINING,
    ValScore,
    final_parts,
    final_score,
    is_better,
    quick_val_ids,
    score_quick,
)
from charrnn.model import CharRNN, State, resolve_precision
from charrnn.originality import staged_index
from charrnn.runplan import check_long_enough, lr_at, merge_resume, plan, resolve, schedule
from charrnn.runstate import LoopState, restore, state_tensors
from charrnn.samples import BackgroundSample, card_samples, probe_samples_s, sample_text
from charrnn.sampling import SampleSettings, prepare_prompt
from charrnn.startup import (
    build_model,
    encode_stoppable,
    load_base,
    open_out_dir,
    own_card_info,
    read_texts,
    resumed_card_info,
)
from charrnn.step import import_optimizer_machinery, train_step
from charrnn.text import Corpus
from charrnn.vocab import Vocab

# Importable from here as before the training code was split by concern.
__all__ = ["EVAL_CHARS_DURING_TRAINING", "StoppedBeforeFirstStep", "TrainConfig", "TrainEvent", "TrainResult",
           "TrainingStopped", "hardware_name", "quick_val_ids", "resolve", "sample_text", "train"]

MAX_NAN_STEPS = 20
# A non-finite loss means the LR is far too high: ten times lower recovers from 1e6 within MAX_NAN_STEPS.
NAN_LR_FACTOR = 0.1
STEP_EVENT_S = 1.0  # a step event at least this often, so the loss curve starts in the first seconds


def train(
    corpora: list[Corpus] | list[str],
    out_dir: str | Path,
    config: TrainConfig | None = None,
    init: str | Path | CharRNN | None = None,
    resume: bool = False,
    overwrite: bool = False,
    cancel: threading.Event | None = None,
    card_info: CardInfo | Mapping[str, object] | None = None,
) -> Iterator[TrainEvent]:
    """Train a model on corpora and write it to out_dir; yields progress events, the last of kind 'done'.

    init: a model (or its directory or repo id) to fine-tune; its vocabulary grows to cover
    characters of the new text it has never seen. resume: continue the run whose training
    state is in out_dir, exactly where it stopped. cancel: set it from any thread to stop
    within seconds, at any stage; the best checkpoint so far and the training state are kept
    (a cancel before the first step raises StoppedBeforeFirstStep). A time budget covers the
    whole run: start-up, training, the final evaluation and the model card's samples.
    card_info: what the model card says of where the model comes from (name, corpus, command...);
    a dict of CardInfo's field names will do. It is copied, never changed.
    """
    import_optimizer_machinery()  # once per process, before the run's clock starts
    with contextlib.ExitStack() as cleanup:  # the staged index goes however the run ends, a closed generator included
        yield from _train(corpora, Path(out_dir), config or TrainConfig(), init, resume, overwrite,
                          cancel or threading.Event(), own_card_info(card_info), cleanup)


def _train(corpora: list[Corpus] | list[str], out_dir: Path, config: TrainConfig, init: str | Path | CharRNN | None,
           resume: bool, overwrite: bool, cancel: threading.Event, card_info: CardInfo,
           cleanup: contextlib.ExitStack) -> Iterator[TrainEvent]:
    """train()'s run, stage by stage; what must be removed however it ends (the staged index) goes on cleanup."""
    clock = Clock()
    stopper = Stopper(cancel, clock)
    check = cancel_check(cancel)
    ddp = distributed.start(config.device)  # under torchrun: this rank's device and the process group

    # The output directory (and the training state, resuming), and the model to fine-tune.
    state = open_out_dir(out_dir, resume, overwrite)
    if state is not None:
        config = merge_resume(config, state["meta"]["config"])
    check()
    base = load_base(init, card_info) if init is not None and state is None else None

    # The text as the model reads it, and the plan for it.
    fold = config.ascii_fold if config.ascii_fold is not None else (base.ascii_fold if base is not None else False)
    texts, text_digest = read_texts(corpora, fold, check)
    if state is not None and state["meta"].get("text_sha256", text_digest) != text_digest:
        raise CheckpointError(f"{out_dir} was trained on other text: resuming needs the same files, in the same order")
    cfg = plan(config, state, base, texts, fold, ddp, clock, check)
    check_long_enough(texts, cfg)
    # The originality check's index of this text (and the base model's), copied into every checkpoint.
    staged = staged_index(texts, ", ".join(c.name for c in corpora if isinstance(c, Corpus)), cfg.ascii_fold,
                          merge_from=[getattr(base, "directory", None), out_dir if resume else None], check=check)
    corpus_index = Path(cleanup.enter_context(staged))

    # The model, on its device.
    device = ddp.device if ddp else pick_device(cfg.device)
    cfg.precision = resolve_precision(cfg.precision, device)  # saved concrete, so a resumed run keeps it
    torch.manual_seed(cfg.seed)
    model = build_model(state, base, texts, cfg, fold, check, card_info)
    model.to(device).train()

    # The data, the optimizer and where the loop starts; then train, and finish.
    names = [c.name if isinstance(c, Corpus) else f"text {i + 1}" for i, c in enumerate(corpora)]
    run = _start_run(cfg, state, out_dir, model, device, ddp, clock, stopper, texts, names, corpus_index,
                     text_digest, card_info, check, default_warmup=state is None and config.warmup_steps is None)
    clock.spent["start-up"] = time.monotonic() - clock.start
    yield run.start_event(resumed=state is not None)
    stopped = yield from run.train_loop()
    yield from run.finish(stopped)


def _start_run(cfg: TrainConfig, state: dict | None, out_dir: Path, model: CharRNN, device: torch.device,
               ddp: distributed.Group | None, clock: Clock, stopper: Stopper, texts: list[str], names: list[str],
               corpus_index: Path, text_digest: str, card_info: CardInfo, check: Callable[[], None],
               default_warmup: bool) -> _Run:
    """The last of start-up: the text as ids on the device, what the end will score, the optimizer, the
    schedule, and where the loop starts (where a resumed run stopped, else at the first step)."""
    net = ddp.wrap(model) if ddp else model  # DDP averages the gradients across ranks in backward
    first_state = {k: v.detach().clone() for k, v in model.state_dict().items()}  # to fall back on, before any eval
    train_text, val_text = split_train_val(texts, cfg.val_fraction)
    train_ids = encode_stoppable(model.vocab, train_text, check).to(device)
    val_ids_quick = quick_val_ids(texts, cfg.val_fraction, model.vocab, cfg.eval_chars).to(device)
    check()
    parts = final_parts(texts, names, cfg.val_fraction)
    # One text whose whole held-out part is what each evaluation scores: the best model's loss is
    # known exactly from training, and the end need not score it again.
    quick_is_whole = len(val_ids_quick) == len(val_text) and len(texts) == 1 and ddp is None
    # A plan that chose how much each evaluation reads keeps to it at the end: its last evaluation stands.
    score_at_end = not quick_is_whole and cfg.eval_chars is None
    finish_chars = len(val_ids_quick) + (sum(len(part) for _, part in parts) if score_at_end else 0)

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99),
                                  fused=device.type == "cuda")
    data_rng = torch.Generator().manual_seed(cfg.seed)
    # Where the loop is (saved in the training state), the state carried across windows, the best weights.
    loop, hidden, best_state = LoopState(eval_interval=cfg.eval_interval), None, None
    if state is not None:
        loop = LoopState.from_meta(state["meta"], val_chars=len(val_ids_quick) - 1)
        clock.before = state["meta"]["elapsed"]
        hidden, best_state = restore(state, out_dir, optimizer, data_rng, device)
        card_info = resumed_card_info(card_info, state["meta"].get("card_info"))
    streams_batch, steps_per_epoch, total_steps = schedule(cfg, train_ids, ddp, default_warmup)

    return _Run(cfg=cfg, out_dir=out_dir, model=model, net=net, optimizer=optimizer, data_rng=data_rng, device=device,
                ddp=ddp, clock=clock, stopper=stopper, loop=loop, texts=texts, train_ids=train_ids,
                val_ids_quick=val_ids_quick, val_chars=len(val_text), final_parts=parts,
                quick_is_whole=quick_is_whole, score_at_end=score_at_end, finish_chars=finish_chars,
                card_info=card_info,
                corpus_index=corpus_index, text_digest=text_digest, best_state=best_state, hidden=hidden,
                first_state=first_state, first_step=loop.step, streams_batch=streams_batch,
                steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                hyper={k: v for k, v in asdict(cfg).items() if v is not None})


class _Meter:
    """The training loss and speed over the steps since the last step event."""

    def __init__(self) -> None:
        self.loss: torch.Tensor | float = 0.0  # the steps' summed loss, on the device: read (a GPU wait) when taken
        self.steps = 0  # steps since the last take
        self.since = time.monotonic()  # when the last take was

    def add(self, loss: torch.Tensor) -> None:
        self.loss = self.loss + loss.detach()
        self.steps += 1

    def take(self, chars_per_step: int) -> tuple[float, float | None]:
        """The steps' mean loss and training characters per second (None if no time passed); starts again."""
        dt = time.monotonic() - self.since
        cps = self.steps * chars_per_step / dt if dt > 0 else None
        self.since = time.monotonic()
        mean = float(self.loss) / self.steps
        self.loss, self.steps = 0.0, 0
        return mean, cps


@dataclass(eq=False)


class _Run:
    """A run from its first step on: what the stages before it built, and the stages that step,
    evaluate, save and finish it."""

    cfg: TrainConfig
    out_dir: Path
    model: CharRNN
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    data_rng: torch.Generator
    device: torch.device
    ddp: distributed.Group | None  # under torchrun: this rank and the process group
    clock: Clock
    stopper: Stopper
    loop: LoopState
    texts: list[str]
    train_ids: torch.Tensor
    val_ids_quick: torch.Tensor  # what each evaluation scores
    val_chars: int  # held-out characters in all
    final_parts: list[tuple[str, str]]  # (file name, the held-out part the end scores)
    quick_is_whole: bool  # each evaluation scores the whole held-out text, so the end need not score it again
    score_at_end: bool  # the best weights are scored again at the end, on more of the held-out text
    finish_chars: int  # what is left to score when training stops
    card_info: CardInfo  # what the card says of where the model comes from, and the end's measurements
    corpus_index: Path
    text_digest: str
    best_state: dict | None
    hidden: State | None
    first_state: dict  # the weights to fall back on before any evaluation
    first_step: int
    streams_batch: int
    steps_per_epoch: int
    total_steps: int | None
    hyper: dict
    samples_taken: int = 0  # samples by the clock so far
    evals_by_clock: int = 0  # evaluations by the clock so far
    sampler: BackgroundSample | None = None  # writes the samples by the clock

    @property
    def vocab(self) -> Vocab:
        return self.model.vocab

    @property
    def chars_per_step(self) -> int:
        return self.cfg.batch_size * self.cfg.seq_len

    @property
    def epoch_progress(self) -> float:
        """Epochs done, the current one's windows as a fraction."""
        return self.loop.epoch + self.loop.window / self.steps_per_epoch

    @property
    def quick_exact(self) -> bool:
        """Each evaluation scores exactly what `charrnn eval MODEL FILE --split val` does."""
        return self.quick_is_whole and self.cfg.eval_streams is None

    @property
    def best_val_loss(self) -> float | None:
        return self.loop.best_val if math.isfinite(self.loop.best_val) else None

    def progress(self, now_elapsed: float) -> float:
        p = self.loop.step / self.total_steps if self.total_steps else 0.0
        if self.cfg.time_budget:
            p = max(p, now_elapsed / self.cfg.time_budget)
        return p

    def start_event(self, resumed: bool) -> TrainEvent:
        """The first event: the model, the text and the hardware, and what autosize chose for a new run."""
        message = (f"{self.model.num_parameters():,} parameters, vocabulary {len(self.vocab)}, "
                   f"{len(self.train_ids):,} training and {self.val_chars:,} validation characters, "
                   f"on {hardware_name(self.device)}")
        if self.cfg.autosize and not resumed:
            message += f"\n{self.cfg.autosize}"
        return TrainEvent("start", step=self.loop.step, total_steps=self.total_steps, lr=self.cfg.lr,
                          elapsed=self.clock.elapsed(), message=message)

    def quick_score(self, note: str = "") -> ValScore:
        """The best model's loss as the evaluations during training measured it."""
        loop = self.loop
        return ValScore(loss=loop.best_val, chars=len(self.val_ids_quick) if loop.best_complete else loop.best_chars,
                        held_out=self.val_chars, files=len(self.texts),
                        whole=loop.best_complete and len(self.val_ids_quick) == self.val_chars,
                        first=loop.best_complete, exact=loop.best_complete and self.quick_exact, note=note)

    def card(self) -> CardInfo:
        """The card's information for a checkpoint now: the run's figures and, until the end has scored
        the best model, its loss as the evaluations during training measured it."""
        info = replace(self.card_info, hyperparameters=self.hyper, steps=self.loop.step,
                       chars_seen=self.loop.step * self.chars_per_step, train_time_s=self.clock.elapsed(),
                       hardware=hardware_name(self.device))
        if info.val_loss is None:
            during = self.quick_score("as scored during training") if math.isfinite(self.loop.best_val) else None
            info.val_loss = during.loss if during else None
            info.val_scope = during.describe() if during else None
            info.val_reproducible = bool(during and during.exact)
        return info

    def checkpoint(self, reason: str) -> None:
        """Write the best weights, the card and the training state (atomically: see save_checkpoint)."""
        info = self.card()
        tensors, opt_meta = state_tensors(self.model, self.optimizer, self.device, self.data_rng, self.hidden)
        meta = {
            **self.loop.to_meta(), "config": asdict(self.cfg), "model_config": self.model.config,
            "optimizer": opt_meta, "elapsed": self.clock.elapsed(), "card_info": self.card_info.to_meta(),
            "reason": reason, "text_sha256": self.text_digest,
            "spent": {"optimizer steps": self.clock.step_s, **self.clock.spent},  # this run's seconds, by use
        }
        began = time.monotonic()
        save_checkpoint(self.out_dir, self.model, model_card(self.model, info), self.best_state,
                        {"tensors": tensors, "meta": meta}, extra_files={INDEX: self.corpus_index / INDEX})
        self.clock.save_s = time.monotonic() - began

    def evaluate_and_save(self, grace: float, keep: float = 0.0, save: bool = True) -> Iterator[TrainEvent]:
        """Score the weights on the quick validation text, keep them if they are the best, checkpoint (if save).
        A cancel stops the scoring grace seconds after it came; the budget stops it keep seconds before its end."""
        began = time.monotonic()
        with self.clock.spending("evaluations"):
            result = score_quick(self.model, self.val_ids_quick, self.ddp, self.stopper.asker(grace, keep),
                             self.cfg.eval_streams)
        self.clock.eval_cps = result["chars"] / max(time.monotonic() - began, 1e-6)
        why = "" if result["complete"] else self.stopper.reason
        val, complete, loop = result["loss"], result["complete"], self.loop
        loop.last_eval_step = loop.step
        if is_better(val, complete, loop.best_val, loop.best_complete, self.best_state is not None, len(self.vocab)):
            loop.best_val, loop.best_chars, loop.best_complete = val, result["chars"], complete
            loop.evals_since_best = 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        elif complete:
            loop.evals_since_best += 1
        now = self.clock.elapsed()
        scored = f"scored {result['chars']:,} of {len(self.val_ids_quick) - 1:,} validation characters"
        yield TrainEvent("eval", step=loop.step, total_steps=self.total_steps, epoch=self.epoch_progress, elapsed=now,
                         lr=self.optimizer.param_groups[0]["lr"], val_loss=val, best_val_loss=self.best_val_loss,
                         message=f"{scored} before {why}" if why else "")
        if save and self.best_state is not None and (self.ddp is None or self.ddp.is_main):
            with self.clock.spending("saving"):
                self.checkpoint("eval")

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

    def train_loop(self) -> Iterator[TrainEvent]:
        """Step until a budget, patience, divergence or a cancel says stop; returns why it stopped."""
        streams = Streams(self.train_ids, self.streams_batch, self.cfg.seq_len, self.loop.offset)
        began = time.monotonic()
        meter = _Meter()
        while True:
            now = self.clock.elapsed()
            stopped = self.stop_reason(now)
            if stopped:
                return stopped
            if self.loop.window >= len(streams):
                streams = self.next_epoch()
            x, y = streams.window(self.loop.window)
            if self.ddp:
                x, y = self.ddp.my_rows(x), self.ddp.my_rows(y)
            lr = self.set_lr(now)
            stepped = time.monotonic()
            loss, new_hidden = train_step(self.net, self.model, self.optimizer, x, y, self.hidden, self.cfg.precision,
                                          self.cfg.grad_clip, averaged_grads=bool(self.ddp))
            self.clock.add_step(time.monotonic() - stepped)
            if new_hidden is None:  # a non-finite loss: the step is skipped
                yield self.undo_step(lr)
                if self.loop.nan_steps >= MAX_NAN_STEPS:
                    return "diverged (loss kept becoming NaN or inf; try a lower learning rate)"
                self.loop.window += 1
                continue
            self.hidden = new_hidden
            self.loop.step += 1
            self.loop.window += 1
            meter.add(loss)
            if self.loop.eval_interval is None and self.loop.step == 10 and not self.by_clock:
                self.plan_evaluations(per_step=(time.monotonic() - began) / 10)
            if self.cfg.time_budget is not None and self.loop.step == self.first_step + 1:
                with self.clock.spending("timing the card samples"):
                    self.clock.samples_s = probe_samples_s(self.model, self.cfg.seed)
            yield from self.after_step(meter, lr)

    def next_epoch(self) -> Streams:
        """A new epoch: the window grid shifts, so each epoch cuts the text differently."""
        self.loop.epoch, self.loop.window = self.loop.epoch + 1, 0
        # A shifted grid may hold one window fewer; the offset never leaves a stream shorter than a window.
        max_offset = min(self.cfg.seq_len - 1, len(self.train_ids) - 1 - self.streams_batch * self.cfg.seq_len)
        self.loop.offset = int(torch.randint(0, max_offset + 1, (1,), generator=self.data_rng))
        self.hidden = None
        return Streams(self.train_ids, self.streams_batch, self.cfg.seq_len, self.loop.offset)

    def set_lr(self, now: float) -> float:
        """The schedule's learning rate for the next step (cut after each non-finite loss), set on the optimizer."""
        lr = lr_at(self.cfg, self.loop.step, self.progress(now)) * self.loop.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def undo_step(self, lr: float) -> TrainEvent:
        """After a non-finite loss: cut the learning rate, and go back to the best weights so far (or the
        first), since the weights that gave it may be poisoned, with no optimizer or carried state."""
        self.loop.nan_steps += 1
        self.loop.lr_scale *= NAN_LR_FACTOR
        self.hidden = None
        self.model.load_state_dict(self.best_state if self.best_state is not None else self.first_state)
        self.optimizer.state.clear()
        return TrainEvent("nan", step=self.loop.step, epoch=self.loop.epoch, lr=lr,
                          message=f"non-finite loss at step {self.loop.step}: skipped the step, went back to the "
                                  f"best weights so far and cut the learning rate to {lr * NAN_LR_FACTOR:.3g}")

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

    def after_step(self, meter: _Meter, lr: float) -> Iterator[TrainEvent]:
        """What a step is followed by when it is due: a report of the loss and speed (every 10 steps, and at
        least every STEP_EVENT_S), an evaluation, a sample (every sample_interval steps or sample_every_s)."""
        now = self.clock.elapsed()
        if self.loop.step % 10 == 0 or self.loop.step == 1 or time.monotonic() - meter.since >= STEP_EVENT_S:
            train_loss, cps = meter.take(self.chars_per_step)
            self.clock.train_cps = cps or self.clock.train_cps
            p = self.progress(now)
            eta = max(0.0, now / p - now) if p > 0 else None
            yield TrainEvent("step", step=self.loop.step, total_steps=self.total_steps, epoch=self.epoch_progress,
                             elapsed=now, eta=eta, progress=min(p, 1.0), lr=lr, train_loss=train_loss,
                             chars_per_s=cps, best_val_loss=self.best_val_loss)
        if self.loop.eval_interval and self.loop.step % self.loop.eval_interval == 0 or self.evaluation_due(now):
            yield from self.evaluate_and_save(CANCEL_GRACE_S)
        if self.cfg.sample_interval and self.loop.step % self.cfg.sample_interval == 0:
            yield self.sample_event(now)
        if self.sample_due():
            self.start_background_sample()
        written = self.sampler.take() if self.sampler else None
        if written is not None:
            self.clock.last_sample_s = time.monotonic() - self.sampler.began
            yield TrainEvent("sample", step=self.sampler.step, elapsed=now, sample=written)

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

    def sample_due(self) -> bool:
        """With sample_every_s: whether a sample started now is out by its due time (every sample_every_s of
        this run), judging by how long the last step and the last sample took; never while one is written."""
        if not self.cfg.sample_every_s or (self.sampler and self.sampler.busy):
            return False
        since_start = time.monotonic() - self.clock.start
        due = self.samples_taken * self.cfg.sample_every_s + self.cfg.sample_every_s
        return since_start + self.clock.last_step_s + self.clock.last_sample_s >= due

    def sample_event(self, now: float) -> TrainEvent:
        """A sample of the current weights (every sample_interval steps), written before training goes on."""
        settings = SampleSettings(length=self.cfg.sample_length, temperature=0.8, seed=self.cfg.seed)
        with self.clock.spending("samples"):
            text = sample_text(self.model, settings, self.stopper.asker(), prompt=self.cfg.sample_prompt)
        self.model.train()
        prompt = prepare_prompt(self.model, self.cfg.sample_prompt)[0]  # as the model read it
        return TrainEvent("sample", step=self.loop.step, elapsed=now, sample=prompt + text)

    def start_background_sample(self) -> None:
        """A sample of the current weights (every sample_every_s), written by the engine's thread while training
        goes on: each continues the run's sample prompt with the run's seed, so one after another shows what
        training changed. Its event comes at the first step after it is written."""
        settings = SampleSettings(length=self.cfg.sample_length, temperature=0.8, seed=self.cfg.seed)
        with self.clock.spending("samples"):
            self.sampler = self.sampler or BackgroundSample(self.model)
            self.sampler.start(self.model, self.cfg.sample_prompt, settings, self.loop.step)
        self.samples_taken += 1

    def finish(self, stopped: str) -> Iterator[TrainEvent]:
        """Final evaluation of where training stopped (unless that step was just evaluated), then the
        best model on the held-out text, then the card's samples: each stops where it is when the
        budget runs out, and a cancel cuts the finish short."""
        if self.sampler:
            self.sampler.cancel()  # a sample still being written is not waited for
        if stopped == "cancelled" and self.loop.step == self.first_step:
            raise StoppedBeforeFirstStep
        if self.loop.step > self.loop.last_eval_step and "diverged" not in stopped:  # saved with the rest below
            yield from self.evaluate_and_save(CANCEL_GRACE_S, self.clock.card_s(), save=False)
        if self.best_state is None:
            raise self.nothing_saved(stopped)
        score = self.score_best()
        if self.stopper.cancelled():
            stopped = "cancelled"  # whenever it came: a cancelled run never reads as finished
        if self.ddp is None or self.ddp.is_main:
            with self.clock.spending("saving"):
                self.checkpoint(stopped)
        digests = self.ddp.weight_digests(self.model) if self.ddp else None
        if self.ddp:
            self.ddp.finish()
        elapsed = self.clock.elapsed()
        result = TrainResult(out_dir=self.out_dir, best_val_loss=score.loss, steps=self.loop.step, elapsed=elapsed,
                             stopped_because=stopped, config=asdict(self.cfg), rank_weights_sha256=digests,
                             val_scope=score.describe(), val_chars=score.chars, step_s=self.clock.step_s,
                             spent=dict(self.clock.spent),
                             run_s=time.monotonic() - self.clock.start)
        message = (f"stopped: {stopped}; best validation loss {score.loss:.4f} nats/char "
                   f"({score.loss / math.log(2):.3f} bits/char) {score.describe()}; {result.learning_share:.0%} of "
                   f"{result.run_s:.1f} s in optimizer steps")
        yield TrainEvent("done", step=self.loop.step, total_steps=self.total_steps, elapsed=elapsed,
                         val_loss=score.loss, best_val_loss=score.loss, message=message, result=result)

    def nothing_saved(self, stopped: str) -> CheckpointError:
        """Why a run that ends with no weights better than guessing saved nothing, and what to do."""
        if self.stopper.cancelled():
            return TrainingStopped("training was stopped before any evaluation was better than guessing uniformly; "
                                   "nothing was saved")
        if "diverged" in stopped:
            return CheckpointError("training diverged (the loss kept becoming NaN or inf) before any good evaluation; "
                                   "nothing was saved: try a lower learning rate")
        if self.loop.step > 0:
            return CheckpointError("no evaluation was better than guessing uniformly, so nothing was saved: "
                                   "the learning rate is probably far too high")
        if stopped == "time budget reached":
            started_s = time.monotonic() - self.clock.start
            return CheckpointError(f"the time budget ran out before the first step (starting up took "
                                   f"{started_s:.0f} s); nothing was saved: give it more time")
        return CheckpointError("training stopped before the first step; nothing was saved")

    def score_best(self) -> ValScore:
        """The best weights' final score and the card's samples, both kept in the card's information."""
        best_model = copy.deepcopy(self.model)
        best_model.load_state_dict(self.best_state)
        best_model.rnn.flatten_parameters()  # a deep copy clones each weight apart: cuDNN wants them in one block again
        known = not self.score_at_end and self.loop.best_complete  # training scored these weights, as planned
        with self.clock.spending("final scoring"):
            score = final_score(best_model, self.quick_score, known, self.final_parts, self.val_chars,
                                self.loop.best_chars, self.device, self.stopper)
        info = self.card_info
        info.val_loss, info.val_scope, info.val_reproducible = score.loss, score.describe(), score.exact
        info.val_losses = score.per_file  # empty for one file
        with self.clock.spending("card samples"):
            info.samples = card_samples(best_model, self.cfg.seed, self.stopper.asker())
        return score
