"""Validation loss reached in a wall-clock budget: `charrnn train --time-budget S` (which picks its
own model, batch, LR and schedule) against a plain 2x256 LSTM loop given the same budget.

Data: tinyshakespeare, first 90% for training and last 10% for validation (charrnn's split).
Both sides are scored by the same function (charrnn.evaluate.evaluate_ids) on the whole
validation part. The reference loop is written out here on purpose: nn.Embedding + nn.LSTM +
nn.Linear over contiguous streams with carried state, AdamW (lr 2e-3), gradient clipping at 1,
a cosine schedule over its budget.

    python bench/time_to_quality.py                  # 60 s and 300 s, both sides (~13 min)
    python bench/time_to_quality.py --budgets 30     # a quick look
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from charrnn.batching import split_train_val  # noqa: E402
from charrnn.device import pick_device, pick_threads  # noqa: E402
from charrnn.evaluate import evaluate_ids  # noqa: E402
from charrnn.model import PRECISIONS, CharRNN  # noqa: E402
from charrnn.text import read_corpus  # noqa: E402
from charrnn.train import TrainConfig, hardware_name, train  # noqa: E402
from charrnn.vocab import Vocab  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "tinyshakespeare.txt"
REF = {"layers": 2, "hidden": 256, "embedding": 64, "batch": 32, "seq": 128, "lr": 2e-3, "clip": 1.0}


def reference_run(text: str, budget: float, seed: int) -> tuple[float, dict]:
    """The plain loop: returns full-validation loss and what it did."""
    torch.manual_seed(seed)
    vocab = Vocab.build([text])
    train_text, val_text = split_train_val([text], 0.1)
    ids = vocab.encode(train_text)
    B, T = REF["batch"], REF["seq"]
    stream_len = (len(ids) - 1) // B
    inputs = ids[: B * stream_len].view(B, stream_len)
    targets = ids[1 : B * stream_len + 1].view(B, stream_len)
    emb = nn.Embedding(len(vocab), REF["embedding"])
    lstm = nn.LSTM(REF["embedding"], REF["hidden"], REF["layers"], batch_first=True)
    head = nn.Linear(REF["hidden"], len(vocab))
    params = [*emb.parameters(), *lstm.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=REF["lr"], weight_decay=0.01)
    state, k, steps = None, 0, 0
    t0 = time.monotonic()
    while (elapsed := time.monotonic() - t0) < budget:
        if (k + 1) * T > stream_len:
            k, state = 0, None
        for group in opt.param_groups:
            group["lr"] = REF["lr"] * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * elapsed / budget)))
        out, state = lstm(emb(inputs[:, k * T : (k + 1) * T]), state)
        loss = F.cross_entropy(head(out).flatten(0, 1), targets[:, k * T : (k + 1) * T].flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, REF["clip"])
        opt.step()
        state = tuple(s.detach() for s in state)
        k += 1
        steps += 1
    trained_s = time.monotonic() - t0
    # Score it with charrnn's own evaluation, so both sides are measured the same way.
    model = CharRNN(list(vocab.chars), num_layers=REF["layers"], hidden_size=REF["hidden"],
                    embedding_dim=REF["embedding"], dropout=0.0)
    model.embedding.load_state_dict(emb.state_dict())
    model.rnn.load_state_dict(lstm.state_dict())
    model.head.load_state_dict(head.state_dict())
    val = evaluate_ids(model, vocab.encode(val_text))["loss"]
    return val, {"steps": steps, "chars": steps * B * T, "trained_s": trained_s}


def charrnn_run(text: str, budget: float, seed: int, precision: str | None = None) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        result, message, train_s = None, "", None
        config = TrainConfig(time_budget=budget, seed=seed, precision=precision)
        for event in train([text], Path(tmp) / "model", config):
            if event.kind == "start":
                message = event.message.splitlines()[-1]
            elif event.kind == "done":
                result = event.result
        total_s = time.monotonic() - t0
        train_s = result.elapsed
    cfg = result.config
    return result.best_val_loss, {"steps": result.steps, "chars": result.steps * cfg["batch_size"] * cfg["seq_len"],
                                  "trained_s": train_s, "total_s": total_s, "choice": message,
                                  "precision": cfg["precision"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[60.0, 300.0])
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="the text (default: tinyshakespeare)")
    parser.add_argument("--only", choices=["charrnn", "reference"], help="run one side only")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="charrnn's precision (default: its own choice, bf16 where native)")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads (default: one per core, or one when the machine is busy, like the CLI)")
    args = parser.parse_args()
    if pick_threads(args.threads) == 1 and args.threads is None:
        print("using 1 torch thread (the machine is busy, or has one core), as charrnn's CLI would; "
              "--threads to override")
    if not args.corpus.is_file():
        print(f"skipped: needs {args.corpus} (the shared corpora are not part of the repository)")
        return 0
    text = read_corpus(args.corpus).text
    device = pick_device(None)
    print(f"{args.corpus.name}: {len(text):,} chars, 90/10 split; charrnn on {hardware_name(device)}; "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")
    rows = []
    for budget in args.budgets:
        ours = ref = None
        if args.only != "reference":
            ours, info = charrnn_run(text, budget, args.seed, args.precision)
            print(f"[{budget:g}s] charrnn --time-budget: val {ours:.4f} nats/char; {info['steps']} steps, "
                  f"{info['chars'] / 1e6:.2f}M chars; {info['total_s']:.1f}s wall in all "
                  "(measuring sizes, training, final full evaluation and card samples); "
                  f"{info['precision']}", flush=True)
            print(f"        chose: {info['choice']}", flush=True)
        if args.only != "charrnn":
            ref, info = reference_run(text, budget, args.seed)
            print(f"[{budget:g}s] plain 2x256 reference: val {ref:.4f} nats/char after {info['trained_s']:.1f}s "
                  f"({info['steps']} steps, {info['chars'] / 1e6:.2f}M chars)", flush=True)
        rows.append((budget, ours, ref))
    print("\nbudget   charrnn   reference   difference")
    for budget, ours, ref in rows:
        fmt = lambda v: f"{v:.4f}" if v is not None else "  -   "  # noqa: E731
        diff = f"{ours - ref:+.4f} nats/char" if ours is not None and ref is not None else ""
        print(f"{budget:5g}s   {fmt(ours)}    {fmt(ref)}      {diff}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
