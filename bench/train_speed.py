"""Training throughput: charrnn's trainer against a plain PyTorch loop, in the same process.

The reference is written out here on purpose: nn.Embedding + nn.LSTM + nn.Linear over
contiguous streams with carried state, AdamW, gradient clipping. charrnn's side is
charrnn.train.train itself (the one training loop), timed between its step events, so
evaluation and checkpoint writing are not counted. Then variants of the plain loop show
what moves the number on this machine: threads, batch/sequence shape, fused AdamW, bf16
autocast, and (with --compile) torch.compile. On a CUDA GPU, a 3x1024 model's chars/s as a
share of the bf16 rate measured in the same run.

    python bench/train_speed.py              # ~1-2 minutes on a 2-core CPU
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from charrnn.device import pick_device, pick_threads  # noqa: E402
from charrnn.evaluate import eval_precision  # noqa: E402
from charrnn.model import precision_autocast, resolve_precision  # noqa: E402
from charrnn.train import SCRATCH_DEFAULTS, TrainConfig, train  # noqa: E402
from charrnn.vocab import Vocab  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "tinyshakespeare.txt"


def load_text() -> str:
    if CORPUS.is_file():
        return CORPUS.read_text(encoding="utf-8")
    rng = random.Random(0)  # throughput does not depend on what the text says
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 9))) for _ in range(3000)]
    return " ".join(rng.choice(words) for _ in range(200_000))


def reference_chars_per_s(ids: torch.Tensor, vocab_size: int, layers: int, hidden: int, batch: int, seq: int,
                          steps: int, device: torch.device, fused: bool = False, bf16: bool = False,
                          compile_step: bool = False) -> float:
    """The plain loop; chars/s over `steps` steps after two warm-up steps."""
    torch.manual_seed(0)
    emb = nn.Embedding(vocab_size, 64).to(device)
    lstm = nn.LSTM(64, hidden, layers, batch_first=True).to(device)
    head = nn.Linear(hidden, vocab_size).to(device)
    params = [*emb.parameters(), *lstm.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.01, **({"fused": True} if fused else {}))
    stream_len = (len(ids) - 1) // batch
    inputs = ids[: batch * stream_len].view(batch, stream_len).to(device)
    targets = ids[1 : batch * stream_len + 1].view(batch, stream_len).to(device)
    # Plain: the precision charrnn evaluates in.
    amp = precision_autocast(device, "bf16" if bf16 else eval_precision(device))

    def loss_of(x, y, state):
        out, state = lstm(emb(x), state)
        return F.cross_entropy(head(out).float().flatten(0, 1), y.flatten()), state

    if compile_step:
        loss_of = torch.compile(loss_of)
    state, k = None, 0

    def step() -> None:
        nonlocal state, k
        if (k + 1) * seq > stream_len:
            k, state = 0, None
        with amp:
            loss, state = loss_of(inputs[:, k * seq : (k + 1) * seq], targets[:, k * seq : (k + 1) * seq], state)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        state = tuple(s.detach().float() for s in state)
        k += 1

    step()
    step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * batch * seq / (time.perf_counter() - t0)


def charrnn_chars_per_s(text: str, layers: int, hidden: int, batch: int, seq: int, steps: int,
                        precision: str | None = None) -> float:
    """charrnn.train.train, timed from its step-10 event to its step-(10+steps) event (steps a multiple of 10)."""
    config = TrainConfig(num_layers=layers, hidden_size=hidden, batch_size=batch, seq_len=seq, max_steps=steps + 10,
                         eval_interval=10**9, patience=None, dropout=0.0, precision=precision)
    with tempfile.TemporaryDirectory() as tmp:
        events = train([text], Path(tmp) / "m", config)
        marks = {}
        for event in events:
            if event.kind == "step":
                marks[event.step] = time.perf_counter()
                if event.step >= 10 + steps:
                    break
        events.close()
    # From step 10: steps 1..10 include the first calls' one-off costs.
    return steps * batch * seq / (marks[10 + steps] - marks[10])


def training_flops_per_char(layers: int, hidden: int, embedding: int, vocab_size: int) -> float:
    """Matrix-product FLOPs per training character: 2 per weight forward, 4 more backward (the
    gradients of inputs and of weights), over the LSTM's and the head's weights."""
    lstm = sum(4 * hidden * ((embedding if k == 0 else hidden) + hidden) for k in range(layers))
    weights = lstm + hidden * vocab_size
    return 6.0 * weights


def bf16_matmul_flops(device: torch.device, n: int = 8192, reps: int = 10) -> float:
    """The GPU's bf16 rate as this run sees it: a large product on random data, after warm-up."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2.0 * n**3 * reps / (time.perf_counter() - t0)


