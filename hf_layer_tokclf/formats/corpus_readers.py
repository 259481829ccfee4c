"""The line-based corpus readers (text lines, JSON lines, PubTator) and `read_corpus`, which reads any corpus format.

Readers yield documents lazily, in file order, and a `RecordError` in place of a record that cannot be read, so
that a corpus run can count it and go on; a file that cannot be read on (XML that is not well-formed, a truncated
``.gz``) raises a `DataError` naming the file and line.

Corpus formats (`CORPUS_FORMATS`, `read_corpus`; `.gz` files are read transparently):

- ``jsonl``: one JSON object per line with a ``text`` field (the whole record is kept).
- ``pubmed``: PubMed baseline / update XML (``PubmedArticleSet``), streamed (`pubmed_bioc`).
- ``bioc`` / ``bioc-json``: BioC XML (streamed) and BioC JSON (a collection, or a list of them) (`pubmed_bioc`).
- ``pubtator``: PubTator text (``PMID|t|title``, ``PMID|a|abstract``, annotation lines of 5 to 7 columns (the
  7th: a multi-task model's task, as predict writes it), relation lines).

Raw text, one document a line, is read by `read_text_lines`.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .corpus_documents import Document, Passage, RecordError, title_and_abstract
from .lines import existing_file, not_utf8, numbered_lines, open_binary
from .pubmed_bioc import read_bioc, read_bioc_json, read_pubmed

__all__ = ["CORPUS_FORMATS", "read_corpus", "read_text_lines"]

CORPUS_FORMATS = ("jsonl", "pubmed", "bioc", "bioc-json", "pubtator")


def _lines(stream: IO[bytes] | Iterable[bytes], source: str | Path) -> Iterator[tuple[int, str | RecordError]]:
    """Each line of a stream (numbered from 1) as text, without its line break or a UTF-8 byte order mark.

    A line that is not UTF-8, or longer than the record-size limit (`lines.numbered_lines`; read past in
    bounded pieces, never held whole), is a `RecordError` naming the line, in place of the line, so that
    one bad line in a large file costs that line, not the run; a truncated or corrupt ``.gz`` cannot be read
    on: a `DataError` naming the file and the last line read.
    """
    for number, raw in numbered_lines(stream, source):
        if isinstance(raw, str):  # past the record-size limit
            yield number, RecordError(source, number, raw, unit="line")
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            yield number, RecordError(source, number, not_utf8(error), unit="line")
            continue
        yield number, line.removeprefix("\ufeff" if number == 1 else "").rstrip("\r\n")


# --- Text and JSON lines ------------------------------------------------------------------------


def read_text_lines(path: str | Path | None = None) -> Iterator[Document | RecordError]:
    """Raw text, one document a line (blank lines too), lazily; standard input where ``path`` is None.

    Each document's id is its line number, its one passage the line, its ``fields`` ``{"text": line}``
    (what the ``jsonl`` writer writes back); a line that is not UTF-8 is a `RecordError`.

    Raises:
        DataError: the file is missing or not text.
    """
    return _read_text_lines(existing_file(path) if path is not None else None)


def _stdin_bytes() -> Iterable[bytes]:
    """Standard input's lines as bytes: its binary buffer, or, where it was replaced by a text stream (a notebook,
    a test), its lines encoded back."""
    buffer = getattr(sys.stdin, "buffer", None)
    return buffer if buffer is not None else (line.encode("utf-8", "surrogateescape") for line in sys.stdin)


def _read_text_lines(path: Path | None) -> Iterator[Document | RecordError]:
    source = path if path is not None else "<stdin>"
    with open_binary(path) if path is not None else contextlib.nullcontext(_stdin_bytes()) as stream:
        for number, line in _lines(stream, source):
            if isinstance(line, RecordError):
                yield line
            else:
                yield Document(str(number), [Passage(line)], str(source), number, {"text": line})


def _read_jsonl(path: Path, column: str = "text") -> Iterator[Document | RecordError]:
    """JSON lines of ``{"id": ..., "text": ...}``; the whole record is kept; a bad line is a `RecordError`."""
    with open_binary(path) as stream:
        for number, line in _lines(stream, path):
            if isinstance(line, RecordError):
                yield line
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                yield RecordError(path, number, f"not a JSON object ({error})", unit="line")
                continue
            if not isinstance(record, dict) or not isinstance(record.get(column), str):
                keys = ", ".join(record) if isinstance(record, dict) else type(record).__name__
                yield RecordError(path, number, f"no {column!r} text (keys: {keys or 'none'})", unit="line")
                continue
            yield Document(str(record.get("id", number)), [Passage(record[column])], str(path), number, record)


# --- PubTator -----------------------------------------------------------------------------------

_PUBTATOR_TEXT = re.compile(r"([^|\t]+)\|([ta])\|(.*)", re.DOTALL)
_OFFSET = re.compile(r"[0-9]+")


def _pubtator_tab_line(line: str) -> tuple[str, str | None]:
    """The PMID of an annotation or relation line, and what is wrong with the line (None where nothing).

    As the ``bioc`` library's reader tells them (PubTator3's format): 6 columns or more are an annotation
    (PMID, start, end, mention, type, concept id, ...), 4 or 5 a relation (PMID, type, two concept ids, and
    BioRED's novelty), except that 5 whose 2nd and 3rd are offsets are an annotation without its concept id
    (this package's output before it wrote the 6th column). Relations are passed over; annotations are checked,
    not kept: predict finds its own entities.
    """
    columns = line.split("\t")
    offsets = [_OFFSET.fullmatch(column) is not None for column in columns[1:3]]
    if len(columns) >= 6 or (len(columns) == 5 and all(offsets)):
        start, end = columns[1:3]
        if not all(offsets):
            return columns[0], f"an annotation's start and end are not integers: {start!r}, {end!r}"
        if int(end) < int(start):
            return columns[0], f"an annotation that ends ({end}) before it starts ({start})"
    elif len(columns) < 4:
        return columns[0], (
            f"a line of {len(columns)} tab-separated columns, neither an annotation (PMID, start, end, mention, "
            "type, concept id) nor a relation (PMID, type, concept id, concept id)"
        )
    return columns[0], None


def _pubtator_document(lines: list[tuple[int, str | RecordError]], path: Path, record: int) -> Document | RecordError:
    """One PubTator document from its numbered lines (a line not UTF-8 as its error); annotations are checked, not
    kept, and relations passed over (`_pubtator_tab_line`)."""
    pmid = title = abstract = None
    for number, line in lines:
        if isinstance(line, RecordError):
            return RecordError(path, record, f"line {number}: {line.reason}")
        match = _PUBTATOR_TEXT.fullmatch(line)
        if match:
            line_id, kind, text = match.groups()
        elif "\t" in line:
            (line_id, problem), kind, text = _pubtator_tab_line(line), "annotation", None
            if problem is not None:
                return RecordError(path, record, f"line {number}: {problem}")
        else:
            what = f"neither PMID|t|, PMID|a| nor an annotation line: {line[:60]!r}"
            return RecordError(path, record, f"line {number}: {what}")
        if pmid is None:
            pmid = line_id
        elif line_id != pmid:
            return RecordError(path, record, f"line {number}: PMID {line_id} in the document of PMID {pmid}")
        if kind != "t" and title is None:
            return RecordError(path, record, f"line {number}: no PMID|t|title line before this one")
        if kind == "a":
            if abstract is not None:
                return RecordError(path, record, f"line {number}: a second abstract line")
            abstract = text
        elif kind == "t":
            title = text
    return Document(pmid, title_and_abstract(title, abstract), str(path), record)


def _read_pubtator(path: Path) -> Iterator[Document | RecordError]:
    """PubTator text: documents separated by blank lines (a ``|t|`` line also starts a new one)."""
    record, lines = 0, []
    with open_binary(path) as stream:
        for number, line in _lines(stream, path):
            text = isinstance(line, str)  # else a line not UTF-8: its document's error
            blank = text and not line.strip()
            match = _PUBTATOR_TEXT.fullmatch(line) if text else None
            if lines and (blank or (match is not None and match[2] == "t")):
                record += 1
                yield _pubtator_document(lines, path, record)
                lines = []
            if not blank:
                lines.append((number, line))
    if lines:
        yield _pubtator_document(lines, path, record + 1)


_READERS = {
    "jsonl": _read_jsonl,
    "pubmed": read_pubmed,
    "bioc": read_bioc,
    "bioc-json": read_bioc_json,
    "pubtator": _read_pubtator,
}


def read_corpus(path: str | Path, corpus_format: str, **options: Any) -> Iterator[Document | RecordError]:
    """The documents of a corpus file, lazily and in order; a `RecordError` for each record that cannot be read.

    Args:
        path: The corpus file; a gzip file (``.gz``) is decompressed as it is read.
        corpus_format: One of `CORPUS_FORMATS` (`detect_corpus_format` guesses it).
        options: The reader's options: ``column`` (the text field) for ``jsonl``.

    Raises:
        DataError: the file is missing, or (while iterating) cannot be read at all or on: not the format it
            is said to be, XML that is not well-formed (named by line), a truncated ``.gz``.
    """
    path = existing_file(path)
    if corpus_format not in _READERS:
        raise ValueError(f"unknown corpus format {corpus_format!r}; expected one of {', '.join(CORPUS_FORMATS)}")
    return _READERS[corpus_format](path, **options)
