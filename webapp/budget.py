"""A request's cost checked against the call budget before any work starts, in one place.

Every heavy handler asks here, with charrnn.cost's estimate of its work (known from its inputs:
characters, models, beam width, window, the model's size and vocabulary), either to refuse the
request in one line naming the limit and the field (check), or for the largest amount of work that
fits the budget (largest), which it then does and says it did (capped).
"""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from charrnn.cost import Cost
from webapp import limits


def fits(cost: Cost, share: float = 1.0) -> bool:
    """Whether cost is within share of the call budget (MAX_CALL_ESTIMATE_S, MAX_CALL_ESTIMATE_MB)."""
    return cost.seconds() <= share * limits.MAX_CALL_ESTIMATE_S and cost.peak_mb <= limits.MAX_CALL_ESTIMATE_MB


def check(cost: Cost, field: str, share: float = 1.0) -> None:
    """gr.Error naming the budget and the field when cost is over share of the call budget."""
    if not fits(cost, share):
        raise gr.Error(f"{field}: this request would take about {cost.seconds():.1f} s of CPU and "
                       f"{cost.peak_mb:.0f} MB, over the budget of one call "
                       f"({share * limits.MAX_CALL_ESTIMATE_S:.1f} s, {limits.MAX_CALL_ESTIMATE_MB} MB); ask for less")


def largest(cost_of: Callable[[int], Cost], most: int, least: int = 1, share: float = 1.0) -> int:
    """The largest n from least to most whose cost_of(n) fits share of the budget (costs grow with n);
    least when none does."""
    if most <= least or fits(cost_of(most), share):
        return max(most, 0)
    lo, hi = least, most  # cost_of(hi) does not fit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(cost_of(mid), share) else (lo, mid)
    return lo


def capped(field: str, asked: int, allowed: int, why: str) -> int:
    """allowed, with a warning to the visitor when it is less than asked."""
    if allowed < asked:
        gr.Warning(f"{field}: {allowed:,} instead of {asked:,}, {why} (the budget of one call)")
    return allowed
