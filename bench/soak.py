"""Soak: many short visits in a row, each closed as a browser tab closes; does the app give memory back?

Starts app.py in a subprocess on a free port (the shipped models, its temp folders in a private
TMPDIR) and runs SESSIONS visits, CONCURRENCY at a time. Each visit opens a session (a
gradio_client Client plus the page-load event), generates LENGTH characters of the default model
at temperature 0.8 with its own seed (timing the first character), inspects the generated text,
and closes the session the way a closing tab does: Client.close() ends the heartbeat stream
(/gradio_api/heartbeat/{session_hash}); when it disconnects Gradio runs the app's demo.unload
(Studio.end_session) and marks the session's state closed. (A browser disconnects at once;
gradio_client drops the stream at its next heartbeat message, within 15 s, so --settle is 20 s.)
Once half the visits have started, one more client fine-tunes the default model on
andersen_fairy_tales.txt for TRAIN_MINUTES.

Prints the app process's resident memory (VmRSS and VmHWM from /proc/PID/status, with its thread
and file-descriptor counts) before the first visit, after one warm-up visit, at the peak (sampled
every 0.5 s) and after everything is closed and SETTLE seconds have passed, with ratios; the
errors; p50/p95 time to first character; the wall time; whether the fine-tune finished; and how
many session folders are left under the app's charrnn-sessions-* temp root (target 0).

    python bench/soak.py --quick                   # 20 visits, to try it
    python bench/soak.py                           # 200 visits, 4 at a time, 300 characters each
    python bench/soak.py --sessions 500 --concurrency 8 --length 100 --no-train
    python bench/soak.py --app /tmp/debug_app.py   # another launcher (it must take --port)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gradio_client import Client, handle_file  # noqa: E402
from load import CORPUS, PROMPTS, ROOT, percentile, start_app  # noqa: E402  (load.py also puts ROOT on sys.path)

from webapp import limits  # noqa: E402

MODEL = "fairy-tales"
KB_PER_MIB = 1024  # /proc reports kB


# --- the app process ---------------------------------------------------------------------------------

@dataclass
class ProcSample:
    """One reading of /proc/PID: memory in kB, threads and open file descriptors."""

    rss_kb: int
    hwm_kb: int
    threads: int
    fds: int
    at: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        return (f"VmRSS {self.rss_kb / KB_PER_MIB:7.1f} MiB, VmHWM {self.hwm_kb / KB_PER_MIB:7.1f} MiB, "
                f"threads {self.threads}, open fds {self.fds}")


def read_proc(pid: int) -> ProcSample:
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()[0] if value.split() else ""
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = -1
    return ProcSample(int(fields["VmRSS"]), int(fields["VmHWM"]), int(fields["Threads"]), fds)


class Sampler(threading.Thread):
    """Reads /proc/PID every interval seconds until stopped; keeps the sample with the highest VmRSS."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(name="memory-sampler", daemon=True)
        self.pid, self.interval = pid, interval
        self.peak: ProcSample | None = None
        self.count = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                sample = read_proc(self.pid)
            except (OSError, KeyError):
                return  # the app has exited
            self.count += 1
            if self.peak is None or sample.rss_kb > self.peak.rss_kb:
                self.peak = sample

    def stop(self) -> ProcSample | None:
        self._stop_event.set()
        self.join(timeout=5)
        return self.peak


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def session_folders(tmpdir: Path) -> tuple[list[Path], list[Path]]:
    """(the app's charrnn-sessions-* roots under tmpdir, the session folders inside them)."""
    roots = sorted(tmpdir.glob("charrnn-sessions-*"))
    return roots, [d for root in roots for d in root.iterdir()]


# --- one visit -----------------------------------------------------------------------------------------

class VisitError(Exception):
    """A visit failed at a named step."""


def timed_generate(client: Client, prompt: str, length: int, seed: int, timeout: float) -> tuple[float, str]:
    """(time to the first generated character, the final text) for one streamed /generate, polled until timeout."""
    start = time.perf_counter()
    job = client.submit(prompt, 0.8, length, str(seed), MODEL, "", 0, 1.0, api_name="/generate")
    first = None
    deadline = time.monotonic() + timeout
    while not job.done():
        if first is None:
            outputs = job.outputs()
            if outputs and len(outputs[-1][0]) > len(prompt):
                first = time.perf_counter() - start
        if time.monotonic() > deadline:
            job.cancel()
            raise TimeoutError(f"no result within {timeout:.0f} s")
        time.sleep(0.005)
    text, _ = job.result(timeout=5)  # raises the app's error, if any
    if len(text) < length:
        raise VisitError(f"asked for {length} characters, got {len(text) - len(prompt)}")
    return (first if first is not None else time.perf_counter() - start), text


