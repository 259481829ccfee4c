"""Reading NER data and its label schemes.

From files to labeled sentences (`features` turns them into model inputs):

1. `load_sentences` reads CoNLL-style text, JSON Lines, a `datasets.save_to_disk` directory or a
   Hub dataset into `Sentence` objects that remember where they came from, so that every
   `DataError` can point at a file and line. `iter_conll` and `iter_word_lists` read files one
   sentence at a time (``predict``'s flat memory), and no line-based reader takes a line past the
   record-size limit (`MAX_RECORD_BYTES`, `bounded_lines`).
2. `normalize_labels` converts labels of any scheme (`SCHEMES`: IOB1, IOE1/2, IOBES, BILOU, IO) to
   IOB2, because the token-classification pipeline's ``aggregation_strategy`` only understands
   ``B-`` / ``I-``; `from_iob2` writes predictions back in the data's scheme; `label_list` builds the
   label set from the training data and `check_known_labels` rejects labels seen nowhere else.
3. `check_conll_columns` refuses what a tab-separated CoNLL line cannot hold, so that what is
   written as CoNLL reads back as it was.
"""

import gzip
import json
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from ..base.locations import is_repo_id

__all__ = [
    "HEAD_BYTES",
    "MAX_RECORD_BYTES",
    "READ_ERRORS",
    "RECORD_LIMIT_VARIABLE",
    "SCHEMES",
    "Columns",
    "DataError",
    "MissingSplitError",
    "Sentence",
    "bounded_lines",
    "check_conll_columns",
    "check_known_labels",
    "check_training_labels",
    "conll_column_problem",
    "describe_labels",
    "detect_scheme",
    "edit_distance",
    "existing_file",
    "format_suffix",
    "from_iob2",
    "iter_conll",
    "iter_word_lists",
    "label_list",
    "label_names_from",
    "load_sentences",
    "normalize_labels",
    "not_utf8",
    "numbered_lines",
    "open_binary",
    "read_conll",
    "read_head",
    "read_json_records",
    "read_jsonl",
    "record_limit",
    "scan_conll",
    "to_iob2",
    "too_long",
    "with_iob2",
]

SCHEMES = ("IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU", "IO")

DOCSTART = "-DOCSTART-"
JSON_SUFFIXES = (".jsonl", ".json")
# Suffixes that mark a path as a local file that is missing, rather than a Hub dataset id.
_FILE_SUFFIXES = (*JSON_SUFFIXES, ".tsv", ".txt", ".conll", ".conllu", ".iob", ".iob2", ".bio", ".bioes", ".csv")
# CoNLL columns: a line that holds a tab is split at its tabs (spaces around them dropped), so that a token may
# hold a space, as tab-separated CoNLL allows; any other line at runs of spaces (CoNLL-2003). Only ASCII spaces and
# tabs separate, so tokens such as a no-break space or a zero-width space survive (`str.split()` would swallow them).
_TAB_SEP = re.compile(r" *\t[ \t]*")
_SPACE_SEP = re.compile(r" +")
_LABEL = re.compile(r"^([BIESLU])-(.+)$")

# The longest line a line-based reader (CoNLL, JSON lines, text, PubTator) takes, in bytes, line break excluded.
# Far above any real record (a PubMed abstract is a few KiB, a PMC full text as one JSON line a few MiB), it bounds
# what one line can cost: a 400 MB line in a 400 KB .gz is refused, read past in pieces, never held whole.
MAX_RECORD_BYTES = 64 * 2**20
RECORD_LIMIT_VARIABLE = "HF_LAYER_TOKCLF_MAX_RECORD_BYTES"
_PIECE_BYTES = 1 << 16  # how much of an overlong line is read at a time, to get past it


class DataError(ValueError):
    """An error in the user's data that they can fix; the message names the file, line and value."""


class MissingSplitError(DataError):
    """A dataset that has no split of the name asked for."""


@dataclass
class Sentence:
    """One sentence of words, with its word labels and where it was read from.

    Args:
        tokens: The words.
        labels: One label per word, or `None` for unlabeled input.
        source: The file path or dataset name the sentence was read from.
        line: 1-based line where the sentence starts: a CoNLL file's line of the first token, a
            JSON Lines file's line of the record, a dataset's row index + 1.
        token_lines: `True` when every token sits on its own line (CoNLL), so that token ``i`` is
            on line ``line + i``; otherwise every token is reported at ``line``.
        fields: The whole JSON lines record it was read from, where it is written back (`iter_word_lists`).
    """

    tokens: list[str]
    labels: list[str] | None
    source: str
    line: int
    token_lines: bool = False
    fields: dict[str, Any] = field(default_factory=dict)

    def where(self, index: int | None = None) -> str:
        """``"<source>, line <n>"`` for the sentence, or for its token number ``index``."""
        line = self.line + index if self.token_lines and index is not None else self.line
        return f"{self.source}, line {line}"


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


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


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
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


