"""Sampling speed and memory with the shipped default model, against a naive loop in the same run.

The naive loop is the seed article's: a one-hot input, one nn.LSTM call per character,
softmax, torch.multinomial and a Python lookup per character (same weights: the one-hot
input matrix is the embedding folded into the first layer). charrnn's side is its public
API: charrnn.sampling.sample (batch) and stream (what the CLI and the app use).

    python bench/sample_speed.py            # ~1-2 minutes on a 2-core CPU
    python bench/sample_speed.py --long 20000   # shorter memory run
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from charrnn import sampling  # noqa: E402
from charrnn.checkpoint import CheckpointError, load_model, resolve_shipped  # noqa: E402
from charrnn.device import pick_threads  # noqa: E402
from charrnn.sampling import FusedStepper, SampleSettings, sample, stream  # noqa: E402
from charrnn.text import normalize, read_corpus  # noqa: E402

QUALITY_TEXT = ROOT.parent / "shared" / "corpora" / "grimm_fairy_tales.txt"  # its last 10% is the default model's validation text
PROMPT = ("Once upon a time there lived a king and a queen who had no children, and they were very sad about it. "
          "One day, as the queen was sitting by the window, she saw a little bird fly into the garden and sing:\n")


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


def bandwidth_gb_s(megabytes: int, repeats: int) -> float:
    """Read bandwidth: sum over a float32 buffer of the given size, best of repeats."""
    buf = torch.ones(megabytes * 2**20 // 4)
    buf.sum()
    best = min(timed(buf.sum)[0] for _ in range(repeats))
    return buf.numel() * 4 / best / 1e9


def matmul_peak_flops(dtype: torch.dtype) -> float:
    """The best FLOP/s of a large square matrix product on this CPU, in dtype, with the current threads."""
    a, b = torch.randn(1024, 1024).to(dtype), torch.randn(1024, 1024).to(dtype)
    a @ b
    best = min(timed(lambda: a @ b)[0] for _ in range(10))
    return 2 * 1024**3 / best


def products_at_rows(stepper: FusedStepper, rows: int, repeats: int = 200) -> float:
    """Seconds for one step's matrix products alone, each as the stepper does it, at this many rows
    (a batched stepper keeps its matrices whole, [out, in])."""
    table_rows = stepper.table.index_select(0, torch.arange(rows) % stepper.table.shape[0])
    inputs = [(table_rows, torch.randn(rows, stepper.model.hidden_size), stepper.w_hh0)]
    inputs += [(b, torch.randn(rows, 2 * stepper.model.hidden_size), w) for b, w in zip(stepper.b_cat, stepper.w_cat)]
    top = torch.randn(rows, stepper.w_head.shape[0])

    def run() -> None:
        for bias, x, w in inputs:
            stepper._project(bias, x, w)
        stepper.logits(top)

    with torch.inference_mode():
        run()
        return min(timed(run)[0] for _ in range(repeats))


def batched_loss_gap(model, text: str, rows: int = 16, chars: int = 30_000) -> tuple[float, float, int]:
    """Loss (nats/char) of the model reading the last chars of text as rows streams, through the fp32
    step and through the batched step sample() uses (bf16 where the CPU has it): what its speed costs."""
    ids = model.vocab.encode(normalize(text, model.ascii_fold)[-chars:])
    length = len(ids) // rows
    ids = ids[: rows * length].view(rows, length)
    losses = []
    for stepper in (FusedStepper(model), FusedStepper.for_model(model, rows)):
        state = (torch.zeros(model.num_layers, rows, model.hidden_size), torch.zeros(model.num_layers, rows, model.hidden_size))
        total = 0.0
        with torch.inference_mode():
            for t in range(length - 1):
                logits, state = stepper.step(ids[:, t], state)
                total += F.cross_entropy(logits, ids[:, t + 1], reduction="sum").item()
        losses.append(total / (rows * (length - 1)))
    return losses[0], losses[1], rows * (length - 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fairy-tales")
    parser.add_argument("--length", type=int, default=2000, help="characters per speed measurement")
    parser.add_argument("--long", type=int, default=100_000, help="characters for the memory run")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: one per core, or one when the machine is busy, like the CLI)")
    args = parser.parse_args()
    if pick_threads(args.threads) == 1 and args.threads is None:
        print("using 1 torch thread (the machine is busy, or has one core), as charrnn's CLI would; --threads to override")
    try:
        model = load_model(resolve_shipped(args.model), device="cpu")
    except (CheckpointError, OSError, ValueError) as exc:
        print(f"skipped: the model {args.model!r} could not be loaded ({exc})")
        return 0
    model.eval()
    stepper = FusedStepper(model)
    print(f"model {args.model}: {model.num_layers}x{model.hidden_size} {model.cell}, vocabulary {len(model.vocab)}, "
          f"{model.num_parameters():,} parameters; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    settings = SampleSettings(length=args.length, temperature=0.8, seed=1)
    sample(model, "", SampleSettings(length=50, seed=1))  # warm-up: first calls allocate

    naive = naive_chars_per_s(model, args.length)
    t_batch1, _ = timed(lambda: sample(model, "", settings))
    t_stream, _ = timed(lambda: sum(1 for _ in stream(model, "", settings, alternatives=1)))
    naive_again = naive_chars_per_s(model, args.length)
    naive_mean = (naive + naive_again) / 2
    ours, ours_stream = args.length / t_batch1, args.length / t_stream
    print("\n1. batch 1, chars/s")
    print(f"  naive loop {naive_mean:,.0f} ({naive:,.0f} before, {naive_again:,.0f} after)")
    print(f"  charrnn sample() {ours:,.0f} -> {ours / naive_mean:.1f}x the naive loop")
    print(f"  charrnn stream() {ours_stream:,.0f} -> {ours_stream / naive_mean:.1f}x (with each character's probability and top alternative)")

    print("\n2. time to the first new character after a 200-character prompt (stream(), median of 20)")
    prompt = PROMPT[:200]
    firsts = []
    for seed in range(20):
        start = time.perf_counter()
        next(iter(stream(model, prompt, SampleSettings(length=10, seed=seed))))
        firsts.append(time.perf_counter() - start)
    firsts.sort()
    print(f"  {len(prompt)}-char prompt: median {firsts[10] * 1e3:.1f} ms, worst {firsts[-1] * 1e3:.1f} ms")

    print("\n3. batch 16 against batch 1 (sample(), chars/s summed over the batch)")
    t16, _ = timed(lambda: sample(model, "", settings, num_samples=16))
    ours16 = 16 * args.length / t16
    print(f"  batch 16: {ours16:,.0f} chars/s -> {ours16 / ours:.1f}x batch 1")
    with mock.patch.object(sampling, "native_bf16", lambda _device: False):  # the steps a CPU without native bf16 runs
        t16_fp32, _ = timed(lambda: sample(model, "", settings, num_samples=16))
    fp32_16 = 16 * args.length / t16_fp32
    print(f"  batch 16 with fp32 steps, as on a CPU without native bf16: {fp32_16:,.0f} chars/s -> {fp32_16 / ours:.1f}x batch 1")
    # The ceiling: a batch-16 step multiplies every weight by 16 rows, so it cannot be faster than
    # those FLOPs at the best matrix-product rate this CPU reaches in the dtype the batched step uses.
    batched = FusedStepper.for_model(model, 16)
    flops16 = 2 * 16 * sum(w.numel() for w in [batched.w_hh0, *batched.w_cat, batched.w_head]) if batched.lstm else float("nan")
    peak = matmul_peak_flops(batched.dtype)
    floor16 = flops16 / peak
    print(f"  a batch-16 step is {flops16 / 1e6:.0f} MFLOP, nearly all in {batched.dtype} (the small output layer stays fp32); "
          f"this CPU's best {batched.dtype} matrix product "
          f"measured {peak / 1e9:.0f} GFLOP/s, so a step takes at least {floor16 * 1e3:.2f} ms "
          f"and batch 16 can be at most {16 * (t_batch1 / args.length) / floor16:.1f}x batch 1 here "
          f"(measured step: {t16 / args.length * 1e3:.2f} ms)")
    if batched.lstm and QUALITY_TEXT.is_file():
        exact, fast, scored = batched_loss_gap(model, read_corpus(QUALITY_TEXT).text)
        print(f"  what it costs: on the last {scored:,} characters of {QUALITY_TEXT.name}, read as 16 streams, the batched "
              f"{batched.dtype} steps' loss is {fast:.5f} nats/char against the fp32 steps' {exact:.5f} ({fast - exact:+.1e})")
    if batched.lstm:
        products = products_at_rows(batched, 16)
        print(f"  the step's own matrix products at 16 rows take {products * 1e3:.2f} ms ({flops16 / products / 1e9:.0f} GFLOP/s), "
              f"so with nothing else in the step batch 16 would be {16 * (t_batch1 / args.length) / products:.1f}x batch 1")

    print("\n4. batch 1 against the memory-bandwidth floor")
    step_s = t_batch1 / args.length
    weight_bytes = stepper.weight_bytes()
    dram = bandwidth_gb_s(1024, 3)
    cache = bandwidth_gb_s(max(1, round(weight_bytes / 2**20)), 50)
    achieved = weight_bytes / step_s / 1e9
    print(f"  weights read per step {weight_bytes / 1e6:.1f} MB, {step_s * 1e3:.3f} ms per step -> {achieved:.1f} GB/s")
    print(f"  measured read bandwidth: {dram:.1f} GB/s from DRAM (1 GB buffer), {cache:.1f} GB/s for a buffer the size of the weights (cache)")
    print(f"  -> {achieved / dram:.0%} of DRAM bandwidth, {achieved / cache:.0%} of the cache-resident read speed")
    floor1 = weight_bytes / (cache * 1e9)
    print(f"  with both steps at these floors (batch 1 reading its weights at the cache-resident speed, {floor1 * 1e3:.3f} ms; "
          f"batch 16 multiplying at the best rate above, {floor16 * 1e3:.3f} ms), batch 16 would be {16 * floor1 / floor16:.1f}x batch 1")

    print(f"\n5. memory while streaming {args.long:,} characters (stream(), batch 1)")
    rss = {}
    count = 0
    for piece in stream(model, "", SampleSettings(length=args.long, temperature=0.8, seed=2), alternatives=1):
        count += 1
        del piece
        if count in (1_000, args.long):
            rss[count] = rss_mb()
    for n, (now, peak) in rss.items():
        print(f"  after {n:>7,} chars: RSS {now:.1f} MB (peak so far {peak:.1f} MB)")
    if len(rss) == 2:
        (a, _), (b, _) = rss.values()
        print(f"  growth from 1k to {args.long // 1000}k chars: {b - a:+.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
