"""The generation engine: every request for one model stepped together as one batch.

A request (a Generation) joins between two steps: its prompt is primed in one pass and its
state put into a row. Each step draws one character for every row under that row's own
settings and hands it to the row's request; a row leaves when it has its length or its
request is cancelled (its reader stopped or went away). Requests beyond max_rows wait in the
engine's own line and join as rows free up. The engine runs in a thread of its own, started
by the first request and ended after IDLE_EXIT_S with nothing to do.

A seed writes the same text alone or in a crowd. A row's noise comes from its own generator,
seeded by its request, so it does not depend on the rows beside it. And the batch is stepped
only at shapes whose rows the engine checked, before its first step, to come out bit for bit
as they do at the largest (batch_shapes); a step runs at the smallest of those shapes that
holds every row, padded.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import threading
import weakref
from collections.abc import Iterator

import torch

from charrnn.model import CharRNN, State
from charrnn.sampling import (
    DEFAULT_ALTERNATIVES,
    MAX_NUM_SAMPLES,
    FusedStepper,
    RowSettings,
    SampledChar,
    SampleSettings,
    draw_rows,
    held_model,
    prepare_prompt,
    prime,
)

ENGINE_THREADS = 1  # torch threads of an engine on a CPU: fixed, so no number depends on the load
MAX_ROWS = 64  # rows stepped together; more requests wait in line for a row (chosen with bench/load.py)
IDLE_EXIT_S = 2.0  # an engine's thread ends after this long with nothing to do
NOISE_STEPS = 64  # steps of noise a row draws from its generator at once
SHAPES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)  # batch shapes a step may run at, up to max_rows


class Generation:
    """One request in an engine. Iterate it for its characters (str), or SampledChar with
    their probabilities and alternatives when it was submitted with alternatives > 0."""

    def __init__(self, prompt: str, settings: SampleSettings, alternatives: int, device: torch.device) -> None:
        self.prompt = prompt  # as the model reads it (prepare_prompt)
        self.settings = settings
        self.alternatives = alternatives
        self.produced = 0  # characters drawn so far
        self.stopped_at: str | None = None  # the stop string that ended the text, if one did
        self._tail = ""  # the last characters written, as long as the longest stop string
        self._items: collections.deque = collections.deque()
        self._ready = threading.Event()
        self._cancelled = threading.Event()
        self._ended = threading.Event()  # set once the last item is in (or the request failed)
        self._finished = False
        self._error: BaseException | None = None
        self._device = device
        self._generator: torch.Generator | None = None
        self._noise: torch.Tensor | None = None

    # --- the reader's side ---------------------------------------------------------------------

    def cancel(self) -> None:
        """Leave the batch at the next step (a row that was waiting never joins)."""
        self._cancelled.set()
        self._ready.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def finished(self) -> bool:
        """Whether the engine is through with it: the length reached, cancelled, or failed."""
        return self._finished

    @property
    def done(self) -> bool:
        """Whether it is finished and every item has been read."""
        return self._finished and not self._items

    def take(self, timeout: float | None = None) -> list:
        """Everything drawn since the last take, waiting up to timeout for at least one item.
        An empty list means the wait ran out, or the request is done. Raises the request's error."""
        if not self._items and not self._finished:
            self._ready.wait(timeout)
        self._ready.clear()
        items = []
        while self._items:
            items.append(self._items.popleft())
        if not items and self._error is not None:
            raise self._error
        return items

    def wait_until_finished(self, timeout: float) -> bool:
        """Sleep up to timeout, less if the request finishes meanwhile; whether it has."""
        return self._ended.wait(timeout)

    def __iter__(self) -> Iterator:
        try:
            while not self.done:
                yield from self.take()
            if self._error is not None:  # it failed before this reader asked
                raise self._error
        finally:
            self.cancel()

    def text(self) -> str:
        """The whole continuation, once it is done (blocks until then, without waking at each character)."""
        try:
            self._ended.wait()
        finally:
            self.cancel()
        return "".join(item if isinstance(item, str) else item.char for item in self)

    # --- the engine's side ---------------------------------------------------------------------

    def _noise_row(self, vocab_size: int) -> torch.Tensor:
        """This row's Gumbel noise for its next draw ([1, V]), from its own generator, NOISE_STEPS at a time
        (zeros for a greedy row, which draws nothing: it may have joined a batch that had no noise to draw)."""
        at = self.produced % NOISE_STEPS
        if self.settings.temperature == 0:
            if self._noise is None:
                self._noise = torch.zeros(1, vocab_size, device=self._device)
            return self._noise
        if at == 0:
            if self._generator is None:
                self._generator = torch.Generator().manual_seed(self.settings.seed)
            noise = torch.empty(NOISE_STEPS, vocab_size).exponential_(generator=self._generator)
            # Gumbel noise, -log Exp(1); the clamp keeps it finite where the draw was exactly 0
            self._noise = noise.clamp_min_(torch.finfo(noise.dtype).tiny).log_().neg_().to(self._device)
        return self._noise[at : at + 1]

    def _over(self) -> bool:
        """Whether the engine is through with this row: its length reached, a stop string written, or cancelled."""
        return self.produced >= self.settings.length or self.stopped_at is not None or self.cancelled

    def _note(self, char: str) -> None:
        """Count a character written, and see whether it completes a stop string."""
        self.produced += 1
        stops = self.settings.stop
        if stops:
            self._tail = (self._tail + char)[-max(map(len, stops)):]
            if self.produced >= self.settings.min_length:
                self.stopped_at = next((s for s in stops if self._tail.endswith(s)), None)

    def _put(self, item) -> None:
        self._items.append(item)
        if not self._ready.is_set():
            self._ready.set()

    def _finish(self, error: BaseException | None = None) -> None:
        self._error = error
        self._finished = True
        self._ended.set()
        self._ready.set()