CONLLU_SUFFIXES = (".conllu",)


def _conllu_label(misc: str) -> str:
    """The label in a CoNLL-U line's last column: a bare label, or the ``NER=`` / ``Entity=`` entry of a
    ``key=value|...`` MISC field; ``_`` (no annotation) is ``O``."""
    if misc == "_":
        return "O"
    if "=" not in misc:
        return misc
    fields = dict(item.partition("=")[::2] for item in misc.split("|"))
    return fields.get("NER") or fields.get("Entity") or "O"


def _conll_row(line: str, conllu: bool) -> list[str] | None:
    """A token line's columns (token first, label last), or `None` for a line to skip.

    Split at tabs where the line holds one, else at runs of spaces (`_TAB_SEP`). CoNLL-U (``.conllu``):
    fields are separated by tabs only (a FORM may hold spaces); ``#`` comment lines, multiword-token
    ranges (``1-2``) and empty nodes (``1.1``) are skipped; the token is FORM.
    """
    if not conllu:
        line = line.strip(" \t")
        return (_TAB_SEP if "\t" in line else _SPACE_SEP).split(line)
    if line.startswith("#"):
        return None
    columns = line.split("\t")
    if len(columns) < 2 or not columns[0].isdigit():  # "1-2" ranges, "1.1" empty nodes
        return None
    return [columns[1], _conllu_label(columns[-1])] if len(columns) > 2 else [columns[1]]


def _conll_rows(path: Path, conllu: bool) -> Iterator[tuple[int, list[str]]]:
    """(line number, columns) of each line that counts, lazily: ``[]`` for one that ends a sentence (blank,
    ``-DOCSTART-``), and a last ``[]`` at the end of the file."""
    for number, line in _text_lines(path):
        columns = [] if not line.strip(" \t") else _conll_row(line, conllu)
        if columns is not None:
            yield number, [] if columns[:1] == [DOCSTART] else columns
    yield 0, []


def iter_conll(path: str | Path, *, labeled: bool | None = True) -> Iterator[Sentence]:
    """`read_conll`'s sentences one at a time, the file read line by line: flat memory however long it is.

    ``labeled=None`` decides sentence by sentence (labels where each of its token lines has two columns or
    more); `read_conll` and `scan_conll` decide for the whole file.

    Raises:
        DataError: as `read_conll`, when the line at fault is read.
    """
    path = existing_file(path)
    conllu = format_suffix(path) in CONLLU_SUFFIXES
    tokens: list[str] = []
    labels: list[str] = []
    start = count = 0
    all_labeled = True
    for number, columns in _conll_rows(path, conllu):
        if not columns:
            if tokens:
                count += 1
                has_labels = labeled or (labeled is None and all_labeled)
                yield Sentence(tokens, labels if has_labels else None, str(path), start, not conllu)
            tokens, labels, all_labeled = [], [], True
            continue
        if labeled and len(columns) < 2:
            raise DataError(
                f"{path}, line {number}: expected a token and a label separated by a tab or spaces, "
                f"got {' '.join(columns)!r} (for unlabeled text use labeled=False)"
            )
        if not tokens:
            start = number
        all_labeled = all_labeled and len(columns) >= 2
        tokens.append(columns[0])
        labels.append(columns[-1])
    if not count:
        raise DataError(f"{path}: no sentences found (the file is empty or holds only blank lines)")


def read_conll(path: str | Path, *, labeled: bool | None = True) -> list[Sentence]:
    """Reads a CoNLL-style file: one token per line, the label in the last column (`iter_conll`, as a list).

    Columns are separated by tabs or runs of spaces, so both CoNLL-2003 (``token POS chunk label``)
    and ``token<TAB>label`` files work; a line that holds a tab is split at its tabs only, so that a
    token may hold a space (what `inference.write_conll` writes reads back as it was). A blank line
    ends a sentence; ``-DOCSTART-`` lines are skipped; a UTF-8 byte-order mark, CRLF line ends and
    gzip compression are fine. ``.conllu`` files are read as CoNLL-U (see `_conll_row`): the token is
    the FORM column, the label the last (MISC) column.

    Args:
        labeled: `True`: every token line must have a label column; `False`: the first column is
            the token and the labels are `None`; `None`: labeled if every token line has two columns
            or more (a gold column is then kept beside predictions).

    Raises:
        DataError: the file is missing, not UTF-8, holds no sentences, has a line past the
            record-size limit (`record_limit`), or a labeled line has a single column.
    """
    sentences = list(iter_conll(path, labeled=labeled))
    if labeled is None and any(sentence.labels is None for sentence in sentences):
        return [replace(sentence, labels=None) for sentence in sentences]
    return sentences


