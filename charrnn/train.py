"""The one training loop: from scratch, fine-tuning, resuming, for the CLI and the app alike.

train() is a generator of TrainEvent: the CLI shows them with tqdm, the app as a progress
bar and a live plot. The loop reads contiguous parallel streams with truncated BPTT,
carries the hidden state across windows, and keeps the best model by validation loss in
an atomically written checkpoint directory.

A run, in stages (_train reads them top to bottom): open_out_dir (and the training state, when
resuming), load_base, read_texts, plan (resolve the config, autosize for a time budget),
check_long_enough, the originality index, build_model (new, fine-tuned with a grown vocabulary,
or resumed), _start_run (the data, the optimizer, restore), then _Run: train_loop (next_epoch,
set_lr, train_step, undo_step after a non-finite loss, after_step: the report, evaluate_and_save,
samples) and finish (score_best: the final evaluation and the card's samples; the last checkpoint).
What the model card says of the run travels as a CardInfo, saved in the training state.

A time budget covers the whole run: start-up, training, the final evaluation and the card's
samples; training stops early enough to leave the finish the time it was measured to need,
and any scoring left when the budget runs out stops where it is, saying so. A cancel is seen
between the pieces of start-up, between steps and between windows of scoring.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import platform
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

import torch

from charrnn import distributed
from charrnn.autosize import auto_config
from charrnn.batching import Streams, min_chars_needed, split_train_val
from charrnn.card import CardInfo, model_card
from charrnn.checkpoint import (
    INDEX,
    CheckpointError,
    check_writable,
    is_checkpoint,
    load_model,
    load_training_state,
    save_checkpoint,
)
from charrnn.config import FINETUNE_DEFAULTS, SCRATCH_DEFAULTS, TrainConfig
from charrnn.device import pick_device
from charrnn.engine import GenerationEngine
from charrnn.evaluate import evaluate_ids
from charrnn.model import CharRNN, State, resolve_precision
from charrnn.originality import staged_index
from charrnn.sampling import SampleSettings
from charrnn.step import train_step
from charrnn.text import Corpus, TextError, normalize, normalize_newlines
from charrnn.vocab import Vocab, outside_note

MAX_NAN_STEPS = 20
# A non-finite loss means the LR is far too high: ten times lower recovers from 1e6 within MAX_NAN_STEPS.
NAN_LR_FACTOR = 0.1
EVAL_CHARS_DURING_TRAINING = 131_072  # all of tinyshakespeare's and the fairy tales' held-out text
# The best model's final score: all held-out text up to this, else the start of each file's part.
EVAL_CHARS_AT_END = 524_288
CARD_SAMPLE_LENGTH = 400
CARD_SAMPLE_TEMPERATURES = (0.5, 0.8, 1.0)
SAMPLE_PROBE_CHARS = 32  # a short sample, timed, says how long the card's samples will take
FINISH_SHARE = 0.25  # at most this share of a time budget is kept back for the final evaluation and samples
FINISH_MARGIN = 1.5  # speeds vary on a shared machine: keep half again what the finish is estimated to take
FINISH_SLACK_S = 0.5  # and this for what is not measured (copying the best weights, being descheduled)
CANCEL_GRACE_S = 1.0  # after a cancel, the evaluation that picks the weights to save may run this much longer
START_CHUNK_CHARS = 1 << 20  # start-up reads the text in pieces this long, to notice a cancel between them


class TrainingStopped(CheckpointError):
    """The run was cancelled before it had a model to save, so nothing was saved.

    A stop the user asked for, not a failure; a CheckpointError, so callers that show those show it.
    """


class StoppedBeforeFirstStep(TrainingStopped):
    """The run was cancelled before its first step: nothing was trained, so nothing was saved."""

    def __init__(self) -> None:
        super().__init__("training was stopped before the first step; nothing was saved")


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


def hardware_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"CPU ({name}, {torch.get_num_threads()} threads)"


def resolve(config: TrainConfig, base: CharRNN | None, texts: list[str],
            check: Callable[[], None] | None = None) -> TrainConfig:
    """Fill every None in config from the base model or the defaults (check: see auto_config)."""
    resolved = copy.copy(config)
    if base is None and resolved.time_budget is not None and resolved.autosize is None:
        resolved = auto_config(resolved, texts, check)  # the budget picks size, batch, LR and schedule
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


def _lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    warm = min(1.0, (step + 1) / (cfg.warmup_steps + 1)) if cfg.warmup_steps else 1.0
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * warm * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


def _rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    out = {"rng.cpu": torch.get_rng_state()}
    if device.type == "cuda":
        out["rng.cuda"] = torch.cuda.get_rng_state(device)
    return out


def _optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, meta = {}, {"param_groups": sd["param_groups"], "state_keys": {}}
    for pid, st in sd["state"].items():
        meta["state_keys"][str(pid)] = []
        for key, value in st.items():
            tensors[f"opt.{pid}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
            meta["state_keys"][str(pid)].append(key)
    return tensors, meta


def _optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state = {int(pid): {key: tensors[f"opt.{pid}.{key}"] for key in keys} for pid, keys in meta["state_keys"].items()}
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def held_out_parts(texts: list[str], val_fraction: float, cap: int) -> list[str]:
    """Each text's held-out part: all of them while they hold at most cap characters together,
    else the same share of the start of each, so every file is scored."""
    parts = [split_train_val([t], val_fraction)[1] for t in texts]
    total = sum(len(p) for p in parts)
    if total > cap:
        parts = [p[: max(2, cap * len(p) // total)] for p in parts]
    return parts


def quick_val_ids(texts: list[str], val_fraction: float, vocab: Vocab) -> torch.Tensor:
    """The validation text scored at each evaluation: all of it up to EVAL_CHARS_DURING_TRAINING,
    else the same share of every file's held-out part, so the best model is chosen on every file."""
    return vocab.encode("".join(held_out_parts(texts, val_fraction, EVAL_CHARS_DURING_TRAINING)))


