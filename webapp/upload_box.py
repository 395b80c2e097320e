"""The upload box of the Train tab: what the uploaded text holds, and the shipped model to start from.

Uploads reads the upload (folded to ASCII or not, as the visitor or the base model asks), suggests the
shipped model of the text's script as the base, reports what the app read, and says when the time
budget is too short to fine-tune on the whole text. fold_setting reads the folding radio's choice.
"""

from __future__ import annotations

import dataclasses
import threading

import gradio as gr

from charrnn.batching import min_chars_needed
from charrnn.config import FINETUNE_DEFAULTS, TrainConfig
from charrnn.finetune import budget_hint, finetune_chars_per_s
from charrnn.model import CharRNN
from charrnn.text import Corpus, ascii_fold, mostly_chinese, normalize
from charrnn.vocab import describe_chars
from webapp import i18n, limits
from webapp.inputs import read_text, uploaded_file
from webapp.jobs import in_thread
from webapp.models import SCRATCH, Studio
from webapp.session import Session

FOLD_CHOICES = ("as the base model", "fold to ASCII", "keep Unicode")
MAX_SUGGEST_CHARS = 100_000  # the start of an upload that decides which shipped model it starts from


def fold_setting(fold: str | bool | None) -> bool | None:
    """The folding radio's choice as TrainConfig.ascii_fold: None (as the base model), True or False."""
    if isinstance(fold, bool):
        return fold
    if fold in (None, "", FOLD_CHOICES[0]):
        return None
    if fold not in FOLD_CHOICES:
        raise gr.Error(f"ASCII folding must be one of {', '.join(FOLD_CHOICES)}, not {fold!r}")
    return fold == FOLD_CHOICES[1]


