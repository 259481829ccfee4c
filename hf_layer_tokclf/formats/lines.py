"""The lines of a user's file, read as every reader of the package reads them, and the error they raise.

- `DataError`: an error in the user's data, naming the file, line and value.
- What a file is: `existing_file` refuses a missing, folder or binary one; `open_binary` reads gzip through
  (told by its magic bytes); `read_head` and `format_suffix` tell its format.
- Its lines, in bounded pieces: no line-based reader (CoNLL, JSON lines, text, PubTator) takes a line past the
  record-size limit (`MAX_RECORD_BYTES`, `record_limit`, `bounded_lines`, `numbered_lines`); `text_lines` decodes
  them as UTF-8, naming the line and byte that is not.
"""

import gzip
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "HEAD_BYTES",
    "MAX_RECORD_BYTES",
    "READ_ERRORS",
    "RECORD_LIMIT_VARIABLE",
    "DataError",
    "bounded_lines",
    "existing_file",
    "format_suffix",
    "not_utf8",
    "numbered_lines",
    "open_binary",
    "read_head",
    "record_limit",
    "text_lines",
    "too_long",
]

# The longest line a line-based reader (CoNLL, JSON lines, text, PubTator) takes, in bytes, line break excluded.
# Far above any real record (a PubMed abstract is a few KiB, a PMC full text as one JSON line a few MiB), it bounds
# what one line can cost: a 400 MB line in a 400 KB .gz is refused, read past in pieces, never held whole.
MAX_RECORD_BYTES = 64 * 2**20
RECORD_LIMIT_VARIABLE = "HF_LAYER_TOKCLF_MAX_RECORD_BYTES"
_PIECE_BYTES = 1 << 16  # how much of an overlong line is read at a time, to get past it


class DataError(ValueError):
    """An error in the user's data that they can fix; the message names the file, line and value."""


def existing_file(path: str | Path) -> Path:
    """``path`` as a Path; DataError where there is no such file, it is not a file (a folder), or it is not text.

    Every reader of text (CoNLL, JSON lines, the corpus formats) opens its file through this, so that
    an image or an archive given by mistake is refused before anything is done, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    reason = _binary(path)
    if reason is not None:
        raise DataError(f"{path}: a binary file, not text ({reason})")
    return path


def open_binary(path: str | Path) -> IO[bytes]:
    """The file's bytes, decompressed where it is gzip (told by its magic bytes, whatever its suffix)."""
    with open(path, "rb") as stream:
        magic = stream.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


# What a broken .gz raises while it is read: a bad header, a truncated stream, corrupt data.
READ_ERRORS = (OSError, EOFError, zlib.error)
# What format detection reads of a file's start.
HEAD_BYTES = 1 << 16


def read_head(path: str | Path, size: int = HEAD_BYTES) -> bytes:
    """Up to ``size`` first bytes of the file, decompressed where it is gzip (`open_binary`), to tell its format.

    Of a truncated or corrupt ``.gz`` (or a file that cannot be read), what could be read: its reader, not
    the sniffing, says what is wrong with it.
    """
    head = b""
    try:
        with open_binary(path) as stream:
            # read1 block by block: read() of a truncated .gz raises and gives nothing of what it decompressed.
            while len(head) < size and (block := stream.read1(size - len(head))):
                head += block
    except READ_ERRORS:
        pass
    return head


def format_suffix(path: str | Path) -> str:
    """The extension that names a file's format, in lower case: of a ``.gz`` file the one before it
    (``docs.conll.gz``: ``.conll``; ``docs.gz``: none)."""
    return Path(Path(path).name.lower().removesuffix(".gz")).suffix


_SNIFF_BYTES = 8192
# NUL, the control characters no text holds (tab, line breaks and form feeds aside), and the replacement of
# bytes that are not UTF-8. Over a quarter of a file's start, they make it binary (an image, an archive,
# UTF-16); a few are a text's own (a CoNLL token may be a control character) and its reader deals with them.
_NOT_TEXT = re.compile("[\x00-\x08\x0e-\x1f\x7f\ufffd]")


