"""Several processes, one model: the trainer under `torchrun --nproc_per_node N -m charrnn train ...`.

torchrun starts N copies of the command and tells each its rank in the environment; train()
notices, joins the process group (nccl on CUDA, gloo on CPU) and wraps the model in
DistributedDataParallel, which averages gradients so every rank takes the same step. Each
rank reads its own slice of the parallel streams (the global batch is N x batch), validation
loss is averaged over the ranks' slices of the validation text, and every decision that
ends or shapes the loop (the resolved config, when to evaluate, when to stop) is rank 0's,
so no rank waits for a collective call the others never make. Only rank 0 writes the
checkpoint and reports progress.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from charrnn.evaluate import evaluate_ids

T = TypeVar("T")
# After the last collective, gloo's worker threads still drop its tensors, which takes the GIL. Freeing the DDP
# module (whose reducer holds the last reference to the group) joins those threads while holding the GIL: if they
# have not finished, the process hangs at its end. The group's end waits this long, without the GIL, for them.
GLOO_DRAIN_S = 0.5
STOP_REASONS = ("", "cancelled", "finished", "time budget reached", "validation loss stopped improving")


def world_size() -> int:
    """The number of ranks torchrun started (1 outside it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """True in a process started by torchrun (or anything that sets its variables) with 2+ ranks."""
    return world_size() > 1


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def main_rank_only(events: Iterator[T]) -> Iterator[T]:
    """The events on rank 0; other ranks run them through silently, so only rank 0 logs."""
    if not launched() or is_main():
        yield from events
    else:
        for _ in events:
            pass


@dataclass
class Group:
    rank: int
    world_size: int
    device: torch.device
    owns_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model as DDP: its forward averages gradients across ranks in backward."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def my_rows(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's slice of a [world x batch, ...] tensor of streams."""
        per_rank = batch.shape[0] // self.world_size
        return batch[self.rank * per_rank : (self.rank + 1) * per_rank]

    def from_main(self, value):
        """Rank 0's value of any picklable object, on every rank."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def agree_to_stop(self, reason: str) -> str:
        """Stop when any rank must (a cancel, a budget); all ranks then give the same reason."""
        code = STOP_REASONS.index(reason) if reason in STOP_REASONS else len(STOP_REASONS)
        flag = torch.tensor([code], dtype=torch.int64, device=self._comm_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        agreed = int(flag.item())
        if agreed == code:
            return reason
        return STOP_REASONS[agreed] if agreed < len(STOP_REASONS) else reason or "stopped on another rank"

    def mean_val_loss(self, model: torch.nn.Module, ids: torch.Tensor) -> float:
        """Loss over the validation ids, each rank scoring its own contiguous part, weighted by characters."""
        part = len(ids) // self.world_size
        mine = ids[self.rank * part : (self.rank + 1) * part + 1]
        result = evaluate_ids(model, mine) if len(mine) >= 2 else {"loss": 0.0, "chars": 0}
        totals = torch.tensor([result["loss"] * result["chars"], float(result["chars"])], dtype=torch.float64,
                              device=self._comm_device())
        dist.all_reduce(totals)
        return float(totals[0] / totals[1]) if totals[1] > 0 else float("nan")

    def weight_digests(self, model: torch.nn.Module) -> list[str]:
        """sha256 of each rank's weights, gathered on every rank: equal when the ranks stayed in step."""
        mine = state_digest(model.state_dict())
        everyone: list[str | None] = [None] * self.world_size
        dist.all_gather_object(everyone, mine)
        return [str(d) for d in everyone]

    def finish(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
            time.sleep(GLOO_DRAIN_S)

    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def state_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def start(device: str | None) -> Group | None:
    """Join the process group torchrun describes; None when this is a single-process run."""
    if not launched():
        return None
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed; run without torchrun")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith(("cuda", "auto")))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world,
                                **({"device_id": chosen} if use_cuda else {}))
    return Group(rank=rank, world_size=world, device=chosen, owns_group=owns)