def batch_shapes(stepper: FusedStepper, max_rows: int) -> tuple[int, ...]:
    """The batch shapes to step at: max_rows, and each smaller shape at which a row's logits and state
    come out bit for bit as at max_rows, from another position in the batch (checked here on random
    states: the last rows of a max_rows batch stepped alone, as the first). At max_rows alone a row's
    numbers never depend on the other rows' values."""
    model = stepper.model
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, len(model.vocab), (max_rows,), generator=gen).to(model.device)
    state = empty_state(model, max_rows)
    state = [torch.randn(part.shape, generator=gen).to(model.device) * 0.5 for part in state]
    full_logits, full_state = stepper.step(ids, as_state(model, state))

    def agrees(shape: int) -> bool:
        logits, rows_state = stepper.step(ids[-shape:], as_state(model, [part[-shape:] for part in state]))
        pairs = [(logits, full_logits), *zip(flat_state(rows_state), flat_state(full_state))]
        return all(torch.equal(mine, full[-shape:]) for mine, full in pairs)

    return tuple(s for s in SHAPES if s < max_rows and agrees(s)) + (max_rows,)


def empty_state(model: CharRNN, rows: int) -> list[torch.Tensor]:
    """A zero state for rows rows as the engine keeps it: one [rows, H] tensor per layer (h, then c)."""
    parts = 2 * model.num_layers if model.cell == "lstm" else model.num_layers
    return [torch.zeros(rows, model.hidden_size, device=model.device) for _ in range(parts)]


def flat_state(state: State) -> list[torch.Tensor]:
    """(h, c) or h, each [layers, B, H] or a list per layer, as one [B, H] tensor per layer (h, then c)."""
    parts = state if isinstance(state, tuple) else (state,)
    return [layer for part in parts for layer in part]


def as_state(model: CharRNN, parts: list[torch.Tensor]) -> State:
    """flat_state's parts as the state FusedStepper.step takes."""
    if model.cell == "lstm":
        return parts[: model.num_layers], parts[model.num_layers :]
    return torch.stack(parts)


