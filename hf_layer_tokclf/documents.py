"""What `predict` reads: which format an input file is in.

Raw text has one document per line; JSON lines hold one object per document, whose other fields
(a PMID ``id``, a title, ...) are written back beside the entities; PubMed XML, BioC and PubTator
hold documents of passages (all read by `corpus`); CoNLL files hold pre-tokenized sentences
(`data.read_conll`). A file's format is told by its first bytes and extension and, where those say
nothing (``.txt``, no extension), by its first lines, so that a token-per-line file is never
tagged as one document per token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from .corpus import CORPUS_FORMATS, detect_corpus_format
from .data import (
    DOCSTART,
    HEAD_BYTES,
    JSON_SUFFIXES,
    DataError,
    existing_file,
    format_suffix,
    read_head,
    read_json_records,
)

__all__ = [
    "CONLL_SUFFIXES",
    "INPUT_FORMATS",
    "detect_input_format",
    "looks_like_conll",
    "text_column",
]

INPUT_FORMATS = ("auto", "text", "conll", *CORPUS_FORMATS)
CONLL_SUFFIXES = (".conll", ".conllu", ".tsv", ".iob", ".iob2", ".bio", ".bioes")
DEFAULT_TEXT_COLUMN = "text"
_SAMPLE_LINES = 200
_LABEL = re.compile(r"^(O|[BIESLU]-\S+)$")


def _first_lines(path: str | Path, count: int = _SAMPLE_LINES) -> list[str]:
    """Up to ``count`` whole lines from the (decompressed) start of a file, within its first 64 KiB (undecodable
    bytes replaced: this only sniffs)."""
    head = read_head(path)
    lines = head.decode("utf-8", errors="replace").removeprefix("\ufeff").split("\n")
    if len(head) == HEAD_BYTES:
        lines.pop()  # cut short: a token without its label would make CoNLL look like text
    elif lines[-1] == "":
        lines.pop()  # after the last line break
    return [line.removesuffix("\r") for line in lines[:count]]


def looks_like_conll(lines: Sequence[str]) -> bool:
    """Whether lines read as CoNLL (one token per line) rather than as one text document per line.

    CoNLL: a ``-DOCSTART-`` line; or every non-blank line in tab-separated columns without spaces
    (``token<TAB>label``, ``.txt`` exports of CoNLL-2003); or every line ``token label`` with a label
    (``O``, ``B-X``, ...) last; or single tokens in blank-line separated sentences of several lines.
    """
    filled = [line for line in lines if line.strip(" \t")]
    if not filled:
        return False
    if any(line.split()[:1] == [DOCSTART] for line in filled):
        return True
    if all("\t" in line and " " not in line.strip(" \t") for line in filled):
        return True
    columns = [line.split() for line in filled]
    if all(len(row) >= 2 and _LABEL.match(row[-1]) for row in columns):
        return True
    blank = len(lines) - len(filled)
    return all(len(row) == 1 for row in columns) and blank > 0 and len(filled) >= 2 * blank


def detect_input_format(path: str | Path | None, declared: str = "auto") -> str:
    """``"text"``, ``"conll"`` or a corpus format (`corpus.CORPUS_FORMATS`: ``"jsonl"``, ``"pubmed"``, ...):
    ``declared`` if not ``"auto"``, else a corpus format its first bytes show (`corpus.detect_corpus_format`),
    else from the file's extension (`CONLL_SUFFIXES`, ``.jsonl`` / ``.json``) or its first lines. A gzip file
    is read decompressed, its extension the one before ``.gz`` (``docs.conll.gz``).

    Raises:
        DataError: ``declared`` is ``"text"`` but the file reads as CoNLL (it would become one
            document per token), naming ``--input-format``; or ``declared`` is ``"auto"`` and the file is
            XML that is neither PubMed nor BioC, naming its root element.
    """
    if declared not in INPUT_FORMATS:
        raise ValueError(f"unknown input format {declared!r}; expected one of {', '.join(INPUT_FORMATS)}")
    if path is None:  # standard input or --text: documents
        return "text" if declared == "auto" else declared
    suffix = format_suffix(path)
    existing_file(path)
    if declared == "text":
        if suffix in CONLL_SUFFIXES or looks_like_conll(_first_lines(path)):
            raise DataError(
                f"{path}: looks like CoNLL (one token per line), which text mode would tag as one document per "
                "line; give --input-format conll (or leave --input-format auto)"
            )
        return "text"
    if declared != "auto":
        return declared
    if suffix in CONLL_SUFFIXES:
        return "conll"
    found = detect_corpus_format(path)
    if found is not None:
        return found
    if suffix in JSON_SUFFIXES:
        return "jsonl"
    return "conll" if looks_like_conll(_first_lines(path)) else "text"


def text_column(path: str | Path, name: str | None = None) -> tuple[str, bool]:
    """The field of a JSON lines file's records that holds the text, and whether it is pre-tokenized.

    ``name`` (``--text-column-name``) or ``text`` for documents, else ``tokens`` for word lists; read
    from the first record.

    Raises:
        DataError: the first record has no such field, or its value is neither a string nor a list.
    """
    for number, record in read_json_records(path):
        candidates = [name] if name else [DEFAULT_TEXT_COLUMN, "tokens"]
        for column in candidates:
            if column in record and isinstance(record[column], (str, list)):
                return column, isinstance(record[column], list)
        raise DataError(
            f"{path}, line {number}: no {' or '.join(repr(c) for c in candidates)} field with a text or a word list "
            f"(keys: {', '.join(record) or 'none'}); name it with --text-column-name"
        )
    raise DataError(f"{path}: no records found (the file is empty or holds only blank lines)")
