"""Batches as contiguous parallel streams, for truncated backpropagation through time.

The text is cut into batch_size equal streams read side by side; window k of every
stream follows window k-1, so the hidden state can carry across windows and the model
learns context longer than seq_len. Every position is a training target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from charrnn.text import TextError


def split_train_val(texts: list[str], val_fraction: float) -> tuple[str, str]:
    """The last val_fraction of each text is validation, so every file is represented in both."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError("the validation fraction must be between 0 and 1")
    train_parts, val_parts = [], []
    for text in texts:
        cut = len(text) - int(round(len(text) * val_fraction))
        train_parts.append(text[:cut])
        val_parts.append(text[cut:])
    return "".join(train_parts), "".join(val_parts)


def min_chars_needed(batch_size: int, seq_len: int, val_fraction: float) -> int:
    """Text length needed for one training window per stream and a validation window."""
    train = batch_size * (seq_len + 1)
    return int(max(train / (1 - val_fraction), (seq_len + 1) / val_fraction)) + 1


@dataclass
class Streams:
    """batch_size parallel streams over ids; window(k) gives inputs and next-char targets."""

    ids: torch.Tensor
    batch_size: int
    seq_len: int
    offset: int = 0

    def __post_init__(self) -> None:
        usable = len(self.ids) - 1 - self.offset
        self.stream_len = usable // self.batch_size
        if self.stream_len < self.seq_len:
            raise TextError(
                f"the training text is too short: {len(self.ids):,} characters make {self.batch_size} streams of "
                f"{max(self.stream_len, 0)} characters, but one window needs {self.seq_len}"
            )
        end = self.offset + self.batch_size * self.stream_len
        self.inputs = self.ids[self.offset : end].view(self.batch_size, self.stream_len)
        self.targets = self.ids[self.offset + 1 : end + 1].view(self.batch_size, self.stream_len)

    def __len__(self) -> int:
        return self.stream_len // self.seq_len

    def window(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Window k's inputs and targets as long (ids may be kept in a smaller type)."""
        s = slice(k * self.seq_len, (k + 1) * self.seq_len)
        return self.inputs[:, s].long(), self.targets[:, s].long()


def eval_streams(num_chars: int) -> int:
    """How many parallel streams evaluation uses: fixed by the text length alone, so a number
    measured during training, by `charrnn eval` and on a model card is the same number."""
    return max(1, min(64, num_chars // 4096))
