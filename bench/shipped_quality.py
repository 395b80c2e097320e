"""Quality of the shipped checkpoints against their targets (issue: shipped pretrained models).

Evaluates each shipped model exactly as `charrnn eval MODEL FILE --split val` does and
prints the losses next to the targets. Needs ../shared/corpora.

    python bench/shipped_quality.py
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from charrnn.batching import split_train_val  # noqa: E402
from charrnn.checkpoint import SHIPPED, load_model  # noqa: E402
from charrnn.evaluate import evaluate_ids  # noqa: E402
from charrnn.text import normalize, read_corpus  # noqa: E402

CORPORA = ROOT.parent / "shared" / "corpora"
SUITES = {
    "fairy-tales": (["andersen_fairy_tales.txt", "grimm_fairy_tales.txt"], 1.20),
    "shakespeare": (["tinyshakespeare.txt"], 1.42),
}


def val_loss(model, path: Path) -> dict:
    text = normalize(read_corpus(path).text, model.ascii_fold)
    _, val = split_train_val([text], 0.1)
    return evaluate_ids(model, model.vocab.encode(val))


def main() -> int:
    if not CORPORA.is_dir():
        print(f"skipped: needs the corpora in {CORPORA}")
        return 0
    failed = False
    for name, (files, target) in SUITES.items():
        model = load_model(SHIPPED[name], device="cpu")
        t0 = time.perf_counter()
        results = {f: val_loss(model, CORPORA / f) for f in files}
        chars = sum(r["chars"] for r in results.values())
        mean = sum(r["loss"] * r["chars"] for r in results.values()) / chars
        for f, r in results.items():
            print(f"{name:12s} {f:28s} val loss {r['loss']:.4f} nats/char ({r['bpc']:.4f} bpc) "
                  f"over {r['chars']:,} chars")
        ok = mean <= target
        failed |= not ok
        print(f"{name:12s} {'character-weighted mean':28s} val loss {mean:.4f} nats/char "
              f"({mean / math.log(2):.4f} bpc); "
              f"target <= {target:.2f}: {'MET' if ok else 'NOT MET'} ({time.perf_counter() - t0:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