def _binary(path: Path) -> str | None:
    """Why the file's first bytes (decompressed) are not text, or None where they may be."""
    text = read_head(path, _SNIFF_BYTES).decode("utf-8", errors="replace")
    odd = len(_NOT_TEXT.findall(text))
    if odd > max(8, len(text) // 4):
        return f"{odd} of its first {len(text)} characters are NUL, control characters or not UTF-8"
    return None


def not_utf8(error: UnicodeDecodeError, line_start: int = 0) -> str:
    """What a line's UnicodeDecodeError says to the user: which byte is not UTF-8, and where in its line.

    ``line_start``: where the line starts in what was decoded (0 where a line was decoded on its own).
    """
    bad = error.object[error.start : error.start + 1]
    return f"not valid UTF-8 (byte 0x{bad.hex()} at byte {error.start - line_start + 1} of the line)"


def record_limit() -> int:
    """The record-size limit in bytes: `MAX_RECORD_BYTES`, or the ``HF_LAYER_TOKCLF_MAX_RECORD_BYTES`` environment
    variable where it is set (to raise it for a corpus of huge records).

    Raises:
        ValueError: the variable is not a positive whole number of bytes.
    """
    value = os.environ.get(RECORD_LIMIT_VARIABLE)
    if value is None:
        return MAX_RECORD_BYTES
    limit = int(value) if value.strip().isdigit() else 0
    if limit < 1:
        raise ValueError(f"{RECORD_LIMIT_VARIABLE}={value!r} is not a number of bytes (a positive whole number)")
    return limit


def too_long(limit: int) -> str:
    """What a line past the record-size limit is told: ``longer than the record-size limit of 64 MiB (...)``."""
    size = f"{limit // 2**20} MiB" if limit >= 2**20 and limit % 2**20 == 0 else f"{limit} bytes"
    return f"longer than the record-size limit of {size} ({RECORD_LIMIT_VARIABLE} raises it)"


def bounded_lines(stream: IO[bytes] | Iterable[bytes], limit: int | None = None) -> Iterator[bytes | None]:
    """Each line of a binary stream, its line break included, read ``limit`` bytes at most (default:
    `record_limit`), so that memory stays flat whatever a file holds.

    A line longer than ``limit`` (its ``\\n`` or ``\\r\\n`` not counted) gives `None` in its place: it is read
    past in pieces, never held whole, and the lines after it follow. A stream without ``readline`` (lines
    already read, such as a text stream's, encoded) has only its lines' lengths checked.
    """
    limit = record_limit() if limit is None else limit
    readline = getattr(stream, "readline", None)
    for line in iter(lambda: readline(limit + 2), b"") if readline is not None else stream:
        ended = line.endswith(b"\n")
        if len(line) - ended - line.endswith(b"\r\n") <= limit:
            yield line
            continue
        while readline is not None and not ended and (piece := readline(_PIECE_BYTES)):
            ended = piece.endswith(b"\n")
        yield None


def numbered_lines(stream: IO[bytes] | Iterable[bytes], source: str | Path) -> Iterator[tuple[int, bytes | str]]:
    """(number, bytes) of each line of a binary stream, numbered from 1, read in bounded pieces (`bounded_lines`);
    for a line past the record-size limit, in place of its bytes, what it is told (`too_long`). The one loop of
    every line-based reader: each decodes the lines and says what a bad one costs (the line, or the run).

    Raises:
        DataError: naming ``source`` and the last line read, for a stream that cannot be read on (a truncated
            or corrupt ``.gz``).
    """
    limit, number = record_limit(), 0
    try:
        for number, raw in enumerate(bounded_lines(stream, limit), start=1):
            yield number, too_long(limit) if raw is None else raw
    except READ_ERRORS as error:
        raise DataError(f"{source}: cannot be read after line {number} ({error})") from None


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(number, text) of each line of a UTF-8 file (gzip read through), without its line break or a byte order mark,
    read in bounded pieces (`numbered_lines`): lines split at ``\\n`` only, since characters such as U+2028 or U+0085
    (which `str.splitlines` splits at) can be tokens of their own in biomedical text.

    Raises:
        DataError: naming the file and line, for a line that is not UTF-8 or past the record-size limit;
            naming the file, for a truncated or corrupt ``.gz``.
    """
    offset = 0
    with open_binary(path) as stream:
        for number, raw in numbered_lines(stream, path):
            if isinstance(raw, str):
                raise DataError(f"{path}, line {number}: {raw}")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"{path}, line {number}: not valid UTF-8 (byte 0x{raw[error.start : error.start + 1].hex()} at "
                    f"byte offset {offset + error.start}); convert the file to UTF-8, e.g. with "
                    "`iconv -f latin1 -t utf-8`"
                ) from None
            offset += len(raw)
            # A byte-order mark is what Windows editors like to write; "\r" ends a CRLF file's lines.
            yield number, line.removeprefix("\ufeff" if number == 1 else "").removesuffix("\n").removesuffix("\r")
