"""Many visitors at once: gradio_client clients generating while another one fine-tunes.

Starts app.py in a subprocess on a free port (the shipped models), measures a few
generations with nobody else around as the reference, then runs CLIENTS clients in
threads, each generating LENGTH characters REPEATS times, while one more client
fine-tunes the default model for TRAIN_MINUTES. Prints p50/p95 time to first character
and total time per request (and their ratio to the unloaded reference), the errors, and
whether the training finished. Targets on a 2-core CPU: no errors, p95 time to first
character under 2 s, training completes.

    python bench/load.py                      # 20 clients × 5 × 300 characters, 1 minute of training
    python bench/load.py --clients 5 --repeats 2 --url http://127.0.0.1:7860/   # against a running app
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gradio_client import Client, handle_file  # noqa: E402

from charrnn import limits  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "andersen_fairy_tales.txt"
PROMPTS = ["Once upon a time", "The king said", "In a deep forest", "\"Who is there?\"", "The little mermaid"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(log: Path, script: Path = ROOT / "app.py", env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """script --port PORT on 127.0.0.1 (app.py's default host), with env added; returns once it answers."""
    port = free_port()
    env = os.environ | {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"} | (env or {})
    proc = subprocess.Popen([sys.executable, str(script), "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with code {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"the app did not answer within 180 s; see {log}")


def timed_generate(client: Client, prompt: str, length: int, seed: int) -> tuple[float, float]:
    """(time to first generated character, total time) for one streamed request."""
    start = time.perf_counter()
    job = client.submit(prompt, 0.8, length, str(seed), "fairy-tales", "", 0, 1.0, api_name="/generate")
    first = None
    text = ""
    for text, _ in job:
        if first is None and len(text) > len(prompt):
            first = time.perf_counter() - start
    text, _ = job.result()  # raises the app's error, if any
    total = time.perf_counter() - start
    if len(text) < length:
        raise RuntimeError(f"asked for {length} characters, got {len(text) - len(prompt)}")
    return (first if first is not None else total), total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def upload_text(directory: Path) -> Path:
    path = directory / "load-test-tale.txt"
    if CORPUS.is_file():
        path.write_text(CORPUS.read_text(encoding="utf-8", errors="replace")[200_000:400_000])
    else:
        words = "once upon a time there was a king who had three daughters and the youngest was the fairest".split()
        path.write_text("\n".join(" ".join(words[(i * 7 + j) % len(words)] for j in range(12)) for i in range(3000)))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--length", type=int, default=300)
    parser.add_argument("--train-minutes", type=int, default=1)
    parser.add_argument("--url", help="an app already running (default: start app.py on a free port)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="charrnn-load-"))
    proc = None
    if args.url:
        url = args.url
    else:
        proc, url = start_app(workdir / "app.log")
    try:
        print(f"app at {url}; {args.clients} clients × {args.repeats} requests × {args.length} characters, "
              f"one client fine-tuning for {args.train_minutes} min; {os.cpu_count()} CPU cores; "
              f"generation concurrency {limits.GENERATE_CONCURRENCY}, training concurrency {limits.TRAIN_CONCURRENCY}")

        # Reference: the same requests with nobody else on the server (after one warm-up).
        solo = Client(url, verbose=False)
        timed_generate(solo, PROMPTS[0], args.length, 0)
        reference = [timed_generate(solo, PROMPTS[i % len(PROMPTS)], args.length, i) for i in range(5)]
        ref_first = statistics.median(r[0] for r in reference)
        ref_total = statistics.median(r[1] for r in reference)
        print(f"unloaded reference: time to first character {ref_first:.3f} s, total {ref_total:.3f} s (median of 5)")

        # The trainer starts first, so every generation below competes with it.
        trainer = Client(url, verbose=False)
        train_job = trainer.submit(handle_file(str(upload_text(workdir))), "fairy-tales", limits.DEFAULT_SIZE_PRESET,
                                   args.train_minutes, "as the base model", 0, 0, api_name="/train")
        train_start = time.perf_counter()
        train_status: dict = {}

        def follow_training() -> None:
            try:
                for status, *_ in train_job:
                    train_status["last"] = status
                train_status["final"] = train_job.result()[0]
            except Exception as exc:  # reported below
                train_status["error"] = f"{type(exc).__name__}: {exc}"
            train_status["seconds"] = time.perf_counter() - train_start

        follower = threading.Thread(target=follow_training, daemon=True)
        follower.start()
        while "Training" not in str(train_status.get("last", "")) and follower.is_alive():
            time.sleep(0.2)
        print(f"training started after {time.perf_counter() - train_start:.1f} s: {str(train_status.get('last', ''))[:100]}")

        clients = [Client(url, verbose=False) for _ in range(args.clients)]
        results: list[tuple[float, float]] = []
        errors: list[str] = []
        lock = threading.Lock()
        go = threading.Barrier(args.clients)

        def visitor(k: int, client: Client) -> None:
            go.wait()
            for r in range(args.repeats):
                try:
                    timing = timed_generate(client, PROMPTS[(k + r) % len(PROMPTS)], args.length, 1000 * k + r)
                    with lock:
                        results.append(timing)
                except Exception as exc:
                    with lock:
                        errors.append(f"client {k} request {r}: {type(exc).__name__}: {str(exc)[:200]}")

        load_start = time.perf_counter()
        threads = [threading.Thread(target=visitor, args=(k, c)) for k, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        load_seconds = time.perf_counter() - load_start
        training_during = follower.is_alive()
        follower.join(timeout=args.train_minutes * 60 + 300)

        firsts = [r[0] for r in results]
        totals = [r[1] for r in results]
        n = args.clients * args.repeats
        print(f"\n{len(results)}/{n} requests succeeded in {load_seconds:.1f} s "
              f"({sum(1 for _ in results) * args.length / load_seconds:,.0f} characters/s served); "
              f"training {'was still running' if training_during else 'had ended'} when the last request finished")
        if results:
            p50f, p95f, p50t, p95t = (percentile(firsts, 0.5), percentile(firsts, 0.95), percentile(totals, 0.5), percentile(totals, 0.95))
            print(f"time to first character: p50 {p50f:.3f} s, p95 {p95f:.3f} s, max {max(firsts):.3f} s "
                  f"(p95 {p95f / ref_first:.1f}× the unloaded {ref_first:.3f} s)")
            print(f"total time per request:  p50 {p50t:.3f} s, p95 {p95t:.3f} s, max {max(totals):.3f} s "
                  f"(p50 {p50t / ref_total:.1f}× the unloaded {ref_total:.3f} s)")
        print(f"errors: {len(errors)}")
        for line in errors[:10]:
            print("  " + line)
        final = str(train_status.get("final", ""))
        finished = final.startswith("**Done")
        print(f"training: {'finished' if finished else 'DID NOT FINISH'} after {train_status.get('seconds', float('nan')):.1f} s: "
              f"{(final or train_status.get('error') or train_status.get('last', ''))[:160]}")
        ok_first = bool(results) and percentile(firsts, 0.95) < 2.0
        print(f"\ntargets: errors 0: {'PASS' if not errors else 'FAIL'}; p95 time to first character < 2 s: "
              f"{'PASS' if ok_first else 'FAIL'}; training completes: {'PASS' if finished else 'FAIL'}")
        return 0 if (not errors and ok_first and finished) else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    raise SystemExit(main())
