"""CoNLL and CoNLL-U: sentences read from one token per line, and the check of what a CoNLL line can hold.

- `iter_conll` reads a file one sentence at a time (``predict``'s flat memory); `read_conll` reads it whole;
  `scan_conll` counts its sentences and tells its gold column's scheme in a first pass.
- `check_conll_columns` refuses what a tab-separated CoNLL line cannot hold (`conll_column_problem`), so that what
  is written as CoNLL reads back as it was.
"""

import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from .labels import detect_scheme, is_label
from .lines import DataError, existing_file, format_suffix, text_lines
from .sentence import Sentence

__all__ = [
    "CONLLU_SUFFIXES",
    "DOCSTART",
    "check_conll_columns",
    "conll_column_problem",
    "iter_conll",
    "read_conll",
    "scan_conll",
]

DOCSTART = "-DOCSTART-"


# CoNLL columns: a line that holds a tab is split at its tabs (spaces around them dropped), so that a token may
# hold a space, as tab-separated CoNLL allows; any other line at runs of spaces (CoNLL-2003). Only ASCII spaces and
# tabs separate, so tokens such as a no-break space or a zero-width space survive (`str.split()` would swallow them).
_TAB_SEP = re.compile(r" *\t[ \t]*")
_SPACE_SEP = re.compile(r" +")


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
    for number, line in text_lines(path):
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
    token may hold a space (what `sentences.write_conll` writes reads back as it was). A blank line
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
            labeled = labeled and sentence.labels is not None and all(map(is_label, sentence.labels))
            if labeled:
                yield sentence.labels

    scheme = detect_scheme(gold())
    return count, scheme if labeled else None


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
    (`sentences.conll_lines`), also run on the data before the work by commands that will write CoNLL.

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