def scan_conll(path: str | Path) -> tuple[int, str | None]:
    """A first pass over a CoNLL file, in flat memory: how many sentences it holds, and the scheme of its gold
    column (`detect_scheme`, over the whole file), or None where its last column is not labels throughout (a
    token line with one column, a last column that is not ``O`` or ``PREFIX-TYPE``): the gold column `predict`
    keeps beside its predictions.

    Raises:
        DataError: as `read_conll`.
    """
    count, labeled = 0, True

    def gold() -> Iterator[list[str]]:
        nonlocal count, labeled
        for sentence in iter_conll(path, labeled=None):
            count += 1
            labeled = labeled and sentence.labels is not None and all(map(_is_label, sentence.labels))
            if labeled:
                yield sentence.labels

    scheme = detect_scheme(gold())
    return count, scheme if labeled else None


def with_iob2(sentence: Sentence, scheme: str) -> Sentence:
    """A copy of ``sentence`` with its labels (written in ``scheme``) in IOB2; an unlabeled one copied as it is."""
    labels = to_iob2(sentence.labels, scheme) if sentence.labels is not None else None
    return Sentence(list(sentence.tokens), labels, sentence.source, sentence.line, sentence.token_lines)


# A line whose tab-separated columns `read_conll` would not read back as written: a line break, a column
# that is empty or has a space at either end (the reader drops spaces around a tab, and at the line's ends).
_BROKEN_COLUMNS = re.compile(r"[\n\r]|^[ \t]|[ \t]$| \t|\t[ \t]")


def conll_column_problem(value: str) -> str | None:
    """Why ``value`` cannot be a column of a tab-separated CoNLL line that `read_conll` reads back as it was
    (``"holds a tab"``, ``"is empty"``, ...), or None where it can.

    A column holds no tab, line feed or carriage return (many readers, Python's text files among them, end a
    line at either), is not empty or only spaces, and neither begins nor ends with a space (the reader drops
    the spaces around a tab). A space inside is fine: ``New York``.
    """
    if not value.strip(" "):
        return "is only spaces" if value else "is empty"
    for character, name in (("\t", "a tab"), ("\n", "a line break"), ("\r", "a carriage return")):
        if character in value:
            return f"holds {name}"
    return "begins or ends with a space" if value != value.strip(" ") else None


def check_conll_columns(sentence: Sentence, predicted: Sequence[str] | None = None) -> None:
    """Refuses a sentence that tab-separated CoNLL lines cannot hold: every token, gold label and predicted label
    must be a column `conll_column_problem` accepts. The one check of every CoNLL line written
    (`inference.conll_lines`), also run on the data before the work by commands that will write CoNLL.

    Raises:
        DataError: naming the sentence's file and line, the token (or label) by its number, and what is wrong.
    """
    columns = {"token": sentence.tokens, "gold label": sentence.labels or [], "predicted label": predicted or []}
    values = [value for column in columns.values() for value in column]
    joined = "\t".join(values)
    if all(values) and joined.count("\t") == len(values) - 1 and not _BROKEN_COLUMNS.search(joined):
        return  # the common case, checked at once
    for what, values in columns.items():
        for index, value in enumerate(values):
            problem = conll_column_problem(value)
            if problem is not None:
                raise DataError(
                    f"{sentence.where(index)}: {what} {index + 1} {value!r} {problem}: a tab-separated CoNLL line "
                    "cannot hold it"
                )


@dataclass(frozen=True)
class Columns:
    """Which fields of a JSON lines record or dataset row hold the words and the labels (run_ner.py's
    ``--text_column_name`` / ``--label_column_name``), and the names of integer labels.

    Args:
        tokens: The field with the list of words.
        labels: The field with one label per word: strings, or integer ids into ``label_names``
            (what `datasets.Dataset.to_json` writes for a `ClassLabel` feature).
        label_names: The label of each id (``--label-names``); a dataset's `ClassLabel` names are
            used where it has them.
    """

    tokens: str = "tokens"
    labels: str = "ner_tags"
    label_names: tuple[str, ...] | None = None


def _record_labels(tags: Any, columns: Columns, where: str) -> list[str]:
    """Turns a record's label list (label strings or integer ids) into label strings."""
    field = columns.labels
    if not isinstance(tags, list):
        raise DataError(f"{where}: {field!r} must be a list, got {tags!r}")
    names = columns.label_names
    labels = []
    for tag in tags:
        if isinstance(tag, str):
            labels.append(tag)
        elif isinstance(tag, int) and not isinstance(tag, bool):
            if names is None:
                raise DataError(
                    f"{where}: {field!r} holds integer id {tag} but no label names are known; give them with "
                    "--label-names (a list such as O B-Disease I-Disease, or a datasets folder with a ClassLabel "
                    "feature), or write label strings (label_names= in Python)"
                )
            if not 0 <= tag < len(names):
                raise DataError(f"{where}: label id {tag} is out of range for {len(names)} label_names")
            labels.append(names[tag])
        else:
            raise DataError(f"{where}: {field!r} must hold strings or integer ids, got {tag!r}")
    return labels