@dataclass
class ValScore:
    """A validation loss and what it covers, so a card never passes a sample off as the whole."""

    loss: float
    chars: int  # held-out characters covered
    held_out: int  # held-out characters in all
    files: int = 1
    whole: bool = True  # all the held-out text was scored
    first: bool = True  # what was scored is the start of each file's held-out part
    exact: bool = True  # what `charrnn eval MODEL FILE --split val` reports (the character-weighted mean over files)
    note: str = ""  # why less was scored than planned
    per_file: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """'over all 8,000 held-out characters', 'over the first 524,288 of 2,000,000 ...', and why, if cut short."""
        if self.whole:
            text = f"over all {self.held_out:,} held-out characters"
        else:
            span = f"the first {self.chars:,}" if self.first else f"{self.chars:,}"
            text = f"over {span} of {self.held_out:,} held-out characters"
            if self.files > 1 and self.first:
                text += " (the start of each file's part)"
        return f"{text}: {self.note}" if self.note else text


def _scored(results: dict[str, dict], parts: list[tuple[str, str]], held_out: int, complete: bool,
            why: str) -> ValScore:
    """The character-weighted mean of each file's score (exactly the one score for one file), as a ValScore."""
    chars = sum(r["chars"] for r in results.values())
    if len(results) == 1:
        loss = next(iter(results.values()))["loss"]
    else:
        loss = sum(r["loss"] * r["chars"] for r in results.values()) / chars
    covered = sum(len(part) for _, part in parts)
    whole = complete and covered == held_out
    return ValScore(loss=loss, chars=covered if complete else chars, held_out=held_out, files=len(parts),
                    whole=whole, first=complete, exact=whole,
                    note="" if complete else f"scoring stopped when {why}",
                    per_file={name: r["loss"] for name, r in results.items()} if len(results) > 1 else {})


def score_held_out(model: CharRNN, parts: list[tuple[str, str]], device: torch.device,
                   should_stop: Callable[[], bool]) -> tuple[dict[str, dict], bool]:
    """Each file's held-out part scored on its own (what `charrnn eval MODEL FILE --split val` does),
    until should_stop says so; the results by name, and whether every part was scored in full."""
    results: dict[str, dict] = {}
    for name, part in parts:
        if len(part) < 2:
            continue
        if results and should_stop():
            return results, False
        results[name] = evaluate_ids(model, model.vocab.encode(part).to(device), should_stop)
        if not results[name]["complete"]:
            return results, False
    return results, True


