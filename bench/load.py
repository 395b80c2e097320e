"""Many visitors at once through the app: what they get together, against one alone and the engine itself.

Starts app.py in a subprocess on a free port (the shipped models) and, with gradio_client
clients (each its own session) asking /generate for LENGTH characters of fairy-tales at
temperature 0.8 with distinct seeds, prints in one run:
- one visitor alone through the app against the engine's own one-request generation in this
  process (the same model, prompt and settings), as chars/s and their ratio;
- for each crowd size (16 and 64 by default), all at once: the chars/s of all of them together
  and its ratio to one visitor alone, p50/p95 time to first character, p50/p95 total time per
  request, and the errors;
- the same 16 visitors while one more client fine-tunes for TRAIN_MINUTES, and whether it finished;
- whether the seeded requests wrote the same text alone, in each crowd, and with charrnn's
  library (the engine the CLI uses) in this process.
Targets on a 2-core CPU: alone >= 80% of the engine; 16 together >= 8x one alone; p95 time to
first character <= 0.5 s at 16, <= 1 s at 64, <= 2 s at 16 with a fine-tune; no errors; the
seeded texts identical.

    python bench/load.py                          # the whole run (~4 minutes, 1 of them training)
    python bench/load.py --crowds 16 --train-minutes 0 --url http://127.0.0.1:7860/   # a running app
    python bench/load.py --train-minutes 0 --clients http --against http://127.0.0.1:7966/   # and another one
"""

from __future__ import annotations

import argparse
import json
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

import httpx  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from charrnn.checkpoint import SHIPPED, load_model  # noqa: E402
from charrnn.engine import GenerationEngine  # noqa: E402
from charrnn.sampling import SampleSettings  # noqa: E402
from webapp import limits  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "andersen_fairy_tales.txt"
PROMPTS = ["Once upon a time", "The king said", "In a deep forest", "\"Who is there?\"", "The little mermaid"]
MODEL = "fairy-tales"
TEMPERATURE = 0.8
POLL_S = 0.01  # how often a visitor looks at its job's updates
SEEDS = (1, 2, 3)  # the seeded requests checked alone and under load (visitors 0-2 of each crowd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(log: Path, script: Path = ROOT / "app.py",
              env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
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


class GradioClientVisitor:
    """A visitor as gradio_client makes one (its own session)."""

    name = "gradio_client"

    def __init__(self, url: str) -> None:
        self.client = Client(url, verbose=False)

    def generate(self, prompt: str, length: int, seed: int) -> tuple[float, float, str]:
        """(time to first generated character, total time, the text written) for one streamed request.

        The job's updates are polled every POLL_S rather than iterated: gradio_client's iterator
        waits in a 1 ms sleep loop, which with 64 visitors in one process takes the cores the app
        under test needs.
        """
        start = time.perf_counter()
        job = self.client.submit(prompt, TEMPERATURE, length, str(seed), MODEL, "", 0, 1.0, api_name="/generate")
        first = None
        while not job.done():
            if first is None:
                outputs = job.outputs()
                if outputs and len(outputs[-1][0]) > len(prompt):
                    first = time.perf_counter() - start
            time.sleep(POLL_S)
        text, _ = job.result()  # raises the app's error, if any
        return (first if first is not None else time.perf_counter() - start), time.perf_counter() - start, text

    def nothing(self) -> float:
        """Seconds for one call of an endpoint that does no work: the floor under every request."""
        start = time.perf_counter()
        self.client.predict(api_name="/clear_upload")
        return time.perf_counter() - start