def _json_object(line: str, where: str) -> dict[str, Any]:
    """One JSON Lines line as an object; DataError naming ``where`` otherwise."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: invalid JSON ({error.msg} at column {error.colno}): {line[:80]!r}") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply to read: {line[:80]!r}") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected one JSON object per line, got {line[:80]!r}")
    return record


def read_json_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields (line number, object) for each non-blank line of a JSON Lines file, lazily (a corpus of
    any size reads in flat memory; gzip is read through).

    Raises:
        DataError: naming the file and line, for invalid JSON, a line that is not an object, bytes
            that are not UTF-8, or a line past the record-size limit (`record_limit`).
    """
    for number, line in _text_lines(existing_file(path)):
        if line.strip():
            yield number, _json_object(line, f"{path}, line {number}")


def read_jsonl(
    path: str | Path, *, label_names: Sequence[str] | None = None, columns: Columns | None = None
) -> list[Sentence]:
    """Reads JSON Lines: one object per line with ``tokens`` and, optionally, ``ner_tags``.

    ``ner_tags`` holds label strings, or integer ids that ``label_names`` maps to strings. Records
    without ``ner_tags`` get ``labels=None``. Blank lines are skipped. ``columns`` names other
    fields (and the label names).

    Raises:
        DataError: naming the file and line, for invalid JSON, a missing or malformed ``tokens``,
            ``ner_tags`` of another length, an id out of range, or a line `read_json_records` refuses.
    """
    columns = columns or Columns()
    if label_names is not None:
        columns = replace(columns, label_names=tuple(label_names))
    sentences = [_record_sentence(record, columns, str(path), number) for number, record in read_json_records(path)]
    if not sentences:
        raise DataError(f"{path}: no sentences found (the file is empty or holds only blank lines)")
    return sentences


def iter_word_lists(path: str | Path, columns: Columns | None = None) -> Iterator[Sentence]:
    """JSON lines of word lists as unlabeled sentences, lazily (`read_jsonl`'s rules, flat memory), each with its
    whole record as ``fields``, so that it can be written back beside its predictions."""
    columns = columns or Columns()
    for number, record in read_json_records(path):
        words = {key: value for key, value in record.items() if key != columns.labels}  # labels are not read here
        yield replace(_record_sentence(words, columns, str(path), number), fields=record)


def _record_sentence(record: Mapping[str, Any], columns: Columns, source: str, line: int) -> Sentence:
    """One JSON record or dataset row as a sentence; labels `None` where it has no label field."""
    where = f"{source}, line {line}"
    if columns.tokens not in record:
        raise DataError(
            f"{where}: the record has no {columns.tokens!r} (keys: {', '.join(record) or 'none'}); "
            "name the words' field with --text-column-name"
        )
    tokens = record[columns.tokens]
    if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
        raise DataError(f"{where}: {columns.tokens!r} must be a list of strings, got {tokens!r}")
    labels = None
    if record.get(columns.labels) is not None:
        labels = _record_labels(record[columns.labels], columns, where)
        if len(labels) != len(tokens):
            raise DataError(f"{where}: {len(tokens)} tokens but {len(labels)} {columns.labels}")
    return Sentence(list(tokens), labels, source, line)


# --------------------------------------------------------------------------------------------
# Datasets (save_to_disk directories and the Hub)
# --------------------------------------------------------------------------------------------


def _pick_split(dataset: Any, split: str | None, source: str) -> tuple[Any, str]:
    """Returns (dataset, name) for a Dataset, or the chosen split of a DatasetDict."""
    import datasets

    if not isinstance(dataset, datasets.DatasetDict):
        return dataset, source
    available = ", ".join(dataset)
    if split is None:
        if len(dataset) != 1:
            raise DataError(f"{source}: holds several splits ({available}); choose one with split=")
        split = next(iter(dataset))
    if split not in dataset:
        raise MissingSplitError(f"{source}: no split {split!r} (available: {available})")
    return dataset[split], f"{source}[{split}]"


def _class_label_names(feature: Any) -> list[str] | None:
    """The names of a label feature that is a sequence of `ClassLabel`, else `None`."""
    import datasets

    # `Sequence(ClassLabel)` (datasets < 4), `List` / `LargeList` (datasets >= 4) or a plain list.
    inner = feature[0] if isinstance(feature, list) and feature else getattr(feature, "feature", None)
    return list(inner.names) if isinstance(inner, datasets.ClassLabel) else None


