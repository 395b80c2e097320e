"""One optimizer step of truncated backpropagation through time: the step train() runs, and the one
autosize times to choose a model for a budget, so what is measured is what will run."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from charrnn.model import CharRNN, State, precision_autocast


def import_optimizer_machinery() -> None:
    """Import now what a process's first optimizer imports (torch._dynamo: a second on an idle CPU, far
    more on a busy one), so that it is paid once per process and not out of a run's time budget."""
    import torch._dynamo  # noqa: F401


def detached(state: State) -> State:
    """The state carried to the next window, cut from this window's graph."""
    return tuple(part.detach() for part in state) if isinstance(state, tuple) else state.detach()


def train_step(net: torch.nn.Module, model: CharRNN, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               state: State | None, precision: str, grad_clip: float,
               averaged_grads: bool = False) -> tuple[torch.Tensor, State | None]:
    """Forward, loss, backward, clipping, then the optimizer's step unless the loss or gradients are not finite.

    net is the model, or its DistributedDataParallel wrapper (averaged_grads: then only the averaged
    gradients decide, so every rank skips the same steps). Backward runs even on a non-finite loss,
    since under DDP every rank must join it, so one check, one wait for the GPU, covers both.
    Returns the loss (not read, so the GPU need not wait) and the state for the next window, or
    None for the state when the step was skipped.
    """
    with precision_autocast(model.device, precision):
        logits, new_state = net(x, state)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    finite = torch.isfinite(grad_norm) if averaged_grads else torch.isfinite(loss) & torch.isfinite(grad_norm)
    if not bool(finite):
        optimizer.zero_grad(set_to_none=True)
        return loss, None
    optimizer.step()
    return loss, detached(new_state)
