"""Did the model write it, or recite it? Spans of generated text found verbatim in the training text.

A model ships a compact index of its training text: the hash of every 20-character
window, kept to 48 bits and stored as sorted 32-bit values under 16-bit buckets
(4 bytes a window, so about 4.5 MB for the 1.1M characters of tinyshakespeare). It
cannot give the text back, unlike a copy of the corpus. A chance collision needs two
48-bit hashes to agree: with a million windows indexed, a generated window matches by
chance about once in 280 million.

The index lives in the checkpoint directory (checkpoint.INDEX) in safetensors, so
loading it never runs code.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from charrnn.checkpoint import INDEX, process_temp_dir, replace_file

NGRAM = 20
BUCKET_BITS = 16
HASH_BITS = 48
CHUNK_CHARS = 1 << 20  # hash long texts piecewise, to bound memory and to see a cancel between pieces
_BASE = np.uint64(0x100000001B3)  # odd multiplier of the rolling polynomial hash
FORMAT_VERSION = "1"
STAGING_PREFIX = "charrnn-index-"  # then the pid of the process that staged it, so a dead one's can be swept


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, so every bit of the hash depends on every character."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def ngram_hashes(text: str, n: int = NGRAM, check: Callable[[], None] | None = None) -> np.ndarray:
    """48-bit hash of every n-character window of text (one per start position), as uint64."""
    out = list(_chunk_hashes(text, n, check))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.uint64)


def _chunk_hashes(text: str, n: int, check: Callable[[], None] | None) -> Iterator[np.ndarray]:
    """ngram_hashes piece by piece, CHUNK_CHARS windows at a time, to bound memory.

    check is called before each piece; it may raise to abandon a long text.
    """
    for start in range(0, max(len(text) - n + 1, 0), CHUNK_CHARS):
        if check is not None:
            check()
        piece = text[start : start + CHUNK_CHARS + n - 1]
        codes = np.frombuffer(piece.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64) + np.uint64(1)
        windows = len(codes) - n + 1
        h = np.zeros(windows, dtype=np.uint64)
        for j in range(n):  # numpy's uint64 arithmetic wraps, which is the modulus we want
            h = h * _BASE + codes[j : j + windows]
        yield _mix(h) >> np.uint64(64 - HASH_BITS)


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique(values) by a sort and a mask of changes: on NumPy 2.4 that is tens of times faster
    for millions of uint64 hashes (0.3 s rather than 10 s for 6 million), and a huge upload's
    index is built within seconds."""
    return distinct_in_place(np.sort(values))