class _Clock:
    """The run's time against its budget, start-up and the earlier runs of a resumed one included,
    and the measured speeds that say how much of the budget to keep back for the finish."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.before = 0.0  # seconds spent by the runs this one resumes, less what autosize already took off the budget
        self.budget: float | None = None
        self.eval_cps: float | None = None  # validation characters scored per second, as last measured
        self.train_cps: float | None = None  # training characters per second: a slower stand-in before any evaluation
        self.samples_s = 0.0  # what the card's samples will take, from a timed probe
        self.save_s = 0.0  # what writing a checkpoint took, last time

    def elapsed(self) -> float:
        return self.before + time.monotonic() - self.start

    def left(self) -> float:
        return math.inf if self.budget is None else self.budget - self.elapsed()

    def card_s(self) -> float:
        """Seconds to keep back, when scoring at the end, for the card's samples and the checkpoint."""
        return FINISH_MARGIN * (self.samples_s + self.save_s) + FINISH_SLACK_S

    def finish_s(self, chars_to_score: int, chars_per_step: int) -> float:
        """Seconds to keep back for one more step, then scoring chars_to_score characters, writing the
        card's samples and the checkpoint (with FINISH_MARGIN), at most FINISH_SHARE of the budget;
        0 without a budget or before anything was measured."""
        speed = self.eval_cps or self.train_cps
        if self.budget is None or not speed or not self.train_cps:
            return 0.0
        finish = FINISH_MARGIN * chars_to_score / speed + self.card_s() + chars_per_step / self.train_cps
        return min(finish, FINISH_SHARE * self.budget)


class _Stopper:
    """Says when long work must stop where it is: the time budget is spent, or the run was cancelled
    (the evaluation that picks the weights to save gets a grace period after the cancel)."""

    def __init__(self, cancel: threading.Event, clock: _Clock) -> None:
        self.cancel, self.clock = cancel, clock
        self.cancelled_at: float | None = None  # when the run first saw the cancel
        self.reason = ""  # why an asker last said stop

    def cancelled(self) -> bool:
        if self.cancelled_at is None and self.cancel.is_set():
            self.cancelled_at = time.monotonic()
        return self.cancelled_at is not None

    def why(self, grace: float = 0.0, keep: float = 0.0) -> str:
        """Why the work must stop now, or '' while it may go on; keep: seconds of the budget it must leave."""
        if self.cancelled() and time.monotonic() - self.cancelled_at >= grace:
            return "the run was cancelled"
        return "the time budget ran out" if self.clock.left() <= keep else ""

    def asker(self, grace: float = 0.0, keep: float = 0.0) -> Callable[[], bool]:
        """should_stop for work done in pieces (windows, characters, samples): it also stops when what
        is left of the budget would not fit one more piece as long as the last one took."""
        last = time.monotonic()

        def should_stop() -> bool:
            nonlocal last
            now = time.monotonic()
            piece, last = now - last, now
            why = self.why(grace, keep + piece)
            self.reason = why or self.reason
            return bool(why)

        return should_stop


def _raiser(cancel: threading.Event) -> Callable[[], None]:
    """A check for start-up's long steps: it raises StoppedBeforeFirstStep once cancel is set."""
    def check() -> None:
        if cancel.is_set():
            raise StoppedBeforeFirstStep
    return check


def _pieces(texts: Iterable[str], check: Callable[[], None]) -> Iterator[str]:
    """The texts in pieces of START_CHUNK_CHARS, calling check before each, so a cancel is seen between them."""
    for text in texts:
        for start in range(0, len(text), START_CHUNK_CHARS):
            check()
            yield text[start : start + START_CHUNK_CHARS]


def normalize_stoppable(text: str, fold: bool, check: Callable[[], None]) -> str:
    """normalize(text, fold), piece by piece: line ends first over the whole text (a CR LF may straddle
    two pieces), then the folding, which maps each character on its own."""
    text = normalize_newlines(text)
    if len(text) <= START_CHUNK_CHARS:
        return normalize(text, fold)
    return "".join(normalize(piece, fold) for piece in _pieces([text], check))