def inspect(client: Client, prompt: str, text: str) -> int:
    """Characters scored by /inspect for the generated text."""
    _page, data = client.predict(prompt, text, MODEL, "", api_name="/inspect")
    scored = len(data.get("chars", [])) if isinstance(data, dict) else 0
    if scored == 0:
        raise VisitError(f"/inspect scored no characters: {str(data)[:120]}")
    return scored


def visit(url: str, k: int, length: int, timeout: float) -> float:
    """Open a session, generate, inspect, close it; returns the time to the first character."""
    step = "open"
    client = Client(url, verbose=False)
    try:
        client.predict(api_name="/models")  # the page-load event a browser tab fires
        prompt = PROMPTS[k % len(PROMPTS)]
        step = "generate"
        first, text = timed_generate(client, prompt, length, 10_000 + k, timeout)
        step = "inspect"
        inspect(client, prompt, text)
        return first
    except Exception as exc:
        raise VisitError(f"session {k} {step}: {type(exc).__name__}: {str(exc)[:200]}") from None
    finally:
        client.close()  # the heartbeat stream ends, as when the tab closes


# --- the fine-tune in the middle --------------------------------------------------------------------------

class Trainer(threading.Thread):
    """One more visitor fine-tuning the default model on the Andersen corpus, then closing its tab."""

    def __init__(self, url: str, minutes: int) -> None:
        super().__init__(name="trainer", daemon=True)
        self.url, self.minutes = url, minutes
        self.last, self.final, self.error = "", "", ""
        self.seconds = float("nan")

    def run(self) -> None:
        start = time.perf_counter()
        client = None
        try:
            client = Client(self.url, verbose=False, download_files=False)
            job = client.submit(handle_file(str(CORPUS)), MODEL, limits.DEFAULT_SIZE_PRESET, self.minutes,
                                "as the base model", 0, 0, api_name="/train")
            deadline = time.monotonic() + self.minutes * 60 + 300
            while not job.done() and time.monotonic() < deadline:
                outputs = job.outputs()
                if outputs:
                    self.last = str(outputs[-1][0])
                time.sleep(0.5)
            if not job.done():
                job.cancel()
                raise TimeoutError("training did not end within its budget + 5 minutes")
            self.final = str(job.result(timeout=5)[0])
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {str(exc)[:200]}"
        finally:
            self.seconds = time.perf_counter() - start
            if client is not None:
                client.close()

    @property
    def finished(self) -> bool:
        return self.final.startswith("**Done")


# --- the soak ------------------------------------------------------------------------------------------

@dataclass
class Results:
    firsts: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, first: float | None = None, error: str | None = None) -> None:
        with self.lock:
            if first is not None:
                self.firsts.append(first)
            if error is not None:
                self.errors.append(error)


