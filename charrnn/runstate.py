"""A run's training state: where the loop is, and what a resumed run restores with it (the optimizer,
the random generators, the state carried across windows) to go on bit for bit."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from charrnn.checkpoint import load_model
from charrnn.model import State


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


def rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    out = {"rng.cpu": torch.get_rng_state()}
    if device.type == "cuda":
        out["rng.cuda"] = torch.cuda.get_rng_state(device)
    return out


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, meta = {}, {"param_groups": sd["param_groups"], "state_keys": {}}
    for pid, st in sd["state"].items():
        meta["state_keys"][str(pid)] = []
        for key, value in st.items():
            tensors[f"opt.{pid}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
            meta["state_keys"][str(pid)].append(key)
    return tensors, meta


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state = {int(pid): {key: tensors[f"opt.{pid}.{key}"] for key in keys} for pid, keys in meta["state_keys"].items()}
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def state_tensors(model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                  data_rng: torch.Generator, hidden: State | None) -> tuple[dict[str, torch.Tensor], dict]:
    """The training state's tensors (weights, optimizer, random generators, carried state), and the
    optimizer's layout for the meta."""
    opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= opt_tensors | rng_tensors(device)
    tensors["rng.data"] = data_rng.get_state()
    if hidden is not None:
        h = hidden if isinstance(hidden, tuple) else (hidden,)
        tensors["hidden.h"] = h[0]
        if len(h) > 1:
            tensors["hidden.c"] = h[1]
    return tensors, opt_meta


def restore(state: dict, out_dir: Path, optimizer: torch.optim.Optimizer, data_rng: torch.Generator,
            device: torch.device) -> tuple[State | None, dict]:
    """Resuming: the optimizer and random generators as they were, and (the state carried across
    windows, the best weights). The generators come last, since building a model draws random
    numbers: dropout then continues exactly where it stopped."""
    meta, tensors = state["meta"], state["tensors"]
    optimizer_from_tensors(optimizer, tensors, meta["optimizer"])
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
