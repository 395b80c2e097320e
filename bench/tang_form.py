"""Form as a quality figure: do poems sampled from the Tang model keep the corpus's clause lengths?

For POEMS poems, each prompted with the title of a held-out poem (the last 10% of
tang_poems.txt, which training never saw) and a newline, sampled at temperature 0.8 with
seeds 1..POEMS and stopping at a blank line (the end of a poem), it prints the share of
clauses (between ，。！？；) that are 5 or 7 characters long, and the share of poems of 4 or more
clauses that keep one clause length throughout, against the same shares in the corpus itself.
Targets: at least 90% and 80%. All poems are submitted at once, so the engine steps them together.

    python bench/tang_form.py                 # 200 poems, ~1-3 minutes on a 2-core CPU
    python bench/tang_form.py --poems 50 --model /tmp/my-tang-model
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from charrnn.checkpoint import load_model, resolve_shipped  # noqa: E402
from charrnn.engine import GenerationEngine  # noqa: E402
from charrnn.sampling import SampleSettings  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "tang_poems.txt"
CLAUSE_END = re.compile("[，。！？；]")
MAX_POEM_CHARS = 400  # a sampled poem that has not ended by then is cut there


def poems_of(text: str) -> list[tuple[str, str]]:
    """(title, body) for each poem: a title line, then its lines, a blank line between poems."""
    found = []
    for block in text.strip().split("\n\n"):
        title, _, body = block.strip().partition("\n")
        if body:
            found.append((title, body))
    return found


def clause_lengths(body: str) -> list[int]:
    """The length of each clause of a poem's body, in characters (line breaks not counted)."""
    return [len(c) for c in (piece.replace("\n", "").strip() for piece in CLAUSE_END.split(body)) if c]


def form(bodies: list[str]) -> tuple[float, float, int, int]:
    """(share of clauses of 5 or 7 characters, share of poems of 4+ clauses with one clause length,
    clauses counted, poems counted)."""
    clauses = [n for body in bodies for n in clause_lengths(body)]
    long_poems = [lengths for lengths in map(clause_lengths, bodies) if len(lengths) >= 4]
    five_or_seven = sum(n in (5, 7) for n in clauses) / max(1, len(clauses))
    one_length = sum(len(set(lengths)) == 1 for lengths in long_poems) / max(1, len(long_poems))
    return five_or_seven, one_length, len(clauses), len(long_poems)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tang-poems")
    parser.add_argument("--poems", type=int, default=200)
    args = parser.parse_args()
    if not CORPUS.is_file():
        print(f"skipped: needs {CORPUS} (not committed into the project)")
        return 0
    text = CORPUS.read_text(encoding="utf-8")
    held_out = text[int(len(text) * 0.9):]
    titles = [title for title, _ in poems_of(held_out[held_out.index("\n\n") + 2:])][: args.poems]
    model = load_model(resolve_shipped(args.model), device="cpu")
    engine = GenerationEngine.for_model(model)
    start = time.perf_counter()
    requests = [engine.submit(title + "\n", SampleSettings(length=MAX_POEM_CHARS, temperature=0.8, seed=k + 1,
                                                           stop=("\n\n",)))
                for k, title in enumerate(titles)]
    bodies = [request.text().strip() for request in requests]
    seconds = time.perf_counter() - start
    ended = sum(1 for r in requests if r.stopped_at is not None)
    ours = form(bodies)
    corpus = form([body for _, body in poems_of(text)])
    print(f"model {args.model}: {len(bodies)} poems in {seconds:.1f} s ({ended} ended at a blank line, the rest at "
          f"{MAX_POEM_CHARS} characters), prompted with held-out titles, temperature 0.8, seeds 1-{len(bodies)}")
    print(f"clauses of 5 or 7 characters: {ours[0]:.1%} of {ours[2]:,} (the corpus: {corpus[0]:.1%} of {corpus[2]:,})")
    print(f"poems of 4+ clauses keeping one clause length: {ours[1]:.1%} of {ours[3]:,} "
          f"(the corpus: {corpus[1]:.1%} of {corpus[3]:,})")
    for title, body in list(zip(titles, bodies))[:3]:
        print(f"\n{title}\n{body}")
    ok = ours[0] >= 0.9 and ours[1] >= 0.8
    print(f"\ntargets (>= 90% and >= 80%): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