def encode_stoppable(vocab: Vocab, text: str, check: Callable[[], None]) -> torch.Tensor:
    """vocab.encode(text), piece by piece, so a cancel is seen between pieces of a long text."""
    parts = [vocab.encode(piece) for piece in _pieces([text], check)]
    return torch.cat(parts) if parts else vocab.encode("")


def sample_text(model: CharRNN, settings: SampleSettings, should_stop: Callable[[], bool] | None = None) -> str:
    """What sample(model, "", settings) writes, cut short where should_stop says so (a prefix of it)."""
    request = GenerationEngine.for_model(model).submit("", settings)
    chars: list[str] = []
    try:
        for char in request:
            chars.append(char)
            if should_stop is not None and len(chars) < settings.length and should_stop():
                break
    finally:
        request.cancel()
    return "".join(chars)


def card_samples(model: CharRNN, seed: int, should_stop: Callable[[], bool]) -> list[dict]:
    """The model card's samples, one per CARD_SAMPLE_TEMPERATURES; cut short, or left out, once should_stop says so."""
    samples = []
    for temperature in CARD_SAMPLE_TEMPERATURES:
        if should_stop():
            break
        settings = SampleSettings(length=CARD_SAMPLE_LENGTH, temperature=temperature, seed=seed)
        samples.append({"temperature": temperature, "seed": seed, "prompt": "",
                        "text": sample_text(model, settings, should_stop)})
    return samples


def _probe_samples_s(model: CharRNN, seed: int) -> float:
    """How long the card's samples will take, from two short ones: a 1-character one (the set-up)
    and a longer one (the set-up and SAMPLE_PROBE_CHARS characters more)."""
    times = []
    for length in (1, SAMPLE_PROBE_CHARS + 1):
        began = time.monotonic()
        sample_text(model, SampleSettings(length=length, temperature=1.0, seed=seed))
        times.append(time.monotonic() - began)
    per_char = max(times[1] - times[0], 0.0) / SAMPLE_PROBE_CHARS
    return len(CARD_SAMPLE_TEMPERATURES) * (times[0] + CARD_SAMPLE_LENGTH * per_char)


def is_better(val: float, complete: bool, best_val: float, best_complete: bool, have_best: bool,
              vocab_size: int) -> bool:
    """Whether an evaluation's weights become the best ones. Worse than guessing uniformly means the
    weights blew up (an absurd LR): never that. A partial evaluation (cut short by a cancel or the
    budget) is not comparable with a complete one: it counts only while there is no best yet, and
    the first complete one after it replaces it."""
    if not (math.isfinite(val) and val < math.log(vocab_size) + 1.0):
        return False
    if not have_best:
        return True
    return complete and (not best_complete or val < best_val)


@dataclass
class LoopState:
    """Where the training loop is. With the weights, the optimizer and the random generators, it is
    what a resumed run restores to go on bit for bit; it saves itself into the training state."""

    step: int = 0
    epoch: int = 0
    window: int = 0  # the next window of the epoch's grid
    offset: int = 0  # where this epoch's window grid starts
    best_val: float = math.inf
    best_chars: int = 0  # validation characters best_val covers
    best_complete: bool = True  # best_val covers the whole quick validation text
    evals_since_best: int = 0
    lr_scale: float = 1.0  # cut after each non-finite loss
    nan_steps: int = 0
    eval_interval: int | None = None
    last_eval_step: int = 0

    def to_meta(self) -> dict:
        """The training state's entries, under the names older checkpoints used."""
        meta = asdict(self)
        meta["best_val_chars"], meta["best_val_complete"] = meta.pop("best_chars"), meta.pop("best_complete")
        return meta

    @classmethod
    def from_meta(cls, meta: dict, val_chars: int) -> LoopState:
        """The loop state saved in meta; entries older checkpoints lack get the values they implied."""
        names = {f.name for f in fields(cls)} - {"best_chars", "best_complete", "last_eval_step"}
        return cls(**{name: meta[name] for name in names}, best_chars=meta.get("best_val_chars", val_chars),
                   best_complete=meta.get("best_val_complete", True),
                   last_eval_step=meta.get("last_eval_step", meta["step"]))


