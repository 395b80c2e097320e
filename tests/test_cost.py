"""The cost suite: every endpoint of the running app at its largest inputs, within the per-call budgets.

bench/cost.py starts app.py on the shipped models as a separate process, finds every endpoint a
client can call from the running app (its API page, and the private events a client can still
send by fn_index), and drives each with the recipe for its largest inputs: every shipped model
(the 4,096-character Tang model included), the longest texts, the widest beam, the full window,
the largest upload. Each call's cost is read from the app process itself (CPU time of all its
threads, peak RSS growth). An endpoint without a recipe fails here, so a new endpoint cannot
arrive without its worst case; the budgets come from the app's limits module.

The table of every endpoint's worst case is printed (pytest -s shows it); bench/README.md keeps it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

cost = pytest.importorskip("cost", reason="bench/cost.py")

pytestmark = [pytest.mark.slow, pytest.mark.alone]  # it measures the CPU time of every call
IDLE_S = 10.0  # idle time before the last RSS reading (bench/cost.py waits 30 s)
# The budgets come from the app's limits module: one call's CPU seconds and peak RSS growth in MB (MAX_CALL_*), a
# training call's wall time past its time budget and its peak (MAX_TRAIN_*), the RSS after the suite and IDLE_S idle
# against after warm-up, and the CPU spent while idle (MAX_IDLE_*).
# An abandoned call: the 2 s its unread updates take to count as abandoned (webapp.jobs.UNOPENED_GONE_S), on the
# engines' threads of 3 models sharing 2 cores, and its start; it would spend 12-15 s if it ran to its end.
ABANDONED_CPU_S = 4.0


def budget(name: str) -> float:
    value = getattr(cost.limits, name, None)
    if value is None:
        pytest.fail(f"the app's limits module ({cost.limits.__name__}) declares no {name}")
    return float(value)


@pytest.fixture(scope="module")
def report():
    if os.environ.get("CHARRNN_COST_SUITE", "") == "0":
        pytest.skip("CHARRNN_COST_SUITE=0 leaves out the cost suite (3-4 minutes on 2 cores)")
    if not cost.shipped_models():
        pytest.skip(f"needs the shipped models in {cost.CHECKPOINTS}")
    found = cost.run(idle_s=IDLE_S, extra=cost.ISSUE_PROBES, echo=lambda line: print(line, flush=True))
    print("\nworst case per endpoint (the app process's CPU time and peak RSS growth per call):")
    print(found.table())
    return found


def test_every_endpoint_has_a_largest_input_recipe(report):
    assert not report.missing, f"endpoints with no recipe in bench/cost.py: {', '.join(report.missing)}"
    assert {u.endpoint for u in report.rows} >= {"generate", "score", "compare", "influence", "read_upload", "train"}


def test_no_call_goes_over_its_budget(report):
    over = []
    for usage in report.rows:
        if usage.endpoint == "train":
            continue
        cpu, peak = budget("MAX_CALL_CPU_S"), budget("MAX_CALL_PEAK_MB")
        if usage.cpu_s > cpu or usage.peak_mb > peak:
            over.append(f"{usage.row()} (budget {cpu:g} s, {peak:g} MB)")
    assert not over, "over budget:\n" + "\n".join(over)


def test_training_keeps_to_its_time_budget(report):
    """A run's time budget covers its start-up, evaluations and finish: the call ends within it and the reading
    of the upload before it, and its memory stays within the training budget whatever the upload."""
    (usage,) = [u for u in report.rows if u.endpoint == "train"]
    assert usage.outcome == "ok", usage.row()
    allowed = 60 * cost.TRAIN_MINUTES + budget("MAX_TRAIN_OVERRUN_S")
    assert usage.wall_s <= allowed, f"{usage.row()}: past its {cost.TRAIN_MINUTES}-minute budget"
    assert usage.peak_mb <= budget("MAX_TRAIN_PEAK_MB"), f"{usage.row()}: over {budget('MAX_TRAIN_PEAK_MB'):g} MB"


def test_abandoned_work_stops(report):
    """A /compare at its largest (tens of seconds of CPU) whose visitor never reads its event stream, or closes it
    once the text starts, stops within about two seconds: what the server spends on it is that second and the start."""
    probes = [u for u in report.rows if u.endpoint == "probe"]
    assert len(probes) == len(cost.ISSUE_PROBES)
    for usage in probes:
        assert usage.cpu_s <= ABANDONED_CPU_S, f"{usage.row()}: the work went on for nobody"


def test_memory_comes_back_after_the_suite(report):
    ratio = report.rss_after_idle_mb / report.rss_after_warmup_mb
    assert ratio <= budget("MAX_IDLE_RSS_RATIO"), (
        f"RSS {report.rss_after_idle_mb:.0f} MB after the suite and {IDLE_S:g} s idle, "
        f"{ratio:.2f}x the {report.rss_after_warmup_mb:.0f} MB after warm-up")


def test_an_idle_app_leaves_the_cores_alone(report):
    share = report.idle_cpu_share
    assert share <= budget("MAX_IDLE_CPU_SHARE"), f"{100 * share:.1f}% of a core spent with nobody calling"


def test_the_probe_reads_what_the_app_process_spends():
    """The measuring itself: a busy loop of known length in a child process is charged to it, and memory it
    touches shows as peak growth."""
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "import sys, time\nsys.stdin.readline()\n"
                              "end = time.process_time() + 0.6\nwhile time.process_time() < end: pass\n"
                              "block = bytearray(80 * 1000 * 1000)\nsys.stdin.readline()"],
                             stdin=subprocess.PIPE, text=True)
    try:
        app = cost.AppProcess(child.pid)

        def work() -> None:
            child.stdin.write("go\n")
            child.stdin.flush()

        usage = cost.measure(app, "probe", "0.6 s busy, 80 MB", work)
        assert 0.5 <= usage.cpu_s <= 1.5
        assert 70 <= usage.peak_mb <= 200
    finally:
        child.kill()
        child.wait()
