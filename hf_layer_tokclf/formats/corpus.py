"""The formats biomedical corpora come in: documents of passages read from, and entities written to, files.

A `Document` is an id and its passages, each with its character offset in the document as the
format defines it (PubTator and BioC: the title at 0, the abstract after the title and one
space). Readers yield documents lazily, in file order, and a `RecordError` in place of a record
that cannot be read, so that a corpus run can count it and go on; a file that cannot be read on
(XML that is not well-formed, a truncated ``.gz``) raises a `DataError` naming the file and line.

Corpus formats (`CORPUS_FORMATS`, `read_corpus`; `.gz` files are read transparently):

- ``jsonl``: one JSON object per line with a ``text`` field (the whole record is kept).
- ``pubmed``: PubMed baseline / update XML (``PubmedArticleSet``), streamed.
- ``bioc`` / ``bioc-json``: BioC XML (streamed) and BioC JSON (a collection, or a list of them).
- ``pubtator``: PubTator text (``PMID|t|title``, ``PMID|a|abstract``, annotation lines of 5 or 6 columns,
  relation lines); written as PubTator3 writes it, annotations with a 6th column (the concept id).

Writers (`OUTPUT_FORMATS`, `get_writer`) turn one document and its entities (offsets into
`document_text`) into text; a run writes ``header()``, the documents, then ``footer()``, and
writes the writer's ``separator`` between two documents (``""`` for every format but
``bioc-json``, whose JSON array needs ``",\\n"``), so that chunks of documents can be written,
resumed and merged: the output is ``header() + separator.join(documents) + footer()``.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from xml.parsers import expat

from .data import (
    READ_ERRORS,
    DataError,
    bounded_lines,
    existing_file,
    format_suffix,
    not_utf8,
    numbered_lines,
    open_binary,
    read_head,
)

__all__ = [
    "CORPUS_FORMATS",
    "OUTPUT_FORMATS",
    "BiocJsonWriter",
    "BiocXmlWriter",
    "Document",
    "JsonlWriter",
    "Passage",
    "PubtatorWriter",
    "RecordError",
    "count_lines",
    "count_records",
    "detect_corpus_format",
    "document_text",
    "get_writer",
    "read_corpus",
    "read_text_lines",
    "title_and_abstract",
]

CORPUS_FORMATS = ("jsonl", "pubmed", "bioc", "bioc-json", "pubtator")
OUTPUT_FORMATS = ("jsonl", "pubtator", "bioc", "bioc-json")


@dataclass
class Passage:
    """A stretch of a document's text that the model reads on its own.

    Args:
        text: The passage's text.
        offset: Where it starts in the document, in characters, as its format counts them.
        infons: What the format says of it (BioC's infons; ``{"type": "title"}`` / ``"abstract"``).
    """

    text: str
    offset: int = 0
    infons: dict[str, str] = field(default_factory=dict)


@dataclass
class Document:
    """One document of a corpus.

    Args:
        id: Its identifier (PMID, BioC id, the JSON ``id``), or its record number where it has none.
        passages: Its passages, in document order, offsets increasing.
        source: The file it was read from.
        record: Its position in that file (1-based): the line of a JSON lines record, the n-th document.
        fields: The whole JSON lines record it was read from (its text and id included), which the
            ``jsonl`` writer writes back with ``entities`` added; empty for the other formats.
    """

    id: str
    passages: list[Passage]
    source: str = ""
    record: int = 0
    fields: dict[str, Any] = field(default_factory=dict)


class RecordError(DataError):
    """A record of a corpus file that cannot be read; it names the file and the record."""

    def __init__(self, source: str | Path, record: int, message: str, unit: str = "record") -> None:
        self.source, self.record, self.reason = str(source), record, message
        super().__init__(f"{source}, {unit} {record}: {message}")
        self.unit = unit

    def __reduce__(self) -> tuple[Any, ...]:  # pickled whole (to another process), not as its message alone
        return type(self), (self.source, self.record, self.reason, self.unit)


def document_text(document: Document) -> str:
    """The document's passages at their offsets (gaps filled with spaces): the text entity offsets point into."""
    text = ""
    for passage in document.passages:
        if passage.offset < len(text):
            raise RecordError(
                document.source, document.record, f"passage at offset {passage.offset} overlaps the one before it"
            )
        text += " " * (passage.offset - len(text)) + passage.text
    return text


def _lines(stream: IO[bytes] | Iterable[bytes], source: str | Path) -> Iterator[tuple[int, str | RecordError]]:
    """Each line of a stream (numbered from 1) as text, without its line break or a UTF-8 byte order mark.

    A line that is not UTF-8, or longer than the record-size limit (`data.numbered_lines`; read past in
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


# --- XML (PubMed, BioC) -------------------------------------------------------------------------


def _xml_children(path: Path, root_tag: str, record_tag: str, format_name: str) -> Iterator[ET.Element]:
    """The children of the root element, each once it is complete, and cleared once the caller is done with it.

    Clearing each child and dropping it from the root keeps memory flat on files of any size
    (iterparse otherwise builds the whole tree). XML that is not well-formed cannot be read on:
    it raises a `RecordError` naming the line, the record being that ``record_tag`` element.
    """
    records, depth, root = 0, 0, None
    try:
        with open_binary(path) as stream:
            for event, element in ET.iterparse(stream, events=("start", "end")):
                if event == "start":
                    depth += 1
                    if root is None:
                        root = element
                        if element.tag != root_tag:
                            raise DataError(f"{path}: not {format_name} (its root element is <{element.tag}>)")
                    continue
                depth -= 1
                if depth != 1:
                    continue
                records += element.tag == record_tag
                yield element
                element.clear()
                root.clear()
    except ET.ParseError as error:
        line, column = error.position
        reason = expat.ErrorString(error.code) if error.code else str(error)
        raise RecordError(
            path, records + 1, f"line {line}, column {column}: not well-formed XML ({reason}); cannot read on"
        ) from None
    except READ_ERRORS as error:
        raise DataError(f"{path}: cannot be read after record {records} ({error})") from None


def _element_text(element: ET.Element | None) -> str:
    """All the text inside an element, inline markup (``<i>``, ``<sup>``) included, without surrounding space."""
    return "" if element is None else "".join(element.itertext()).strip()


def title_and_abstract(title: str, abstract: str | None) -> list[Passage]:
    """An article's passages as PubTator counts them: the title at 0, the abstract after it and one space."""
    passages = [Passage(title, 0, {"type": "title"})]
    if abstract:
        passages.append(Passage(abstract, len(title) + 1, {"type": "abstract"}))
    return passages


def _pubmed_document(article: ET.Element, path: Path, record: int) -> Document | RecordError:
    """A ``PubmedArticle`` as a document of its title and abstract, offsets as PubTator counts them."""
    pmid = _element_text(article.find("MedlineCitation/PMID"))
    if not pmid:
        return RecordError(path, record, "a PubmedArticle without MedlineCitation/PMID")
    title = _element_text(article.find("MedlineCitation/Article/ArticleTitle"))
    if not title:
        return RecordError(path, record, f"PMID {pmid}: no ArticleTitle")
    # Structured abstracts: the sections' texts without their labels, as PubTator exports them.
    sections = (_element_text(s) for s in article.iterfind("MedlineCitation/Article/Abstract/AbstractText"))
    abstract = " ".join(section for section in sections if section)
    return Document(pmid, title_and_abstract(title, abstract), str(path), record)


def _read_pubmed(path: Path) -> Iterator[Document | RecordError]:
    """PubMed XML: each ``PubmedArticle``; ``PubmedBookArticle`` and ``DeleteCitation`` are passed over."""
    record = 0
    for element in _xml_children(path, "PubmedArticleSet", "PubmedArticle", "PubMed XML"):
        if element.tag == "PubmedArticle":
            record += 1
            yield _pubmed_document(element, path, record)


def _bioc_xml_passage(element: ET.Element) -> dict[str, Any]:
    """A BioC XML ``<passage>`` (or ``<sentence>``) as BioC JSON has it, for `_bioc_document`."""
    passage = {
        "offset": element.findtext("offset"),
        "infons": {infon.get("key", ""): infon.text or "" for infon in element.findall("infon")},
        "text": element.findtext("text"),
    }
    sentences = element.findall("sentence")
    if sentences:
        passage["sentences"] = [_bioc_xml_passage(sentence) for sentence in sentences]
    return passage


def _read_bioc(path: Path) -> Iterator[Document | RecordError]:
    """BioC XML: each ``<document>`` of the ``<collection>`` (annotations and relations are not read)."""
    record = 0
    for element in _xml_children(path, "collection", "document", "BioC XML"):
        if element.tag == "document":
            record += 1
            passages = [_bioc_xml_passage(passage) for passage in element.findall("passage")]
            yield _bioc_document(element.findtext("id"), passages, path, record)


# --- BioC (both serializations) -----------------------------------------------------------------


def _bioc_offset(value: Any) -> int | None:
    """A BioC offset as an integer (XML has it as text), or None where it is not a non-negative integer."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _infons(part: dict[str, Any]) -> dict[str, str]:
    """A BioC passage's or sentence's infons, values as text (as BioC defines them); none where they are not a map."""
    infons = part.get("infons")
    if not isinstance(infons, dict):
        return {}
    return {str(key): "" if value is None else str(value) for key, value in infons.items()}


def _bioc_passages(raw: list[Any]) -> list[Passage]:
    """A BioC document's passages; ValueError says what is wrong with one.

    A passage with text is one passage. One without (sentence-level BioC) stands for its sentences,
    which become passages at their own (document) offsets, with the passage's infons updated by the
    sentence's, so that no text is lost; one with neither text nor sentences is passed over.
    """
    passages: list[Passage] = []
    for number, passage in enumerate(raw, start=1):
        if not isinstance(passage, dict):
            raise ValueError(f"passage {number} is not an object")
        infons = _infons(passage)
        parts = [passage] if passage.get("text") else passage.get("sentences") or []
        for part in parts:
            if not isinstance(part, dict) or not part.get("text"):
                continue
            if not isinstance(part["text"], str):
                raise ValueError(f"passage {number}: text is not a string")
            offset = _bioc_offset(part.get("offset"))
            if offset is None:
                raise ValueError(f"passage {number}: offset {part.get('offset')!r} is not a non-negative integer")
            if passages and offset < passages[-1].offset + len(passages[-1].text):
                raise ValueError(f"passage {number}: offset {offset} goes back into the passage before it")
            passages.append(Passage(part["text"], offset, {**infons, **_infons(part)}))
    return passages


def _bioc_document(document_id: Any, raw: Any, path: Path, record: int) -> Document | RecordError:
    """A BioC document from its id and its passages as BioC JSON has them; a `RecordError` where they are bad."""
    if not isinstance(raw, list):
        return RecordError(path, record, f"document {document_id}: passages are not a list")
    try:
        passages = _bioc_passages(raw)
    except ValueError as error:
        return RecordError(path, record, f"document {document_id}: {error}")
    return Document(str(document_id) if document_id not in (None, "") else str(record), passages, str(path), record)


def _read_bioc_json(path: Path) -> Iterator[Document | RecordError]:
    """BioC JSON: a collection ``{"source", ..., "documents": [...]}``, or a list of them (the NCBI BioC API's).

    The file is parsed whole (the standard library has no streaming JSON parser); documents are made one by one.
    """
    try:
        with open_binary(path) as stream:
            raw = stream.read()
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}, line {error.lineno}, column {error.colno}: not JSON ({error.msg})") from None
    except UnicodeDecodeError as error:
        line, start = raw.count(b"\n", 0, error.start) + 1, raw.rfind(b"\n", 0, error.start) + 1
        raise DataError(f"{path}, line {line}: {not_utf8(error, start)}") from None
    except READ_ERRORS as error:
        raise DataError(f"{path}: cannot be read ({error})") from None
    collections = data if isinstance(data, list) else [data]
    if not all(isinstance(c, dict) and isinstance(c.get("documents"), list) for c in collections):
        raise DataError(f"{path}: not BioC JSON (expected a collection with 'documents', or a list of them)")
    record = 0
    for collection in collections:
        for document in collection["documents"]:
            record += 1
            if not isinstance(document, dict):
                yield RecordError(path, record, f"a document is an object, not {type(document).__name__}")
            else:
                yield _bioc_document(document.get("id"), document.get("passages", []), path, record)


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
    "pubmed": _read_pubmed,
    "bioc": _read_bioc,
    "bioc-json": _read_bioc_json,
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


def _blocks(path: Path) -> Iterator[bytes]:
    """The file's (decompressed) bytes in blocks of 1 MiB: a scan of any file in flat memory."""
    with open_binary(path) as stream:
        while block := stream.read(1 << 20):
            yield block


def _count_bytes(path: Path, needle: bytes) -> int:
    """How often ``needle`` occurs in the file's (decompressed) bytes, read in blocks."""
    count, tail = 0, b""
    for block in _blocks(path):
        buffer = tail + block
        count += buffer.count(needle)
        # A tail shorter than the needle cannot hold a whole match, so none is counted twice.
        tail = buffer[-(len(needle) - 1) :]
    return count


def count_lines(path: str | Path) -> int | None:
    """Lines in a file (decompressed where it is gzip), a last one without a line break included: the documents
    `read_text_lines` reads, for progress; None where the file cannot be read through."""
    count, last = 0, b"\n"
    try:
        for block in _blocks(Path(path)):
            count, last = count + block.count(b"\n"), block[-1:]
    except READ_ERRORS:
        return None  # the reader says what is wrong with the file
    return count + (last != b"\n")


def count_records(path: str | Path, corpus_format: str) -> int | None:
    """How many records a corpus file holds, by a cheap scan (for progress); None where that needs a full parse.

    JSON lines: its non-blank lines; PubMed: its ``<PubmedArticle>`` tags; BioC XML: its ``<document>``
    tags; PubTator: its ``|t|`` lines; BioC JSON (or a file that cannot be scanned): None.
    """
    path = Path(path)
    try:
        if corpus_format == "jsonl":  # lines read as the reader reads them: an overlong one is not held, but counted
            with open_binary(path) as stream:
                return sum(1 for line in bounded_lines(stream) if line is None or line.strip())
        if corpus_format == "pubmed":
            return _count_bytes(path, b"<PubmedArticle>")
        if corpus_format == "bioc":
            return _count_bytes(path, b"<document>")
        if corpus_format == "pubtator":
            with open_binary(path) as stream:
                lines = (line for line in bounded_lines(stream) if line is not None)
                return sum(1 for line in lines if line.split(b"\t", 1)[0].split(b"|", 2)[1:2] == [b"t"])
    except READ_ERRORS:
        return None  # the reader says what is wrong with the file
    return None


_PUBTATOR_FIRST_LINE = re.compile(r"\d+\|t\|")
# The root element of each XML corpus format, as its reader (`_xml_children`) requires it.
_XML_ROOTS = {"PubmedArticleSet": "pubmed", "collection": "bioc"}


def _head(path: Path) -> str:
    """The first bytes of the (decompressed) file as text, without a byte order mark or leading space."""
    return read_head(path).decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")


class _RootFound(Exception):
    """Raised at the root element's start, with its name: parsing stops there, before any of its content."""


def _stop_at_root(name: str, attributes: dict[str, str]) -> None:
    raise _RootFound(name)


def _xml_root(head: str) -> tuple[str | None, str | None]:
    """(the root element's name, None) of XML whose start is ``head``; (None, why) where none is found in it:
    text that starts with ``<`` but is no XML, or XML not well-formed before its root element."""
    parser = expat.ParserCreate()  # no external DTD or entity is fetched: the file alone is read
    parser.StartElementHandler = _stop_at_root
    try:
        parser.Parse(head, False)  # not final: the head may end anywhere
    except _RootFound as found:
        return found.args[0], None
    except expat.ExpatError as error:
        return None, f"line {error.lineno}, column {error.offset}: {expat.ErrorString(error.code)}"
    return None, "no root element in its first bytes"


def _xml_format(path: Path, head: str) -> str | None:
    """``pubmed`` or ``bioc`` by the root element of a file whose first bytes are ``head`` (which start with ``<``);
    None where it is no XML (a text line that starts with ``<``).

    Raises:
        DataError: XML of another root (a PMC/JATS ``<article>``, HTML, ...), named, which would otherwise be
            read as lines of text, markup and all.
    """
    root, problem = _xml_root(head)
    if root is None:
        if head.startswith("<?xml"):  # an XML declaration: no text line starts so
            raise DataError(f"{path}: XML, but no root element could be read ({problem})")
        return None
    if root in _XML_ROOTS:
        return _XML_ROOTS[root]
    raise DataError(
        f"{path}: XML whose root element is <{root}>, which is neither PubMed XML (<PubmedArticleSet>) nor BioC "
        "XML (<collection>): the formats read are those, BioC JSON, PubTator, JSON lines, CoNLL and text lines. "
        "NCBI's BioC-PMC API serves PMC articles as BioC XML; --input-format text reads this file's lines as "
        "text, markup and all"
    )


def detect_corpus_format(path: str | Path) -> str | None:
    """The corpus format of a file (one of `CORPUS_FORMATS`), from its suffix and first bytes; None where unsure.

    XML by its root element: ``<PubmedArticleSet>`` → ``pubmed``, ``<collection>`` → ``bioc``; JSON with
    ``"documents"`` near its start → ``bioc-json``; a ``.pubtator`` file or a first line ``PMID|t|`` →
    ``pubtator``; a ``.jsonl`` / ``.ndjson`` file, or a ``.json`` one whose first line is a JSON object →
    ``jsonl``. A gzip file is read decompressed, its suffix the one before ``.gz``.

    Raises:
        DataError: the file is missing, or is XML of another root element (`_xml_format`).
    """
    path = existing_file(path)
    suffix = format_suffix(path)
    head = _head(path)
    if head.startswith("<"):
        return _xml_format(path, head)
    if suffix == ".pubtator" or _PUBTATOR_FIRST_LINE.match(head):
        return "pubtator"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if head.startswith(("{", "[")) and re.search(r'"documents"\s*:', head):
        return "bioc-json"
    if suffix == ".json" and head.startswith("{"):
        try:
            return "jsonl" if isinstance(json.loads(head.split("\n", 1)[0]), dict) else None
        except json.JSONDecodeError:
            return None
    return None


# --- Writers ------------------------------------------------------------------------------------


def _entity_spans(document: Document, text: str, entities: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    """Each entity's (start, end, type), checked against the document's text; type: ``entity_group`` or ``entity``.

    Raises:
        ValueError: an entity's offsets are not within the text (the caller's mistake, not the data's).
    """
    spans = []
    for entity in entities:
        start, end = int(entity["start"]), int(entity["end"])
        if not 0 <= start <= end <= len(text):
            raise ValueError(
                f"document {document.id}: entity {start}-{end} is outside its text of {len(text)} characters"
            )
        spans.append((start, end, str(entity.get("entity_group", entity.get("entity", "")))))
    return spans


class JsonlWriter:
    """One JSON object per line: the record read (or ``id`` and ``text``) and ``entities`` with document offsets."""

    separator = ""

    def header(self) -> str:
        """Nothing: JSON lines has no header."""
        return ""

    def document(self, document: Document, entities: list[dict[str, Any]]) -> str:
        """The document's record, fields in their order, ``entities`` added (or replaced), as one line."""
        record = dict(document.fields) if document.fields else {"id": document.id, "text": document_text(document)}
        record["entities"] = entities
        return json.dumps(record, ensure_ascii=False) + "\n"

    def footer(self) -> str:
        """Nothing: JSON lines has no footer."""
        return ""


# Line breaks inside a PubTator text or mention would end its line; a space in their place keeps the offsets.
_PUBTATOR_LINE_SAFE = str.maketrans({"\n": " ", "\r": " ", "\t": " "})


class PubtatorWriter:
    """PubTator text as PubTator3 exports it: ``id|t|title``, ``id|a|abstract``, a line per entity, a blank line.

    An entity's line has PubTator3's 6 columns, its concept id (the 6th) ``-``, as it has none: a line of 5
    columns is a relation to PubTator's readers (the ``bioc`` library's), and an empty 6th column goes with the
    line's trailing space when they strip it.

    The title is the first passage and the abstract the rest of `document_text` after it and one space, so
    that the entity offsets (into `document_text`) are PubTator's (into title + " " + abstract). Where the
    text goes on right after the first passage, with no space, the whole text is the title.
    """

    separator = ""

    def header(self) -> str:
        """Nothing: PubTator has no header."""
        return ""

    def document(self, document: Document, entities: list[dict[str, Any]]) -> str:
        """The document's two text lines, ``id<TAB>start<TAB>end<TAB>mention<TAB>type<TAB>-`` per entity, a blank
        line."""
        if not document.id or any(c in document.id for c in "|\t\r\n"):
            raise RecordError(
                document.source, document.record, f"id {document.id!r} cannot be a PubTator PMID (|, tab, newline)"
            )
        text = document_text(document)
        end = document.passages[0].offset + len(document.passages[0].text) if document.passages else 0
        title, abstract = (text[:end], text[end + 1 :]) if text[end : end + 1] in ("", " ") else (text, "")
        lines = [
            f"{document.id}|t|{title.translate(_PUBTATOR_LINE_SAFE)}",
            f"{document.id}|a|{abstract.translate(_PUBTATOR_LINE_SAFE)}",
        ]
        for start, end, label in _entity_spans(document, text, entities):
            mention = text[start:end].translate(_PUBTATOR_LINE_SAFE)
            lines.append(f"{document.id}\t{start}\t{end}\t{mention}\t{label}\t-")
        return "\n".join(lines) + "\n\n"

    def footer(self) -> str:
        """Nothing: PubTator has no footer."""
        return ""


def _bioc_annotations(document: Document, entities: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Per passage, its annotations (BioC JSON's shape); ids ``T1``, ``T2``, ... unique in the document.

    An entity goes to the passage it starts in (the last one starting at or before it), its location in
    document offsets, as BioC counts them; its text is the document's text at that location.
    """
    text = document_text(document)
    starts = [passage.offset for passage in document.passages]
    by_passage: list[list[dict[str, Any]]] = [[] for _ in document.passages]
    for number, (entity, (start, end, label)) in enumerate(
        zip(entities, _entity_spans(document, text, entities), strict=True), start=1
    ):
        infons = {"type": label}
        if entity.get("score") is not None:
            infons["score"] = str(round(float(entity["score"]), 6))  # BioC infons are strings
        annotation = {"id": f"T{number}", "infons": infons, "text": text[start:end]}
        annotation["locations"] = [{"offset": start, "length": end - start}]
        if by_passage:  # a document without passages has no text, so no entities either
            by_passage[max(0, bisect.bisect_right(starts, start) - 1)].append(annotation)
    return by_passage


# Characters XML 1.0 cannot hold (C0 controls but tab and line breaks, lone surrogates, U+FFFE/F):
# a space in their place keeps the offsets and the output well-formed.
_XML_UNSAFE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(text: str) -> str:
    return _XML_UNSAFE.sub(" ", text)


def _sub_element(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    if text is not None:
        element.text = _xml_safe(text)
    return element


def _xml_string(element: ET.Element, **options: Any) -> str:
    # An XML reader turns a literal carriage return into a line feed; as a character reference it stays.
    return ET.tostring(element, encoding="unicode", **options).replace("\r", "&#13;")


class BiocXmlWriter:
    """BioC XML: a ``<collection>`` of ``<document>`` elements, the entities as passage annotations.

    Args:
        date: The collection's ``<date>`` (empty by default, so that a rerun writes the same bytes).
        key: The collection's ``<key>``.
    """

    separator = ""

    def __init__(self, date: str = "", key: str = "") -> None:
        self.date, self.key = date, key

    def header(self) -> str:
        """The XML declaration, the doctype, the opening ``<collection>`` with its source, date and key."""
        parts = [ET.Element("source"), ET.Element("date"), ET.Element("key")]
        for part, text in zip(parts, ("hf-layer-tokclf", self.date, self.key), strict=True):
            part.text = _xml_safe(text)
        opening = "".join(_xml_string(part, short_empty_elements=False) for part in parts)
        return (
            f"<?xml version='1.0' encoding='utf-8'?>\n<!DOCTYPE collection SYSTEM 'BioC.dtd'>\n<collection>{opening}\n"
        )

    def document(self, document: Document, entities: list[dict[str, Any]]) -> str:
        """One ``<document>`` element on a line: its id, its passages (infons, offset, text, annotations)."""
        element = ET.Element("document")
        _sub_element(element, "id", document.id)
        for passage, found in zip(document.passages, _bioc_annotations(document, entities), strict=True):
            passage_element = _sub_element(element, "passage")
            for key, value in passage.infons.items():
                _sub_element(passage_element, "infon", str(value), key=_xml_safe(str(key)))
            _sub_element(passage_element, "offset", str(passage.offset))
            _sub_element(passage_element, "text", passage.text)
            for annotation in found:
                annotation_element = _sub_element(passage_element, "annotation", id=annotation["id"])
                for key, value in annotation["infons"].items():
                    _sub_element(annotation_element, "infon", value, key=key)
                location = annotation["locations"][0]
                _sub_element(
                    annotation_element, "location", offset=str(location["offset"]), length=str(location["length"])
                )
                _sub_element(annotation_element, "text", annotation["text"])
        return _xml_string(element) + "\n"

    def footer(self) -> str:
        """The closing ``</collection>``."""
        return "</collection>\n"


class BiocJsonWriter:
    """BioC JSON: a collection object whose ``documents`` array holds one document object per line.

    JSON allows no trailing comma, so no document text can end (or begin) with the comma between two
    documents; ``separator`` (``",\\n"``) is what a run writes between two documents, never before the first
    or after the last, also across chunks and shards: ``header() + separator.join(documents) + footer()``.

    Args:
        date: The collection's ``date`` (empty by default, so that a rerun writes the same bytes).
        key: The collection's ``key``.
    """

    separator = ",\n"

    def __init__(self, date: str = "", key: str = "") -> None:
        self.date, self.key = date, key

    def header(self) -> str:
        """The collection's opening, up to and including the ``[`` of its documents and a line break."""
        collection = {"source": "hf-layer-tokclf", "date": self.date, "key": self.key, "infons": {}}
        return json.dumps(collection, ensure_ascii=False)[:-1] + ', "documents": [\n'

    def document(self, document: Document, entities: list[dict[str, Any]]) -> str:
        """One document object, without a separator or line break."""
        passages = [
            {
                "offset": passage.offset,
                "infons": passage.infons,
                "text": passage.text,
                "sentences": [],
                "annotations": found,
                "relations": [],
            }
            for passage, found in zip(document.passages, _bioc_annotations(document, entities), strict=True)
        ]
        return json.dumps({"id": document.id, "infons": {}, "passages": passages, "relations": []}, ensure_ascii=False)

    def footer(self) -> str:
        """The closing of the documents array and of the collection."""
        return "\n]}\n"


_WRITERS = {"jsonl": JsonlWriter, "pubtator": PubtatorWriter, "bioc": BiocXmlWriter, "bioc-json": BiocJsonWriter}


def render_document(writer: Any, document: Document, entities: list[dict]) -> bytes:
    """``writer.document(document, entities)`` in UTF-8; what the writer cannot write is a `RecordError`.

    A document the format cannot hold (a PubTator PMID with a ``|``, a lone surrogate the encoder
    refuses, an entity outside its text) is a record error like one that cannot be read, so that
    ``--on-error skip`` covers it and an output holds whole records only: each record is rendered
    before any of it is written.
    """
    try:
        return writer.document(document, entities).encode("utf-8")
    except RecordError:
        raise
    except ValueError as error:  # UnicodeEncodeError included
        raise RecordError(document.source, document.record, f"cannot be written: {error}") from None


def get_writer(output_format: str, **options: Any) -> Any:
    """A writer of ``output_format`` (`OUTPUT_FORMATS`): ``header()``, ``document(doc, entities)``, ``footer()``.

    Its ``separator`` attribute is the text to write between two documents (``",\\n"`` for ``bioc-json``,
    ``""`` for the others). ``options`` go to the writer: ``date`` and ``key`` for ``bioc`` and ``bioc-json``.
    """
    if output_format not in _WRITERS:
        raise ValueError(f"unknown output format {output_format!r}; expected one of {', '.join(OUTPUT_FORMATS)}")
    return _WRITERS[output_format](**options)
