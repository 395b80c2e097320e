"""Reading a corpus the way users hand it over: odd encodings, Gutenberg books, binaries by mistake."""

import codecs
import io
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn.text import TextError, decode_bytes, normalize, read_corpus, utf16_without_bom

STORY = "Once upon a time there was a “little” café.\nThe end.\n"


def test_utf8_with_and_without_bom_read_the_same(tmp_path):
    plain, bom = tmp_path / "plain.txt", tmp_path / "bom.txt"
    plain.write_bytes(STORY.encode("utf-8"))
    bom.write_bytes(codecs.BOM_UTF8 + STORY.encode("utf-8"))
    a, b = read_corpus(plain), read_corpus(bom)
    assert a.text == b.text == STORY
    assert (a.encoding, b.encoding) == ("utf-8", "utf-8-sig")
    assert a.name == "plain.txt"


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_bom_is_decoded(codec):
    data = STORY.encode(codec)
    if codec == "utf-16-le":
        data = codecs.BOM_UTF16_LE + data
    elif codec == "utf-16-be":
        data = codecs.BOM_UTF16_BE + data
    corpus = read_corpus(data)
    assert corpus.text == STORY
    assert corpus.encoding == "utf-16"


def test_other_encodings_fall_back_to_cp1252_with_a_warning():
    data = "Caf\xe9 \x93quoted\x94 \x80 5".encode("latin-1")  # Windows-1252 bytes, not valid UTF-8
    with pytest.warns(UserWarning, match="cp1252"):
        corpus = read_corpus(data, name="old.txt")
    assert corpus.text == "Café “quoted” € 5"
    assert corpus.encoding == "cp1252"
    assert any("cp1252" in note for note in corpus.notes)


def test_windows_and_old_mac_newlines_become_unix():
    corpus = read_corpus(b"one\r\ntwo\rthree\nfour")
    assert corpus.text == "one\ntwo\nthree\nfour"
    assert normalize("a\r\nb\rc", fold=False) == "a\nb\nc"


@pytest.mark.parametrize(
    "data, what",
    [
        (b"\x89PNG\r\n\x1a\n" + b"IHDR" * 40, "PNG"),
        (b"%PDF-1.7\n%some text-looking header\n1 0 obj << /Type /Catalog >>\n", "PDF"),
        (b"hello\x00world, this looks like text but has a NUL byte", "NUL"),
        (bytes(range(1, 32)) * 10 + b"a few letters", "control characters"),
    ],
)
def test_binary_files_are_refused_with_a_clear_error(data, what):
    with pytest.raises(TextError, match=what):
        read_corpus(data, name="upload.bin")


def test_a_zip_archive_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("book.txt", STORY * 100)
    path = tmp_path / "book.zip"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(TextError, match="book.zip is a ZIP archive"):
        read_corpus(path)


def test_text_that_merely_starts_like_a_signature_is_still_text():
    assert read_corpus(b"BZhang said hello.\n").text == "BZhang said hello.\n"
    assert read_corpus(b"ID3 tags are metadata.\n").text == "ID3 tags are metadata.\n"


def test_a_few_control_characters_do_not_make_text_binary():
    text = "A form feed\f, a tab\t and one escape \x1b.\n" + "A long stretch of ordinary prose. " * 20
    assert read_corpus(text.encode()).text == text


GUTENBERG_STAR = """The Project Gutenberg eBook of Tales, by Someone

This eBook is for the use of anyone anywhere.

*** START OF THE PROJECT GUTENBERG EBOOK TALES ***

Once upon a time.

*** END OF THE PROJECT GUTENBERG EBOOK TALES ***

Section 1. General Terms of Use and Redistributing Project Gutenberg-tm electronic works
"""

GUTENBERG_OLD = """TALES

Once upon a time.

End of the Project Gutenberg EBook of Tales, by Someone

*** END OF THIS PROJECT GUTENBERG EBOOK TALES ***

THE FULL PROJECT GUTENBERG LICENSE
"""