class HttpVisitor:
    """A visitor speaking Gradio's REST API (POST /gradio_api/call/<api>, then its event stream),
    as a browser's page or curl does: one HTTP client, no client library in between."""

    name = "http"

    def __init__(self, url: str) -> None:
        self.api = url.rstrip("/") + "/gradio_api/call"
        self.http = httpx.Client(timeout=600)

    def _call(self, api: str, data: list, on_data=None) -> list:
        event = self.http.post(f"{self.api}/{api}", json={"data": data}).json()["event_id"]
        kind, last = None, None
        with self.http.stream("GET", f"{self.api}/{api}/{event}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    if kind == "error":
                        raise RuntimeError(f"the app answered with an error: {line[5:].strip()[:200]}")
                    last = json.loads(line[5:])
                    if on_data is not None and last:
                        on_data(last)
        return last

    def generate(self, prompt: str, length: int, seed: int) -> tuple[float, float, str]:
        start = time.perf_counter()
        first: list[float] = []

        def on_data(values: list) -> None:
            if not first and len(values[0]) > len(prompt):
                first.append(time.perf_counter() - start)

        text = self._call("generate", [prompt, TEMPERATURE, length, str(seed), MODEL, "", 0, 1.0], on_data)[0]
        return (first[0] if first else time.perf_counter() - start), time.perf_counter() - start, text

    def nothing(self) -> float:
        start = time.perf_counter()
        self._call("clear_upload", [])
        return time.perf_counter() - start


def timed_generate(visitor, prompt: str, length: int, seed: int) -> tuple[float, float, str]:
    """visitor.generate, checked: the whole length came back. Returns the continuation only."""
    first, total, text = visitor.generate(prompt, length, seed)
    if len(text) < len(prompt) + length:
        raise RuntimeError(f"asked for {length} characters, got {len(text) - len(prompt)}")
    return first, total, text[len(prompt):]


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


def engine_alone(length: int, repeats: int) -> tuple[float, dict[int, str]]:
    """chars/s of the engine writing one request at a time in this process (median), and the seeded texts."""
    model = load_model(SHIPPED[MODEL], device="cpu")
    engine = GenerationEngine(model)
    engine.submit(PROMPTS[0], SampleSettings(length=50, seed=0)).text()  # builds the stepper, checks the shapes
    rates = []
    for k in range(repeats):
        start = time.perf_counter()
        engine.submit(PROMPTS[k % len(PROMPTS)], SampleSettings(length=length, temperature=TEMPERATURE, seed=k)).text()
        rates.append(length / (time.perf_counter() - start))
    seeded = {seed: engine.submit(PROMPTS[0], SampleSettings(length=length, temperature=TEMPERATURE, seed=seed)).text()
              for seed in SEEDS}
    return statistics.median(rates), seeded


def crowd(make_visitor, url: str, visitors: int, length: int) -> dict:
    """visitors visitors, each one request, all released at once (each has made one short request
    before, as a visitor whose page is open has); visitors 0-2 use SEEDS and PROMPTS[0]. Then the
    same visitors all call an endpoint that does no work, for the floor under any request."""
    people = [make_visitor(url) for _ in range(visitors)]
    for person in people:
        person.generate(PROMPTS[1], 1, 0)
    results: dict[int, tuple[float, float, str]] = {}
    floors: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    go = threading.Barrier(visitors)

    def visitor(k: int) -> None:
        seed = SEEDS[k] if k < len(SEEDS) else 1000 + k
        prompt = PROMPTS[0] if k < len(SEEDS) else PROMPTS[k % len(PROMPTS)]
        go.wait()
        try:
            timing = timed_generate(people[k], prompt, length, seed)
            with lock:
                results[k] = timing
        except Exception as exc:
            with lock:
                errors.append(f"visitor {k}: {type(exc).__name__}: {str(exc)[:200]}")
        go.wait()
        floor = people[k].nothing()
        with lock:
            floors.append(floor)

    threads = [threading.Thread(target=visitor, args=(k,)) for k in range(visitors)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    firsts = [r[0] for r in results.values()]
    totals = [r[1] for r in results.values()]
    seconds = max(totals) if totals else time.perf_counter() - start
    return {"visitors": visitors, "seconds": seconds, "chars_per_s": len(results) * length / seconds,
            "errors": errors, "ok": len(results),
            "seeded": {SEEDS[k]: results[k][2] for k in range(len(SEEDS)) if k in results},
            "first": (percentile(firsts, 0.5), percentile(firsts, 0.95)) if firsts else (float("nan"),) * 2,
            "total": (percentile(totals, 0.5), percentile(totals, 0.95)) if totals else (float("nan"),) * 2,
            "floor": percentile(floors, 0.95) if floors else float("nan")}


def start_training(url: str, workdir: Path, minutes: int) -> tuple[dict, threading.Thread]:
    """One client fine-tuning the default model; returns its status dict (filled as it goes) and its thread."""
    trainer = Client(url, verbose=False)
    job = trainer.submit(handle_file(str(upload_text(workdir))), MODEL, limits.DEFAULT_SIZE_PRESET,
                         minutes, "as the base model", 0, 0, api_name="/train")
    status: dict = {"start": time.perf_counter()}

    def follow() -> None:
        try:
            for line, *_ in job:
                status["last"] = line
            status["final"] = job.result()[0]
        except Exception as exc:  # reported below
            status["error"] = f"{type(exc).__name__}: {exc}"
        status["seconds"] = time.perf_counter() - status["start"]

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    while "Training" not in str(status.get("last", "")) and follower.is_alive():
        time.sleep(0.2)
    return status, follower


def report(name: str, result: dict, alone_rate: float) -> None:
    p50f, p95f = result["first"]
    p50t, p95t = result["total"]
    print(f"  {name}: {result['ok']}/{result['visitors']} requests; together {result['chars_per_s']:,.0f} chars/s = "
          f"{result['chars_per_s'] / alone_rate:.1f}x one visitor alone; time to first character p50 {p50f:.3f} s, "
          f"p95 {p95f:.3f} s (a call that does no work, all at once: p95 {result['floor']:.3f} s); total per request "
          f"p50 {p50t:.2f} s, p95 {p95t:.2f} s; errors {len(result['errors'])}")
    for line in result["errors"][:5]:
        print("    " + line)


def against_app(make_visitor, url: str, other: str, crowds: list[int], length: int, rounds: int) -> None:
    """This app and another one (other, e.g. the code before a change, already running) under the same
    visitors, interleaved in rounds (the order alternating), with the medians of each side and their ratio."""
    apps = {"this app": url, "other": other}
    runs: dict[tuple, list[dict]] = {}
    for n in range(rounds):
        for visitors in [1, *crowds]:
            for name in (list(apps) if n % 2 == 0 else list(apps)[::-1]):
                runs.setdefault((visitors, name), []).append(crowd(make_visitor, apps[name], visitors, length))
    print(f"\nagainst {other}, {rounds} rounds interleaved (medians; load average now {os.getloadavg()[0]:.1f}):")
    for visitors in [1, *crowds]:
        rate = {name: statistics.median(r["chars_per_s"] for r in runs[visitors, name]) for name in apps}
        first = {name: statistics.median(r["first"][1] for r in runs[visitors, name]) for name in apps}
        print(f"  {visitors} at once: this app {rate['this app']:,.0f} chars/s, p95 first character "
              f"{first['this app']:.3f} s; other {rate['other']:,.0f} chars/s, {first['other']:.3f} s; "
              f"this / other {rate['this app'] / rate['other']:.2f}x")


def solo(make_visitor, url: str, length: int) -> tuple[float, float, dict[int, str]]:
    """One visitor alone: (chars/s, time to first character, the seeded texts), medians of 3."""
    person = make_visitor(url)
    person.generate(PROMPTS[0], 50, 0)  # warm-up: loads the model, builds the engine's stepper
    runs = [timed_generate(person, PROMPTS[k % len(PROMPTS)], length, k) for k in range(3)]
    texts = {seed: timed_generate(person, PROMPTS[0], length, seed)[2] for seed in SEEDS}
    return length / statistics.median(t for _, t, _ in runs), statistics.median(f for f, _, _ in runs), texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crowds", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--length", type=int, default=400)
    parser.add_argument("--train-minutes", type=int, default=1, help="0: no crowd with a fine-tune")
    parser.add_argument("--clients", nargs="+", choices=["http", "gradio_client"], default=["http", "gradio_client"],
                        help="how visitors talk to the app; the targets are judged on the first")
    parser.add_argument("--url", help="an app already running (default: start app.py on a free port)")
    parser.add_argument("--against", metavar="URL", help="another app, already running, to measure in the same run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds against --against")
    args = parser.parse_args()
    kinds = {"http": HttpVisitor, "gradio_client": GradioClientVisitor}

    workdir = Path(tempfile.mkdtemp(prefix="charrnn-load-"))
    proc, url = (None, args.url) if args.url else start_app(workdir / "app.log")
    try:
        print(f"app at {url}; {os.cpu_count()} CPU cores; {args.length} characters of {MODEL} at temperature "
              f"{TEMPERATURE} per request; engine rows {limits.GENERATE_ROWS}")
        engine_rate, engine_texts = engine_alone(args.length, repeats=3)
        print(f"the engine in this process, one request at a time: {engine_rate:,.0f} chars/s")
        figures: dict[str, dict] = {}
        for kind in args.clients:
            rate, first, texts = solo(kinds[kind], url, args.length)
            figures[kind] = {"alone": rate, "texts": [texts], "runs": {}}
            print(f"\nvisitors through {kind}:\n  one alone: {rate:,.0f} chars/s = {rate / engine_rate:.0%} of the "
                  f"engine's; time to first character {first:.3f} s")
            for visitors in args.crowds:
                figures[kind]["runs"][visitors] = result = crowd(kinds[kind], url, visitors, args.length)
                report(f"{visitors} at once", result, rate)
        training = None
        if args.train_minutes:
            status, follower = start_training(url, workdir, args.train_minutes)
            print(f"\na fine-tune of {MODEL} started ({time.perf_counter() - status['start']:.1f} s to its first step)")
            for kind in args.clients:
                figures[kind]["runs"]["train"] = result = crowd(kinds[kind], url, 16, args.length)
                report(f"16 at once through {kind}, during the fine-tune", result, figures[kind]["alone"])
            still = follower.is_alive()
            follower.join(timeout=args.train_minutes * 60 + 300)
            final = str(status.get("final", ""))
            training = final.startswith("**Done")
            print(f"  the fine-tune {'was still running' if still else 'had ended'} when the last request finished; "
                  f"it {'completed' if training else 'DID NOT COMPLETE'} "
                  f"after {status.get('seconds', float('nan')):.0f} s: "
                  f"{(final or status.get('error') or status.get('last', ''))[:120]}")
        if args.against:
            against_app(kinds[args.clients[0]], url, args.against, args.crowds, args.length, args.rounds)
        same = all(texts[s] == engine_texts[s] and all(r["seeded"].get(s) == texts[s] for r in f["runs"].values())
                   for f in figures.values() for texts in f["texts"] for s in SEEDS)
        print(f"\nseeded texts (seeds {', '.join(map(str, SEEDS))}): alone, in every crowd, through every client, and "
              f"from the library in this process: {'IDENTICAL' if same else 'DIFFERENT'}")
        judged = figures[args.clients[0]]
        checks = {"alone >= 80% of the engine": judged["alone"] >= 0.8 * engine_rate, "seeded texts identical": same}
        for key, result in judged["runs"].items():
            target = 2.0 if key == "train" else (0.5 if key <= 16 else 1.0)
            checks[f"{key} at once: no errors"] = not result["errors"]
            checks[f"{key} at once: p95 first character <= {target} s"] = result["first"][1] <= target
            if key == 16:
                checks["16 at once: together >= 8x one alone"] = result["chars_per_s"] >= 8 * judged["alone"]
        if training is not None:
            checks["the fine-tune completes"] = training
        verdicts = "; ".join(f"{k}: {'PASS' if v else 'FAIL'}" for k, v in checks.items())
        print(f"\ntargets (judged on {args.clients[0]}): {verdicts}")
        return 0 if all(checks.values()) else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    raise SystemExit(main())