class GenerationEngine:
    """The one generation loop for one model: every request submitted to it, stepped as one batch."""

    def __init__(self, model: CharRNN, max_rows: int = MAX_ROWS, threads: int = ENGINE_THREADS) -> None:
        self._model = weakref.ref(model)  # an engine left idle does not keep its model loaded
        self.max_rows = max_rows
        self.threads = threads
        self._lock = threading.Lock()
        self._waiting: collections.deque[Generation] = collections.deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._shapes: tuple[int, ...] | None = None
        self._stepper: tuple[tuple, FusedStepper] | None = None
        self.active_rows = 0  # rows in the batch now (for tests and benchmarks)
        _LIVE.add(self)  # so close_all ends its thread at exit

    @property
    def model(self) -> CharRNN:
        return held_model(self._model, "this engine")

    @classmethod
    def for_model(cls, model: CharRNN) -> GenerationEngine:
        """The model's engine: every caller generating with one model object shares one batch."""
        with _ENGINES_LOCK:
            engine = _ENGINES.get(model)
            if engine is None:
                engine = _ENGINES[model] = cls(model)
            return engine

    def submit(self, prompt: str, settings: SampleSettings, alternatives: int = 0) -> Generation:
        """Queue one request and return it at once; iterate it for what it writes.

        prompt may be raw (it is fitted here, as prepare_prompt says); settings are checked
        once per vocabulary (SampleSettings.for_vocab). A bad setting raises here, for this
        caller only.
        """
        return self.submit_many(prompt, [settings], alternatives)[0]

    def submit_many(self, prompt: str, settings: list[SampleSettings], alternatives: int = 0) -> list[Generation]:
        """Queue one request per settings, all with one prompt, to join the batch together."""
        vocab_size = len(self.model.vocab)
        checked = [one.for_vocab(vocab_size) for one in settings]
        fitted = prepare_prompt(self.model, prompt)[0]
        alternatives = max(0, min(int(alternatives), vocab_size))
        requests = [Generation(fitted, one, alternatives, self.model.device) for one in checked]
        for request in requests:
            if request.settings.length == 0:
                request._finish()
        with self._lock:
            self._waiting.extend(r for r in requests if not r.done)
            if self._thread is None and self._waiting:
                self._thread = threading.Thread(target=self._run, name="generation-engine", daemon=True)
                self._thread.start()
        self._wake.set()
        return requests

    @property
    def waiting(self) -> int:
        """Requests waiting for a row."""
        return len(self._waiting)

    # --- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        if self.model.device.type == "cpu":
            torch.set_num_threads(self.threads)
        batch = _Batch(self)
        try:
            with torch.inference_mode():
                while self._admit(batch) or self._wait_for_work(batch):
                    batch.step()
        except BaseException as exc:  # an engine fault: every request still in it hears of it
            for request in [*batch.rows, *self._drain_waiting()]:
                request._finish(exc)
            with self._lock:
                self._thread = None

    def close(self, timeout: float = 5.0) -> None:
        """Cancel every request and end the thread (waiting up to timeout for it); a later submit starts anew."""
        self._closing.set()
        for request in self._drain_waiting():
            request._finish()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._closing.clear()

    def _admit(self, batch: _Batch) -> bool:
        """Put waiting requests into free rows; whether any row is active afterwards."""
        if self._closing.is_set():
            for request in batch.rows:
                request.cancel()
        batch.drop_left()
        primed: dict[str, tuple] = {}  # requests joining together with one prompt read it once
        while len(batch.rows) < self.max_rows:
            with self._lock:
                if not self._waiting:
                    break
                request = self._waiting.popleft()
            if request.cancelled:
                request._finish()
                continue
            try:
                batch.join(request, primed)
            except Exception as exc:  # a request that cannot be primed fails alone
                request._finish(exc)
        self.active_rows = len(batch.rows)
        return bool(batch.rows)

    def _wait_for_work(self, batch: _Batch) -> bool:
        """Sleep until a request joins (True), or end the thread after IDLE_EXIT_S without one (False)."""
        while True:
            self._wake.clear()
            if self._admit(batch):
                return True
            if self._closing.is_set() or not self._wake.wait(IDLE_EXIT_S):
                with self._lock:
                    if not self._waiting or self._closing.is_set():
                        self._thread = None
                        return False

    def _drain_waiting(self) -> list[Generation]:
        with self._lock:
            waiting, self._waiting = list(self._waiting), collections.deque()
        return waiting

    def stepper(self) -> FusedStepper:
        """The model's stepper, rebuilt only when its weights change (training, loading or moving
        them changes their version or storage): building one copies every weight, a few ms that
        would otherwise delay a request's first character."""
        model = self.model
        key = tuple((p.data_ptr(), p._version) for p in model.parameters())
        if self._stepper is None or self._stepper[0] != key:
            self._stepper = (key, FusedStepper(model))
        return self._stepper[1]

    def shapes(self, stepper: FusedStepper) -> tuple[int, ...]:
        if self._shapes is None:
            self._shapes = batch_shapes(stepper, self.max_rows)
        return self._shapes


