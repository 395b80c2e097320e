"""Every limit a visitor of the web app could push against, in one place (the README lists them).

A request over a limit is refused with a one-line message; the engine's own hard caps (prompt
tail, sample length, model size) live beside the code they bound.
"""

from __future__ import annotations

import os

from charrnn.engine import ENGINE_THREADS, MAX_ROWS
from charrnn.sampling import MAX_PROMPT_CHARS

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # uploads larger than this are refused before they are read
MAX_GENERATE_CHARS = 2000  # length slider's maximum
MAX_TEXT_CHARS = 100_000  # any text box (a prompt, a text to inspect); only a prompt's tail is read
MAX_VIEW_CHARS = MAX_PROMPT_CHARS + MAX_GENERATE_CHARS  # Inspect and originality: a prompt's tail and a full generation
MAX_NAME_CHARS = 256  # a model name or Hub repo id (with its @revision)
MAX_COMPARE_MODELS = 4  # models one Compare or Score request runs (Compare needs at least 2)
MAX_BRANCH_HISTORY = 20  # previous texts "Undo branch" can bring back, per visitor
MAX_TRAIN_WAITING = 8  # training runs waiting for the slot, all visitors together; more are refused
SHUTDOWN_WAIT_S = 20  # on SIGTERM, how long training gets to stop and save before the app's files are removed
DEFAULT_GENERATE_CHARS = 500
MIN_TIME_BUDGET_MIN, MAX_TIME_BUDGET_MIN, DEFAULT_TIME_BUDGET_MIN = 1, 30, 5  # training time budget slider, minutes
MAX_SESSION_MODELS = 5  # fine-tuned models a session keeps; the oldest goes when a sixth is made
SESSION_TTL_S = 2 * 3600  # a session's models are deleted this long after its last training run
QUEUE_MAX_SIZE = 64  # events waiting in Gradio's queue, all visitors together
# How often Gradio's queue looks for a new event while it has none, and for progress to send. Its defaults on
# Linux (1 ms and 10 ms) keep a tenth of a core busy with nothing to do; this adds at most that long to a start.
QUEUE_POLL_S = 0.02
TRAIN_CONCURRENCY = 1  # training jobs running at once; others wait in line, see their position, and can be stopped
# Requests one model's generation engine steps together (charrnn.engine.MAX_ROWS, chosen with bench/load.py).
GENERATE_ROWS = MAX_ROWS
# Generations (and the views that share their line) running at once; more wait in Gradio's queue and see their
# position. One per row: a visitor past that would only wait inside the engine, unseen.
GENERATE_CONCURRENCY = GENERATE_ROWS
SERVER_THREADS = GENERATE_CONCURRENCY + 16  # Gradio's worker threads: one per streaming visitor, and room for the rest
STREAM_INTERVAL_S = 0.05  # generated text reaches the browser at most this often
# Text updates per second, all of one model's visitors together: each costs the server (and the browser) the
# same however few characters it carries, so under load each visitor's updates come less often, carrying more.
MAX_STREAM_UPDATES_PER_S = 50
TRAIN_UPDATE_INTERVAL_S = 0.5  # progress, plot and samples reach the browser at most this often
# A short sample of the current weights this often, by the clock: the first lands within 15 s of Start
# (start-up and writing it included), with the same prompt and seed each time.
TRAIN_SAMPLE_EVERY_S = 8
TRAIN_SAMPLE_CHARS = 160
TRAIN_SAMPLES_SHOWN = 3  # the latest samples the Train tab shows, newest first
# On CPU, training leaves one core to generation while a generation runs (the engine's loop runs on that one,
# ENGINE_THREADS); while no engine has work, training takes every core.
TRAIN_THREADS = max(1, (os.cpu_count() or 1) - 1)
TRAIN_THREADS_IDLE = max(1, os.cpu_count() or 1)
GENERATE_THREADS = ENGINE_THREADS
# ZeroGPU runs a decorated function in a forked process with a time limit: train in slices this long.
ZEROGPU_SLICE_S = 45

# One call's budget, on the 2 cores of a Space: the server's CPU seconds and peak RSS growth any call may spend
# (bench/cost.py measures every endpoint at its largest inputs against them, tests/test_cost.py asserts it).
MAX_CALL_CPU_S = 5.0
MAX_CALL_PEAK_MB = 150
# What a request's model work may be estimated at (charrnn.cost, CPU seconds on the reference CPU) before it
# starts: below MAX_CALL_CPU_S by the margin the app's own work around it takes (rendering, sending, decoding)
# and the estimates' error (bench/cost.py --calibrate).
MAX_CALL_ESTIMATE_S = 2.0
MAX_CALL_ESTIMATE_MB = 100
# Streamed generation (generate, branch) gets this share of MAX_CALL_ESTIMATE_S for its model work: each update
# sends the whole text so far, and a large vocabulary's sampling costs more than the estimate counts.
STREAM_ESTIMATE_SHARE = 0.75
# A training call's time past its time budget (which covers the run's start-up, evaluations and finish): reading
# the upload before the run starts, and the last updates; and its peak RSS growth.
MAX_TRAIN_OVERRUN_S = 10.0
MAX_TRAIN_PEAK_MB = 400
# Characters of an upload the Train tab's summary folds to ASCII (pinyin for Chinese): 20 MB of Chinese, 7.2 M
# characters, took 4 s of CPU and 126 MB to fold (bench/cost.py); training folds the whole text.
MAX_FOLD_VIEW_CHARS = 2_000_000
MAX_IDLE_RSS_RATIO = 1.3  # RSS after heavy calls and idle time, against RSS after warm-up: memory comes back
MAX_IDLE_CPU_SHARE = 0.05  # of one core, what the app spends while nobody calls it

SIZE_PRESETS: dict[str, dict] = {
    "tiny (1 layer × 128)": {"num_layers": 1, "hidden_size": 128, "embedding_dim": 32},
    "small (2 layers × 256)": {"num_layers": 2, "hidden_size": 256, "embedding_dim": 64},
    "medium (2 layers × 512)": {"num_layers": 2, "hidden_size": 512, "embedding_dim": 64},
}
DEFAULT_SIZE_PRESET = "small (2 layers × 256)"