def read_texts(corpora: list[Corpus] | list[str], fold: bool, check: Callable[[], None]) -> tuple[list[str], str]:
    """The training texts as the model will read them, and their digest (a resumed run must get the same)."""
    texts = [normalize_stoppable(c.text if isinstance(c, Corpus) else c, fold, check) for c in corpora]
    if not texts or not any(texts):
        raise TextError("no training text was given")
    return texts, hashlib.sha256("\x00".join(texts).encode("utf-8", "surrogatepass")).hexdigest()


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


def restore(state: dict, out_dir: Path, optimizer: torch.optim.Optimizer, data_rng: torch.Generator,
            device: torch.device) -> tuple[State | None, dict]:
    """Resuming: the optimizer and random generators as they were, and (the state carried across
    windows, the best weights). The generators come last, since building a model draws random
    numbers: dropout then continues exactly where it stopped."""
    meta, tensors = state["meta"], state["tensors"]
    _optimizer_from_tensors(optimizer, tensors, meta["optimizer"])
    hidden = None
    if "hidden.h" in tensors:  # the state carried across windows: an LSTM's (h, c), a GRU's h
        h = tensors["hidden.h"].to(device)
        hidden = (h, tensors["hidden.c"].to(device)) if "hidden.c" in tensors else h
    best_state = {k: v.to(device) for k, v in load_model(out_dir, device="cpu").state_dict().items()}
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    data_rng.set_state(tensors["rng.data"])
    return hidden, best_state


def open_out_dir(out_dir: Path, resume: bool, overwrite: bool) -> dict | None:
    """Check the output directory before anything long starts; resuming, the training state saved in it.

    A directory that holds something else is never overwritten unless asked, and one that cannot be
    written fails now rather than at the first checkpoint minutes into the run.
    """
    state = None
    if resume:
        if not is_checkpoint(out_dir):
            raise CheckpointError(f"{out_dir} has no checkpoint to resume")
        state = load_training_state(out_dir)
    elif out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        if is_checkpoint(out_dir):
            raise CheckpointError(f"{out_dir} already holds a model; "
                                  "pass --resume to continue it or --overwrite to replace it")
        raise CheckpointError(f"{out_dir} exists and is not empty; choose a new directory for the model")
    check_writable(out_dir)
    return state


def load_base(init: str | Path | CharRNN, card_info: CardInfo) -> CharRNN:
    """The model to fine-tune (a directory or repo id is loaded on the CPU), named on the card as the
    base model unless the card already names one."""
    base = init if isinstance(init, CharRNN) else load_model(init, device="cpu")
    if card_info.base_model is None:
        card_info.base_model = str(init) if isinstance(init, (str, Path)) else getattr(base, "source", None)
    return base


def plan(config: TrainConfig, state: dict | None, base: CharRNN | None, texts: list[str], fold: bool,
         ddp: distributed.Group | None, clock: _Clock, check: Callable[[], None]) -> TrainConfig:
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


def build_model(state: dict | None, base: CharRNN | None, texts: list[str], cfg: TrainConfig, fold: bool,
                check: Callable[[], None], card_info: CardInfo) -> CharRNN:
    """The model to train: resumed from its state, fine-tuned from base (its vocabulary grown to cover
    the new text, noted on the card), or new, with a vocabulary built from the texts."""
    if state is not None:
        model = CharRNN(**state["meta"]["model_config"])
        weights = {k[len("model."):]: v for k, v in state["tensors"].items() if k.startswith("model.")}
        model.load_state_dict(weights, strict=True)
        return model
    if base is not None:
        vocab = base.vocab.extended(_pieces(texts, check), cfg.max_vocab)
        new_chars = len(vocab) - len(base.vocab)
        model = base.grow_vocab(vocab) if new_chars else copy.deepcopy(base)
        if new_chars:
            card_info.notes.append(f"Fine-tuning added {new_chars} characters to the base model's vocabulary.")
        if cfg.dropout is not None:
            model.set_dropout(cfg.dropout)
        model.ascii_fold = fold
        return model
    counts: Counter[str] = Counter()
    for piece in _pieces(texts, check):
        counts.update(piece)
    vocab = Vocab.build([counts], cfg.max_vocab)
    note = outside_note(counts, vocab)
    if note:
        card_info.notes.append(note)
    return CharRNN(list(vocab.chars), ascii_fold=fold, cell=cfg.cell, num_layers=cfg.num_layers,
                   hidden_size=cfg.hidden_size, embedding_dim=cfg.embedding_dim, dropout=cfg.dropout)


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


