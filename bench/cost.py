"""The worst case of every endpoint: each driven at its largest inputs, measured on the server.

Starts app.py in a subprocess on a free port (the shipped models), discovers every endpoint a
client can call from the running app (its API page, the named endpoints it leaves off that page,
and the private events that still answer by fn_index), and calls each with the recipe for its
largest inputs below: every shipped model, the longest texts, the widest beam, the full window,
the largest upload. An endpoint with no recipe is reported as such (tests/test_cost.py fails on it).

Per call it measures the app process itself: CPU time (utime + stime of every thread, from
/proc/PID/stat, until the server is idle again) and peak RSS growth (VmHWM after, reset with
/proc/PID/clear_refs before, minus VmRSS before). Prints one row per call and the worst case per
endpoint, then the RSS after 30 s idle against the RSS after warm-up.

    python bench/cost.py                       # every endpoint (a few minutes on 2 cores)
    python bench/cost.py --only score compare  # some endpoints
    python bench/cost.py --issue               # the rows of the hostile-use table as well
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from gradio_client import Client  # noqa: E402
from load import ROOT, start_app  # noqa: E402  (load.py also puts ROOT on sys.path)

from charrnn.beam import MAX_BEAM_WIDTH  # noqa: E402
from webapp import limits  # noqa: E402  (the app's budgets and limits)

CHECKPOINTS = ROOT / "checkpoints"
TICKS = os.sysconf("SC_CLK_TCK")
KB_PER_MB = 1000  # /proc reports kB (KiB); figures are MiB-free "MB" of 1,000 kB
IDLE_CPU_S = 0.02  # the server counts as idle when it spends less than this in IDLE_WINDOW_S
IDLE_WINDOW_S = 0.3
MAX_SETTLE_S = 120.0
CALL_TIMEOUT_S = 300.0
UPLOAD_BYTES = limits.MAX_UPLOAD_BYTES - 1


# --- the app process ---------------------------------------------------------------------------------

class AppProcess:
    """The served app's process, read through /proc: CPU seconds, resident and peak memory."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime: fields 14 and 15 of the whole line

    def memory_kb(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in kB."""
        found = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
        return found["VmRSS"], found["VmHWM"]

    def reset_peak(self) -> None:
        """VmHWM back to the current VmRSS (Linux's clear_refs 5)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def settle(self, limit: float = MAX_SETTLE_S) -> float:
        """Wait until the server is idle (what a call started has finished); returns the seconds waited."""
        start = time.monotonic()
        before = self.cpu_s()
        while time.monotonic() - start < limit:
            time.sleep(IDLE_WINDOW_S)
            now = self.cpu_s()
            if now - before < IDLE_CPU_S:
                break
            before = now
        return time.monotonic() - start


@dataclass
class Usage:
    """What one call cost the server."""

    endpoint: str
    case: str  # which of the endpoint's largest inputs
    cpu_s: float
    peak_mb: float  # peak RSS growth during the call
    kept_mb: float  # RSS after the call (and its settling) minus RSS before
    wall_s: float
    outcome: str  # "ok", or the app's error message, shortened

    def row(self) -> str:
        return (f"| `{self.endpoint}` | {self.case} | {self.cpu_s:.1f} | {self.peak_mb:+.0f} | {self.kept_mb:+.0f} "
                f"| {self.wall_s:.1f} | {self.outcome[:70]} |")


TABLE_HEAD = ("| endpoint | largest inputs | server CPU s | peak RSS growth MB | RSS kept MB | wall s | outcome |\n"
              "| --- | --- | ---: | ---: | ---: | ---: | --- |")


def measure(app: AppProcess, endpoint: str, case: str, call: Callable[[], Any]) -> Usage:
    """Run call() once on an idle server (the caller's to ensure: every measure ends on one), until the server is
    idle again, and read what it cost."""
    app.reset_peak()
    rss0, _ = app.memory_kb()
    cpu0, start = app.cpu_s(), time.monotonic()
    try:
        call()
        outcome = "ok"
    except Exception as exc:  # noqa: BLE001 (a refusal is an outcome to report)
        outcome = " ".join(str(getattr(exc, "message", None) or exc).split()) or type(exc).__name__
    wall = time.monotonic() - start
    app.settle()
    cpu = app.cpu_s() - cpu0
    rss, hwm = app.memory_kb()
    return Usage(endpoint, case, cpu, (hwm - rss0) / KB_PER_MB, (rss - rss0) / KB_PER_MB, wall, outcome)


# --- the largest inputs ---------------------------------------------------------------------------------

def shipped_models() -> list[str]:
    return sorted(p.name for p in CHECKPOINTS.iterdir() if (p / "config.json").is_file())


def prose(chars: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = ("once upon a time there was a king who had three daughters and the youngest was so fair that "
             "the sun itself wondered whenever it shone on her face").split()
    out, size = [], 0
    while size < chars:
        line = " ".join(rng.choice(words) for _ in range(12)).capitalize() + '. "Who is there?" she asked.\n'
        out.append(line)
        size += len(line)
    return "".join(out)[:chars]


def chinese(chars: int, seed: int = 0, block: list[str] | None = None) -> str:
    """Lines of Chinese characters (from block, else the common block), with commas and full stops, like the Tang
    corpus."""
    rng = random.Random(seed)
    block = block or [chr(c) for c in range(0x4E00, 0x4E00 + 6000)]
    out, size = [], 0
    while size < chars:
        line = "，".join("".join(rng.choices(block, k=5)) for _ in range(4)) + "。\n"
        out.append(line)
        size += len(line)
    return "".join(out)[:chars]


def cut_utf8(text: str, limit: int) -> bytes:
    """text as UTF-8, repeated to at most limit bytes and cut in the middle of its last character."""
    data = text.encode("utf-8")
    data = (data * (limit // len(data) + 1))[:limit]
    lead = next(i for i in range(len(data) - 1, 0, -1) if data[i] >= 0xE0)  # a 3-byte character's first byte
    return data[: lead + 2]  # its first two bytes of three


@dataclass
class Uploads:
    """The big files the recipes send, uploaded once through Gradio's upload route (as a browser does)."""

    folder: Path
    url: str
    sent: dict[str, dict] = field(default_factory=dict)

    def get(self, name: str, make: Callable[[], bytes]) -> dict:
        if name not in self.sent:
            path = self.folder / name
            path.write_bytes(make())
            with path.open("rb") as handle:
                response = httpx.post(f"{self.url}gradio_api/upload", files=[("files", (name, handle))], timeout=120)
            response.raise_for_status()
            self.sent[name] = {"path": response.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}
        return self.sent[name]


@dataclass
class Context:
    """What a recipe may use: a client (its own session), the app's models, the uploads, a scratch folder."""

    url: str
    client: Client
    models: list[str]
    uploads: Uploads

    def call(self, endpoint: str, *args: Any) -> Any:
        job = self.client.submit(*args, api_name=endpoint)
        return job.result(timeout=CALL_TIMEOUT_S)

    def fresh_call(self, endpoint: str, *args: Any) -> Any:
        """A call from a new visitor (its own session), closed after."""
        client = Client(self.url, verbose=False, download_files=False)
        try:
            return client.submit(*args, api_name=endpoint).result(timeout=CALL_TIMEOUT_S)
        finally:
            client.close()

    def call_private(self, api_name: str, *args: Any, event_data: dict | None = None) -> Any:
        """A private event (no client lists it) sent the way a hostile client can: joined by fn_index with
        its own session, the event's data given, the event stream read to the end. Its output, or an
        exception carrying the app's error."""
        dependencies = self.client.config["dependencies"]
        index = next(d.get("id", i) for i, d in enumerate(dependencies) if d.get("api_name") == api_name)
        session = f"cost{random.randrange(10**12)}"
        body = {"data": list(args), "fn_index": index, "session_hash": session, "event_data": event_data,
                "trigger_id": None}
        httpx.post(f"{self.url}gradio_api/queue/join", json=body, timeout=30).raise_for_status()
        with httpx.stream("GET", f"{self.url}gradio_api/queue/data", params={"session_hash": session},
                          timeout=CALL_TIMEOUT_S) as stream:
            for line in stream.iter_lines():
                message = json.loads(line[5:]) if line.startswith("data:") else {}
                if message.get("msg") == "process_completed":
                    if not message.get("success"):
                        raise RuntimeError((message.get("output") or {}).get("error") or "the event failed")
                    return message.get("output")
        raise RuntimeError("the event stream ended without a result")


MAX_TEXT = limits.MAX_TEXT_CHARS  # the longest text any box accepts
LONGEST_GENERATION = limits.MAX_GENERATE_CHARS
WIDEST_BEAM = MAX_BEAM_WIDTH
VIEW_CHARS = limits.MAX_VIEW_CHARS  # a prompt's tail and a full generation: what Inspect reads
MODELS_AT_ONCE = limits.MAX_COMPARE_MODELS


def vocabulary(model: str) -> list[str]:
    """The characters a shipped model knows, but its unknown symbol (from its config.json)."""
    return json.loads((CHECKPOINTS / model / "config.json").read_text())["vocab"][1:]


def model_text(model: str, chars: int, seed: int = 0) -> str:
    """Text the model reads as it is (every character in its vocabulary): Chinese lines for a Chinese model."""
    known = set(vocabulary(model))
    if sum("\u4e00" <= c <= "\u9fff" for c in known) > len(known) / 2:
        return chinese(chars, seed, sorted(c for c in known if "\u4e00" <= c <= "\u9fff"))
    return "".join(c for c in prose(2 * chars, seed) if c in known)[:chars]


def long_prompt(model: str) -> str:
    return model_text(model, MAX_TEXT)


def generated_view(model: str) -> tuple[str, str]:
    """(prompt, Generate box) at the largest the views read: the box holds the prompt and 2,000 written characters."""
    text = model_text(model, VIEW_CHARS, 1)
    return text[: VIEW_CHARS - LONGEST_GENERATION], text


Case = tuple[str, Callable[[Context], Any]]  # (what the largest input is, the call)


def per_model(make: Callable[[Context, str], Any]) -> Callable[[Context], Iterator[Case]]:
    def cases(ctx: Context) -> Iterator[Case]:
        for model in ctx.models:
            yield model, (lambda c, m=model: make(c, m))
    return cases


def single(case: str, make: Callable[[Context], Any]) -> Callable[[Context], Iterator[Case]]:
    return lambda _ctx: iter([(case, make)])


def _generate(ctx: Context, endpoint: str, model: str, mode: str = "sample", width: int = 8,
              stop_at: str = "the length", min_length: int = 0) -> Any:
    return ctx.call(endpoint, long_prompt(model), 1.0, LONGEST_GENERATION, "1", model, "", 0, 1.0, stop_at,
                    min_length, mode, width)


def generate_cases(endpoint: str) -> Callable[[Context], Iterator[Case]]:
    def cases(ctx: Context) -> Iterator[Case]:
        for model in ctx.models:
            yield f"{model}, sample 2,000", lambda c, m=model: _generate(c, endpoint, m)
            yield f"{model}, beam 32 x 2,000", lambda c, m=model: _generate(c, endpoint, m, "beam search", WIDEST_BEAM)
    return cases


def _view(endpoint: str) -> Callable[[Context], Iterator[Case]]:
    def make(ctx: Context, model: str) -> Any:
        prompt, text = generated_view(model)
        return ctx.call(endpoint, prompt, text, model, "")
    return per_model(make)


def _influence(ctx: Context, model: str) -> Any:
    prompt, text = generated_view(model)
    return ctx.call("/influence", prompt, text, LONGEST_GENERATION - 1, model, "")


def _branch(ctx: Context, model: str) -> Any:
    prompt, text = generated_view(model)
    alternative = "的" if model == "tang-poems" else "e"
    return ctx.call("/branch", prompt, text, 0, alternative, 1.0, LONGEST_GENERATION, "1", model, "", 0, 1.0)


def _temperatures(ctx: Context, model: str) -> Any:
    return ctx.call("/temperatures", long_prompt(model), LONGEST_GENERATION, "1", model, "", 0, 1.0)


def _neurons(endpoint: str) -> Callable[[Context], Iterator[Case]]:
    def make(ctx: Context, model: str) -> Any:
        return ctx.call(endpoint, long_prompt(model), 2, 511, "cell state c", model, "")
    return per_model(make)


def _find_cells(ctx: Context, model: str) -> Any:
    return ctx.call("/find_cells", long_prompt(model), model, "")


def _compare(ctx: Context) -> Any:
    return ctx.call("/compare", prose(MAX_TEXT), 1.0, LONGEST_GENERATION, "1", ctx.models[:MODELS_AT_ONCE], "", 0, 1.0)


def _score_text(ctx: Context) -> Any:
    return ctx.call("/score", prose(MAX_TEXT), None, ctx.models[:MODELS_AT_ONCE], "")


def _score_chinese(ctx: Context) -> Any:
    return ctx.call("/score", chinese(MAX_TEXT), None, ctx.models[:MODELS_AT_ONCE], "")


def big_chinese_upload(ctx: Context) -> dict:
    return ctx.uploads.get("tang-cut.txt", lambda: cut_utf8(chinese(200_000, 2), UPLOAD_BYTES))


def big_latin1_upload(ctx: Context) -> dict:
    """A Western file that is not UTF-8: decoded to the end as UTF-8 before falling back to cp1252."""
    return ctx.uploads.get("latin1.txt", lambda: (prose(200_000, 3).replace("king", "k\xf6nig").encode("latin-1")
                                                  * 200)[:UPLOAD_BYTES])


def _score_upload(ctx: Context) -> Any:
    return ctx.call("/score", None, big_chinese_upload(ctx), ctx.models[:MODELS_AT_ONCE], "")


def upload_cases(endpoint: str) -> Callable[[Context], Iterator[Case]]:
    def cases(_ctx: Context) -> Iterator[Case]:
        for fold in ("as the base model", "fold to ASCII"):
            yield (f"20 MB Chinese cut mid-character, tang-poems, {fold}",
                   lambda c, f=fold: c.call(endpoint, big_chinese_upload(c), "tang-poems", f))
        yield ("20 MB Latin-1, fairy-tales, as the base model",
               lambda c: c.call(endpoint, big_latin1_upload(c), "fairy-tales", "as the base model"))
    return cases


def _suggest_base(ctx: Context) -> Any:
    return ctx.call("/suggest_base", big_chinese_upload(ctx), "fairy-tales")


def unique_prose(num_bytes: int, seed: int = 4) -> bytes:
    """Latin-1 prose of random words, num_bytes long: almost every 20-character window in it is new, the worst
    case of a training run's originality index."""
    rng = random.Random(seed)
    words = prose(2000, seed).replace("king", "k\xf6nig").replace(".", " ").split()
    return " ".join(rng.choices(words, k=num_bytes // 4)).encode("latin-1")[:num_bytes]


TRAIN_MINUTES = 1  # the shortest time budget: a run's cost beyond it shows most


def _train(ctx: Context) -> Any:
    """The largest upload of new text, the largest model from scratch, the shortest time budget."""
    upload = ctx.uploads.get("unique.txt", lambda: unique_prose(UPLOAD_BYTES))
    return ctx.fresh_call("/train", upload, "from scratch", "medium (2 layers × 512)", TRAIN_MINUTES,
                          "as the base model", 0, 0)


def _join_compare(ctx: Context) -> str:
    """Join /compare at its largest with a session of its own; its session hash."""
    index = next(i for i, d in enumerate(ctx.client.config["dependencies"]) if d.get("api_name") == "compare")
    data = [prose(MAX_TEXT), 1.0, LONGEST_GENERATION, "1", ctx.models[:MODELS_AT_ONCE], "", 0, 1.0, None]
    session = f"abandoned{random.randrange(10**9)}"
    body = {"data": data, "fn_index": index, "session_hash": session, "event_data": None, "trigger_id": None}
    httpx.post(f"{ctx.url}gradio_api/queue/join", json=body, timeout=30).raise_for_status()
    return session


def abandoned_compare(ctx: Context) -> None:
    """A visitor that joins /compare at its largest and never opens the event stream."""
    _join_compare(ctx)


def compare_closed_early(ctx: Context) -> None:
    """A visitor that joins /compare at its largest, reads its event stream until the text starts, and leaves."""
    session = _join_compare(ctx)
    with httpx.stream("GET", f"{ctx.url}gradio_api/queue/data", params={"session_hash": session},
                      timeout=CALL_TIMEOUT_S) as stream:
        for line in stream.iter_lines():
            if '"process_generating"' in line:
                return


def two_scores_at_once(ctx: Context) -> None:
    """Two visitors on one address each score 100,000 characters with every shipped model, at the same time."""
    import threading

    walls: list[float] = []

    def one() -> None:
        start = time.monotonic()
        ctx.fresh_call("/score", prose(MAX_TEXT), None, ctx.models[:MODELS_AT_ONCE], "")
        walls.append(time.monotonic() - start)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"  two /score calls at once: {', '.join(f'{w:.1f}' for w in sorted(walls))} s each")


def compare_updates(ctx: Context) -> None:
    """/compare at its largest: how many updates reach the client, and how much they carry."""
    job = ctx.client.submit(prose(MAX_TEXT), 1.0, LONGEST_GENERATION, "1", ctx.models[:MODELS_AT_ONCE], "", 0, 1.0,
                            api_name="/compare")
    job.result(timeout=CALL_TIMEOUT_S)
    updates = job.outputs()
    sent = sum(len(json.dumps(update, default=str)) for update in updates)
    print(f"  /compare 3 x 2,000: {len(updates)} updates, {sent / 1e6:.1f} MB of HTML and JSON")


def suggested_for_chinese(ctx: Context) -> None:
    picked = ctx.call("/suggest_base", big_chinese_upload(ctx), "fairy-tales")
    print(f"  /suggest_base for the 20 MB Chinese upload: {picked}")


# The hostile-use table's other rows, for `--issue`: printed beside their cost, not checked by the test.
ISSUE_ROWS: list[Case] = [("two /score 100,000 x every model at once, one address", two_scores_at_once),
                          ("/compare every model x 2,000, its updates", compare_updates),
                          ("/score tang-poems, 4,048 Chinese characters",
                           lambda c: c.call("/score", chinese(VIEW_CHARS), None, ["tang-poems"], "")),
                          ("/suggest_base, 20 MB Chinese cut mid-character", suggested_for_chinese)]

ISSUE_PROBES: list[Case] = [("/compare joined, event stream never opened", abandoned_compare),
                            ("/compare joined, event stream closed once the text starts", compare_closed_early)]


def _pick_cell(ctx: Context) -> Any:
    rows = [["inside quotes", 1, 2, 511, "cell state c", 0.9]] * 5000
    return ctx.call("/pick_cell", {"headers": ["feature", "rank", "layer", "unit", "state", "r"], "data": rows,
                                   "metadata": None})


def _pick_branch(ctx: Context) -> Any:
    _, text = generated_view("fairy-tales")
    return ctx.call_private("pick_branch", text, None, event_data={"position": VIEW_CHARS, "char": "e"})


RECIPES: dict[str, Callable[[Context], Iterator[Case]]] = {
    "generate": generate_cases("/generate"),
    "branch": per_model(_branch),
    "inspect": _view("/inspect"),
    "originality": _view("/originality"),
    "influence": per_model(_influence),
    "temperatures": per_model(_temperatures),
    "neurons": _neurons("/neurons"),
    "find_cells": per_model(_find_cells),
    "pick_cell": single("5,000 table rows", _pick_cell),
    "compare": single("every shipped model x 2,000", _compare),
    "score": lambda _ctx: iter([("100,000 characters x every shipped model", _score_text),
                               ("100,000 Chinese characters x every shipped model", _score_chinese),
                               ("20 MB upload x every shipped model", _score_upload)]),
    "read_upload": upload_cases("/read_upload"),
    "suggest_base": single("20 MB Chinese upload", _suggest_base),
    "budget_hint": single("20 MB Latin-1 upload, fairy-tales, 1 minute",
                          lambda c: c.call("/budget_hint", big_latin1_upload(c), "fairy-tales", 1)),
    "train": single(f"20 MB of new text, medium from scratch, {TRAIN_MINUTES} minute", _train),
    "push": single("a shipped model's name (only this session's models are pushed)",
                   lambda c: c.call("/push", "fairy-tales", "owner/name", "hf_" + "a" * 34, True)),
    "stop_training": single("nothing training", lambda c: c.call("/stop_training")),
    "clear_upload": single("no inputs", lambda c: c.call("/clear_upload")),
    "compare_models": single("no inputs", lambda c: c.call("/compare_models")),
    "models": single("no inputs", lambda c: c.call("/models")),
    # Events the page keeps private, sent by fn_index.
    "pick_position": single("a click's position", lambda c: c.call_private("pick_position",
                                                                            event_data={"position": VIEW_CHARS})),
    "pick_branch": single("the longest box, a click on an alternative", _pick_branch),
    "undo_branch": single("this session's history", lambda c: c.call_private("undo_branch", None)),
    "lambda": single("a click on an example (its index)", lambda c: c.call_private("lambda", 0)),
    "example_update": single("tang-poems", lambda c: c.call_private("example_update", "tang-poems", None)),
    "end_session": single("a session with nothing in it", lambda c: c.call_private("end_session")),
    # Stop's look, set in the browser (js=True); a client can still send them by fn_index.
    "stop_idle": single("no inputs", lambda c: c.call_private("stop_idle")),
    "stop_running": single("no inputs", lambda c: c.call_private("stop_running")),
    "browser_model": per_model(lambda c, m: c.call("/browser_model", True, m, "")),  # the first call exports
}
# Endpoints that run another's function on the same inputs under another name (Enter for the button, a changed
# setting for an upload): measured as that endpoint.
TWINS = {"generate_on_enter": "generate", "read_upload_base": "read_upload", "read_upload_fold": "read_upload",
         "neurons_of_picked_cell": "neurons", "runtime_state": "browser_model"}


# --- discovery -------------------------------------------------------------------------------------------

def endpoints(client: Client) -> dict[str, str | None]:
    """Every endpoint a client can call, by api_name, each with the endpoint it is a twin of, else None.
    A twin runs the same function on the same inputs and outputs under another name: Gradio names a
    second event of one function NAME_1, NAME_2 and so on, and TWINS names the others; both are checked
    against the page's wiring. Named endpoints come from the API page; private events that run a
    function on the server, from the page's config (a client can send them by fn_index)."""
    api = client.view_api(return_format="dict", print_info=False)
    named = [name.lstrip("/") for name in api["named_endpoints"]]
    wiring = {d["api_name"]: (d.get("inputs"), d.get("outputs")) for d in client.config.get("dependencies", [])
              if d.get("api_name") and d.get("backend_fn")}
    found: dict[str, str | None] = {}
    for name in [*named, *(name for name in wiring if name not in named)]:
        twin = TWINS.get(name, re.sub(r"_\d+$", "", name))
        found[name] = twin if twin != name and twin in wiring and wiring[twin] == wiring.get(name) else None
    return found


# --- the run ----------------------------------------------------------------------------------------------

@dataclass
class Report:
    rows: list[Usage]
    missing: list[str]  # endpoints without a recipe
    rss_after_warmup_mb: float
    rss_after_idle_mb: float
    idle_cpu_share: float  # of one core, what the app spent during the idle time at the end

    def worst(self) -> dict[str, Usage]:
        """Per endpoint, the call with the most CPU (ties: the most memory)."""
        out: dict[str, Usage] = {}
        for u in self.rows:
            best = out.get(u.endpoint)
            if best is None or (u.cpu_s, u.peak_mb) > (best.cpu_s, best.peak_mb):
                out[u.endpoint] = u
        return out

    def table(self) -> str:
        rows = "\n".join(u.row() for u in self.worst().values())
        return f"{TABLE_HEAD}\n{rows}"


def warm_up(ctx: Context) -> None:
    """Load every shipped model and run each kind of work once, so the first call is not charged for it."""
    for model in ctx.models:
        for mode in ("sample", "beam search"):
            ctx.call("/generate", "Once", 0.8, 20, "1", model, "", 0, 1.0, "the length", 0, mode, WIDEST_BEAM)
        prompt, text = generated_view(model)
        ctx.call("/inspect", prompt[-50:], text[-100:], model, "")


def run(only: list[str] | None = None, log: Path | None = None, idle_s: float = 30.0,
        app_env: dict[str, str] | None = None, extra: list[Case] | None = None,
        echo: Callable[[str], None] = print) -> Report:
    """Start the app, drive every endpoint (or only some) at its largest inputs, and report."""
    with tempfile.TemporaryDirectory(prefix="charrnn-cost-") as scratch:
        folder = Path(scratch)
        env = {"CHARRNN_CHECKPOINTS": str(CHECKPOINTS), "TMPDIR": str(folder), "HF_HUB_OFFLINE": "1",
               **(app_env or {})}
        proc, url = start_app(log or folder / "app.log", env=env)
        try:
            app = AppProcess(proc.pid)
            client = Client(url, verbose=False, download_files=False)
            ctx = Context(url, client, shipped_models(), Uploads(folder, url))
            warm_up(ctx)
            app.settle()
            warm_rss = app.memory_kb()[0] / KB_PER_MB
            echo(f"RSS after warm-up: {warm_rss:.0f} MB")
            found = endpoints(client)
            missing = sorted(name for name, twin in found.items() if twin is None and name not in RECIPES)
            rows: list[Usage] = []
            for name, twin in found.items():
                recipe = RECIPES.get(name)
                if twin is not None or recipe is None or (only and name not in only):
                    continue  # a private twin of a public endpoint is measured as that endpoint
                for case, make in recipe(ctx):
                    usage = measure(app, name, case, lambda m=make: m(ctx))
                    rows.append(usage)
                    echo(usage.row())
            for case, make in extra or []:
                usage = measure(app, "probe", case, lambda m=make: m(ctx))
                rows.append(usage)
                echo(usage.row())
            client.close()
            app.settle()
            idle_cpu = app.cpu_s()
            time.sleep(idle_s)
            idle_share = (app.cpu_s() - idle_cpu) / idle_s
            idle_rss = app.memory_kb()[0] / KB_PER_MB
            echo(f"RSS after {idle_s:.0f} s idle: {idle_rss:.0f} MB ({idle_rss / warm_rss:.2f}x warm-up); "
                 f"CPU while idle: {100 * idle_share:.1f}% of a core")
            return Report(rows, missing, warm_rss, idle_rss, idle_share)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except Exception:  # noqa: BLE001
                proc.kill()


def calibration_runs(name: str) -> list[tuple[str, Any, Callable[[], Any]]]:
    """(what, charrnn.cost's estimate, the work) for each heavy library function on one shipped model."""
    from charrnn import cost as estimate
    from charrnn.beam import BeamSettings, beam_search
    from charrnn.checkpoint import load_model
    from charrnn.evaluate import evaluate_ids
    from charrnn.insight import activations, influence, score_text

    net = load_model(CHECKPOINTS / name)
    prompt, text = generated_view(name)
    written, long = text[len(prompt):], model_text(name, 30_000)
    beam = BeamSettings(width=WIDEST_BEAM, length=300, no_repeat_ngram=6)
    return [
        ("evaluate 30,000", estimate.evaluate_cost(net, 30_000), lambda: evaluate_ids(net, net.vocab.encode(long))),
        ("score 2,000 after 2,048", estimate.score_cost(net, 2000, len(prompt)),
         lambda: score_text(net, written, prompt)),
        ("influence, window 300", estimate.influence_cost(net, 300, len(text) - 300),
         lambda: influence(net, written, len(written) - 1, prompt)),
        ("activations 4,000", estimate.activations_cost(net, 4000), lambda: activations(net, long[:4000])),
        ("beam 32 x 300", estimate.beam_cost(net, WIDEST_BEAM, 300, len(prompt)),
         lambda: beam_search(net, prompt, beam)),
    ]


def calibrate(models: list[str]) -> None:
    """Each heavy library function run here on every shipped model, its CPU time against charrnn.cost's estimate."""
    import torch

    torch.set_num_threads(limits.GENERATE_THREADS)
    print("| model | work | CPU s | estimate s | ratio |\n| --- | --- | ---: | ---: | ---: |")
    for name in models:
        for what, guess, work in calibration_runs(name):
            start = time.process_time()
            work()
            spent = time.process_time() - start
            print(f"| {name} | {what} | {spent:.2f} | {guess.seconds():.2f} | {spent / guess.seconds():.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", help="api_names to drive (default: all)")
    parser.add_argument("--issue", action="store_true",
                        help="also the hostile-use probes (an abandoned /compare, the largest score and upload)")
    parser.add_argument("--calibrate", action="store_true",
                        help="only the library's heavy functions in this process, against charrnn.cost's estimates")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds idle before the last RSS reading")
    args = parser.parse_args()
    if args.calibrate:
        calibrate(shipped_models())
        return
    report = run(args.only, log=Path(tempfile.gettempdir()) / "charrnn-cost-app.log", idle_s=args.idle,
                 extra=ISSUE_PROBES + ISSUE_ROWS if args.issue else None)
    print("\nworst case per endpoint (CPU: the app process, every thread; on this machine's CPU)")
    print(report.table())
    if report.missing:
        print(f"\nno recipe for: {', '.join(report.missing)}")


if __name__ == "__main__":
    main()
