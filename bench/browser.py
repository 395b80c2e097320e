"""The model generating in the visitor's browser (`charrnn export --format web`), against the server's engine.

Exports MODEL as a web folder, serves it from this process on 127.0.0.1 (counting the bytes sent and the CPU time
spent serving) and drives Debian's headless Chromium through Playwright. Prints in one run:
- the server's one-visitor speed: the engine in this process, one request of LENGTH characters at temperature 0.8,
  measured before and after the browser runs;
- the browser's speed for the same request through the page's runtime (charrnn/web: products in WebAssembly SIMD,
  and the same with plain JavaScript products), with its ratio to the server's;
- onnxruntime-web (its wasm build, one thread) stepping the same fp16 weights exported as ONNX, greedily, where
  `make ort-web` has fetched it into artifacts/;
- time to the first character: after Generate on a page whose model is loaded, and for a link with run=1 once the
  browser has the page cached (from the navigation to the first character);
- the bytes a visit downloads the first time and the second time (the browser's own cache);
- CROWD tabs generating at once: the host's CPU time serving them, and the characters they wrote per second together;
- the web app (`python app.py`, a process of its own) with CROWD tabs generating at once through the Generate tab's
  Run in my browser switch: the app's CPU seconds over that window beside an idle window of the same length (the
  same tabs open, doing nothing), and beside the same pages generating through the server (the switch off).
Speeds are steady-state: characters after the first, over the time after the first. Targets (fairy-tales):
browser >= 50% of the server's one-visitor chars/s; first character within 1 s once cached; the first download at
most 15 MB and nothing the second time.

    python bench/browser.py                          # ~2 minutes on a 2-core CPU
    python bench/browser.py --model tang-poems --length 1000
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from charrnn.checkpoint import load_model, resolve_shipped  # noqa: E402
from charrnn.engine import GenerationEngine  # noqa: E402
from charrnn.export import export_model  # noqa: E402
from charrnn.sampling import SampleSettings  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
ORT_WEB = ROOT / "artifacts" / "onnxruntime-web"  # `make ort-web`
PROMPT = "Once upon a time"
TEMPERATURE = 0.8
TARGET_RATIO, TARGET_FIRST_S, TARGET_DOWNLOAD_MB = 0.5, 1.0, 15.0

# The page's runtime through its module, as the Generate tab will call it: the model loaded once per page (and
# warmed up by a short generation), then steady-state chars/s and the time from generate() to the first character.
RUN_PAGE_RUNTIME = """async ({prompt, length, temperature, kernel, seed}) => {
  if (!window.benchModel) {
    const {BrowserModel} = await import("./charrnn-web.js");
    window.benchModel = await BrowserModel.load(".", {kernel});
    await window.benchModel.generate({prompt, temperature, length: 50, seed: 0}, document.createElement("div")).done;
  }
  const chunks = [];
  const run = window.benchModel.generate({prompt, temperature, length, seed}, document.createElement("div"),
                                         {onText: (text) => chunks.push([performance.now(), text.length])});
  const result = await run.done;
  const seconds = (chunks.at(-1)[0] - chunks[0][0]) / 1000;
  return {kernel: window.benchModel.info.kernel, firstCharMs: result.firstCharMs,
          charsPerS: (result.chars - chunks[0][1]) / seconds};
}"""

# onnxruntime-web on the exported graph. Loading creates the session and reads the prompt: the time to the first
# character's logits. A run is then greedy: the prompt in one call, then one character a call.
LOAD_ORT_WEB = """async ({prompt}) => {
  const started = performance.now();
  const ort = await import("./ort.wasm.min.mjs");
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = new URL("./", location.href).href;
  const settings = await (await fetch("charrnn.json")).json();
  const session = await ort.InferenceSession.create("model.onnx", {executionProviders: ["wasm"]});
  const index = new Map(settings.vocab.map((ch, i) => [ch, i]));
  const shape = [settings.num_layers, 1, settings.hidden_size];
  const zeros = () => new ort.Tensor("float32", new Float32Array(shape[0] * shape[2]), shape);
  const ids = BigInt64Array.from(Array.from(prompt), (ch) => BigInt(index.get(ch) ?? 0));
  window.ortRun = async (length) => {
    let state = {h: zeros(), c: zeros()}, chars = new ort.Tensor("int64", ids, [1, ids.length]);
    const times = [];
    for (let k = 0; k < length; k++) {
      const out = await session.run({chars, ...state});
      state = {h: out.h_out, c: out.c_out};
      const logits = out.logits.data;
      let best = 1;
      for (let j = 2; j < logits.length; j++) if (logits[j] > logits[best]) best = j;
      times.push(performance.now());
      chars = new ort.Tensor("int64", BigInt64Array.of(BigInt(best)), [1, 1]);
    }
    return {firstCharMs: times[0] - started, charsPerS: (length - 1) / ((times.at(-1) - times[0]) / 1000)};
  };
  return (await window.ortRun(1)).firstCharMs;
}"""

# When the page first shows a generated character, in ms since the navigation began.
FIRST_CHAR_PROBE = """
window.__firstChar = null;
new MutationObserver(() => {
  const output = document.getElementById("output");
  if (window.__firstChar === null && output && output.dataset.done === "false" && output.lastChild?.nodeType === 3
      && output.lastChild.length) {
    window.__firstChar = performance.now();
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    """A static host that adds up what it sends and the CPU time its threads spend answering."""

    def log_message(self, format, *args):  # noqa: A002, ARG002
        pass

    def handle(self) -> None:
        stats = self.server.stats
        start = time.thread_time()
        write = self.wfile.write

        def counted(data):
            with stats["lock"]:
                stats["bytes"] += len(data)
            return write(data)

        self.wfile.write = counted
        try:
            super().handle()
        finally:
            with stats["lock"]:
                stats["cpu_s"] += time.thread_time() - start

    def send_response(self, code, message=None):
        with self.server.stats["lock"]:
            self.server.stats["status"][code] = self.server.stats["status"].get(code, 0) + 1
        super().send_response(code, message)


class Host:
    def __init__(self, root: Path) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      functools.partial(CountingHandler, directory=str(root)))
        self.server.stats = {"lock": threading.Lock()}
        self.reset()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def reset(self) -> dict:
        """The counts since the last reset, and zero them."""
        stats = self.server.stats
        with stats["lock"]:
            taken = {k: v for k, v in stats.items() if k != "lock"}
            stats.update(bytes=0, cpu_s=0.0, status={})
        return taken

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join()


def cpu_name() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    extras = [f for f in ("avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return f"{name} ({', '.join(extras) or 'no AVX-512'}), {len(info.split('processor')) - 1} cores"


def server_run(engine: GenerationEngine, length: int, seed: int) -> tuple[float, float]:
    """One request through the engine: steady-state chars/s and seconds to the first character."""
    start = time.perf_counter()
    request = engine.submit(PROMPT, SampleSettings(length=length, temperature=TEMPERATURE, seed=seed))
    first, count = None, 0
    for _ in request:
        count += 1
        if first is None:
            first = time.perf_counter()
    return (count - 1) / (time.perf_counter() - first), first - start


def paired_speeds(browser, model, url: str, ort_page, length: int, repeats: int) -> dict:
    """The server's engine, the page's runtime and onnxruntime-web (where ort_page is given) taking turns, repeats
    times each on the same request, so that each turn meets the same load on the machine; medians, and the median
    of each turn's ratio to the server."""
    engine = GenerationEngine.for_model(model)
    engine.submit(PROMPT, SampleSettings(length=50, temperature=TEMPERATURE, seed=0)).text()  # warm-up
    page = browser.new_page()
    page.goto(f"{url}/index.html")
    server, runtime, ort = [], [], []
    for k in range(repeats):
        server.append(server_run(engine, length, seed=1 + k))
        runtime.append(page.evaluate(RUN_PAGE_RUNTIME, {"prompt": PROMPT, "length": length, "seed": 1 + k,
                                                        "temperature": TEMPERATURE, "kernel": None}))
        if ort_page is not None:
            ort.append(ort_page.evaluate("(length) => window.ortRun(length)", length))
    page.close()
    median = statistics.median
    return {"server": median(s for s, _ in server), "server_first_ms": median(f for _, f in server) * 1000,
            "browser": median(r["charsPerS"] for r in runtime), "kernel": runtime[0]["kernel"],
            "browser_first_ms": median(r["firstCharMs"] for r in runtime),
            "ratios": [r["charsPerS"] / s for r, (s, _) in zip(runtime, server)],
            "ort": median(r["charsPerS"] for r in ort) if ort else None,
            "ort_ratios": [r["charsPerS"] / s for r, (s, _) in zip(ort, server)]}


def plain_js_speed(browser, url: str, length: int) -> dict:
    """The page's runtime with plain JavaScript products instead of WebAssembly SIMD, once."""
    page = browser.new_page()
    page.goto(f"{url}/index.html")
    run = page.evaluate(RUN_PAGE_RUNTIME, {"prompt": PROMPT, "length": length, "seed": 1, "temperature": TEMPERATURE,
                                           "kernel": "js"})
    page.close()
    return run


def visit(context, url: str, length: int) -> float:
    """Opens a link with run=1 and waits for its text; ms from the navigation to the first character."""
    page = context.new_page()
    page.add_init_script(FIRST_CHAR_PROBE)
    query = urlencode({"prompt": PROMPT, "temperature": TEMPERATURE, "length": length, "seed": 1, "run": 1})
    page.goto(f"{url}/?{query}")
    page.wait_for_selector("#output[data-done=true]", timeout=120_000)
    first = page.evaluate("window.__firstChar")
    page.close()
    return first


def downloads(browser, host: Host, url: str, length: int) -> list[tuple[dict, float]]:
    """Two visits in one fresh browser profile: what each downloaded, and its time to the first character."""
    context = browser.new_context()
    host.reset()
    visits = []
    for _ in range(2):
        first_ms = visit(context, url, length)
        visits.append((host.reset(), first_ms))
    context.close()
    return visits


def crowd(browser, host: Host, url: str, tabs: int, length: int) -> tuple[dict, float, float]:
    """tabs pages of one profile (cache warm) generating at once; the host's counts, the wall time, chars/s."""
    context = browser.new_context()
    visit(context, url, 20)  # the cache filled, as for a returning visitor
    pages = [context.new_page() for _ in range(tabs)]
    host.reset()
    start = time.perf_counter()
    for k, page in enumerate(pages):
        query = urlencode({"prompt": PROMPT, "temperature": TEMPERATURE, "length": length, "seed": k, "run": 1})
        page.goto(f"{url}/?{query}")
    for page in pages:
        page.wait_for_selector("#output[data-done=true]", timeout=600_000)
    wall = time.perf_counter() - start
    counts = host.reset()
    context.close()
    return counts, wall, tabs * length / wall


def ort_web(browser, root: Path, model, host: Host):
    """A page running onnxruntime-web on the same fp16 weights as ONNX, loaded from the browser's cache (a first
    visit filled it), with its first download in MB and its time to the first character; None where `make ort-web`
    has not fetched it."""
    if not (ORT_WEB / "ort-wasm-simd-threaded.wasm").exists():
        return None
    folder = export_model(model, root / "ort", "onnx", dtype="fp16")
    for item in ORT_WEB.iterdir():
        shutil.copyfile(item, folder / item.name)
    (folder / "index.html").write_text("<!doctype html><title>onnxruntime-web</title>")
    context = browser.new_context()
    host.reset()
    first = context.new_page()
    first.goto(f"{host.url}/ort/index.html")
    first.evaluate(LOAD_ORT_WEB, {"prompt": PROMPT})
    download = host.reset()["bytes"] / 1e6
    first.close()
    page = context.new_page()
    page.goto(f"{host.url}/ort/index.html")
    first_ms = page.evaluate(LOAD_ORT_WEB, {"prompt": PROMPT})
    return page, download, first_ms


def mb(counts: dict) -> str:
    codes = ", ".join(f"{n} x {code}" for code, n in sorted(counts["status"].items()))
    return f"{counts['bytes'] / 1e6:.2f} MB ({codes or 'no requests'})"


def verdict(ok: bool) -> str:
    return "meets the target" if ok else "MISSES the target"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="fairy-tales", help="shipped model name or model directory")
    parser.add_argument("--length", type=int, default=2000, help="characters per timed generation")
    parser.add_argument("--repeats", type=int, default=5, help="turns of the server and the browser (medians shown)")
    parser.add_argument("--crowd", type=int, default=16, help="tabs generating at once (0: skip)")
    parser.add_argument("--app-crowd", type=int, default=16,
                        help="tabs of the web app generating at once through its switch (0: skip)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"no chromium at {CHROMIUM}: run `make browser`")
    model = load_model(resolve_shipped(args.model), device="cpu")
    print(f"CPU: {cpu_name()}; load average before: {os.getloadavg()[0]:.1f}; model {args.model}, prompt {PROMPT!r}, "
          f"temperature {TEMPERATURE}, {args.length:,} characters")
    root = Path(tempfile.mkdtemp(prefix="charrnn-browser-bench-"))
    host = Host(root)
    try:
        export_model(model, root / "page", "web", name=str(args.model))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            report(args, browser, model, root, host)
            if args.app_crowd:
                report_app(browser, args.app_crowd)
            browser.close()
    finally:
        host.close()
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def report(args, browser, model, root: Path, host: Host) -> None:
    url = f"{host.url}/page"
    ort = ort_web(browser, root, model, host)
    speeds = paired_speeds(browser, model, url, ort[0] if ort else None, args.length, args.repeats)
    server = speeds["server"]
    ratio = statistics.median(speeds["ratios"])
    print(f"server, the engine in-process, one visitor: {server:,.0f} chars/s, first character "
          f"{speeds['server_first_ms']:.0f} ms")
    print(f"browser, the page's runtime ({speeds['kernel']}): {speeds['browser']:,.0f} chars/s; {ratio:.0%} of the "
          f"server (median of {args.repeats} turns: {', '.join(f'{r:.0%}' for r in speeds['ratios'])}) "
          f"[{verdict(ratio >= TARGET_RATIO)} >= {TARGET_RATIO:.0%}]; first character "
          f"{speeds['browser_first_ms']:.0f} ms after generate()")
    if ort is None:
        print("onnxruntime-web: not measured (`make ort-web` fetches it)")
    else:
        print(f"onnxruntime-web, 1 thread, greedy, the same fp16 weights: {speeds['ort']:,.0f} chars/s; "
              f"{statistics.median(speeds['ort_ratios']):.0%} of the server (turns: "
              f"{', '.join(f'{r:.0%}' for r in speeds['ort_ratios'])}); first character {ort[2]:.0f} ms on a cached "
              f"visit (its session created); first download {ort[1]:.2f} MB")
        ort[0].context.close()
    plain = plain_js_speed(browser, url, max(100, args.length // 5))
    print(f"browser, the page's runtime with plain JavaScript products: {plain['charsPerS']:,.0f} chars/s = "
          f"{plain['charsPerS'] / server:.0%}; first character {plain['firstCharMs']:.0f} ms")
    (first_counts, first_visit_ms), (second_counts, cached_ms) = downloads(browser, host, url, 200)
    print(f"a link with run=1: first visit {first_visit_ms:.0f} ms to the first character; once cached "
          f"{cached_ms:.0f} ms [{verdict(cached_ms <= TARGET_FIRST_S * 1000)} <= {TARGET_FIRST_S:.0f} s]")
    print(f"download: first visit {mb(first_counts)} "
          f"[{verdict(first_counts['bytes'] <= TARGET_DOWNLOAD_MB * 1e6)} <= {TARGET_DOWNLOAD_MB:.0f} MB]; "
          f"second visit {mb(second_counts)} [{verdict(second_counts['bytes'] < 10_000)}: no bodies]")
    if args.crowd:
        length = max(100, args.length // 4)
        counts, wall, together = crowd(browser, host, url, args.crowd, length)
        print(f"{args.crowd} tabs at once, {length:,} characters each (one profile, cached): the host spent "
              f"{counts['cpu_s'] * 1000:.0f} ms of CPU serving {mb(counts)} in {wall:.1f} s; the tabs wrote "
              f"{together:,.0f} chars/s together on this machine's own cores")



# --- the web app's switch ------------------------------------------------------------------------

def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_app():
    """`python app.py` on the shipped models as a process of its own; (process, url) once it answers."""
    sys.path.insert(0, str(ROOT / "tests"))
    from app_testing import start_app_process

    log = Path(tempfile.mkstemp(prefix="charrnn-bench-app-", suffix=".log")[1])
    return start_app_process(resolve_shipped("fairy-tales").parent, {}, log)


def app_pages(browser, url: str, tabs: int) -> list:
    """tabs pages of the app, each in a profile of its own (as many visitors: a profile holds at most 6
    connections to a host, and each page of the app keeps one open), the switch on in each and the model loaded
    by a first generation."""
    pages = []
    for _ in range(tabs):
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        context.set_default_timeout(300_000)  # the app's pages open slowly on a busy 2-core machine
        page = context.new_page()
        page.goto(url)
        page.get_by_label("Run in my browser").check()
        page.wait_for_selector("#browser-runtime:has-text('writes in your browser')", timeout=300_000)
        pages.append(page)
    run_all(pages, "#browser-generate-btn")
    return pages


APP_LENGTH = 500  # the Generate tab's default length
CLEAR_OUTPUT = """() => { const box = document.querySelector('#generated textarea');
  box.value = ''; box.dataset.done = ''; box.dispatchEvent(new Event('input', {bubbles: true})); }"""
OUTPUT_WRITTEN = "(n) => document.querySelector('#generated textarea').value.length >= n"


def run_all(pages: list, button: str) -> float:
    """Clicks button in every page at once and waits until every page's text is written; the wall time."""
    for page in pages:  # an empty Generate box, not done
        page.evaluate(CLEAR_OUTPUT)
    start = time.perf_counter()
    for page in pages:
        page.locator(button).click()
    for page in pages:  # the prompt and the page's default length of characters after it
        page.wait_for_function(OUTPUT_WRITTEN, arg=len(PROMPT) + APP_LENGTH, timeout=600_000)
    return time.perf_counter() - start


def report_app(browser, tabs: int) -> None:
    proc, url = start_app()
    try:
        pages = app_pages(browser, url, tabs)
        before = process_cpu_s(proc.pid)
        wall = run_all(pages, "#browser-generate-btn")
        busy = process_cpu_s(proc.pid) - before
        chars = sum(len(page.locator("#generated textarea").input_value()) for page in pages)
        before = process_cpu_s(proc.pid)
        time.sleep(wall)
        idle = process_cpu_s(proc.pid) - before
        for page in pages:
            page.get_by_label("Run in my browser").uncheck()
        before = process_cpu_s(proc.pid)
        server_wall = run_all(pages, "#generate-btn")
        server = process_cpu_s(proc.pid) - before
        print(f"the web app, {tabs} browsers generating at once through Run in my browser ({chars:,} characters in "
              f"{wall:.1f} s): the app's process spent {busy:.2f} CPU s; idle, the same pages open, over as long: "
              f"{idle:.2f} CPU s; the same pages generating through the server: {server:.2f} CPU s in "
              f"{server_wall:.1f} s")
        for page in pages:
            page.context.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