def _merge_resume(given: TrainConfig, saved: dict) -> TrainConfig:
    """Resume with the saved run's settings; only budgets and the device may be changed."""
    merged = TrainConfig(**{f.name: saved[f.name] for f in fields(TrainConfig) if f.name in saved})
    default = TrainConfig()
    for name in RESUMABLE_OVERRIDES:
        if getattr(given, name) != getattr(default, name):
            setattr(merged, name, getattr(given, name))
    return merged


def _card_info(given: CardInfo | Mapping[str, object] | None) -> CardInfo:
    """The run's own copy of the caller's card information (a dict of CardInfo's field names is read as
    one), less any measurements: the run makes its own."""
    if given is None:
        return CardInfo()
    info = CardInfo.from_meta(given) if isinstance(given, Mapping) else given
    return copy.deepcopy(info).unmeasured()


def _resumed_card(given: CardInfo, saved: Mapping[str, object] | None) -> CardInfo:
    """A resumed run's card information: the saved run's (a plain dict in the training state, in older
    checkpoints as now), less what this run measures anew, and the command that resumed it after the
    command that started it."""
    card_info = (CardInfo.from_meta(saved) if saved is not None else given).unmeasured()
    resumed_with = given.command
    if resumed_with and resumed_with not in (card_info.command or ""):
        card_info.command = f"{card_info.command or ''}`, then resumed with `{resumed_with}"
    return card_info


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
    with contextlib.ExitStack() as cleanup:  # the staged index goes however the run ends, a closed generator included
        yield from _train(corpora, Path(out_dir), config or TrainConfig(), init, resume, overwrite,
                          cancel or threading.Event(), _card_info(card_info), cleanup)


def _train(corpora: list[Corpus] | list[str], out_dir: Path, config: TrainConfig, init: str | Path | CharRNN | None,
           resume: bool, overwrite: bool, cancel: threading.Event, card_info: CardInfo,
           cleanup: contextlib.ExitStack) -> Iterator[TrainEvent]:
    """train()'s run, stage by stage; what must be removed however it ends (the staged index) goes on cleanup."""
    clock = _Clock()
    stopper = _Stopper(cancel, clock)
    check = _raiser(cancel)
    ddp = distributed.start(config.device)  # under torchrun: this rank's device and the process group

    # The output directory (and the training state, resuming), and the model to fine-tune.
    state = open_out_dir(out_dir, resume, overwrite)
    if state is not None:
        config = _merge_resume(config, state["meta"]["config"])
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
    yield run.start_event(resumed=state is not None)
    stopped = yield from run.train_loop()
    yield from run.finish(stopped)


