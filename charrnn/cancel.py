"""Stopping long work from outside: the one kind of cancel signal every heavy library function takes.

A caller hands in a threading.Event (set it to stop) or any callable that answers True once the
work should stop (a deadline, a closed connection); None means the work runs to its end. The work
looks at it between steps or chunks and raises Cancelled, so a visitor who left frees the CPU
within one step, and what the work had allocated is dropped with its frames.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

CancelSignal = threading.Event | Callable[[], bool] | None


class Cancelled(Exception):
    """The caller asked the work to stop; it returned nothing."""


def is_cancelled(cancel: CancelSignal) -> bool:
    """Whether cancel asks the work to stop now."""
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def check(cancel: CancelSignal) -> None:
    """Raise Cancelled when cancel asks the work to stop."""
    if is_cancelled(cancel):
        raise Cancelled("stopped before the end")