def _dataset_sentences(dataset: Any, source: str, labeled: bool | None, columns: Columns) -> list[Sentence]:
    """Converts the rows of a `datasets.Dataset` with word and label columns to sentences."""
    names = ", ".join(dataset.column_names)
    if columns.tokens not in dataset.column_names:
        raise DataError(f"{source}: no {columns.tokens!r} column (columns: {names}); name it with --text-column-name")
    if labeled is None:
        labeled = columns.labels in dataset.column_names
    if labeled and columns.labels not in dataset.column_names:
        raise DataError(
            f"{source}: no {columns.labels!r} column (columns: {names}); name it with --label-column-name, "
            "or for unlabeled data use labeled=False"
        )
    if labeled:
        class_names = _class_label_names(dataset.features[columns.labels])
        if class_names is not None:
            columns = replace(columns, label_names=tuple(class_names))
    sentences = []
    for row, record in enumerate(
        dataset.select_columns([c for c in (columns.tokens, columns.labels) if c in dataset.column_names])
    ):
        if labeled and record.get(columns.labels) is None:
            raise DataError(
                f"{source}, line {row + 1}: the row has no {columns.labels!r}; for unlabeled data use labeled=False"
            )
        sentence = _record_sentence(
            record if labeled else {columns.tokens: record[columns.tokens]}, columns, source, row + 1
        )
        sentences.append(sentence)
    return sentences


def label_names_from(values: Sequence[str], label_column: str = "ner_tags") -> tuple[str, ...]:
    """``--label-names``: the names of integer label ids, given as a list (``O B-X I-X``, or comma-separated),
    or as a folder written by `datasets`' ``save_to_disk`` whose label column is a sequence of `ClassLabel`.

    Raises:
        DataError: a folder without such a column, or a name that is not a label.
    """
    if len(values) == 1 and Path(values[0]).is_dir():
        import datasets

        folder = values[0]
        loaded = datasets.load_from_disk(folder)
        dataset = next(iter(loaded.values())) if isinstance(loaded, datasets.DatasetDict) else loaded
        feature = dataset.features.get(label_column)
        names = _class_label_names(feature) if feature is not None else None
        if names is None:
            raise DataError(f"--label-names {folder}: its {label_column!r} column is not a sequence of ClassLabel")
        return tuple(names)
    names = tuple(name for value in values for name in value.split(",") if name)
    for name in names:
        try:
            _parse(name)
        except DataError as error:
            raise DataError(f"--label-names: {error}") from None
    return names


def _load_hub_dataset(source: str, split: str | None, config_name: str | None) -> Any:
    import datasets  # imported lazily: it is slow to import and only needed here

    try:
        # A Hub dataset's loading script is code from the Hub: datasets 2.x runs it unless told not to (3.x
        # asks; 4.0 removed scripts and drops the option), so it is refused on every version declared.
        return datasets.load_dataset(source, config_name, split=split, trust_remote_code=False)
    except Exception as error:  # the Hub raises many types; the user needs the message
        raise DataError(
            f"{source}: no such file or directory, and loading it as a Hugging Face Hub dataset failed "
            f"({type(error).__name__}: {error})"
        ) from error


def load_sentences(
    source: str,
    *,
    split: str | None = None,
    labeled: bool | None = True,
    columns: Columns | None = None,
    config_name: str | None = None,
    hub: bool = False,
) -> list[Sentence]:
    """Reads sentences from a file, a ``save_to_disk`` directory or (with ``hub``) a Hub dataset.

    - a directory written by `datasets.Dataset.save_to_disk` or `datasets.DatasetDict.save_to_disk`
      (``split`` picks the split of a DatasetDict): rows with ``tokens`` and ``ner_tags``, which
      are label strings or `ClassLabel` ids;
    - a ``.jsonl`` / ``.json`` file: `read_jsonl`;
    - any other file: `read_conll` (``.conllu`` as CoNLL-U);
    - with ``hub`` (``--dataset-name``), a path that does not exist but looks like a Hub dataset id
      (``name`` or ``owner/name``): `datasets.load_dataset(source, config_name, split=split)`, its
      loading script (if any) never run. Without, such a path is a missing file: a file option
      (``--train-file owner/name``) never downloads a dataset.

    ``split`` is ignored for files and for a directory holding a single Dataset. ``columns`` names
    the word and label fields (default ``tokens`` / ``ner_tags``) and integer labels' names. With
    ``labeled=False`` every sentence has ``labels=None``; with ``labeled=None`` labels are read
    where the data has them.

    Raises:
        DataError: the source cannot be found or read, or is missing labels when ``labeled``.
    """
    columns = columns or Columns()
    path = Path(source)
    if path.is_dir():
        if not any((path / name).exists() for name in ("dataset_dict.json", "state.json")):
            raise DataError(f"{source}: a directory, but not one written by datasets' save_to_disk")
        import datasets

        dataset, name = _pick_split(datasets.load_from_disk(str(path)), split, source)
        return _dataset_sentences(dataset, name, labeled, columns)
    if path.exists():
        if format_suffix(path) in JSON_SUFFIXES:
            return _labeled_as_asked(read_jsonl(path, columns=columns), labeled, columns)
        return read_conll(path, labeled=labeled)
    if not hub or format_suffix(path) in _FILE_SUFFIXES or not is_repo_id(source):
        raise DataError(f"{source}: no such file or directory")
    dataset, name = _pick_split(_load_hub_dataset(source, split, config_name), split, source)
    return _dataset_sentences(dataset, name, labeled, columns)


