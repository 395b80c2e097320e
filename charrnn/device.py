"""Where and on how many threads the engine runs: CUDA, Apple's MPS or the CPU, and torch's thread count."""

from __future__ import annotations

import os
import platform

import torch


def pick_threads(requested: int | None = None) -> int:
    """Torch's default of a thread per core collapses when other processes already fill the cores: each
    of an LSTM step's thousands of small parallel regions waits for a descheduled thread (at load 11 on
    2 cores, a 1x128 training step took 0.25 s on one thread and 4 to 15 s on two). There, use one."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"threads must be 1 or more, not {requested}")
        torch.set_num_threads(requested)
    elif torch.get_num_threads() > 1 and hasattr(os, "getloadavg") and os.getloadavg()[0] >= (os.cpu_count() or 1):
        torch.set_num_threads(1)
    return torch.get_num_threads()


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA, then Apple's MPS, then CPU, unless the caller says otherwise."""
    if device is not None and str(device) != "auto":
        try:
            chosen = torch.device(device)
        except RuntimeError:
            raise ValueError(f"unknown device {device!r} (use cpu, cuda, cuda:N, mps or auto)") from None
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device cuda was asked for, but no CUDA GPU is available")
        if chosen.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError("device mps was asked for, but MPS is not available")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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
