"""Samples a run writes: the model card's, cut short when the budget runs out, and the timed probe
that says how long they will take."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

from charrnn.engine import Generation, GenerationEngine
from charrnn.model import CharRNN
from charrnn.sampling import SampleSettings

CARD_SAMPLE_LENGTH = 400
CARD_SAMPLE_TEMPERATURES = (0.5, 0.8, 1.0)
SAMPLE_PROBE_CHARS = 32  # a short sample, timed, says how long the card's samples will take
SAMPLE_POLL_S = 0.05  # how long reading one of several samples waits for its next characters


def sample_text(model: CharRNN, settings: SampleSettings, should_stop: Callable[[], bool] | None = None,
                prompt: str = "") -> str:
    """What sample(model, prompt, settings) writes, cut short where should_stop says so (a prefix of it)."""
    return samples_together(model, [settings], should_stop, prompt)[0]


def samples_together(model: CharRNN, settings: list[SampleSettings], should_stop: Callable[[], bool] | None = None,
                     prompt: str = "") -> list[str]:
    """One text per settings, generated together as one batch by the model's engine (so three take little
    more than one), each what sample(model, prompt, one) writes; all cut short where should_stop says so."""
    requests = GenerationEngine.for_model(model).submit_many(prompt, settings)
    chars: list[list[str]] = [[] for _ in requests]
    try:
        while not all(r.done for r in requests):
            for request, written in zip(requests, chars):
                for char in request.take(timeout=SAMPLE_POLL_S):
                    written.append(char)
                    unfinished = any(len(w) < r.settings.length for r, w in zip(requests, chars))
                    if should_stop is not None and unfinished and should_stop():
                        return ["".join(w) for w in chars]
    finally:
        for request in requests:
            request.cancel()
    return ["".join(written) for written in chars]


def card_samples(model: CharRNN, seed: int, should_stop: Callable[[], bool]) -> list[dict]:
    """The model card's samples, one per CARD_SAMPLE_TEMPERATURES, written together; cut short, or left out
    when should_stop says so before they start."""
    if should_stop():
        return []
    settings = [SampleSettings(length=CARD_SAMPLE_LENGTH, temperature=t, seed=seed) for t in CARD_SAMPLE_TEMPERATURES]
    texts = samples_together(model, settings, should_stop)
    return [{"temperature": t, "seed": seed, "prompt": "", "text": text}
            for t, text in zip(CARD_SAMPLE_TEMPERATURES, texts)]


def probe_samples_s(model: CharRNN, seed: int) -> float:
    """How long the card's samples will take, from two short batches of them: 1 character each (the
    set-up) and SAMPLE_PROBE_CHARS characters more."""
    times = []
    for length in (1, SAMPLE_PROBE_CHARS + 1):
        began = time.monotonic()
        samples_together(model, [SampleSettings(length=length, temperature=t, seed=seed)
                                 for t in CARD_SAMPLE_TEMPERATURES])
        times.append(time.monotonic() - began)
    per_char = max(times[1] - times[0], 0.0) / SAMPLE_PROBE_CHARS
    return times[0] + CARD_SAMPLE_LENGTH * per_char


class BackgroundSample:
    """Samples of a model's weights as they are at a moment, written by its engine in a thread of its own
    while training goes on. The weights are copied into a model of the sampler's own, one sample at a time."""

    def __init__(self, model: CharRNN) -> None:
        self.copy = copy.deepcopy(model).eval()  # one copy, so one engine, for every sample of the run
        self.copy.requires_grad_(False)
        self.request: Generation | None = None
        self.prompt = ""
        self.step = 0  # the step whose weights are being sampled
        self.began = 0.0

    @property
    def busy(self) -> bool:
        return self.request is not None

    def start(self, model: CharRNN, prompt: str, settings: SampleSettings, step: int) -> None:
        """Copy model's weights now and start writing from them."""
        self.copy.load_state_dict(model.state_dict())
        self.request = GenerationEngine.for_model(self.copy).submit(prompt, settings)
        self.prompt, self.step, self.began = self.request.prompt, step, time.monotonic()  # as the model read it

    def take(self) -> str | None:
        """The prompt (as the model read it) and what was written from it, once it is all written (then the
        sampler is free); else None."""
        if self.request is None or not self.request.finished:
            return None
        text, self.request = self.request.text(), None
        return self.prompt + text

    def cancel(self) -> None:
        if self.request is not None:
            self.request.cancel()
            self.request = None
