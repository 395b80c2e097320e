"""The character vocabulary: an ordered list of characters, stored in the checkpoint's config.

Index 0 is always the unknown symbol, so a vocabulary cap, an unseen character in an
eval text or a corrupted upload can never index out of range.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from unidecode import unidecode

UNK = "\ufffd"
DEFAULT_MAX_VOCAB = 4096


@dataclass(frozen=True)
class Vocab:
    chars: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.chars or self.chars[0] != UNK:
            raise ValueError("a vocabulary starts with the unknown symbol")
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("a vocabulary has no repeated characters")
        if any(len(c) != 1 for c in self.chars):
            raise ValueError("a vocabulary holds single characters")
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.chars)})

    @classmethod
    def build(cls, texts: Iterable[str], max_size: int = DEFAULT_MAX_VOCAB) -> Vocab:
        """Keep the most frequent characters up to the cap, so a random-CJK file stays a sane softmax."""
        if max_size < 2:
            raise ValueError("the vocabulary cap must be at least 2")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(text)
        counts.pop(UNK, None)
        kept = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max_size - 1]]
        return cls((UNK, *sorted(kept)))

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, char: object) -> bool:
        return char in self._index  # type: ignore[attr-defined]

    def index(self, char: str) -> int:
        return self._index.get(char, 0)  # type: ignore[attr-defined]

    def encode(self, text: str) -> torch.Tensor:
        index = self._index  # type: ignore[attr-defined]
        return torch.tensor([index.get(c, 0) for c in text], dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def unknown_in(self, text: str) -> list[str]:
        """Characters of text this vocabulary lacks, most frequent first."""
        counts = Counter(c for c in text if c not in self)
        return [c for c, _ in counts.most_common()]

    def extended(self, texts: Iterable[str], max_size: int = DEFAULT_MAX_VOCAB) -> Vocab:
        """Old characters keep their indices; new ones are appended (most frequent first) up to the cap."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(c for c in text if c not in self)
        room = max(0, max_size - len(self))
        new = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:room]]
        return Vocab((*self.chars, *new))


def fit_prompt(prompt: str, vocab: Vocab) -> tuple[str, list[str]]:
    """Make a prompt speakable by the model: fold unknown characters with unidecode, else drop them.

    Returns the fitted prompt and the characters that were folded or dropped, so the
    caller can warn about them by name.
    """
    out: list[str] = []
    replacement: dict[str, str] = {}  # each unknown character once, in order of appearance: a
    # prompt of 100,000 distinct CJK characters costs 100,000 look-ups, not 100,000 squared
    for char in prompt:
        if char in vocab and char != UNK:
            out.append(char)
            continue
        if char not in replacement:
            # A lone surrogate (invalid Unicode a client can still send) has no folding: drop it
            # here rather than let unidecode warn about "a narrow Python build".
            folded = "" if "\ud800" <= char <= "\udfff" else unidecode(char, errors="ignore")
            replacement[char] = folded if folded and all(c in vocab and c != UNK for c in folded) else ""
        out.append(replacement[char])
    return "".join(out), list(replacement)


def describe_chars(chars: list[str], limit: int = 12) -> str:
    shown = ", ".join(repr(c) for c in chars[:limit])
    return shown + (f" and {len(chars) - limit} more" if len(chars) > limit else "")


def unknown_chars_note(changed: list[str]) -> str:
    """The one warning for characters of a text that the model does not know (folded or dropped)."""
    return f"the model does not know {describe_chars(changed)}; folded or dropped them"


def warn_prompt(prompt: str, vocab: Vocab) -> str:
    """fit_prompt that also warns, for callers that just want the text."""
    fitted, changed = fit_prompt(prompt, vocab)
    if changed:
        warnings.warn(unknown_chars_note(changed), stacklevel=2)
    return fitted


def outside_note(counts: Counter[str], vocab: Vocab) -> str | None:
    """What a capped vocabulary leaves out of a text, given the text's character counts: None when nothing."""
    outside = {c: n for c, n in counts.items() if c not in vocab and c != UNK}
    if not outside:
        return None
    share = sum(outside.values()) / max(1, sum(counts.values()))
    return (f"{len(outside):,} of the text's {len(counts):,} distinct characters fall outside the vocabulary: "
            f"{share:.2%} of the text, read as the unknown symbol.")
