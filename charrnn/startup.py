"""A run's start-up, before anything is planned or trained: the output directory checked (and the
training state read, resuming), the base model loaded, the text read as the model will read it, and
the model built (new, fine-tuned with a grown vocabulary, or resumed). Each long piece looks for a
cancel between its pieces."""

from __future__ import annotations

import copy
import hashlib
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from charrnn.budget import START_CHUNK_CHARS, pieces
from charrnn.card import CardInfo
from charrnn.checkpoint import CheckpointError, check_writable, is_checkpoint, load_model, load_training_state
from charrnn.config import TrainConfig
from charrnn.model import CharRNN
from charrnn.text import Corpus, TextError, normalize, normalize_newlines
from charrnn.vocab import Vocab, outside_note


def open_out_dir(out_dir: Path, resume: bool, overwrite: bool) -> dict | None:
    """Check the output directory before anything long starts; resuming, the training state saved in it.

    A directory that holds something else is never overwritten unless asked, and one that cannot be
    written fails now rather than at the first checkpoint minutes into the run.
    """
    state = None
    if resume:
        if not is_checkpoint(out_dir):
            raise CheckpointError(f"{out_dir} has no checkpoint to resume")
        state = load_training_state(out_dir)
    elif out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        if is_checkpoint(out_dir):
            raise CheckpointError(f"{out_dir} already holds a model; "
                                  "pass --resume to continue it or --overwrite to replace it")
        raise CheckpointError(f"{out_dir} exists and is not empty; choose a new directory for the model")
    check_writable(out_dir)
    return state


def load_base(init: str | Path | CharRNN, card_info: CardInfo) -> CharRNN:
    """The model to fine-tune (a directory or repo id is loaded on the CPU), named on the card as the
    base model unless the card already names one."""
    base = init if isinstance(init, CharRNN) else load_model(init, device="cpu")
    if card_info.base_model is None:
        card_info.base_model = str(init) if isinstance(init, (str, Path)) else getattr(base, "source", None)
    return base


def read_texts(corpora: list[Corpus] | list[str], fold: bool, check: Callable[[], None]) -> tuple[list[str], str]:
    """The training texts as the model will read them, and their digest (a resumed run must get the same)."""
    texts = [normalize_stoppable(c.text if isinstance(c, Corpus) else c, fold, check) for c in corpora]
    if not texts or not any(texts):
        raise TextError("no training text was given")
    return texts, hashlib.sha256("\x00".join(texts).encode("utf-8", "surrogatepass")).hexdigest()


def normalize_stoppable(text: str, fold: bool, check: Callable[[], None]) -> str:
    """normalize(text, fold), piece by piece: line ends first over the whole text (a CR LF may straddle
    two pieces), then the folding, which maps each character on its own."""
    text = normalize_newlines(text)
    if len(text) <= START_CHUNK_CHARS:
        return normalize(text, fold)
    return "".join(normalize(piece, fold) for piece in pieces([text], check))


def id_dtype(vocab: Vocab) -> torch.dtype:
    """The smallest integer type that holds every id of vocab: a long text's ids are kept in it, and
    each batch is widened to long for the embedding and the loss (Streams.window)."""
    return torch.int16 if len(vocab) <= torch.iinfo(torch.int16).max else torch.int32


def encode_stoppable(vocab: Vocab, text: str, check: Callable[[], None]) -> torch.Tensor:
    """vocab.encode(text) as id_dtype(vocab), piece by piece into one tensor, so a cancel is seen
    between pieces of a long text and no long int64 copy of it is ever made."""
    ids = torch.empty(len(text), dtype=id_dtype(vocab))
    at = 0
    for piece in pieces([text], check):
        ids[at : at + len(piece)] = vocab.encode(piece)
        at += len(piece)
    return ids


def build_model(state: dict | None, base: CharRNN | None, texts: list[str], cfg: TrainConfig, fold: bool,
                check: Callable[[], None], card_info: CardInfo) -> CharRNN:
    """The model to train: resumed from its state, fine-tuned from base (its vocabulary grown to cover
    the new text, noted on the card), or new, with a vocabulary built from the texts."""
    if state is not None:
        model = CharRNN(**state["meta"]["model_config"])
        weights = {k[len("model."):]: v for k, v in state["tensors"].items() if k.startswith("model.")}
        model.load_state_dict(weights, strict=True)
        return model
    if base is not None:
        vocab = base.vocab.extended(pieces(texts, check), cfg.max_vocab)
        new_chars = len(vocab) - len(base.vocab)
        model = base.grow_vocab(vocab) if new_chars else copy.deepcopy(base)
        if new_chars:
            card_info.notes.append(f"Fine-tuning added {new_chars} characters to the base model's vocabulary.")
        if cfg.dropout is not None:
            model.set_dropout(cfg.dropout)
        model.ascii_fold = fold
        return model
    counts: Counter[str] = Counter()
    for piece in pieces(texts, check):
        counts.update(piece)
    vocab = Vocab.build([counts], cfg.max_vocab)
    note = outside_note(counts, vocab)
    if note:
        card_info.notes.append(note)
    return CharRNN(list(vocab.chars), ascii_fold=fold, cell=cfg.cell, num_layers=cfg.num_layers,
                   hidden_size=cfg.hidden_size, embedding_dim=cfg.embedding_dim, dropout=cfg.dropout)


def own_card_info(given: CardInfo | Mapping[str, object] | None) -> CardInfo:
    """The run's own copy of the caller's card information (a dict of CardInfo's field names is read as
    one), less any measurements: the run makes its own."""
    if given is None:
        return CardInfo()
    info = CardInfo.from_meta(given) if isinstance(given, Mapping) else given
    return copy.deepcopy(info).unmeasured()


def resumed_card_info(given: CardInfo, saved: Mapping[str, object] | None) -> CardInfo:
    """A resumed run's card information: the saved run's (a plain dict in the training state, in older
    checkpoints as now), less what this run measures anew, and the command that resumed it after the
    command that started it."""
    card_info = (CardInfo.from_meta(saved) if saved is not None else given).unmeasured()
    resumed_with = given.command
    if resumed_with and resumed_with not in (card_info.command or ""):
        card_info.command = f"{card_info.command or ''}`, then resumed with `{resumed_with}"
    return card_info
