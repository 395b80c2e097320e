"""Sampling speed and memory with the shipped default model, against other trees and a naive loop in the same run.

1. One reader, 16 and 64 rows, on 1 and 2 threads: this tree's engine against other source
   trees' samplers (--against NAME=PATH; by default ../old, the last commit before the engine,
   when it is checked out there), each timed by bench/speed_worker.py in a process of its own,
   interleaved and repeated, medians printed.
2. charrnn's public API (sample(), stream()) against a naive loop: a one-hot input, one
   nn.LSTM call per character, softmax, torch.multinomial and a Python lookup per character
   (same weights), on the engine's thread count.
3. The first character after a 200-character prompt.
4. The step's products at 16 rows in fp32, fp16 weights and bf16, whether each gives a row the
   same numbers at every batch shape, and what the fp16 weights cost in loss.
5. One row against the memory-bandwidth floor.
6. Resident memory while streaming --long characters.

    python bench/sample_speed.py                                   # ~4-6 minutes on a 2-core CPU
    python bench/sample_speed.py --against old=../old --against main=../main-ref --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from charrnn.checkpoint import CheckpointError, load_model, resolve_shipped  # noqa: E402
from charrnn.engine import ENGINE_THREADS, MAX_ROWS, SHAPES, batch_shapes, sample, stream  # noqa: E402
from charrnn.model import native_bf16  # noqa: E402
from charrnn.sampling import FusedStepper, SampleSettings, fp16_product  # noqa: E402

PROMPT = ("Once upon a time there lived a king and a queen who had no children, and they were very sad about it. "
          "One day, as the queen was sitting by the window, she saw a little bird fly into the garden and sing:\n")
CORPUS = ROOT.parent / "shared" / "corpora" / "grimm_fairy_tales.txt"
ROWS = (1, 16, 64)  # readers generating together in section 1
THREADS = (1, 2)  # torch threads in section 1


# --- 1. against other trees ----------------------------------------------------------------------

class Worker:
    """bench/speed_worker.py running one tree's sampler in a process of its own."""

    def __init__(self, tree: Path, model_dir: Path) -> None:
        env = os.environ | {"PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "speed_worker.py"), str(model_dir)],
                                     env=env, cwd=tree, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def chars_per_s(self, threads: int, rows: int, length: int) -> float:
        self.proc.stdin.write(json.dumps({"threads": threads, "rows": rows, "length": length}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"a speed worker exited with code {self.proc.wait()}")
        return json.loads(line)["chars_per_s"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def against_trees(trees: dict[str, Path], model_dir: Path, length: int, repeats: int) -> dict[tuple, float]:
    """Section 1: every tree at every rows x threads, interleaved (each repeat rotates the trees' order);
    returns the median chars/s by (rows, threads, tree)."""
    workers = {name: Worker(path, model_dir) for name, path in trees.items()}
    names = list(trees)
    runs: dict[tuple, list[float]] = {}
    loads = []
    try:
        for repeat in range(repeats):
            for threads in THREADS:
                for rows in ROWS:
                    order = names[repeat % len(names):] + names[: repeat % len(names)]
                    for name in order:
                        chars = max(50, length // max(1, rows // 4))  # about the same time for each shape
                        runs.setdefault((rows, threads, name), []).append(
                            workers[name].chars_per_s(threads, rows, chars))
            loads.append(os.getloadavg()[0])
    finally:
        for worker in workers.values():
            worker.close()
    print(f"  medians of {repeats} interleaved runs; load average during them {min(loads):.1f}-{max(loads):.1f} "
          f"on {os.cpu_count()} cores")
    print("  " + " | ".join(["rows", "threads", *names, *(f"this / {n}" for n in names[:-1])]))
    for rows in ROWS:
        for threads in THREADS:
            med = {name: statistics.median(runs[rows, threads, name]) for name in names}
            spread = {name: f"{min(runs[rows, threads, name]):,.0f}-{max(runs[rows, threads, name]):,.0f}"
                      for name in names}
            ratios = [f"{med[names[-1]] / med[n]:.2f}x" for n in names[:-1]]
            print("  " + " | ".join([str(rows), str(threads), *(f"{med[n]:,.0f} ({spread[n]})" for n in names),
                                     *ratios]))
    return {key: statistics.median(values) for key, values in runs.items()}


# --- 2. the naive loop ---------------------------------------------------------------------------

def naive_chars_per_s(model, n: int, seed: int = 0) -> float:
    """One-hot in, one nn.LSTM call, softmax, multinomial, dict lookup: per character."""
    vocab_size = len(model.vocab)
    lstm = nn.LSTM(vocab_size, model.hidden_size, model.num_layers)
    with torch.no_grad():
        for name, param in lstm.named_parameters():
            source = getattr(model.rnn, name)
            param.copy_(source @ model.embedding.weight.t() if name == "weight_ih_l0" else source)
    head = model.head
    itos = dict(enumerate(model.vocab.chars))
    torch.manual_seed(seed)
    out_chars, idx, state = [], 1, None
    with torch.no_grad():
        start = time.perf_counter()
        for _ in range(n):
            x = torch.zeros(1, 1, vocab_size)
            x[0, 0, idx] = 1.0
            h, state = lstm(x, state)
            probs = torch.softmax(head(h[0]) / 0.8, -1)
            idx = int(torch.multinomial(probs, 1))
            out_chars.append(itos[idx])
        return n / (time.perf_counter() - start)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def against_naive(model, length: int) -> float:
    """Section 2; returns sample()'s seconds per character for one request."""
    settings = SampleSettings(length=length, temperature=0.8, seed=1)
    naive = naive_chars_per_s(model, length)
    t_sample, _ = timed(lambda: sample(model, "", settings))
    t_stream, _ = timed(lambda: sum(1 for _ in stream(model, "", settings, alternatives=1)))
    naive_again = naive_chars_per_s(model, length)
    naive_mean = (naive + naive_again) / 2
    ours, ours_stream = length / t_sample, length / t_stream
    print(f"  naive loop {naive_mean:,.0f} ({naive:,.0f} before, {naive_again:,.0f} after)")
    print(f"  charrnn sample() {ours:,.0f} -> {ours / naive_mean:.1f}x the naive loop")
    print(f"  charrnn stream() {ours_stream:,.0f} -> {ours_stream / naive_mean:.1f}x "
          "(with each character's probability and top alternative)")
    return t_sample / length


def first_character(model) -> None:
    """Section 3."""
    prompt = PROMPT[:200]
    firsts = []
    for seed in range(20):
        start = time.perf_counter()
        next(iter(stream(model, prompt, SampleSettings(length=10, seed=seed))))
        firsts.append(time.perf_counter() - start)
    firsts.sort()
    print(f"  {len(prompt)}-char prompt: median {firsts[10] * 1e3:.1f} ms, worst {firsts[-1] * 1e3:.1f} ms")


# --- 4. the products -----------------------------------------------------------------------------

def step_matrices(model) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The matrices a step multiplies by, [out, in], with their biases: layer 0's recurrent one, each upper
    layer's input and recurrent ones side by side (as FusedStepper stores them), and the output layer."""
    rnn = model.rnn
    mats = [(rnn.weight_hh_l0, torch.zeros(rnn.weight_hh_l0.shape[0]))]
    for k in range(1, model.num_layers):
        mats.append((torch.cat([getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")], 1),
                     getattr(rnn, f"bias_ih_l{k}") + getattr(rnn, f"bias_hh_l{k}")))
    mats.append((model.head.weight, model.head.bias))
    return [(w.detach().float().contiguous(), b.detach().float()) for w, b in mats]


def products(model, kind: str):
    """A function rows -> the step's products on those inputs ([rows, in] each), stored as kind stores them."""
    mats = step_matrices(model)
    if kind == "fp16":
        packed = [fp16_product(w, b) for w, b in mats]
        if any(p is None for p in packed):
            return None
        return lambda xs: [torch.ops.quantized.linear_dynamic_fp16(x, p) for x, p in zip(xs, packed)]
    dtype = torch.bfloat16 if kind == "bf16" else torch.float32
    try:
        packed = [torch.ops.mkldnn._reorder_linear_weight(w.to(dtype), 16) for w, _ in mats]
    except (AttributeError, RuntimeError):
        packed = [w.to(dtype) for w, _ in mats]
    biases = [b.to(dtype) for _, b in mats]

    def run(xs):
        return [torch.ops.mkldnn._linear_pointwise(x.to(dtype), w, b, "none", [], "") if w.is_mkldnn
                else F.linear(x.to(dtype), w, b) for x, w, b in zip(xs, packed, biases)]
    return run


def inputs(model, rows: int, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, w.shape[1], generator=gen) for w, _ in step_matrices(model)]


def products_seconds(run, xs: list[torch.Tensor], repeats: int = 200) -> float:
    with torch.inference_mode():
        run(xs)
        return min(timed(lambda: run(xs))[0] for _ in range(repeats))


def batch_invariant(run, model, largest: int = 64) -> bool:
    """Whether the products give each row the same numbers at every engine batch shape as at the largest."""
    xs = inputs(model, largest)
    with torch.inference_mode():
        full = run(xs)
        return all(torch.equal(a, b[-rows:]) for rows in SHAPES if rows < largest
                   for a, b in zip(run([x[-rows:].contiguous() for x in xs]), full))


def stream_rows(ids: torch.Tensor, streams: int = 16) -> torch.Tensor:
    """ids cut into streams rows, read side by side."""
    per = len(ids) // streams
    return ids[: per * streams].reshape(streams, per)


def stepped_loss(model, stepper: FusedStepper, rows: torch.Tensor) -> float:
    """Nats per character the stepper's logits give each row's next character, from a zero state."""
    state = ([torch.zeros(len(rows), model.hidden_size)] * model.num_layers,) * 2
    total = 0.0
    with torch.inference_mode():
        for t in range(rows.shape[1] - 1):
            logits, state = stepper.step(rows[:, t], state)
            total += F.cross_entropy(logits, rows[:, t + 1], reduction="sum").item()
    return total / rows[:, 1:].numel()


def model_loss(model, rows: torch.Tensor) -> float:
    """The same from the model's own forward pass in fp32."""
    with torch.inference_mode():
        logits, _ = model(rows)
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), rows[:, 1:].reshape(-1)).item()


def step_loss(model, chars: int) -> None:
    """What the step's arithmetic (fp16 weights, where it uses them) costs in loss, on the end of the Grimm corpus."""
    if not CORPUS.is_file():
        print(f"  (the step's loss: skipped, {CORPUS} is absent)")
        return
    from charrnn.text import normalize, read_corpus

    text = normalize(read_corpus(CORPUS).text, model.ascii_fold)[-chars:]
    rows = stream_rows(model.vocab.encode(text))
    stepper = FusedStepper(model)
    own, stepped = model_loss(model, rows), stepped_loss(model, stepper, rows)
    print(f"  loss on the last {chars:,} characters of {CORPUS.name} (16 streams side by side): the model's own fp32 "
          f"forward {own:.5f}, the engine's step ({stepper.products} products) {stepped:.5f} nats/char "
          f"({stepped - own:+.5f})")


def the_products(model, one_row_s: float) -> float:
    """Section 4; returns the 16-row floor in seconds."""
    flops16 = 2 * 16 * sum(w.numel() for w, _ in step_matrices(model))
    peak = matmul_peak_flops(torch.float32)
    floor16 = flops16 / peak
    print(f"  a 16-row step is {flops16 / 1e6:.0f} MFLOP; this CPU's best fp32 matrix product measured "
          f"{peak / 1e9:.0f} GFLOP/s, so a 16-row step takes at least {floor16 * 1e3:.2f} ms in fp32 and 16 rows can "
          f"be at most {16 * one_row_s / floor16:.1f}x one here")
    print(f"  the step's products (native bf16 here: {native_bf16(model.device)}):")
    for kind in ("fp32", "fp16", "bf16"):
        run = products(model, kind)
        if run is None:
            print(f"    {kind}: not available here")
            continue
        at = {rows: products_seconds(run, inputs(model, rows)) for rows in (1, 16, 64)}
        print(f"    {kind}: " + ", ".join(f"{rows} rows {s * 1e3:.3f} ms" for rows, s in at.items())
              + f"; each row's numbers the same at every batch shape: {batch_invariant(run, model)}")
    step_loss(model, 16_000)
    with torch.inference_mode():
        shapes = batch_shapes(FusedStepper(model), MAX_ROWS)
    print(f"  the engine's start-up check lets it step at these batch shapes (a row's numbers the same at each as at "
          f"{MAX_ROWS}): {', '.join(map(str, shapes))}")
    return floor16


def matmul_peak_flops(dtype: torch.dtype) -> float:
    """The best FLOP/s of a large square matrix product on this CPU, in dtype, with the current threads."""
    a, b = torch.randn(1024, 1024).to(dtype), torch.randn(1024, 1024).to(dtype)
    a @ b
    best = min(timed(lambda: a @ b)[0] for _ in range(10))
    return 2 * 1024**3 / best


# --- 5. bandwidth, 6. memory ---------------------------------------------------------------------

def bandwidth_gb_s(megabytes: float, repeats: int) -> float:
    """Read bandwidth: sum over a float32 buffer of the given size, best of repeats."""
    buf = torch.ones(int(megabytes * 2**20) // 4)
    buf.sum()
    best = min(timed(buf.sum)[0] for _ in range(repeats))
    return buf.numel() * 4 / best / 1e9


def step_seconds(stepper: FusedStepper, model, repeats: int = 300) -> float:
    """The network's step alone (products and gate math) for one row: median seconds."""
    ids = torch.ones(1, dtype=torch.long)
    state = ([torch.zeros(1, model.hidden_size)] * model.num_layers,) * 2
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            stepper.step(ids, state)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def against_bandwidth(model, engine_chars_per_s: dict[int, float]) -> None:
    """Section 5: the bytes a one-row step reads over the read bandwidth measured here, at each thread count,
    against the network's step alone and the engine's time per character (section 1's median for this tree)."""
    stepper = FusedStepper(model)
    weight_bytes = stepper.weight_bytes()
    print(f"  weights read per step ({stepper.products} products): {weight_bytes / 1e6:.2f} MB")
    for threads in THREADS:
        torch.set_num_threads(threads)
        dram = bandwidth_gb_s(1024, 3)
        cache = bandwidth_gb_s(weight_bytes / 2**20, 50)
        floor = weight_bytes / (cache * 1e9)
        network = step_seconds(stepper, model)
        engine = 1 / engine_chars_per_s[threads] if threads in engine_chars_per_s else float("nan")
        print(f"  {threads} thread(s): read bandwidth {dram:.1f} GB/s from DRAM (1 GB buffer), {cache:.1f} GB/s for a "
              f"buffer the size of the weights -> a one-row step takes at least {floor * 1e3:.3f} ms; the network's "
              f"step alone {network * 1e3:.3f} ms ({floor / network:.0%} of the floor's speed), the engine's time per "
              f"character {engine * 1e3:.3f} ms ({floor / engine:.0%})")
    torch.set_num_threads(ENGINE_THREADS)


def rss_mb() -> tuple[float, float]:
    """Current and peak resident memory of this process, in MB (Linux /proc)."""
    fields = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
    except OSError:
        return float("nan"), float("nan")
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def streaming_memory(model, length: int) -> None:
    rss = {}
    count = 0
    for piece in stream(model, "", SampleSettings(length=length, temperature=0.8, seed=2), alternatives=1):
        count += 1
        del piece
        if count in (1_000, length):
            rss[count] = rss_mb()
    for n, (now, peak) in rss.items():
        print(f"  after {n:>7,} chars: RSS {now:.1f} MB (peak so far {peak:.1f} MB)")
    if len(rss) == 2:
        (a, _), (b, _) = rss.values()
        print(f"  growth from 1k to {length // 1000}k chars: {b - a:+.1f} MB")


def parse_trees(pairs: list[str] | None) -> dict[str, Path]:
    """--against NAME=PATH pairs (default: old=../old when it exists), then this tree as "this"."""
    if pairs is None:
        pairs = [f"old={ROOT.parent / 'old'}"] if (ROOT.parent / "old" / "charrnn").is_dir() else []
    trees = {}
    for pair in pairs:
        name, _, path = pair.partition("=")
        if not (Path(path) / "charrnn").is_dir():
            raise SystemExit(f"--against {pair}: no charrnn package under {path}")
        trees[name] = Path(path).resolve()
    return trees | {"this": ROOT}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fairy-tales")
    parser.add_argument("--length", type=int, default=1500, help="characters per one-row speed measurement")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs of each tree in section 1")
    parser.add_argument("--against", action="append", metavar="NAME=PATH",
                        help="another source tree to time in section 1 (repeatable; default old=../old)")
    parser.add_argument("--long", type=int, default=100_000, help="characters for the memory run")
    args = parser.parse_args()
    torch.set_num_threads(ENGINE_THREADS)  # the engine's own count, for the naive loop and the products below
    try:
        model_dir = resolve_shipped(args.model)
        model = load_model(model_dir, device="cpu")
    except (CheckpointError, OSError, ValueError) as exc:
        print(f"skipped: the model {args.model!r} could not be loaded ({exc})")
        return 0
    model.eval()
    print(f"model {args.model}: {model.num_layers}x{model.hidden_size} {model.cell}, vocabulary {len(model.vocab)}, "
          f"{model.num_parameters():,} parameters; torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")
    sample(model, "", SampleSettings(length=50, seed=1))  # warm-up: first calls allocate

    print("\n1. chars/s of rows generated together (one request each, seeds 1, 2, ...), by source tree")
    medians = against_trees(parse_trees(args.against), Path(model_dir), args.length, args.repeats)
    print(f"\n2. one request against the naive loop, chars/s ({ENGINE_THREADS} thread)")
    one_row_s = against_naive(model, args.length)
    print("\n3. time to the first new character after a 200-character prompt (stream(), median of 20)")
    first_character(model)
    print("\n4. the products")
    the_products(model, one_row_s)
    print("\n5. one row against the memory-bandwidth floor")
    against_bandwidth(model, {threads: medians[1, threads, "this"] for threads in THREADS})
    print(f"\n6. memory while streaming {args.long:,} characters (stream(), one request)")
    streaming_memory(model, args.long)
    return 0


if __name__ == "__main__":
    sys.exit(main())