def _labeled_as_asked(sentences: list[Sentence], labeled: bool | None, columns: Columns) -> list[Sentence]:
    """JSON lines sentences with labels where ``labeled`` asks: all (True), none (False), or as read (None)."""
    if labeled is None:
        return sentences
    if not labeled:
        return [Sentence(s.tokens, None, s.source, s.line, s.token_lines) for s in sentences]
    for sentence in sentences:
        if sentence.labels is None:
            raise DataError(f"{sentence.where()}: the record has no {columns.labels!r}; use labeled=False")
    return sentences


# --------------------------------------------------------------------------------------------
# Label schemes
# --------------------------------------------------------------------------------------------


def _parse(label: str) -> tuple[str, str | None]:
    """Splits a label into (prefix, type): ``"B-Disease"`` -> ``("B", "Disease")``, ``"O"`` -> ``("O", None)``."""
    if label == "O":
        return "O", None
    match = _LABEL.match(label)
    if match is None:
        raise DataError(
            f"label {label!r} is neither 'O' nor of the form PREFIX-TYPE with a prefix B, I, E, S, L or U "
            "(IOB1, IOB2, IOE1, IOE2, IOBES, BILOU or IO tags)"
        )
    return match.group(1), match.group(2)


def _is_label(label: str) -> bool:
    """Whether `_parse` takes ``label``."""
    return label == "O" or _LABEL.match(label) is not None


def _check_labels(sentences: Iterable[Sentence]) -> None:
    """DataError naming file, line and label for the first label `_parse` rejects."""
    for sentence in sentences:
        for index, label in enumerate(sentence.labels or ()):
            try:
                _parse(label)
            except DataError as error:
                raise DataError(f"{sentence.where(index)}: {error}") from None


def detect_scheme(label_sequences: Iterable[Sequence[str]]) -> str:
    """Returns the tagging scheme of some label sequences, by `seqeval.scheme`'s names (and ``"IO"``).

    - ``L-`` / ``U-`` prefixes: ``"BILOU"``; ``S-``, or ``E-`` beside ``B-``: ``"IOBES"``;
    - ``E-`` without ``B-``: ``"IOE2"`` if every entity ends in ``E-``, else ``"IOE1"`` (``E-`` only
      where an entity of the same type follows);
    - ``B-`` / ``I-``: ``"IOB1"`` if an ``I-`` starts an entity (first, after ``O`` or another type),
      else ``"IOB2"``; ``I-`` alone: ``"IO"``. ``O``-only data is ``"IOB2"``.
    """
    prefixes: set[str] = set()
    starts_with_inside = ends_with_inside = False
    for labels in label_sequences:
        parsed = [_parse(label) for label in labels]
        for index, (prefix, kind) in enumerate(parsed):
            prefixes.add(prefix)
            previous = parsed[index - 1] if index else ("O", None)
            following = parsed[index + 1] if index + 1 < len(parsed) else ("O", None)
            if prefix == "I" and previous[1] != kind:
                starts_with_inside = True
            if prefix == "I" and (following[1] != kind or following[0] not in ("I", "E")):
                ends_with_inside = True
    if prefixes & {"L", "U"}:
        return "BILOU"
    if "S" in prefixes or {"B", "E"} <= prefixes:
        return "IOBES"
    if "E" in prefixes:
        return "IOE1" if ends_with_inside else "IOE2"
    if "B" in prefixes:
        return "IOB1" if starts_with_inside else "IOB2"
    return "IO" if "I" in prefixes else "IOB2"


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")


def to_iob2(labels: Sequence[str], scheme: str) -> list[str]:
    """Converts one sentence's labels from ``scheme`` (any of `SCHEMES`) to IOB2.

    An entity starts at ``B-`` / ``S-`` / ``U-``, or at an ``I-`` / ``E-`` / ``L-`` that does not
    continue a ``B-`` / ``I-`` of the same type (an ``E-`` / ``L-`` ends its entity); it becomes
    ``B-``, its other tokens ``I-``. This one rule reads every scheme, and repairs IOB2 whose
    entities start with ``I-``.
    """
    _check_scheme(scheme)
    converted = []
    previous: tuple[str, str | None] = ("O", None)
    for label in labels:
        prefix, kind = _parse(label)
        if prefix == "O":
            converted.append("O")
        else:
            continues = prefix in ("I", "E", "L") and previous[0] in ("B", "I") and previous[1] == kind
            converted.append(f"{'I' if continues else 'B'}-{kind}")
        previous = (prefix, kind)
    return converted