def run_visits(url: str, args: argparse.Namespace, results: Results, pid: int) -> Trainer | None:
    """All visits, args.concurrency at a time; the trainer starts when visit sessions // 2 starts.

    Prints progress (with the app's VmRSS) every args.every sessions.
    """
    halfway = threading.Event()
    deadline = time.monotonic() + args.max_minutes * 60

    def one(k: int) -> None:
        if k == args.sessions // 2:
            halfway.set()
        if time.monotonic() > deadline:
            results.add(error=f"session {k}: skipped, the soak ran past --max-minutes {args.max_minutes}")
            return
        try:
            results.add(first=visit(url, k, args.length, args.request_timeout))
        except VisitError as exc:
            results.add(error=str(exc))

    trainer = None
    with ThreadPoolExecutor(max_workers=args.concurrency, thread_name_prefix="visit") as pool:
        futures = [pool.submit(one, k) for k in range(args.sessions)]
        if args.train_minutes > 0:
            while not halfway.wait(0.2) and not all(f.done() for f in futures):
                pass
            trainer = Trainer(url, args.train_minutes)
            trainer.start()
            print(f"  fine-tune started when session {args.sessions // 2} started")
        done_before = 0
        while not all(f.done() for f in futures):
            time.sleep(1)
            done = sum(f.done() for f in futures)
            if done // args.every > done_before // args.every:
                print(f"  {done}/{args.sessions} sessions done, {len(results.errors)} errors, "
                      f"app VmRSS {read_proc(pid).rss_kb / KB_PER_MIB:.1f} MiB", flush=True)
            done_before = done
    return trainer


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def report_memory(before: ProcSample, warm: ProcSample, peak: ProcSample | None, closed: ProcSample,
                  after: ProcSample, start: float, sessions: int, settle: float, trained: bool) -> None:
    print(f"memory before the first session:      {before.line()}")
    print(f"memory after 1 warm-up session:       {warm.line()}")
    if peak is not None:
        print(f"memory at peak (t={peak.at - start:5.0f} s):          {peak.line()}")
    print(f"memory when the last session closed:  {closed.line()}")
    print(f"memory after a {settle:.0f} s settle:            {after.line()}")
    print(f"VmRSS after/before: {ratio(after.rss_kb, before.rss_kb)}; "
          f"after/warm-up: {ratio(after.rss_kb, warm.rss_kb)}; "
          f"peak/before: {ratio(peak.rss_kb if peak else 0, before.rss_kb)}; "
          f"VmHWM after/before: {ratio(after.hwm_kb, before.hwm_kb)}")
    grown = (after.rss_kb - warm.rss_kb) / KB_PER_MIB
    and_training = " and the fine-tune" if trained else ""
    print(f"growth since the warm-up: {grown:+.1f} MiB over {sessions} sessions{and_training} "
          f"({grown * 1024 / max(1, sessions):+.1f} KiB per session)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4, help="sessions open at once")
    parser.add_argument("--length", type=int, default=300, help="characters per generation")
    parser.add_argument("--quick", action="store_true", help="20 sessions, to try it")
    parser.add_argument("--train-minutes", type=int, default=1, help="the fine-tune's budget (0 = no fine-tune)")
    parser.add_argument("--no-train", dest="train_minutes", action="store_const", const=0)
    parser.add_argument("--settle", type=float, default=20.0,
                        help="seconds to wait after the last close before measuring "
                             "(a closed client's heartbeat ends within 15 s)")
    parser.add_argument("--request-timeout", type=float, default=120.0, help="seconds one generation may take")
    parser.add_argument("--max-minutes", type=float, default=30.0, help="sessions not started by then are skipped")
    parser.add_argument("--every", type=int, default=25, help="print progress every this many sessions")
    parser.add_argument("--app", type=Path, default=ROOT / "app.py", help="the script to start (it must take --port)")
    parser.add_argument("--keep", action="store_true", help="keep the app's log and temp folder")
    args = parser.parse_args()
    if args.quick:
        args.sessions = 20
    args.concurrency, args.every = max(1, args.concurrency), max(1, args.every)

    workdir = Path(tempfile.mkdtemp(prefix="charrnn-soak-"))
    tmpdir = workdir / "tmp"
    tmpdir.mkdir()
    proc, url = start_app(workdir / "app.log", args.app, {"TMPDIR": str(tmpdir)})
    sampler = Sampler(proc.pid)
    try:
        train = f"a {args.train_minutes}-minute fine-tune halfway" if args.train_minutes > 0 else "no fine-tune"
        print(f"app at {url} (pid {proc.pid}, {args.app.name}); {args.sessions} sessions, "
              f"{args.concurrency} at a time, {args.length} characters each; {train}; {os.cpu_count()} CPU cores")
        time.sleep(2)
        before = read_proc(proc.pid)
        start = time.monotonic()
        sampler.start()
        warm_up = Results()
        try:
            warm_up.add(first=visit(url, -1, args.length, args.request_timeout))
        except VisitError as exc:
            warm_up.add(error=f"warm-up {exc}")
        time.sleep(2)
        warm = read_proc(proc.pid)

        results = Results(errors=list(warm_up.errors))
        trainer = run_visits(url, args, results, proc.pid)
        visits_s = time.monotonic() - start
        if trainer is not None:
            trainer.join(timeout=args.train_minutes * 60 + 360)
        closed = read_proc(proc.pid)
        wall = time.monotonic() - start
        time.sleep(args.settle)
        after = read_proc(proc.pid)
        peak = sampler.stop()
        roots, left = session_folders(tmpdir)

        and_training = " and the fine-tune" if trainer else ""
        print(f"\n{len(results.firsts)}/{args.sessions} sessions succeeded; sessions took {visits_s:.1f} s, "
              f"total wall time {wall:.1f} s (with the warm-up{and_training}), then a {args.settle:.0f} s settle")
        report_memory(before, warm, peak, closed, after, start, args.sessions, args.settle, trainer is not None)
        if results.firsts:
            f = results.firsts
            print(f"time to first character: p50 {percentile(f, 0.5):.3f} s, p95 {percentile(f, 0.95):.3f} s, "
                  f"max {max(f):.3f} s")
        print(f"errors: {len(results.errors)}")
        for line in results.errors[:5]:
            print("  " + line)
        if trainer is not None:
            what = trainer.final or trainer.error or trainer.last
            outcome = "completed" if trainer.finished else "DID NOT COMPLETE"
            print(f"fine-tune: {outcome} after {trainer.seconds:.1f} s: {what[:160]}")
        else:
            print("fine-tune: not run")
        where = ", ".join(str(r) for r in roots) or "no charrnn-sessions-* root"
        some = f" ({', '.join(d.name for d in left[:5])})" if left else ""
        print(f"session folders left under {where}: {len(left)}{some}")
        ok = not results.errors and not left and (trainer is None or trainer.finished)
        return 0 if ok else 1
    finally:
        sampler.stop()
        stop_app(proc)
        if args.keep:
            print(f"app log and temp folder kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
