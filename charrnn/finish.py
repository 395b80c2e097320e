"""A run's evaluations, checkpoints and end: score the weights and keep the best, save them, and finish.

evaluate_and_save scores the weights during training (and once more where training stopped) and
checkpoints the best; finish scores the best weights on the held-out text (charrnn.heldout), writes
the card's samples (charrnn.samples) and the last checkpoint, and says how the run went. Each takes
the run (charrnn.train.Run) whose state it reads and updates.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from functools import partial
from typing import TYPE_CHECKING

from charrnn.budget import CANCEL_GRACE_S, StoppedBeforeFirstStep, TrainingStopped
from charrnn.card import CardInfo, model_card
from charrnn.checkpoint import INDEX, CheckpointError, save_checkpoint
from charrnn.device import hardware_name
from charrnn.events import TrainEvent, TrainResult
from charrnn.heldout import ValScore, final_score, is_better, score_quick
from charrnn.runstate import state_tensors
from charrnn.samples import card_samples

if TYPE_CHECKING:
    from charrnn.train import Run


def quick_score(run: Run, note: str = "") -> ValScore:
    """The best model's loss as the evaluations during training measured it."""
    loop = run.loop
    return ValScore(loss=loop.best_val, chars=len(run.val_ids_quick) if loop.best_complete else loop.best_chars,
                    held_out=run.val_chars, files=len(run.texts),
                    whole=loop.best_complete and len(run.val_ids_quick) == run.val_chars,
                    first=loop.best_complete, exact=loop.best_complete and run.quick_exact, note=note)


def card(run: Run) -> CardInfo:
    """The card's information for a checkpoint now: the run's figures and, until the end has scored
    the best model, its loss as the evaluations during training measured it."""
    info = replace(run.card_info, hyperparameters=run.hyper, steps=run.loop.step,
                   chars_seen=run.loop.step * run.chars_per_step, train_time_s=run.clock.elapsed(),
                   hardware=hardware_name(run.device))
    if info.val_loss is None:
        during = quick_score(run, "as scored during training") if math.isfinite(run.loop.best_val) else None
        info.val_loss = during.loss if during else None
        info.val_scope = during.describe() if during else None
        info.val_reproducible = bool(during and during.exact)
    return info


def checkpoint(run: Run, reason: str) -> None:
    """Write the best weights, the card and the training state (atomically: see save_checkpoint)."""
    info = card(run)
    tensors, opt_meta = state_tensors(run.model, run.optimizer, run.device, run.data_rng, run.hidden)
    meta = {
        **run.loop.to_meta(), "config": asdict(run.cfg), "model_config": run.model.config,
        "optimizer": opt_meta, "elapsed": run.clock.elapsed(), "card_info": run.card_info.to_meta(),
        "reason": reason, "text_sha256": run.text_digest,
        "spent": {"optimizer steps": run.clock.step_s, **run.clock.spent},  # this run's seconds, by use
    }
    began = time.monotonic()
    save_checkpoint(run.out_dir, run.model, model_card(run.model, info), run.best_state,
                    {"tensors": tensors, "meta": meta}, extra_files={INDEX: run.corpus_index / INDEX})
    run.clock.save_s = time.monotonic() - began


def evaluate_and_save(run: Run, grace: float, keep: float = 0.0, save: bool = True) -> Iterator[TrainEvent]:
    """Score the weights on the quick validation text, keep them if they are the best, checkpoint (if save).
    A cancel stops the scoring grace seconds after it came; the budget stops it keep seconds before its end."""
    began = time.monotonic()
    with run.clock.spending("evaluations"):
        result = score_quick(run.model, run.val_ids_quick, run.ddp, run.stopper.asker(grace, keep),
                            run.cfg.eval_streams)
    run.clock.eval_cps = result["chars"] / max(time.monotonic() - began, 1e-6)
    why = "" if result["complete"] else run.stopper.reason
    val, complete, loop = result["loss"], result["complete"], run.loop
    loop.last_eval_step = loop.step
    if is_better(val, complete, loop.best_val, loop.best_complete, run.best_state is not None, len(run.vocab)):
        loop.best_val, loop.best_chars, loop.best_complete = val, result["chars"], complete
        loop.evals_since_best = 0
        run.best_state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    elif complete:
        loop.evals_since_best += 1
    now = run.clock.elapsed()
    scored = f"scored {result['chars']:,} of {len(run.val_ids_quick) - 1:,} validation characters"
    yield TrainEvent("eval", step=loop.step, total_steps=run.total_steps, epoch=run.epoch_progress, elapsed=now,
                     lr=run.optimizer.param_groups[0]["lr"], val_loss=val, best_val_loss=run.best_val_loss,
                     message=f"{scored} before {why}" if why else "")
    if save and run.best_state is not None and (run.ddp is None or run.ddp.is_main):
        with run.clock.spending("saving"):
            checkpoint(run, "eval")


