"""The one training loop: from scratch, fine-tuning, resuming, for the CLI and the app alike.

train() is a generator of TrainEvent: the CLI shows them with tqdm, the app as a progress
bar and a live plot. The loop reads contiguous parallel streams with truncated BPTT,
carries the hidden state across windows, and keeps the best model by validation loss in
an atomically written checkpoint directory.

A run, in stages (_train reads them top to bottom): open_out_dir (and the training state, when
resuming), load_base, read_texts (charrnn.startup), plan (charrnn.runplan: resolve the config,
autosize for a time budget), check_long_enough, the originality index, build_model (new, fine-tuned
with a grown vocabulary, or resumed), _start_run (the data, the optimizer, restore), then Run:
train_loop (next_epoch, the schedule's learning rate, train_step, undo_step after a non-finite loss,
after_step: the report, evaluate_and_save, samples), with when to evaluate, sample and stop decided by
charrnn.schedule, and finish (charrnn.finish: score_best, the final evaluation of charrnn.heldout and
the card's samples of charrnn.samples; the last checkpoint). The budget's clock and stopper are
in charrnn.budget, the training state a resumed run restores in charrnn.runstate. What the model
card says of the run travels as a CardInfo, saved in the training state.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from charrnn import distributed
from charrnn.batching import Streams, split_train_val
from charrnn.budget import CANCEL_GRACE_S, Clock, StoppedBeforeFirstStep, Stopper, TrainingStopped, cancel_check
from charrnn.card import CardInfo
from charrnn.checkpoint import CheckpointError
from charrnn.config import TrainConfig
from charrnn.device import hardware_name, pick_device
from charrnn.events import TrainEvent, TrainResult
from charrnn.finish import evaluate_and_save, finish
from charrnn.heldout import (
    EVAL_CHARS_DURING_TRAINING,
    final_parts,
    quick_val_ids,
)
from charrnn.model import CharRNN, State, resolve_precision
from charrnn.originality import staged_index
from charrnn.runplan import check_long_enough, merge_resume, plan, resolve, schedule
from charrnn.runstate import LoopState, restore
from charrnn.samples import BackgroundSample, probe_samples_s, sample_text
from charrnn.sampling import SampleSettings, prepare_prompt
from charrnn.schedule import Schedule
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
    yield from finish(run, stopped)


def _start_run(cfg: TrainConfig, state: dict | None, out_dir: Path, model: CharRNN, device: torch.device,
               ddp: distributed.Group | None, clock: Clock, stopper: Stopper, texts: list[str], names: list[str],
               corpus_index: Path, text_digest: str, card_info: CardInfo, check: Callable[[], None],
               default_warmup: bool) -> Run:
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

    when = Schedule(cfg=cfg, loop=loop, clock=clock, stopper=stopper, ddp=ddp, total_steps=total_steps,
                    steps_per_epoch=steps_per_epoch, finish_chars=finish_chars)
    return Run(cfg=cfg, out_dir=out_dir, model=model, net=net, optimizer=optimizer, data_rng=data_rng, device=device,
               ddp=ddp, clock=clock, stopper=stopper, loop=loop, texts=texts, train_ids=train_ids,
               val_ids_quick=val_ids_quick, val_chars=len(val_text), final_parts=parts, quick_is_whole=quick_is_whole,
               score_at_end=score_at_end, card_info=card_info, corpus_index=corpus_index, text_digest=text_digest,
               best_state=best_state, hidden=hidden, first_state=first_state, first_step=loop.step,
               streams_batch=streams_batch, hyper={k: v for k, v in asdict(cfg).items() if v is not None},
               schedule=when)


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
class Run:
    """A run from its first step on: what the stages before it built, and the loop that steps it (when to
    evaluate, sample and stop is its Schedule's; evaluating, saving and finishing are charrnn.finish's)."""

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
    card_info: CardInfo  # what the card says of where the model comes from, and the end's measurements
    corpus_index: Path
    text_digest: str
    best_state: dict | None
    hidden: State | None
    first_state: dict  # the weights to fall back on before any evaluation
    first_step: int
    streams_batch: int
    hyper: dict
    schedule: Schedule  # when to evaluate, sample and stop, and the learning rate at each step
    sampler: BackgroundSample | None = None  # writes the samples by the clock

    @property
    def total_steps(self) -> int | None:
        return self.schedule.total_steps

    @property
    def steps_per_epoch(self) -> int:
        return self.schedule.steps_per_epoch

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

    def start_event(self, resumed: bool) -> TrainEvent:
        """The first event: the model, the text and the hardware, and what autosize chose for a new run."""
        message = (f"{self.model.num_parameters():,} parameters, vocabulary {len(self.vocab)}, "
                   f"{len(self.train_ids):,} training and {self.val_chars:,} validation characters, "
                   f"on {hardware_name(self.device)}")
        if self.cfg.autosize and not resumed:
            message += f"\n{self.cfg.autosize}"
        return TrainEvent("start", step=self.loop.step, total_steps=self.total_steps, lr=self.cfg.lr,
                          elapsed=self.clock.elapsed(), message=message)

    def train_loop(self) -> Iterator[TrainEvent]:
        """Step until a budget, patience, divergence or a cancel says stop; returns why it stopped."""
        streams = Streams(self.train_ids, self.streams_batch, self.cfg.seq_len, self.loop.offset)
        began = time.monotonic()
        meter = _Meter()
        while True:
            now = self.clock.elapsed()
            stopped = self.schedule.stop_reason(now)
            if stopped:
                return stopped
            if self.loop.window >= len(streams):
                streams = self.next_epoch()
            x, y = streams.window(self.loop.window)
            if self.ddp:
                x, y = self.ddp.my_rows(x), self.ddp.my_rows(y)
            lr = self.schedule.set_lr(self.optimizer, now)
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
            if self.loop.eval_interval is None and self.loop.step == 10 and not self.schedule.by_clock:
                self.schedule.plan_evaluations(per_step=(time.monotonic() - began) / 10)
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

    def after_step(self, meter: _Meter, lr: float) -> Iterator[TrainEvent]:
        """What a step is followed by when it is due: a report of the loss and speed (every 10 steps, and at
        least every STEP_EVENT_S), an evaluation, a sample (every sample_interval steps or sample_every_s)."""
        now = self.clock.elapsed()
        if self.loop.step % 10 == 0 or self.loop.step == 1 or time.monotonic() - meter.since >= STEP_EVENT_S:
            train_loss, cps = meter.take(self.chars_per_step)
            self.clock.train_cps = cps or self.clock.train_cps
            p = self.schedule.progress(now)
            eta = max(0.0, now / p - now) if p > 0 else None
            yield TrainEvent("step", step=self.loop.step, total_steps=self.total_steps, epoch=self.epoch_progress,
                             elapsed=now, eta=eta, progress=min(p, 1.0), lr=lr, train_loss=train_loss,
                             chars_per_s=cps, best_val_loss=self.best_val_loss)
        by_steps = self.loop.eval_interval and self.loop.step % self.loop.eval_interval == 0
        if by_steps or self.schedule.evaluation_due(now):
            yield from evaluate_and_save(self, CANCEL_GRACE_S)
        if self.cfg.sample_interval and self.loop.step % self.cfg.sample_interval == 0:
            yield self.sample_event(now)
        if self.schedule.sample_due(bool(self.sampler and self.sampler.busy)):
            self.start_background_sample()
        written = self.sampler.take() if self.sampler else None
        if written is not None:
            self.clock.last_sample_s = time.monotonic() - self.sampler.began
            yield TrainEvent("sample", step=self.sampler.step, elapsed=now, sample=written)

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
        self.schedule.samples_taken += 1