def distinct_in_place(ordered: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array it owns, moved to its front piece by piece, and the array
    shrunk to them: no second array as large is ever held."""
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    written = 0
    for start in range(0, len(ordered), CHUNK_CHARS):
        kept = ordered[start : start + CHUNK_CHARS][keep[start : start + CHUNK_CHARS]]
        ordered[written : written + len(kept)] = kept
        written += len(kept)
    ordered.resize(written, refcheck=False)
    return ordered


def joined(parts: list[np.ndarray]) -> np.ndarray:
    """The parts end to end in one array, each let go of once copied (parts is emptied): the memory
    held is the result and one part."""
    out = np.empty(sum(len(part) for part in parts), dtype=np.uint64)
    at = 0
    parts.reverse()
    while parts:
        part = parts.pop()
        out[at : at + len(part)] = part
        at += len(part)
    return out


@dataclass
class NgramIndex:
    """The set of hashed n-grams of a training text; `sources` and `chars` say what it covers."""

    hashes: np.ndarray  # sorted, unique, uint64 below 2**HASH_BITS
    n: int = NGRAM
    chars: int = 0
    sources: str = ""
    ascii_folded: bool = False

    def __contains__(self, text: str) -> bool:
        return len(text) == self.n and bool(self.contains(ngram_hashes(text, self.n))[0])

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.hashes, hashes)
        pos = np.minimum(pos, len(self.hashes) - 1)
        return (self.hashes[pos] == hashes) if len(self.hashes) else np.zeros(len(hashes), dtype=bool)

    def merged(self, other: NgramIndex) -> NgramIndex:
        if other.n != self.n:
            raise ValueError(f"cannot merge an index of {other.n}-grams into one of {self.n}-grams")
        sources = ", ".join(s for s in (other.sources, self.sources) if s)
        hashes = sorted_unique(np.concatenate([self.hashes, other.hashes]))
        return NgramIndex(hashes, self.n, self.chars + other.chars, sources, self.ascii_folded)

    def save(self, path: str | Path) -> Path:
        """Write atomically: bucket counts (top 16 bits) plus the low 32 bits of each hash."""
        path = Path(path)
        buckets = (self.hashes >> np.uint64(HASH_BITS - BUCKET_BITS)).astype(np.int64)
        tensors = {
            "counts": np.bincount(buckets, minlength=1 << BUCKET_BITS).astype(np.uint32),
            "low": (self.hashes & np.uint64(0xFFFFFFFF)).astype(np.uint32),
        }
        meta = {"format": "charrnn-ngram-index", "version": FORMAT_VERSION, "n": str(self.n), "chars": str(self.chars),
                "sources": self.sources, "ascii_folded": str(self.ascii_folded).lower()}
        replace_file(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
        return path

    @classmethod
    def load(cls, path: str | Path) -> NgramIndex:
        try:
            tensors = load_file(str(path))
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
            counts, low = tensors["counts"], tensors["low"]
            shaped = meta.get("format") == "charrnn-ngram-index" and len(counts) == 1 << BUCKET_BITS
            if not shaped or int(counts.sum()) != len(low):
                raise ValueError("not a charrnn n-gram index")
            # Built in place in one array: the top bits from the bucket counts, then the low 32 bits or-ed in.
            hashes = np.repeat(np.arange(1 << BUCKET_BITS, dtype=np.uint64), counts.astype(np.int64))
            hashes <<= np.uint64(32)
            np.bitwise_or(hashes, low, out=hashes)
            return cls(hashes, int(meta.get("n", NGRAM)), int(meta.get("chars", 0)), meta.get("sources", ""),
                       meta.get("ascii_folded") == "true")
        except (OSError, SafetensorError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: the originality index is unreadable ({exc})") from None


def build_index(texts: Iterable[str], sources: str = "", ascii_folded: bool = False, n: int = NGRAM,
                check: Callable[[], None] | None = None) -> NgramIndex:
    """Index texts exactly as given: normalise them the model's way first (training does).

    Each piece's hashes are reduced to its distinct ones as it is hashed, then joined, sorted and
    reduced again in place, so the memory held is little more than the distinct windows' hashes.
    check is called between chunks of the texts; it may raise to stop the work (a cancelled run).
    """
    parts, chars = [], 0
    for text in texts:
        parts.extend(sorted_unique(piece) for piece in _chunk_hashes(text, n, check))
        chars += len(text)
    if check is not None:
        check()
    hashes = joined(parts)
    hashes.sort()
    return NgramIndex(distinct_in_place(hashes), n, chars, sources, ascii_folded)


def load_index(model_or_dir: object) -> NgramIndex | None:
    """The index shipped with a model (a loaded model or its directory), or None when it has none."""
    directory = model_or_dir if isinstance(model_or_dir, (str, Path)) else getattr(model_or_dir, "directory", None)
    if directory is None or not (Path(directory) / INDEX).is_file():
        return None
    return NgramIndex.load(Path(directory) / INDEX)


@contextlib.contextmanager
def staged_index(texts: list[str], sources: str, ascii_folded: bool, merge_from: Iterable[str | Path | None] = (),
                 check: Callable[[], None] | None = None) -> Iterator[Path]:
    """The index of a training run's texts, in a temporary directory for save_checkpoint to copy,
    removed when the with block ends however it ends.

    merge_from: model directories whose index is kept too (the base model when
    fine-tuning), so a fine-tuned model is checked against everything it learned from.
    check: see build_index. The directory's name holds this process's pid, so one left by a
    killed process is removed the next time any process stages an index (process_temp_dir).
    """
    index = build_index(texts, sources, ascii_folded, check=check)
    for directory in merge_from:
        try:
            previous = load_index(directory) if directory is not None else None
        except ValueError:
            previous = None
        if previous is not None and previous.n == index.n:
            index = index.merged(previous)
    staging = process_temp_dir(STAGING_PREFIX)
    try:
        index.save(staging / INDEX)
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def copied_spans(text: str, index: NgramIndex) -> list[tuple[int, int]]:
    """Every stretch of text, as (start, end), made of index.n-character windows found in the training text.

    A verbatim copy of n or more characters is covered exactly; overlapping windows merge
    into one span.
    """
    found = np.flatnonzero(index.contains(ngram_hashes(text, index.n)))
    spans: list[tuple[int, int]] = []
    for start in found.tolist():
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], start + index.n)
        else:
            spans.append((start, start + index.n))
    return spans


def copied_share(text: str, spans: list[tuple[int, int]]) -> float:
    """Fraction of text's characters inside copied spans."""
    return sum(end - start for start, end in spans) / len(text) if text else 0.0
