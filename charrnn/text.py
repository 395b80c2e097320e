"""Text ingestion: turn whatever a user hands us (a path or uploaded bytes) into clean text.

Users upload Gutenberg books, Windows files, UTF-16 exports and, by mistake, images.
Everything here exists so that training never starts on garbage and never crashes on
an encoding.
"""

from __future__ import annotations

import codecs
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from unidecode import unidecode


class TextError(ValueError):
    """A corpus or prompt the engine refuses; the message is meant for the user as is."""


BINARY_SIGNATURES: dict[bytes, str] = {
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"PK\x03\x04": "a ZIP archive",
    b"PK\x05\x06": "a ZIP archive",
    b"%PDF-": "a PDF document",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF87a": "a GIF image",
    b"GIF89a": "a GIF image",
    b"\x1f\x8b": "a gzip archive",
    b"\x7fELF": "an executable",
    **{b"BZh" + bytes([level]) + b"1AY&SY": "a bzip2 archive" for level in b"123456789"},
    b"7z\xbc\xaf\x27\x1c": "a 7-Zip archive",
    b"\xfd7zXZ\x00": "an xz archive",
    b"RIFF": "a RIFF (audio/video) file",
    **{b"ID3" + bytes([version]): "an MP3 file" for version in (2, 3, 4)},
    b"OggS": "an Ogg file",
    b"\xd0\xcf\x11\xe0": "an old Microsoft Office document",
}

FOLD_CHUNK_CHARS = 1 << 20  # ascii_fold translates a long text this many characters at a time
MAX_CONTROL_SHARE = 0.01  # share of C0 control characters (besides \t \n \r \f) that marks a file as binary

_GUTENBERG_START = re.compile(r"^\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG.*$", re.IGNORECASE | re.MULTILINE)
_GUTENBERG_END = re.compile(
    r"^(\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG.*|End of (the )?Project Gutenberg.*)$",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass
class Corpus:
    """Decoded, normalised text plus what happened on the way, for the UI to report."""

    text: str
    encoding: str
    name: str = "text"
    gutenberg_stripped: bool = False
    ascii_folded: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def chars(self) -> int:
        return len(self.text)


def utf16_without_bom(data: bytes) -> str | None:
    """'utf-16-le' or 'utf-16-be' when data looks like BOM-less UTF-16 (a NUL in every other byte of ASCII text)."""
    head = data[:4096]
    if len(data) % 2 or len(head) < 8:
        return None
    for encoding, nul_half in (("utf-16-le", head[1::2]), ("utf-16-be", head[0::2])):
        if nul_half.count(0) >= 0.9 * len(nul_half):
            try:
                data.decode(encoding)
            except UnicodeDecodeError:
                return None
            return encoding
    return None


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Decode with the encodings real files use; cp1252 is the last resort and warns."""
    if data.startswith(codecs.BOM_UTF8):
        text = data[len(codecs.BOM_UTF8) :].decode("utf-8", errors="replace")
        bad = text.count("\ufffd") - data.count("\ufffd".encode())
        if bad > 0:
            warnings.warn(f"{bad:,} byte sequences are not valid UTF-8 despite the UTF-8 byte-order mark; "
                          "they became \ufffd", stacklevel=2)
        return text, "utf-8-sig"
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: FF FE 00 00 starts with FF FE
        try:
            return data.decode("utf-32"), "utf-32"
        except UnicodeDecodeError as exc:
            raise TextError("the file starts with a UTF-32 byte-order mark "
                            f"but is not valid UTF-32 ({exc.reason})") from None
    if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise TextError("the file starts with a UTF-16 byte-order mark "
                            f"but is not valid UTF-16 ({exc.reason})") from None
    if (encoding := utf16_without_bom(data)) is not None:
        return data.decode(encoding), encoding
    text = utf8_cut_short(data)
    if text is not None:
        return text, "utf-8"
    warnings.warn("the text is not UTF-8 or UTF-16; decoded it as cp1252 (Windows Western European)", stacklevel=2)
    # cp1252 leaves five bytes undefined; they carry no text, so they are dropped.
    return data.decode("cp1252", errors="ignore"), "cp1252"


def utf8_cut_short(data: bytes) -> str | None:
    """data decoded as UTF-8, None when it is not UTF-8. A file cut in the middle of its last character
    (a download or a copy that stopped short) is still UTF-8: the incomplete character is dropped, with
    a warning. Decoded in one pass, into the text and nothing else."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        text = decoder.decode(data, final=False)
    except UnicodeDecodeError:
        return None
    tail = len(decoder.getstate()[0])
    if tail:
        warnings.warn(f"the last {tail} byte{'s' if tail > 1 else ''} are the start of a UTF-8 character that the "
                      "file cuts off; dropped them", stacklevel=3)
    return text


def check_not_binary(data: bytes, name: str = "the file") -> None:
    """Refuse images, archives and other binaries before they are decoded into nonsense."""
    for signature, what in BINARY_SIGNATURES.items():
        if data.startswith(signature):
            raise TextError(f"{name} is {what}, not a text file")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or utf16_without_bom(data):
        return  # UTF-16 and UTF-32 text is full of NUL bytes by design
    if b"\x00" in data:
        raise TextError(f"{name} contains NUL bytes, so it is binary, not a text file")


def check_control_share(text: str, name: str = "the file") -> None:
    if not text:
        return
    sample = text[:1_000_000]
    controls = sum(1 for c in sample if (ord(c) < 32 and c not in "\t\n\r\f") or c == "\x7f")
    if controls / len(sample) > MAX_CONTROL_SHARE:
        raise TextError(
            f"{name} is {100 * controls / len(sample):.1f}% control characters, so it is binary, not a text file"
        )


_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")


def cjk_share(text: str) -> float:
    """The share of a text's non-space characters that are CJK ideographs (Chinese characters)."""
    letters = sum(1 for c in text if not c.isspace())
    return len(_CJK.findall(text)) / letters if letters else 0.0


def mostly_chinese(text: str) -> bool:
    """Whether at least half of a text (or of a vocabulary's characters, joined) is Chinese characters."""
    return cjk_share(text) >= 0.5


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def strip_gutenberg(text: str) -> tuple[str, bool]:
    """Drop the Project Gutenberg header and licence; people upload whole eBooks."""
    stripped = False
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end() :]
        stripped = True
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
        stripped = True
    return (text.strip("\n") + "\n" if stripped else text), stripped