@pytest.mark.parametrize("book", [GUTENBERG_STAR, GUTENBERG_OLD])
def test_gutenberg_header_and_licence_are_stripped(book):
    corpus = read_corpus(book.encode())
    assert corpus.gutenberg_stripped
    assert "Once upon a time." in corpus.text
    assert "Gutenberg" not in corpus.text
    assert any("Gutenberg" in note for note in corpus.notes)


def test_a_book_that_is_only_gutenberg_boilerplate_is_refused():
    book = "*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence\n"
    with pytest.raises(TextError, match="no text in it after removing the Project Gutenberg boilerplate"):
        read_corpus(book.encode())


def test_real_gutenberg_book_loses_its_licence(corpus_dir):
    corpus = read_corpus(corpus_dir / "andersen_fairy_tales.txt")
    assert corpus.gutenberg_stripped
    assert corpus.text.startswith("ANDERSEN'S FAIRY TALES")
    assert "Project Gutenberg" not in corpus.text
    assert "LICENSE" not in corpus.text


def test_plain_text_is_left_alone():
    corpus = read_corpus(STORY.encode())
    assert not corpus.gutenberg_stripped and not corpus.ascii_folded
    assert corpus.text == STORY  # curly quotes and accents are kept by default


def test_ascii_folding_straightens_quotes_and_accents():
    corpus = read_corpus("“Naïve” café – résumé’s\n".encode(), fold=True)
    assert corpus.ascii_folded
    assert corpus.text == "\"Naive\" cafe - resume's\n"
    assert normalize("“é”\r\n", fold=True) == '"e"\n'


def test_empty_and_blank_files_are_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(TextError, match="empty.txt is empty"):
        read_corpus(empty)
    with pytest.raises(TextError, match="no text"):
        read_corpus(b" \n\n\t \r\n")


def test_missing_file_and_directory_are_refused(tmp_path):
    with pytest.raises(TextError, match="no such file"):
        read_corpus(tmp_path / "nope.txt")
    with pytest.raises(TextError, match="is a directory"):
        read_corpus(tmp_path)


# --- a file cut short ----------------------------------------------------------------------------

# Text a UTF-8 file may hold: no NUL (binary) and no lone surrogate (not encodable); no BOM at the start.
FILE_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00\ufeff"), min_size=1)


@settings(max_examples=300, deadline=None)
@given(text=FILE_TEXT, cut=st.integers(1, 3), data=st.data())
def test_utf8_cut_inside_its_last_character_is_utf8_with_that_character_dropped(text, cut, data):
    last = data.draw(st.sampled_from(["é", "中", "😀", "€"]))
    whole = (text + last).encode("utf-8")
    cut = min(cut, len(last.encode("utf-8")) - 1)
    if utf16_without_bom(whole[:-cut]):
        return  # a text of mostly NUL-free pairs that reads as UTF-16 is not this property's business
    with pytest.warns(UserWarning, match="cuts off"):
        decoded, encoding = decode_bytes(whole[:-cut])
    assert (decoded, encoding) == (text, "utf-8")


def test_a_chinese_upload_cut_mid_character_reads_as_chinese():
    poem = "床前明月光，疑是地上霜。\n舉頭望明月，低頭思故鄉。" * 2000
    data = poem.encode("utf-8")[:-1]  # two of the last full stop's three bytes
    with pytest.warns(UserWarning, match="the last 2 bytes"):
        corpus = read_corpus(data, name="tang.txt")
    assert corpus.encoding == "utf-8"
    assert corpus.text == poem[:-1]
    assert any("cuts off" in note for note in corpus.notes)


def test_a_bad_byte_in_the_middle_is_still_not_utf8():
    data = "Café".encode() + b"\xff" + "中".encode()[:2]
    with pytest.warns(UserWarning, match="cp1252"):
        assert read_corpus(data).encoding == "cp1252"


def test_folding_a_long_text_gives_what_unidecode_gives_for_it():
    from unidecode import unidecode

    from charrnn.text import FOLD_CHUNK_CHARS, ascii_fold

    text = ("“Naïve” café, 北京 — Ærøskøbing ½ 😀\n" * (FOLD_CHUNK_CHARS // 20))[: FOLD_CHUNK_CHARS * 2 + 7]
    assert ascii_fold(text) == unidecode(text, errors="preserve")