_ENGINES: weakref.WeakKeyDictionary[CharRNN, GenerationEngine] = weakref.WeakKeyDictionary()  # one per model
_ENGINES_LOCK = threading.Lock()
_LIVE: weakref.WeakSet[GenerationEngine] = weakref.WeakSet()  # every engine not yet collected


def close_all() -> None:
    """End every engine's thread, cancelling what it runs: at exit, before torch's own threads go."""
    for engine in list(_LIVE):
        engine.close()


atexit.register(close_all)


def any_engine_busy() -> bool:
    """Whether any engine has a request in its batch or waiting for a row (a generation is running)."""
    return any(engine.active_rows or engine.waiting for engine in list(_LIVE))


class _Batch:
    """The rows an engine steps: their requests, the state and logits of each, and their settings."""

    def __init__(self, engine: GenerationEngine) -> None:
        self.engine = engine
        self.model = engine.model
        self.vocab = engine.model.vocab
        self.rows: list[Generation] = []
        self.state: list[torch.Tensor] = []  # flat_state, [shape, H] each; rows past len(rows) are padding
        self.logits: torch.Tensor | None = None  # [len(rows), V]: what each row draws its next character from
        self.settings: RowSettings | None = None
        self.stepper: FusedStepper | None = None

    def join(self, request: Generation, primed: dict[str, tuple]) -> None:
        """Prime the request's prompt (or take it from primed) and add it as the last row."""
        if not self.rows:  # weights may have changed (a model in training) since the batch was last empty
            self.stepper = self.engine.stepper()
        if request.prompt not in primed:
            primed[request.prompt] = prime(self.model, request.prompt)
        logits, state = primed[request.prompt]
        self._resize([*range(len(self.rows))], extra=[flat_state(state)], extra_logits=[logits])
        self.rows.append(request)
        self.settings = None

    def drop_left(self) -> None:
        """Remove the rows whose request is finished or cancelled."""
        keep = [i for i, r in enumerate(self.rows) if not r._over()]
        if len(keep) == len(self.rows):
            return
        for i, r in enumerate(self.rows):
            if i not in keep:
                r._finish()
        self._resize(keep)
        self.rows = [self.rows[i] for i in keep]
        self.settings = None

    def _resize(self, keep: list[int], extra: list[list[torch.Tensor]] = (),
                extra_logits: list[torch.Tensor] = ()) -> None:
        """Keep rows keep (in order), append extra rows, and pad to the smallest batch shape that fits."""
        rows = len(keep) + len(extra)
        shape = next((s for s in self.engine.shapes(self.stepper) if s >= rows), rows) if rows else 0
        index = torch.tensor(keep, dtype=torch.long, device=self.model.device)
        if not self.state:
            self.state = empty_state(self.model, 0)
        new_state = []
        for k, part in enumerate(self.state):
            pieces = [part.index_select(0, index), *(row[k].reshape(1, -1) for row in extra)]
            pad = shape - rows
            if pad:
                pieces.append(part.new_zeros(pad, part.shape[1]))
            new_state.append(torch.cat(pieces))
        self.state = new_state
        logits = [self.logits.index_select(0, index)] if self.logits is not None else []
        self.logits = torch.cat([*logits, *extra_logits]) if (logits or extra_logits) else None

    def step(self) -> None:
        """Draw each row's next character, hand it over, and advance every row by one step."""
        rows, vocab = self.rows, self.vocab
        if self.settings is None:
            self.settings = RowSettings([r.settings for r in rows], len(vocab), self.model.device)
        noise = [] if self.settings.all_greedy else [r._noise_row(len(vocab)) for r in rows]
        gumbel = torch.cat(noise) if len(noise) > 1 else noise[0] if noise else None
        chosen = draw_rows(self.logits, self.settings, gumbel)
        self._hand_over(chosen)
        if all(r._over() for r in rows):
            return
        ids = chosen
        if self.state[0].shape[0] > len(rows):  # padded: the padding rows read character 1
            ids = torch.ones(self.state[0].shape[0], dtype=torch.long, device=chosen.device)
            ids[: len(rows)] = chosen
        logits, state = self.stepper.step(ids, as_state(self.model, self.state))
        self.state = flat_state(state)
        self.logits = logits[: len(rows)]

    def _hand_over(self, chosen: torch.Tensor) -> None:
        chars = self.vocab.chars
        detailed = [i for i, r in enumerate(self.rows) if r.alternatives]
        details = {}
        if detailed:
            probs = torch.softmax(self.logits[detailed], -1)
            k = max(self.rows[i].alternatives for i in detailed)
            top = torch.topk(probs, k)
            picked = probs.gather(1, chosen[detailed][:, None])[:, 0].tolist()
            for n, i in enumerate(detailed):
                details[i] = (picked[n], top.values[n].tolist(), top.indices[n].tolist())
        for i, (request, idx) in enumerate(zip(self.rows, chosen.tolist())):
            request._note(chars[idx])
            if i in details:
                prob, values, indices = details[i]
                k = request.alternatives
                request._put(SampledChar(chars[idx], prob, [(chars[j], p) for j, p in zip(indices[:k], values[:k])]))
            else:
                request._put(chars[idx])