def _start_run(cfg: TrainConfig, state: dict | None, out_dir: Path, model: CharRNN, device: torch.device,
               ddp: distributed.Group | None, clock: _Clock, stopper: _Stopper, texts: list[str], names: list[str],
               corpus_index: Path, text_digest: str, card_info: CardInfo, check: Callable[[], None],
               default_warmup: bool) -> _Run:
    """The last of start-up: the text as ids on the device, what the end will score, the optimizer, the
    schedule, and where the loop starts (where a resumed run stopped, else at the first step)."""
    net = ddp.wrap(model) if ddp else model  # DDP averages the gradients across ranks in backward
    first_state = {k: v.detach().clone() for k, v in model.state_dict().items()}  # to fall back on, before any eval
    train_text, val_text = split_train_val(texts, cfg.val_fraction)
    train_ids = encode_stoppable(model.vocab, train_text, check).to(device)
    val_ids_quick = quick_val_ids(texts, cfg.val_fraction, model.vocab).to(device)
    check()
    final_parts = list(zip(names, held_out_parts(texts, cfg.val_fraction, EVAL_CHARS_AT_END)))
    # One text whose whole held-out part is what each evaluation scores: the best model's loss is
    # known exactly from training, and the end need not score it again.
    quick_is_whole = len(val_ids_quick) == len(val_text) and len(texts) == 1 and ddp is None
    finish_chars = len(val_ids_quick) + (0 if quick_is_whole else sum(len(part) for _, part in final_parts))

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99),
                                  fused=device.type == "cuda")
    data_rng = torch.Generator().manual_seed(cfg.seed)
    # Where the loop is (saved in the training state), the state carried across windows, the best weights.
    loop, hidden, best_state = LoopState(eval_interval=cfg.eval_interval), None, None
    if state is not None:
        loop = LoopState.from_meta(state["meta"], val_chars=len(val_ids_quick) - 1)
        clock.before = state["meta"]["elapsed"]
        hidden, best_state = restore(state, out_dir, optimizer, data_rng, device)
        card_info = _resumed_card(card_info, state["meta"].get("card_info"))
    streams_batch, steps_per_epoch, total_steps = schedule(cfg, train_ids, ddp, default_warmup)

    return _Run(cfg=cfg, out_dir=out_dir, model=model, net=net, optimizer=optimizer, data_rng=data_rng, device=device,
                ddp=ddp, clock=clock, stopper=stopper, loop=loop, texts=texts, train_ids=train_ids,
                val_ids_quick=val_ids_quick, val_chars=len(val_text), final_parts=final_parts,
                quick_is_whole=quick_is_whole, finish_chars=finish_chars, card_info=card_info,
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
    clock: _Clock
    stopper: _Stopper
    loop: LoopState
    texts: list[str]
    train_ids: torch.Tensor
    val_ids_quick: torch.Tensor  # what each evaluation scores
    val_chars: int  # held-out characters in all
    final_parts: list[tuple[str, str]]  # (file name, the held-out part the end scores)
    quick_is_whole: bool  # each evaluation scores the whole held-out text, so the end need not score it again
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
                        first=loop.best_complete, exact=loop.best_complete and self.quick_is_whole, note=note)

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
        opt_tensors, opt_meta = _optimizer_to_tensors(self.optimizer)
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors |= opt_tensors | _rng_tensors(self.device)
        tensors["rng.data"] = self.data_rng.get_state()
        if self.hidden is not None:
            h = self.hidden if isinstance(self.hidden, tuple) else (self.hidden,)
            tensors["hidden.h"] = h[0]
            if len(h) > 1:
                tensors["hidden.c"] = h[1]
        meta = {
            **self.loop.to_meta(), "config": asdict(self.cfg), "model_config": self.model.config,
            "optimizer": opt_meta, "elapsed": self.clock.elapsed(), "card_info": self.card_info.to_meta(),
            "reason": reason, "text_sha256": self.text_digest,
        }
        began = time.monotonic()
        save_checkpoint(self.out_dir, self.model, model_card(self.model, info), self.best_state,
                        {"tensors": tensors, "meta": meta}, extra_files={INDEX: self.corpus_index / INDEX})
        self.clock.save_s = time.monotonic() - began

    def evaluate_and_save(self, grace: float, keep: float = 0.0, save: bool = True) -> Iterator[TrainEvent]:
        """Score the weights on the quick validation text, keep them if they are the best, checkpoint (if save).
        A cancel stops the scoring grace seconds after it came; the budget stops it keep seconds before its end."""
        began = time.monotonic()
        if self.ddp:
            loss = self.ddp.mean_val_loss(self.model, self.val_ids_quick)
            result = {"loss": loss, "chars": len(self.val_ids_quick) - 1, "complete": True}
        else:
            result = evaluate_ids(self.model, self.val_ids_quick, self.stopper.asker(grace, keep))
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
            loss, new_hidden = train_step(self.net, self.model, self.optimizer, x, y, self.hidden, self.cfg.precision,
                                          self.cfg.grad_clip, averaged_grads=bool(self.ddp))
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
            if self.loop.eval_interval is None and self.loop.step == 10:
                self.plan_evaluations(per_step=(time.monotonic() - began) / 10)
            if self.cfg.time_budget is not None and self.loop.step == self.first_step + 1:
                self.clock.samples_s = _probe_samples_s(self.model, self.cfg.seed)
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
        lr = _lr_at(self.cfg, self.loop.step, self.progress(now)) * self.loop.lr_scale
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
        """With no interval given, about 20 evaluations per run, from the measured seconds per step."""
        by_budget = self.cfg.time_budget / per_step if self.cfg.time_budget else None
        planned = [s for s in (self.total_steps, by_budget) if s]
        if planned:
            self.loop.eval_interval = max(10, int(min(planned) / 20))
        else:
            self.loop.eval_interval = max(10, min(self.steps_per_epoch, 500))
        if self.ddp:
            self.loop.eval_interval = self.ddp.from_main(self.loop.eval_interval)

    def after_step(self, meter: _Meter, lr: float) -> Iterator[TrainEvent]:
        """What a step is followed by when it is due: a report of the loss and speed, an evaluation, a sample."""
        now = self.clock.elapsed()
        if self.loop.step % 10 == 0 or self.loop.step == 1:
            train_loss, cps = meter.take(self.chars_per_step)
            self.clock.train_cps = cps or self.clock.train_cps
            p = self.progress(now)
            eta = max(0.0, now / p - now) if p > 0 else None
            yield TrainEvent("step", step=self.loop.step, total_steps=self.total_steps, epoch=self.epoch_progress,
                             elapsed=now, eta=eta, progress=min(p, 1.0), lr=lr, train_loss=train_loss,
                             chars_per_s=cps, best_val_loss=self.best_val_loss)
        if self.loop.eval_interval and self.loop.step % self.loop.eval_interval == 0:
            yield from self.evaluate_and_save(CANCEL_GRACE_S)
        if self.cfg.sample_interval and self.loop.step % self.cfg.sample_interval == 0:
            settings = SampleSettings(length=self.cfg.sample_length, temperature=0.8, seed=self.cfg.seed)
            text = sample_text(self.model, settings, self.stopper.asker())
            self.model.train()
            yield TrainEvent("sample", step=self.loop.step, elapsed=now, sample=text)

    def finish(self, stopped: str) -> Iterator[TrainEvent]:
        """Final evaluation of where training stopped (unless that step was just evaluated), then the
        best model on the held-out text, then the card's samples: each stops where it is when the
        budget runs out, and a cancel cuts the finish short."""
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
            self.checkpoint(stopped)
        digests = self.ddp.weight_digests(self.model) if self.ddp else None
        if self.ddp:
            self.ddp.finish()
        elapsed = self.clock.elapsed()
        result = TrainResult(out_dir=self.out_dir, best_val_loss=score.loss, steps=self.loop.step, elapsed=elapsed,
                             stopped_because=stopped, config=asdict(self.cfg), rank_weights_sha256=digests,
                             val_scope=score.describe(), val_chars=score.chars)
        message = (f"stopped: {stopped}; best validation loss {score.loss:.4f} nats/char "
                   f"({score.loss / math.log(2):.3f} bits/char) {score.describe()}")
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
        known = self.quick_is_whole and self.loop.best_complete  # training scored all of it with these weights
        score = _final_score(best_model, self.quick_score, known, self.final_parts, self.val_chars,
                             self.loop.best_chars, self.device, self.stopper)
        info = self.card_info
        info.val_loss, info.val_scope, info.val_reproducible = score.loss, score.describe(), score.exact
        info.val_losses = score.per_file  # empty for one file
        info.samples = card_samples(best_model, self.cfg.seed, self.stopper.asker())
        return score


def _final_score(model: CharRNN, quick_score: Callable[[str], ValScore], known: bool, parts: list[tuple[str, str]],
                 held_out: int, quick_chars: int, device: torch.device, stopper: _Stopper) -> ValScore:
    """The best model's validation loss for the card and the result.

    known: training already scored exactly the whole held-out text with these weights, so that
    number is it. Otherwise each file's part is scored (up to EVAL_CHARS_AT_END in all) until
    the budget runs out or a cancel comes; when that covers less than training's measurement
    did, training's measurement is reported instead, saying so.
    """
    if known:
        return quick_score("")
    keep = stopper.clock.card_s()  # the card's samples and the checkpoint come after
    why = stopper.why(keep=keep)
    if why:
        return quick_score(f"as scored during training, since {why} before the final scoring")
    results, complete = score_held_out(model, parts, device, stopper.asker(keep=keep))
    if not results:
        return quick_score("as scored during training")
    why = stopper.reason
    score = _scored(results, parts, held_out, complete, why)
    if not complete and quick_chars >= score.chars:
        return quick_score(f"as scored during training, since {why} during the final scoring")
    return score
