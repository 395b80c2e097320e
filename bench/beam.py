"""Beam search against greedy decoding and sampling on the shipped fairy-tales model: likelihood, repetition, speed.

For each of five prompts, 200 characters are written by greedy decoding (temperature 0), by
sampling at temperature 0.8 (seeds 1..5), both one request through charrnn.engine.sample,
and by charrnn.beam.beam_search at width 8, plain and with no_repeat_ngram 4 and 6. Every
text is scored the same way, by the model's own full-sequence pass (charrnn.insight.score_text):
the mean log-probability per character (natural log, temperature 1). Repetition is the share
of distinct 8-grams among a text's 8-grams (1.0: none repeats). Speed is characters of output
(the best beam's 200) per second, against batch-1 sampling, on one torch thread (the engine's).
Ratios are between measurements of this run.

    .venv/bin/python bench/beam.py              # ~1 minute on a 2-core CPU
    .venv/bin/python bench/beam.py --rounds 1   # quicker, noisier speeds
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from charrnn.beam import BeamSettings, beam_search  # noqa: E402
from charrnn.checkpoint import CheckpointError, load_model, resolve_shipped  # noqa: E402
from charrnn.engine import sample  # noqa: E402
from charrnn.insight import score_text  # noqa: E402
from charrnn.model import CharRNN  # noqa: E402
from charrnn.sampling import SampleSettings, prepare_prompt  # noqa: E402

PROMPTS = ["Once upon a time", "The king said", "In a deep forest", '"Who is there?"', "The little mermaid"]
LENGTH = 200
WIDTH = 8
SEEDS = range(1, 6)
NGRAM = 8  # repetition is measured on 8-grams of characters


def mean_log_prob(model: CharRNN, prompt: str, text: str) -> float:
    """Mean log-probability per character of text after prompt, by the model's full-sequence pass."""
    scored = score_text(model, text, prepare_prompt(model, prompt)[0])
    return sum(math.log(s.prob) for s in scored) / len(scored)


def distinct_share(text: str, n: int = NGRAM) -> float:
    grams = [text[k : k + n] for k in range(len(text) - n + 1)]
    return len(set(grams)) / len(grams)