def from_iob2(labels: Sequence[str], scheme: str) -> list[str]:
    """Writes one sentence's IOB2 labels in ``scheme``: the inverse of `to_iob2` (IO merges adjacent
    entities of one type, which it cannot tell apart). Entities that start with ``I-`` count as
    starting there, as in `to_iob2`."""
    _check_scheme(scheme)
    iob2 = to_iob2(labels, "IOB2")
    converted = []
    for index, label in enumerate(iob2):
        if label == "O":
            converted.append("O")
            continue
        prefix, kind = label.split("-", 1)
        before = iob2[index - 1] if index else "O"
        after = iob2[index + 1] if index + 1 < len(iob2) else "O"
        first, last = prefix == "B", after != f"I-{kind}"
        adjacent_before = first and before != "O" and before[2:] == kind  # the same type ends just before
        adjacent_after = last and after == f"B-{kind}"  # the same type starts just after
        converted.append(f"{_prefix(scheme, first, last, adjacent_before, adjacent_after)}-{kind}")
    return converted


def _prefix(scheme: str, first: bool, last: bool, adjacent_before: bool, adjacent_after: bool) -> str:
    """The prefix of an entity's token in ``scheme``, from where the token sits in its entity."""
    if scheme == "IOB2":
        return "B" if first else "I"
    if scheme == "IOB1":
        return "B" if adjacent_before else "I"
    if scheme == "IOE2":
        return "E" if last else "I"
    if scheme == "IOE1":
        return "E" if adjacent_after else "I"
    if scheme in ("IOBES", "BILOU"):
        single, begin, end = ("S", "B", "E") if scheme == "IOBES" else ("U", "B", "L")
        return single if first and last else begin if first else end if last else "I"
    return "I"  # IO


def normalize_labels(sentences: Sequence[Sentence]) -> tuple[list[Sentence], str]:
    """Returns copies of ``sentences`` with labels in IOB2, and the scheme they were written in.

    Unlabeled sentences are copied unchanged.

    Raises:
        DataError: naming file, line and label, for a label that is not ``O`` or ``X-TYPE``.
    """
    _check_labels(sentences)
    scheme = detect_scheme(s.labels for s in sentences if s.labels is not None)
    normalized = [with_iob2(s, scheme) for s in sentences]
    return normalized, scheme


def label_list(sentences: Iterable[Sentence]) -> list[str]:
    """``"O"``, then ``B-TYPE``, ``I-TYPE`` for every entity type seen, types sorted.

    Both ``B-`` and ``I-`` of every type are included even if the data shows only one, so that
    the model can predict (and `encode` can use) either.
    """
    sentences = list(sentences)
    _check_labels(sentences)
    kinds = {_parse(label)[1] for s in sentences for label in s.labels or ()}
    return ["O"] + [f"{prefix}-{kind}" for kind in sorted(kinds - {None}) for prefix in ("B", "I")]


def check_known_labels(
    sentences: Iterable[Sentence], label2id: Mapping[str, int], known_as: str = "the training data"
) -> None:
    """Raises DataError, naming file, line and the label as the file writes it, for the first label whose IOB2
    form (`to_iob2`) is not in ``label2id``. ``sentences`` may be as read (any scheme) or in IOB2."""
    known = None
    for sentence in sentences:
        for index, label in enumerate(_iob2_labels(sentence)):
            if label not in label2id:
                known = known or ", ".join(sorted(label2id, key=label2id.__getitem__))
                written = sentence.labels[index]
                raise DataError(
                    f"{sentence.where(index)}: label {written!r} never appears in {known_as} (known: {known})"
                )


def _iob2_labels(sentence: Sentence) -> list[str]:
    """``sentence``'s labels in IOB2 (`to_iob2`'s one rule reads every scheme); a bad label named with its line."""
    if sentence.labels is None:
        return []
    try:
        return to_iob2(sentence.labels, "IOB2")
    except DataError:
        _check_labels([sentence])
        raise


# --------------------------------------------------------------------------------------------
# Typos in training data: a rare type next to a frequent one, a few tags that change the scheme
# --------------------------------------------------------------------------------------------

# A type with fewer than this share of the entities, within `TYPO_DISTANCE` edits of another type, is a typo.
RARE_TYPE_SHARE = 0.001
TYPO_DISTANCE = 2
# Fewer than this share of the entity tags may not make B-/I- data read as another scheme than IOB2.
SCHEME_CHANGE_SHARE = 0.01


