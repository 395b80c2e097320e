"""Samples a run writes: the model card's, cut short when the budget runs out, and the timed probe
that says how long they will take."""

from __future__ import annotations

import time
from collections.abc import Callable

from charrnn.engine import GenerationEngine
from charrnn.model import CharRNN
from charrnn.sampling import SampleSettings

CARD_SAMPLE_LENGTH = 400
CARD_SAMPLE_TEMPERATURES = (0.5, 0.8, 1.0)
SAMPLE_PROBE_CHARS = 32  # a short sample, timed, says how long the card's samples will take


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


def probe_samples_s(model: CharRNN, seed: int) -> float:
    """How long the card's samples will take, from two short ones: a 1-character one (the set-up)
    and a longer one (the set-up and SAMPLE_PROBE_CHARS characters more)."""
    times = []
    for length in (1, SAMPLE_PROBE_CHARS + 1):
        began = time.monotonic()
        sample_text(model, SampleSettings(length=length, temperature=1.0, seed=seed))
        times.append(time.monotonic() - began)
    per_char = max(times[1] - times[0], 0.0) / SAMPLE_PROBE_CHARS
    return len(CARD_SAMPLE_TEMPERATURES) * (times[0] + CARD_SAMPLE_LENGTH * per_char)