# --- the library's ways to generate, all through the engine ---------------------------------------

def stream(model: CharRNN, prompt: str, settings: SampleSettings,
           alternatives: int = DEFAULT_ALTERNATIVES) -> Iterator[SampledChar]:
    """One sample, character by character, with the probability and top alternatives of each."""
    yield from GenerationEngine.for_model(model).submit(prompt, settings, alternatives=max(1, alternatives))


def sample(model: CharRNN, prompt: str, settings: SampleSettings, num_samples: int = 1) -> list[str]:
    """num_samples continuations, generated together; sample k has seed settings.seed + k, so
    the first is what the same settings write alone."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or not 1 <= num_samples <= MAX_NUM_SAMPLES:
        raise ValueError(f"the number of samples must be a whole number from 1 to {MAX_NUM_SAMPLES}, "
                         f"not {num_samples!r}")
    settings = settings.for_vocab(len(model.vocab))
    requests = GenerationEngine.for_model(model).submit_many(prompt, [seeded(settings, k) for k in range(num_samples)])
    try:
        return [request.text() for request in requests]
    finally:
        for request in requests:
            request.cancel()


def seeded(settings: SampleSettings, offset: int) -> SampleSettings:
    """settings with seed + offset (wrapping as resolve_seed does): the seed of the offset-th sample."""
    return settings if offset == 0 else dataclasses.replace(settings, seed=(settings.seed + offset) % 2**63)