def describe_labels(sentences: Iterable[Sentence]) -> str:
    """The labels the model learns (IOB2) with their counts, most frequent first, then the entities per type:
    ``"O 1, B-X 1, I-X 1, B-Y 1 (2 entities: X 1, Y 1)"``. ``sentences`` may be in any scheme."""
    tags: Counter[str] = Counter()
    for sentence in sentences:
        tags.update(_iob2_labels(sentence))
    order = {label: i for i, label in enumerate(["O", *sorted(tags, key=lambda label: (label[2:], label))])}
    labels = sorted(tags, key=lambda label: (-tags[label], order[label]))
    kinds = sorted(((label[2:], n) for label, n in tags.items() if label.startswith("B-")), key=lambda k: (-k[1], k[0]))
    entities = f"{sum(n for _, n in kinds)} entities: {', '.join(f'{kind} {n}' for kind, n in kinds)}"
    return f"{', '.join(f'{label} {tags[label]}' for label in labels)} ({entities})"


def check_training_labels(sentences: Sequence[Sentence], scheme: str, allow: str) -> None:
    """Refuses what is most likely a typo in training data, naming file, line and the label as written.

    A type with fewer than `RARE_TYPE_SHARE` of the entities that is within `TYPO_DISTANCE` edits of a type at
    least as frequent (``B-Disaese`` among thousands of ``B-Disease``); and a ``scheme`` other than IOB2 that
    fewer than `SCHEME_CHANGE_SHARE` of the entity tags cause in ``B-``/``I-`` data (a few ``I-`` tags that start
    an entity make it IOB1; a stray ``E-`` or ``S-``, IOBES). ``sentences`` are as read; ``scheme`` is
    `detect_scheme`'s; ``allow`` names the option that trains on the data as it is, said in the message.
    """
    _check_rare_types(sentences, allow)
    _check_scheme_change(sentences, scheme, allow)


def _check_rare_types(sentences: Sequence[Sentence], allow: str) -> None:
    starts = Counter(label[2:] for sentence in sentences for label in _iob2_labels(sentence) if label[0] == "B")
    total = sum(starts.values())
    for kind, count in sorted(starts.items(), key=lambda item: item[1]):
        if count >= RARE_TYPE_SHARE * total:
            break
        near = [other for other in starts if other != kind and starts[other] >= count]
        near = sorted((edit_distance(kind, other), -starts[other], other) for other in near)
        if near and near[0][0] <= TYPO_DISTANCE:
            distance, _, other = near[0]
            sentence, index = next(
                (s, i) for s in sentences for i, label in enumerate(s.labels or ()) if _parse(label)[1] == kind
            )
            raise DataError(
                f"{sentence.where(index)}: label {sentence.labels[index]!r}: its type {kind!r} has {count} of the "
                f"{total} entities ({count / total:.2%}) and is {distance} edit(s) from {other!r} ({starts[other]} "
                f"entities). A typo? Fix it, or pass {allow} to train {kind!r} as a type of its own."
            )


def _check_scheme_change(sentences: Sequence[Sentence], scheme: str, allow: str) -> None:
    if scheme in ("IOB2", "IO"):
        return
    changers: list[tuple[Sentence, int]] = []
    entity_tags = 0
    has_begin = False
    for sentence in sentences:
        parsed = [_parse(label) for label in sentence.labels or ()]
        for index, (prefix, kind) in enumerate(parsed):
            entity_tags += prefix != "O"
            has_begin = has_begin or prefix == "B"
            starts_inside = prefix == "I" and (parsed[index - 1][1] if index else None) != kind
            if starts_inside or prefix in ("E", "S", "L", "U"):
                changers.append((sentence, index))
    if not has_begin or not changers or len(changers) >= SCHEME_CHANGE_SHARE * entity_tags:
        return
    named = ", ".join(f"{s.labels[i]!r} ({s.where(i)})" for s, i in changers[:3])
    first, index = changers[0]
    raise DataError(
        f"{first.where(index)}: {len(changers)} of the {entity_tags} entity tags ({len(changers) / entity_tags:.2%}) "
        f"make these B-/I- labels read as {scheme} rather than IOB2: {named}{', ...' if len(changers) > 3 else ''}. "
        f"An I- tag that starts an entity is a B- tag in IOB2 (and E-, S-, L-, U- are no IOB2 prefixes): fix them, "
        f"or pass {allow} to read the data as {scheme}."
    )


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions that turn ``a`` into ``b``."""
    previous = list(range(len(b) + 1))
    for i, char in enumerate(a, start=1):
        current = [i]
        for j, other in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char != other)))
        previous = current
    return previous[-1]
