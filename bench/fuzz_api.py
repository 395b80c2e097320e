"""Fuzz every named endpoint of the served app with many examples; print every distinct failure per endpoint.

The arguments and the property are those of tests/test_fuzz_api.py, but nothing stops at the
first failure: each endpoint gets all its examples, and the failures are grouped by cause (what
broke the property, and the exception behind it), each with its shortest reproducing call.

    .venv/bin/python bench/fuzz_api.py --examples 200
    .venv/bin/python bench/fuzz_api.py --examples 50 --endpoint /generate --endpoint /train --json failures.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import test_fuzz_api as fuzz  # noqa: E402


@dataclass
class Cause:
    """The failures of one endpoint that share a cause."""

    kinds: str
    outcomes: list[fuzz.Outcome] = field(default_factory=list)

    def simplest(self) -> fuzz.Outcome:
        return min(self.outcomes, key=lambda o: (len(fuzz.shorten(o.args, 10_000)), o.seconds))


def normalized(text: str | None) -> str:
    """A message with its quoted and numeric parts blanked, so that failures differing only in the input group
    together."""
    text = re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", "'…'", text or "")
    return re.sub(r"\d[\d,._e+-]*", "N", text)[:120]


def cause_of(outcome: fuzz.Outcome, found: list[str]) -> str:
    kinds = "; ".join(normalized(f) for f in found)
    if outcome.raised:
        kind, _, rest = outcome.raised.partition(":")
        return f"{kinds} <- {kind}{rest[rest.rfind(' at '):] if ' at ' in rest else ''}"
    if outcome.error_type == "AppError":
        return f"{kinds} <- {normalized(outcome.error)[:80]}"
    return kinds


def run(app: fuzz.FuzzApp, endpoints: list[str], examples: int, seed_offset: int) -> dict[str, list[fuzz.Outcome]]:
    seen: dict[str, list[fuzz.Outcome]] = defaultdict(list)
    for endpoint in endpoints:
        start = time.monotonic()
        fuzz.fuzz_endpoint(app, endpoint, examples, record=seen[endpoint].append, stop_at_failure=False,
                           seed_offset=seed_offset)
        bad = sum(bool(fuzz.problems(o)) for o in seen[endpoint])
        print(f"{endpoint}: {len(seen[endpoint])} calls, {bad} failing, {time.monotonic() - start:.1f} s", flush=True)
    return seen


def clean_errors(outcomes: list[fuzz.Outcome], top: int = 5) -> list[tuple[int, str]]:
    """The commonest clean errors: which checks the examples got to."""
    counts: dict[str, int] = defaultdict(int)
    for outcome in outcomes:
        if outcome.error_type == "AppError" and not fuzz.problems(outcome):
            counts[normalized(outcome.error)[:100]] += 1
    return sorted(((n, m) for m, n in counts.items()), reverse=True)[:top]


def report(seen: dict[str, list[fuzz.Outcome]], verbose: bool = False) -> list[dict]:
    """Print the failures grouped by endpoint and cause; return them as plain data."""
    rows = []
    print("\n=== failures by endpoint and cause ===")
    for endpoint, outcomes in seen.items():
        causes: dict[str, Cause] = {}
        for outcome in outcomes:
            found = fuzz.problems(outcome)
            if found:
                key = cause_of(outcome, found)
                causes.setdefault(key, Cause(key)).outcomes.append(outcome)
        times = [o.seconds for o in outcomes]
        results = sum(o.error_type is None and not o.timed_out for o in outcomes)
        failing = sum(len(c.outcomes) for c in causes.values())
        print(f"\n{endpoint}: {len(outcomes)} calls ({results} results), {failing} failing, "
              f"median {statistics.median(times) if times else 0:.2f} s, max {max(times, default=0):.2f} s")
        if verbose:
            for count, message in clean_errors(outcomes):
                print(f"  ok [{count}x] {message}")
        for cause in sorted(causes.values(), key=lambda c: -len(c.outcomes)):
            example = cause.simplest()
            slowest = max(o.seconds for o in cause.outcomes)
            print(f"  [{len(cause.outcomes)}x, up to {slowest:.2f} s] {cause.kinds}")
            print(f"      e.g. {fuzz.describe(example, fuzz.problems(example))}")
            rows.append({"endpoint": endpoint, "cause": cause.kinds, "count": len(cause.outcomes),
                         "max_seconds": slowest, "example": fuzz.describe(example, fuzz.problems(example))})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100, help="examples per endpoint")
    parser.add_argument("--endpoint", action="append", help="only these endpoints (repeatable); default all")
    parser.add_argument("--seed", type=int, default=0,
                        help="added to each endpoint's seed: another reproducible set of examples")
    parser.add_argument("--json", type=Path, help="also write the grouped failures here")
    parser.add_argument("--verbose", action="store_true", help="also list each endpoint's commonest clean errors")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # as the tests do: tiny models on a busy machine run fastest on one thread
    start = time.monotonic()
    with fuzz.fuzz_app() as app:
        endpoints = [e for e in app.endpoints if e not in fuzz.SKIPPED and (not args.endpoint or e in args.endpoint)]
        seen = run(app, endpoints, args.examples, args.seed)
        text = fuzz.generates(app.url)
    rows = report(seen, args.verbose)
    healthy = text.startswith("Once upon")
    print(f"\nafter the fuzzing, a plain /generate: {'works' if healthy else 'FAILS: ' + text}")
    calls, failing = sum(len(v) for v in seen.values()), sum(r["count"] for r in rows)
    print(f"{calls} calls, {failing} failing, {len(rows)} distinct causes, {time.monotonic() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"failures": rows, "healthy_after": healthy}, indent=1))


if __name__ == "__main__":
    main()