def finish(run: Run, stopped: str) -> Iterator[TrainEvent]:
    """Final evaluation of where training stopped (unless that step was just evaluated), then the
    best model on the held-out text, then the card's samples: each stops where it is when the
    budget runs out, and a cancel cuts the finish short."""
    if run.sampler:
        run.sampler.cancel()  # a sample still being written is not waited for
    if stopped == "cancelled" and run.loop.step == run.first_step:
        raise StoppedBeforeFirstStep
    if run.loop.step > run.loop.last_eval_step and "diverged" not in stopped:  # saved with the rest below
        yield from evaluate_and_save(run, CANCEL_GRACE_S, run.clock.card_s(), save=False)
    if run.best_state is None:
        raise nothing_saved(run, stopped)
    score = score_best(run)
    if run.stopper.cancelled():
        stopped = "cancelled"  # whenever it came: a cancelled run never reads as finished
    if run.ddp is None or run.ddp.is_main:
        with run.clock.spending("saving"):
            checkpoint(run, stopped)
    digests = run.ddp.weight_digests(run.model) if run.ddp else None
    if run.ddp:
        run.ddp.finish()
    elapsed = run.clock.elapsed()
    result = TrainResult(out_dir=run.out_dir, best_val_loss=score.loss, steps=run.loop.step, elapsed=elapsed,
                         stopped_because=stopped, config=asdict(run.cfg), rank_weights_sha256=digests,
                         val_scope=score.describe(), val_chars=score.chars, step_s=run.clock.step_s,
                         spent=dict(run.clock.spent),
                         run_s=time.monotonic() - run.clock.start)
    message = (f"stopped: {stopped}; best validation loss {score.loss:.4f} nats/char "
               f"({score.loss / math.log(2):.3f} bits/char) {score.describe()}; {result.learning_share:.0%} of "
               f"{result.run_s:.1f} s in optimizer steps")
    yield TrainEvent("done", step=run.loop.step, total_steps=run.total_steps, elapsed=elapsed,
                     val_loss=score.loss, best_val_loss=score.loss, message=message, result=result)


def nothing_saved(run: Run, stopped: str) -> CheckpointError:
    """Why a run that ends with no weights better than guessing saved nothing, and what to do."""
    if run.stopper.cancelled():
        return TrainingStopped("training was stopped before any evaluation was better than guessing uniformly; "
                               "nothing was saved")
    if "diverged" in stopped:
        return CheckpointError("training diverged (the loss kept becoming NaN or inf) before any good evaluation; "
                               "nothing was saved: try a lower learning rate")
    if run.loop.step > 0:
        return CheckpointError("no evaluation was better than guessing uniformly, so nothing was saved: "
                               "the learning rate is probably far too high")
    if stopped == "time budget reached":
        started_s = time.monotonic() - run.clock.start
        return CheckpointError(f"the time budget ran out before the first step (starting up took "
                               f"{started_s:.0f} s); nothing was saved: give it more time")
    return CheckpointError("training stopped before the first step; nothing was saved")


def score_best(run: Run) -> ValScore:
    """The best weights' final score and the card's samples, both kept in the card's information."""
    best_model = copy.deepcopy(run.model)
    best_model.load_state_dict(run.best_state)
    best_model.rnn.flatten_parameters()  # a deep copy clones each weight apart: cuDNN wants them in one block again
    known = not run.score_at_end and run.loop.best_complete  # training scored these weights, as planned
    with run.clock.spending("final scoring"):
        score = final_score(best_model, partial(quick_score, run), known, run.final_parts, run.val_chars,
                            run.loop.best_chars, run.device, run.stopper)
    info = run.card_info
    info.val_loss, info.val_scope, info.val_reproducible = score.loss, score.describe(), score.exact
    info.val_losses = score.per_file  # empty for one file
    with run.clock.spending("card samples"):
        info.samples = card_samples(best_model, run.cfg.seed, run.stopper.asker())
    return score
