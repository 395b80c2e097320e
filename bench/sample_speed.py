"""Sampling speed and memory with the shipped default model, against a naive loop in the same run.

The naive loop is the seed article's: a one-hot input, one nn.LSTM call per character,
softmax, torch.multinomial and a Python lookup per character (same weights: the one-hot
input matrix is the embedding folded into the first layer), on the engine's thread count.
charrnn's side is its public API, all through the generation engine: charrnn.sample (rows
generated together) and stream (with each character's probability and alternatives).
Section 3 also measures the arithmetic the engine does not use: bf16 products, faster on a
CPU with native bf16, but not batch-invariant (a row's numbers change with the batch shape).

    python bench/sample_speed.py            # ~1-2 minutes on a 2-core CPU
    python bench/sample_speed.py --long 20000   # shorter memory run
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from charrnn.checkpoint import CheckpointError, load_model, resolve_shipped  # noqa: E402
from charrnn.engine import ENGINE_THREADS, SHAPES, sample, stream  # noqa: E402
from charrnn.model import native_bf16  # noqa: E402
from charrnn.sampling import FusedStepper, SampleSettings, packed_for_onednn  # noqa: E402

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


def recurrent_matrices(model) -> list[torch.Tensor]:
    """The matrices a step multiplies by, [out, in]: layer 0's recurrent one, then each upper layer's input and
    recurrent ones side by side (as FusedStepper stores them, before packing)."""
    rnn = model.rnn
    upper = [torch.cat([getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")], 1)
             for k in range(1, model.num_layers)]
    return [w.detach().float() for w in [rnn.weight_hh_l0, *upper]]


def products_at_rows(model, rows: int, dtype: torch.dtype = torch.float32, repeats: int = 200) -> float:
    """Seconds for one step's recurrent matrix products alone at this many rows, packed for oneDNN
    as the stepper packs them, in dtype (fp32 is what the engine runs)."""
    weights = [packed_for_onednn(w.to(dtype).contiguous()) for w in recurrent_matrices(model)]
    inputs = [torch.randn(rows, w.shape[1]).to(dtype) for w in recurrent_matrices(model)]

    def run() -> list[torch.Tensor]:
        return [torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "") if w.is_mkldnn else x @ w.t()
                for x, w in zip(inputs, weights)]

    with torch.inference_mode():
        run()
        return min(timed(run)[0] for _ in range(repeats))


def batch_invariant(model, dtype: torch.dtype, largest: int = 64) -> bool:
    """Whether the recurrent products give each row the same numbers at every engine batch shape, in dtype."""
    weights = [packed_for_onednn(w.to(dtype).contiguous()) for w in recurrent_matrices(model)]
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(largest, w.shape[1], generator=gen).to(dtype) for w in recurrent_matrices(model)]

    def products(rows: int) -> list[torch.Tensor]:
        return [torch.ops.mkldnn._linear_pointwise(x[:rows].contiguous(), w, None, "none", [], "") if w.is_mkldnn
                else x[:rows] @ w.t() for x, w in zip(inputs, weights)]

    with torch.inference_mode():
        full = products(largest)
        return all(torch.equal(a, b[:rows]) for rows in SHAPES if rows < largest for a, b in zip(products(rows), full))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fairy-tales")
    parser.add_argument("--length", type=int, default=2000, help="characters per speed measurement")
    parser.add_argument("--long", type=int, default=100_000, help="characters for the memory run")
    args = parser.parse_args()
    torch.set_num_threads(ENGINE_THREADS)  # the engine's own count, for the naive loop and the products below
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
    print("\n1. one request, chars/s")
    print(f"  naive loop {naive_mean:,.0f} ({naive:,.0f} before, {naive_again:,.0f} after)")
    print(f"  charrnn sample() {ours:,.0f} -> {ours / naive_mean:.1f}x the naive loop")
    print(f"  charrnn stream() {ours_stream:,.0f} -> {ours_stream / naive_mean:.1f}x "
          "(with each character's probability and top alternative)")

    print("\n2. time to the first new character after a 200-character prompt (stream(), median of 20)")
    prompt = PROMPT[:200]
    firsts = []
    for seed in range(20):
        start = time.perf_counter()
        next(iter(stream(model, prompt, SampleSettings(length=10, seed=seed))))
        firsts.append(time.perf_counter() - start)
    firsts.sort()
    print(f"  {len(prompt)}-char prompt: median {firsts[10] * 1e3:.1f} ms, worst {firsts[-1] * 1e3:.1f} ms")

    print("\n3. rows generated together against one (sample(), chars/s summed over the rows)")
    together = {}
    for rows in (16, 64):
        t_rows, _ = timed(lambda rows=rows: sample(model, "", settings, num_samples=rows))
        together[rows] = rows * args.length / t_rows
        print(f"  {rows} rows: {together[rows]:,.0f} chars/s -> {together[rows] / ours:.1f}x one")
    # The ceiling: a 16-row step multiplies every weight by 16 rows, so it cannot be faster than
    # those FLOPs at the best fp32 matrix-product rate this CPU reaches.
    flops16 = 2 * 16 * sum(w.numel() for w in [*recurrent_matrices(model), model.head.weight])
    peak = matmul_peak_flops(torch.float32)
    floor16 = flops16 / peak
    print(f"  a 16-row step is {flops16 / 1e6:.0f} MFLOP in fp32; this CPU's best fp32 matrix product measured "
          f"{peak / 1e9:.0f} GFLOP/s, so a step takes at least {floor16 * 1e3:.2f} ms and 16 rows can be at most "
          f"{16 * (t_batch1 / args.length) / floor16:.1f}x one here (measured: {16 / together[16] * 1e3:.2f} ms)")
    fp32_16, bf16_16 = products_at_rows(model, 16), products_at_rows(model, 16, torch.bfloat16)
    print(f"  the step's recurrent products at 16 rows: fp32 {fp32_16 * 1e3:.2f} ms, bf16 {bf16_16 * 1e3:.2f} ms "
          f"({fp32_16 / bf16_16:.1f}x; native bf16 here: {native_bf16(model.device)}); each row's numbers the same at "
          f"every batch shape: fp32 {batch_invariant(model, torch.float32)}, "
          f"bf16 {batch_invariant(model, torch.bfloat16)} (the engine needs this, so it runs fp32)")

    print("\n4. one row against the memory-bandwidth floor")
    step_s = t_batch1 / args.length
    weight_bytes = stepper.weight_bytes()
    dram = bandwidth_gb_s(1024, 3)
    cache = bandwidth_gb_s(max(1, round(weight_bytes / 2**20)), 50)
    achieved = weight_bytes / step_s / 1e9
    print(f"  weights read per step {weight_bytes / 1e6:.1f} MB, {step_s * 1e3:.3f} ms per step -> {achieved:.1f} GB/s")
    print(f"  measured read bandwidth: {dram:.1f} GB/s from DRAM (1 GB buffer), "
          f"{cache:.1f} GB/s for a buffer the size of the weights (cache)")
    print(f"  -> {achieved / dram:.0%} of DRAM bandwidth, {achieved / cache:.0%} of the cache-resident read speed")
    floor1 = weight_bytes / (cache * 1e9)
    print(f"  with both steps at these floors (one row reading its weights at the cache-resident speed, "
          f"{floor1 * 1e3:.3f} ms; 16 rows multiplying at the best rate above, {floor16 * 1e3:.3f} ms), 16 rows would "
          f"be {16 * floor1 / floor16:.1f}x one")

    print(f"\n5. memory while streaming {args.long:,} characters (stream(), one request)")
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