def cuda_big_model(ids: torch.Tensor, text: str, vocab_size: int, device: torch.device, steps: int,
                   batches: tuple[int, ...] = (64, 256, 1024), peak_n: int = 8192) -> None:
    """Section 4: the 3x1024 model with cuDNN's LSTM in bf16 autocast, as a share of the bf16 rate."""
    peak = bf16_matmul_flops(device, peak_n)
    flops = training_flops_per_char(3, 1024, 64, vocab_size)
    print(f"\n4. {torch.cuda.get_device_name(device)}: 3x1024 LSTM (cuDNN), bf16 autocast, sequence 128. "
          f"Measured bf16 rate: {peak / 1e12:.0f} TFLOP/s ({peak_n}^3 product); "
          f"training costs {flops / 1e6:.0f} MFLOP per character")
    for batch in batches:
        ref = reference_chars_per_s(ids, vocab_size, 3, 1024, batch, 128, steps, device, bf16=True)
        ours = charrnn_chars_per_s(text, 3, 1024, batch, 128, steps)
        print(f"  batch {batch}: charrnn {ours:,.0f} chars/s = {ours * flops / 1e12:.0f} TFLOP/s = "
              f"{ours * flops / peak:.1%} of the measured rate; "
              f"plain loop {ref:,.0f} chars/s ({ref * flops / peak:.1%}) -> {ours / ref:.2f}x", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement (a multiple of 10)")
    parser.add_argument("--compile", action="store_true",
                        help="also try torch.compile on the plain loop (slow to compile)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads (default: one per core, or one when the machine is busy, like the CLI)")
    args = parser.parse_args()
    if pick_threads(args.threads) == 1 and args.threads is None:
        print("using 1 torch thread (the machine is busy, or has one core), as charrnn's CLI would; "
              "--threads to override")
    device = pick_device(args.device)
    text = load_text()
    vocab = Vocab.build([text])
    ids = vocab.encode(text)
    threads = torch.get_num_threads()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device {device}, torch {torch.__version__}, {threads} threads, load average {load:.1f}, "
          f"text {len(text):,} chars{'' if CORPUS.is_file() else ' (synthetic: corpora absent)'}")

    d = SCRATCH_DEFAULTS
    shapes = [("default 2x512, batch 32, seq 128", d["num_layers"], d["hidden_size"], d["batch_size"], d["seq_len"]),
              ("2x256, batch 32, seq 64 (time-budget choice for 1 min)", 2, 256, 32, 64)]
    steps = max(10, args.steps - args.steps % 10)
    precision = resolve_precision(None, device)
    native = "this device multiplies bf16 natively" if precision == "bf16" else "no native bf16 on this device"
    print(f"\n1. charrnn trainer vs the plain loop (same shapes, same process). "
          f"charrnn trains in {precision} here by default ({native}); "
          f"the plain loop in {eval_precision(device)}")
    base = {}
    for name, layers, hidden, batch, seq in shapes:
        ref = reference_chars_per_s(ids, len(vocab), layers, hidden, batch, seq, steps, device)
        ours = charrnn_chars_per_s(text, layers, hidden, batch, seq, steps)
        same = None
        if precision == "bf16" and device.type == "cpu":
            same = charrnn_chars_per_s(text, layers, hidden, batch, seq, steps, precision=eval_precision(device))
        # Again, to see the drift.
        ref2 = reference_chars_per_s(ids, len(vocab), layers, hidden, batch, seq, steps, device)
        ref_mean = (ref + ref2) / 2
        base[(layers, hidden, batch, seq)] = ref_mean
        print(f"  {name}: charrnn {ours:,.0f} chars/s, plain loop {ref_mean:,.0f} chars/s "
              f"({ref:,.0f} before, {ref2:,.0f} after) -> {ours / ref_mean:.2f}x", flush=True)
        if same is not None:
            print(f"    charrnn with --precision fp32, the plain loop's precision: {same:,.0f} chars/s "
                  f"-> {same / ref_mean:.2f}x (what the engine's features cost at equal arithmetic)", flush=True)

    print("\n2. what moves the plain loop (2x512; each ratio against the plain loop measured just before it)")
    layers, hidden = d["num_layers"], d["hidden_size"]
    variants = [
        ("fused AdamW", {"fused": True}, None, (32, 128)),
        ("bf16 autocast", {"bf16": True}, None, (32, 128)),
        ("batch 64, seq 64", {}, None, (64, 64)),
        ("batch 16, seq 128", {}, None, (16, 128)),
        ("batch 32, seq 64", {}, None, (32, 64)),
    ]
    if args.compile:
        variants.append(("torch.compile", {"compile_step": True}, None, (32, 128)))
    for name, kwargs, n_threads, (batch, seq) in variants:
        if n_threads is not None and n_threads == threads:
            continue
        plain = reference_chars_per_s(ids, len(vocab), layers, hidden, 32, 128, steps // 2, device)
        if n_threads is not None:
            torch.set_num_threads(n_threads)
        try:
            fast = reference_chars_per_s(ids, len(vocab), layers, hidden, batch, seq, steps // 2, device, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a variant this machine cannot run is reported, not fatal
            print(f"  {name}: not available here ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})")
            continue
        finally:
            torch.set_num_threads(threads)
        print(f"  {name}: {fast:,.0f} chars/s vs {plain:,.0f} -> {fast / plain:.2f}x", flush=True)

    if device.type == "cuda":
        cuda_big_model(ids, text, len(vocab), device, steps)
        return 0
    other = 1 if threads > 1 else (os.cpu_count() or 1)
    if other != threads:
        print(f"\n3. threads (2x256, batch 32, seq 64): {threads} against {other}")
        mine = reference_chars_per_s(ids, len(vocab), 2, 256, 32, 64, 5, device)
        torch.set_num_threads(other)
        try:
            theirs = reference_chars_per_s(ids, len(vocab), 2, 256, 32, 64, 5, device)
        finally:
            torch.set_num_threads(threads)
        print(f"  {threads} thread(s) {mine:,.0f} chars/s, {other} thread(s) {theirs:,.0f} chars/s "
              f"-> {mine / theirs:.2f}x (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