def ascii_fold(text: str) -> str:
    """Curly quotes to straight, accents to plain letters; keeps newlines and tabs.

    Each distinct non-ASCII character is transliterated once (unidecode works character by
    character) and the text is translated FOLD_CHUNK_CHARS at a time, so a long text costs about
    two copies of the result rather than a Python string per character.
    """
    if text.isascii():
        return text
    table = {ord(c): unidecode(c, errors="preserve") for c in set(text) if not c.isascii()}
    return "".join(text[i : i + FOLD_CHUNK_CHARS].translate(table) for i in range(0, len(text), FOLD_CHUNK_CHARS))


def normalize(text: str, fold: bool) -> str:
    """What a model applies to any text it reads: the same for training, prompts and eval."""
    text = normalize_newlines(text)
    return ascii_fold(text) if fold else text


def read_corpus(source: str | Path | bytes, *, fold: bool = False, name: str | None = None) -> Corpus:
    """Read a corpus from a path or uploaded bytes, refusing what is not text.

    The file's bytes are let go as soon as they are decoded, and no step copies the whole
    text more than once, so a large upload costs a few times its size at most.
    """
    name = name or (Path(source).name if isinstance(source, (str, Path)) else "upload")
    text, encoding, notes = _decoded(_file_bytes(source, name), name)
    check_control_share(text, name)
    text = normalize_newlines(text)
    text, stripped = strip_gutenberg(text)
    if stripped:
        notes.append(f"{name}: stripped the Project Gutenberg header and licence")
    if fold:
        text = ascii_fold(text)
    if not text or text.isspace():
        after = " after removing the Project Gutenberg boilerplate" if stripped else ""
        raise TextError(f"{name} has no text in it{after}")
    return Corpus(text=text, encoding=encoding, name=name, gutenberg_stripped=stripped, ascii_folded=fold, notes=notes)


def _file_bytes(source: str | Path | bytes, name: str) -> bytes:
    """The bytes of a path or an upload; a TextError for a missing, unreadable or empty file, or a binary one."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise TextError(f"{path}: no such file")
        if path.is_dir():
            raise TextError(f"{path} is a directory, not a text file")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise TextError(f"{path}: cannot read it ({exc.strerror})") from None
    else:
        data = bytes(source)
    if not data:
        raise TextError(f"{name} is empty")
    check_not_binary(data, name)
    return data


def _decoded(data: bytes, name: str) -> tuple[str, str, list[str]]:
    """(text, encoding, notes on how it was decoded): decode_bytes, its warnings passed on with the name."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text, encoding = decode_bytes(data)
    notes = [f"{name}: {w.message}" for w in caught]
    for note in notes:
        warnings.warn(note, stacklevel=3)
    return text, encoding, notes
