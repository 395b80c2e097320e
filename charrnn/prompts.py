"""Prompts taken from a text, so that a model fine-tuned on it is first asked something it knows how to
go on from: the text's first words, and lines that start a paragraph."""

from __future__ import annotations

import re

MAX_PROMPT_CHARS = 40
MAX_WORDS = 5
CJK_CLAUSE_END = "，。！？；：、"
HEADING_CHARS = 40  # a line this short ending in a letter, digit or colon is a heading (a title, a speaker)
_PARAGRAPH_START = re.compile(r"\n[ \t]*\n+[ \t]*(?=\S)")


def opening(line: str) -> str:
    """The start of a line as a prompt: its first MAX_WORDS words (at most MAX_PROMPT_CHARS characters),
    or, in a text without spaces (Chinese), up to the end of its first clause."""
    line = line.strip()
    if " " not in line[:MAX_PROMPT_CHARS]:
        clause = next((i + 1 for i, ch in enumerate(line[:MAX_PROMPT_CHARS]) if ch in CJK_CLAUSE_END), None)
        return line[: clause or min(len(line), 8)]
    words, kept = line.split(), []
    for word in words[:MAX_WORDS]:
        if len(" ".join([*kept, word])) > MAX_PROMPT_CHARS:
            break
        kept.append(word)
    return " ".join(kept) or line[:MAX_PROMPT_CHARS]


def as_prompt(line: str) -> str:
    """A heading is kept whole with its line break, so the model writes what follows a title or a
    speaker's name; any other line gives its opening."""
    line = line.strip()
    if len(line) <= HEADING_CHARS and (line[-1:].isalnum() or line.endswith(":")):
        return line + "\n"
    return opening(line)


def paragraph_starts(text: str) -> list[str]:
    """The first line of every paragraph (a line after a blank line), in order."""
    return [text[m.end():].split("\n", 1)[0] for m in _PARAGRAPH_START.finditer(text)]


def prompt_suggestions(text: str, count: int = 4) -> list[str]:
    """Up to count prompts from text: its first words, then lines that start paragraphs, taken evenly
    across the text (the same ones every time), each different from the others."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    first = text.lstrip().split("\n", 1)[0] if text.strip() else ""
    suggestions = [as_prompt(first)] if first.strip() else []
    starts = [s for s in paragraph_starts(text) if s.strip() and s.strip()[0].isalnum()]
    step = max(1, len(starts) // max(1, count))
    for line in starts[step // 2 :: step]:
        prompt = as_prompt(line)
        if prompt.strip() and prompt not in suggestions:
            suggestions.append(prompt)
        if len(suggestions) >= count:
            break
    return suggestions