def methods() -> dict[str, Callable[[CharRNN, str], list[str]]]:
    """Each way of writing: a function from (model, prompt) to the texts it writes (one per request)."""
    def sampled(temperature: float, seeds):
        return lambda model, prompt: [
            sample(model, prompt, SampleSettings(length=LENGTH, temperature=temperature, seed=seed))[0]
            for seed in seeds]

    def beam(no_repeat: int):
        settings = BeamSettings(width=WIDTH, length=LENGTH, no_repeat_ngram=no_repeat)
        return lambda model, prompt: [beam_search(model, prompt, settings)[0].text]

    return {
        "greedy (T=0)": sampled(0.0, [1]),
        "sample T=0.8, seeds 1-5": sampled(0.8, SEEDS),
        f"beam {WIDTH}": beam(0),
        f"beam {WIDTH}, no-repeat 4": beam(4),
        f"beam {WIDTH}, no-repeat 6": beam(6),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fairy-tales")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds over all prompts; the fastest counts")
    parser.add_argument("--show", type=int, default=100, help="characters of each method's first text to print")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        model = load_model(resolve_shipped(args.model), device="cpu")
    except (CheckpointError, OSError, ValueError) as exc:
        print(f"cannot load {args.model}: {exc}")
        return 2
    print(f"model {args.model}: {model.num_layers}x{model.hidden_size} {model.cell}, vocab {len(model.vocab)}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread; {LENGTH} chars after {len(PROMPTS)} prompts")
    ways = methods()
    for write in ways.values():  # warm up: the engine's thread and stepper, oneDNN's kernels
        write(model, PROMPTS[0])

    texts: dict[str, list[list[str]]] = {}
    seconds: dict[str, float] = {}
    for name, write in ways.items():
        rounds = []
        for _ in range(max(1, args.rounds)):
            start = time.perf_counter()
            written = [write(model, prompt) for prompt in PROMPTS]
            rounds.append(time.perf_counter() - start)
        texts[name], seconds[name] = written, min(rounds)

    print(f"\n{'method':<26} {'log-prob/char':>13} {'min..max over prompts':>22} {'distinct 8-grams':>17} "
          f"{'chars/s':>8}")
    summary = {}
    for name, per_prompt in texts.items():
        scores = [statistics.mean(mean_log_prob(model, p, t) for t in ts) for p, ts in zip(PROMPTS, per_prompt)]
        distinct = statistics.mean(distinct_share(t) for ts in per_prompt for t in ts)
        chars = sum(len(t) for ts in per_prompt for t in ts)
        summary[name] = (statistics.mean(scores), scores, distinct, chars / seconds[name])
        mean, _, _, speed = summary[name]
        print(f"{name:<26} {mean:>13.4f} {f'{min(scores):.3f}..{max(scores):.3f}':>22} {distinct:>17.3f} "
              f"{speed:>8.0f}")

    print("\nper prompt, mean log-prob per character:")
    print(f"{'prompt':<22}" + "".join(f"{name[:16]:>18}" for name in summary))
    for k, prompt in enumerate(PROMPTS):
        print(f"{prompt:<22}" + "".join(f"{summary[name][1][k]:>18.4f}" for name in summary))

    # Beam search's own totals against the full-sequence scoring used above.
    drift = max(abs(r.mean_log_prob - mean_log_prob(model, p, r.text))
                for p in PROMPTS for r in [beam_search(model, p, BeamSettings(width=WIDTH, length=LENGTH))[0]])
    print(f"\nbeam_search's own mean_log_prob vs the full-sequence score: at most {drift:.2e} apart")

    if args.show:
        print(f"\nthe first {args.show} characters after {PROMPTS[0]!r}:")
        for name, per_prompt in texts.items():
            print(f"  {name:<26} {per_prompt[0][0][: args.show]!r}")

    greedy, sampled = summary["greedy (T=0)"], summary["sample T=0.8, seeds 1-5"]
    beam, targets_ok = summary[f"beam {WIDTH}"], True
    gain = beam[0] - greedy[0]
    print(f"\nbeam {WIDTH} - greedy: {gain:+.4f} nats/char (perplexity x{math.exp(-gain):.3f}); "
          f"beam {WIDTH} - sampling T=0.8: {beam[0] - sampled[0]:+.4f} nats/char")
    for name in (f"beam {WIDTH}, no-repeat 4", f"beam {WIDTH}, no-repeat 6"):
        other = summary[name]
        print(f"{name}: {other[0] - greedy[0]:+.4f} nats/char vs greedy, {other[0] - beam[0]:+.4f} vs plain beam; "
              f"distinct 8-grams {other[2]:.3f} vs {beam[2]:.3f} plain, {greedy[2]:.3f} greedy, {sampled[2]:.3f} "
              "sampling")
    speed_ratio = beam[3] / sampled[3]
    print(f"speed: beam {WIDTH} {beam[3]:.0f} chars/s vs batch-1 sampling {sampled[3]:.0f} chars/s = "
          f"{speed_ratio:.2f}x (greedy {greedy[3]:.0f} chars/s)")
    targets = [(gain >= 0, f"beam {WIDTH} at least as likely as greedy on average ({gain:+.4f} nats/char)"),
               (speed_ratio >= 0.5, f"beam {WIDTH} at least half as fast as batch-1 sampling ({speed_ratio:.2f}x)")]
    for ok, line in targets:
        print(f"{'PASS' if ok else 'FAIL'}: {line}")
        targets_ok = targets_ok and ok
    return 0 if targets_ok else 1


if __name__ == "__main__":
    sys.exit(main())
