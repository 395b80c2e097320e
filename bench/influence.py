"""Does "Why this character?" find the obvious cause? Closing quotes and brackets in the shipped model's own texts.

Generates texts with the shipped fairy-tales model (seeded), finds every closing double quote
or bracket in the generated part whose opening one lies within the influence window, and
asks charrnn.insight.influence which earlier character moved the closing one's probability
most. Prints, per attribution method, the share where that is the matching opening character,
against chance (1 / the characters in the window), and how often it is among the top 3.

    python bench/influence.py                      # 20 texts, both methods
    python bench/influence.py --methods occlusion --texts 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from charrnn.checkpoint import SHIPPED, load_model  # noqa: E402
from charrnn.engine import sample  # noqa: E402
from charrnn.insight import INFLUENCE_METHODS, MAX_INFLUENCE_WINDOW, _start_context, influence  # noqa: E402
from charrnn.sampling import SampleSettings  # noqa: E402

PROMPTS = (
    '"Who is there?" asked the old woman.',
    'The king said to his daughter, "',
    "Once upon a time there was a king who had three daughters",
    'Then the wolf said, "Little red-cap, ',
)
BRACKETS = {")": "(", "]": "["}


def pairs(text: str) -> list[tuple[int, int]]:
    """(opening, closing) indices: double quotes taken in turns, brackets by nesting; a blank line closes all."""
    found, quote, stack = [], None, []
    for i, char in enumerate(text):
        if text[i - 1 : i + 1] == "\n\n":
            quote, stack = None, []
        if char == '"':
            if quote is None:
                quote = i
            else:
                found.append((quote, i))
                quote = None
        elif char in "([":
            stack.append(i)
        elif char in BRACKETS and stack and text[stack[-1]] == BRACKETS[char]:
            found.append((stack.pop(), i))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=20)
    parser.add_argument("--length", type=int, default=600)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--methods", default=",".join(INFLUENCE_METHODS))
    parser.add_argument("--window", type=int, default=MAX_INFLUENCE_WINDOW)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(SHIPPED["fairy-tales"], device="cpu")
    cases = []  # (text, prompt, position in text, opening's position in text)
    for k in range(args.texts):
        prompt = PROMPTS[k % len(PROMPTS)]
        text = sample(model, prompt, SampleSettings(length=args.length, temperature=args.temperature, seed=k + 1))[0]
        context = _start_context(model, prompt)
        for opening, closing in pairs(context + text):
            if closing >= len(context) and closing - opening <= args.window:
                cases.append((text, prompt, closing - len(context), opening - len(context)))
    quotes = sum(text[at] == '"' for text, _, at, _ in cases)
    print(f"fairy-tales, {args.texts} texts of {args.length} characters at temperature {args.temperature} "
          f"(seeds 1-{args.texts}): {len(cases)} closing characters ({quotes} quotes, {len(cases) - quotes} "
          f"brackets) with their opening one within {args.window} characters")
    for method in args.methods.split(","):
        hits = top3 = 0
        chance, ranks = [], []
        t0 = time.perf_counter()
        for text, prompt, at, opening in cases:
            found = influence(model, text, at, prompt, window=args.window, method=method)
            i = opening - found.first
            rank = sum(v > found.scores[i] for v in found.scores)
            hits += rank == 0
            top3 += rank < 3
            ranks.append(rank)
            chance.append(1 / len(found.before))
        n = len(cases) or 1
        per_case = (time.perf_counter() - t0) / n
        print(f"{method:10s} strongest is the opening one: {hits}/{len(cases)} = {hits / n:.1%} "
              f"(chance {statistics.mean(chance or [0]):.2%}, {hits / n / (statistics.mean(chance or [1])):.0f}x); "
              f"in the top 3: {top3 / n:.1%}; median rank {statistics.median(ranks or [0]):.0f}; "
              f"{per_case:.2f} s a character on {args.threads} thread{'s' if args.threads > 1 else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
