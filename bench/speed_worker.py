"""Times one source tree's sampler for bench/sample_speed.py, which runs it once per tree compared.

Run with PYTHONPATH=TREE, so `charrnn` is that tree's: this tree, main checked out beside it, or
the last commit before the generation engine (0c4a3fc), whose `sample` stepped a batch of its
own in the calling thread. Reads one JSON request a line on stdin ({"threads", "rows", "length"})
and answers each with one JSON line: {"chars_per_s": rows x length / seconds}, timed from the
call to the last character (the prompt is empty, so priming it costs one character).

    PYTHONPATH=../old python bench/speed_worker.py MODEL_DIR < requests
"""

from __future__ import annotations

import json
import sys
import time

import torch

from charrnn.checkpoint import load_model
from charrnn.sampling import SampleSettings

try:
    from charrnn.engine import GenerationEngine
except ImportError:  # before the engine
    GenerationEngine = None


def sampler(model):
    """A function (threads, rows, length) -> seconds for rows samples of length characters, seeds 1, 2, ..."""
    vocab_size = len(model.vocab)
    engines = {}

    def with_engine(threads: int, rows: int, length: int) -> float:
        engine = engines.setdefault(threads, GenerationEngine(model, threads=threads))
        settings = [SampleSettings(length=length, temperature=0.8, seed=1 + k) for k in range(rows)]
        start = time.perf_counter()
        requests = engine.submit_many("", settings)
        for request in requests:
            request.text()
        seconds = time.perf_counter() - start
        engine.close()  # the next call starts a thread of its own, which sets its thread count
        return seconds

    def before_engine(threads: int, rows: int, length: int) -> float:
        from charrnn.sampling import sample

        torch.set_num_threads(threads)
        settings = SampleSettings(length=length, temperature=0.8, seed=1).checked(vocab_size)
        start = time.perf_counter()
        sample(model, "", settings, num_samples=rows)
        return time.perf_counter() - start

    return with_engine if GenerationEngine is not None else before_engine


def main() -> int:
    model = load_model(sys.argv[1], device="cpu")
    model.eval()
    run = sampler(model)
    for line in sys.stdin:
        request = json.loads(line)
        threads, rows, length = request["threads"], request["rows"], request["length"]
        run(threads, rows, min(length, 50))  # warm-up: first calls at a shape allocate
        seconds = run(threads, rows, length)
        print(json.dumps({"chars_per_s": rows * length / seconds}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
