"""The checks every tab runs on what a visitor sends: files, text, names, whole numbers, sampling settings.

Each returns the value as the handlers use it, or raises gr.Error with one line naming the field.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import gradio as gr

from charrnn.sampling import MAX_STOP_CHARS, SampleSettings, unescape
from charrnn.text import Corpus, TextError, read_corpus
from webapp import limits
from webapp.components import shown

STOP_CHOICES = {"the length": (), "end of sentence": (".", "!", "?"), "end of line": ("\n",), "blank line": ("\n\n",)}
MAX_SHOWN_NAME_CHARS = 80  # an uploaded file's name as messages show it


def uploaded_file(file: object) -> tuple[Path, str]:
    """An uploaded file's server-side path and the name to call it by, whatever shape Gradio or a client
    handed it in; a gr.Error when there is none, or it is over MAX_UPLOAD_BYTES."""
    if file is None:
        raise gr.Error("Upload a .txt file first.")
    path = getattr(file, "name", None) or (file.get("path") if isinstance(file, dict) else file)
    if not isinstance(path, (str, Path)) or not str(path):
        raise gr.Error(f"the upload must be a file, not {shown(file)}")
    path = Path(str(path))
    orig = getattr(file, "orig_name", None) or (file.get("orig_name") if isinstance(file, dict) else None)
    name = Path(str(orig or path.name)).name
    if len(name) > MAX_SHOWN_NAME_CHARS:  # a client picks the name: messages and the model's name quote it
        name = name[: MAX_SHOWN_NAME_CHARS - 5] + "…" + Path(name).suffix[-4:]
    try:
        size = path.stat().st_size
    except OSError:
        raise gr.Error(f"{name}: the upload could not be read; try again") from None
    if size > limits.MAX_UPLOAD_BYTES:
        raise gr.Error(f"{name} is {size / 2**20:.1f} MB; "
                       f"the upload limit is {limits.MAX_UPLOAD_BYTES / 2**20:.0f} MB")
    return path, name


def read_text(source: str | Path | bytes, name: str) -> Corpus:
    """source read as `charrnn train` and `charrnn eval` read a file; a gr.Error saying why it cannot be. The notes
    the page shows replace the library's warnings."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return read_corpus(source, name=name)
    except TextError as exc:
        raise gr.Error(str(exc)) from None


def text_input(value: object, what: str, cap: int = limits.MAX_TEXT_CHARS) -> str:
    """A text box's value as text ("" for none), refused when it is not text or longer than cap."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise gr.Error(f"the {what} must be given as text, not {type(value).__name__}")
    if len(value) > cap:
        raise gr.Error(f"the {what} is {len(value):,} characters long; at most {cap:,} are read here")
    return value


def name_input(value: object, what: str) -> str:
    """A model name or Hub repo id as given, without surrounding whitespace ("" for none)."""
    return text_input(value, what, limits.MAX_NAME_CHARS).strip()


def is_whole(value: object, low: int, high: int) -> bool:
    """Whether value is a whole number from low to high (a float such as 3.0 counts; True does not)."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and float(value).is_integer())
    return ok and low <= value <= high


def whole_number(value: object, what: str, low: int, high: int) -> int:
    """value as a whole number from low to high, or a gr.Error."""
    if not is_whole(value, low, high):
        raise gr.Error(f"{what} must be a whole number, at least {low:,} and at most {high:,}, not {shown(value)}")
    return int(value)


def sample_settings(length: object, temperature: object, top_k: object, top_p: object, seed: object,
                    vocab_size: int, max_length: int = limits.MAX_GENERATE_CHARS, stop_at: object = None,
                    min_length: object = 0) -> SampleSettings:
    """The page's sampling inputs, converted and checked in one place for every view that samples."""
    length = whole_number(length, "length", 1, limits.MAX_GENERATE_CHARS)
    top_k = whole_number(0 if top_k is None else top_k, "top-k", 0, 10**6)
    min_length = whole_number(0 if min_length is None else min_length, "minimum length", 0, limits.MAX_GENERATE_CHARS)
    stop = stop_strings(stop_at)
    try:
        settings = SampleSettings(length=min(length, max_length), temperature=temperature, top_k=top_k or None,
                                  top_p=top_p, seed=seed, stop=stop, min_length=min_length)
        return settings.checked(vocab_size)
    except gr.Error:  # a gr.Error is a ValueError: passed on as it is, its message unquoted
        raise
    except (TypeError, ValueError) as exc:
        raise gr.Error(str(exc)) from None


def stop_strings(stop_at: object) -> tuple[str, ...]:
    """The "Stop at" choice as stop strings: one of STOP_CHOICES, or any text typed (\\n is a newline)."""
    if stop_at is None or stop_at == "":
        return ()
    if not isinstance(stop_at, str):
        raise gr.Error(f"stop at must be one of {', '.join(STOP_CHOICES)} or a text, not {type(stop_at).__name__}")
    if stop_at in STOP_CHOICES:
        return STOP_CHOICES[stop_at]
    return (unescape(text_input(stop_at, "stop at", MAX_STOP_CHARS)),)