class Uploads:
    """Handlers that read the uploaded text: what it holds, and the shipped model to start from."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self._speeds: dict[tuple, float] = {}  # fine-tuning chars/s by architecture, measured once per process
        self._measuring = threading.Lock()

    def read_upload(self, file, fold: str | bool | None = None, base: str | None = None,
                    session: Session | None = None) -> Corpus:
        """The uploaded text, or a gr.Error saying why it cannot be trained on."""
        return self.read_both(file, fold, base, session)[0]

    def read_both(self, file, fold: str | bool | None = None, base: str | None = None,
                  session: Session | None = None, fold_chars: int | None = None) -> tuple[Corpus, Corpus]:
        """(the uploaded text as it would be trained on, the same unfolded): the file decoded once, then folded
        when fold (or, unset, the base model) asks for it, only its first fold_chars characters when given;
        a gr.Error saying why it cannot be trained on."""
        path, name = uploaded_file(file)
        fold_flag = fold_setting(fold)
        if fold_flag is None and base not in (None, "", SCRATCH):
            base_dir = self.studio.model_dir(base, session)
            if base_dir is not None:
                fold_flag = self.studio.load(base, None, session).ascii_fold
        unfolded = read_text(path, name)
        corpus = unfolded
        if fold_flag:
            part = unfolded.text if fold_chars is None else unfolded.text[:fold_chars]
            notes = list(unfolded.notes)
            if len(part) < unfolded.chars:
                notes.append(f"folded to ASCII here from the first {len(part):,} of {unfolded.chars:,} characters, "
                             "what one call's budget allows; training folds them all")
            corpus = dataclasses.replace(unfolded, text=ascii_fold(part), ascii_folded=True, notes=notes)
        need = min_chars_needed(1, FINETUNE_DEFAULTS["seq_len"], TrainConfig().val_fraction)
        if corpus.chars < need:
            raise gr.Error(f"{name} is too short to train on: {corpus.chars:,} characters, "
                           f"but at least {need:,} are needed")
        return corpus, unfolded

    def suggested_base(self, corpus: Corpus, session: Session | None = None) -> tuple[str | None, str]:
        """The shipped model to fine-tune an upload from by default, and why: one mostly in the upload's
        script (Chinese or not, by the share of CJK ideographs in the text and in each model's vocabulary)."""
        chinese = mostly_chinese(corpus.text[:MAX_SUGGEST_CHARS])
        for name in self.studio.shipped():
            model = self.studio.load(name, None, session)
            if mostly_chinese("".join(model.vocab.chars)) == chinese:
                script = "Chinese" if chinese else "an alphabet, not Chinese"
                return name, f"starting from {name}, the shipped model for text in {script}, as this text is"
        return None, ""

    def suggest_base(self, file, base: str | None = None, session: Session | None = None) -> dict:
        """After an upload: the base model set to a shipped model of the text's script, when the base is a
        shipped one (a fine-tune the visitor picked stays)."""
        if file is None or base not in (None, "", *self.studio.shipped()):
            return gr.update()
        suggested, _ = self.suggested_base(self.read_upload(file, False, None, session), session)  # unfolded
        return gr.update(value=suggested) if suggested is not None else gr.update()

    def inspect_upload(self, file, base: str | None = None, fold: str | bool | None = None,
                       session: Session | None = None) -> str:
        """What the app read from the upload, as Markdown; empty when nothing is uploaded."""
        if file is None:
            return ""
        corpus, unfolded = self.read_both(file, fold, base, session, fold_chars=limits.MAX_FOLD_VIEW_CHARS)
        lines = [
            f"**{corpus.name}**: {corpus.chars:,} characters, {len(set(corpus.text)):,} distinct",
            f"- encoding: {corpus.encoding}",
            f"- Project Gutenberg header and licence: {'stripped' if corpus.gutenberg_stripped else 'none found'}",
            f"- ASCII folding: {'on' if corpus.ascii_folded else 'off'}",
        ]
        if base and base != SCRATCH:
            net = self.studio.load(base, None, session)
            new = net.vocab.unknown_in(normalize(corpus.text, net.ascii_fold or corpus.ascii_folded))
            lines.append(f"- characters new to {base}: {describe_chars(new) if new else 'none'}"
                         + (f" ({len(new)}; fine-tuning adds them to the vocabulary)" if new else ""))
        if base in self.studio.shipped():  # judged on the text as uploaded: folding turns Chinese into pinyin
            suggested, why = self.suggested_base(unfolded, session)
            if suggested == base:
                lines.append(f"- base: {why}")
        lines += [f"- note: {n}" for n in corpus.notes if "Project Gutenberg" not in n]  # said above
        return "\n".join(lines)

    def hint(self, file, base: str | None = None, minutes: object = None, session: Session | None = None,
             request: gr.Request | None = None) -> str:
        """One line before Start when the time budget is too short for fine-tuning on the whole upload (what a
        minute reads here, measured); empty otherwise, and when the upload or the settings cannot be read
        (the upload report says why)."""
        valid = isinstance(minutes, (int, float)) and not isinstance(minutes, bool) and \
            limits.MIN_TIME_BUDGET_MIN <= minutes <= limits.MAX_TIME_BUDGET_MIN
        if file is None or not valid or not isinstance(base, str) or base.strip() in ("", SCRATCH):
            return ""
        try:
            corpus = self.read_upload(file, None, base.strip(), session)
            net = self.studio.load(base.strip(), None, session)
        except gr.Error:
            return ""
        text = budget_hint(corpus.chars, float(minutes) * 60, self.finetune_speed(net))
        return i18n.english_to(i18n.language(request), text)

    def finetune_speed(self, net: CharRNN) -> float:
        """Characters per second fine-tuning net's architecture trains at here, with the training thread's
        core count: measured the first time (about a second, in a thread of its own), then remembered."""
        key = (net.cell, net.num_layers, net.hidden_size, net.embedding_dim, len(net.vocab), str(self.studio.device))
        with self._measuring:
            if key not in self._speeds:
                measure = lambda: iter([finetune_chars_per_s(net, self.studio.device)])  # noqa: E731
                self._speeds[key] = next(in_thread(measure, limits.TRAIN_THREADS, threading.Event(), "measure"))
            return self._speeds[key]
