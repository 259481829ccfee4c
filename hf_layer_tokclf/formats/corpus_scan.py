"""What a corpus file is and how much it holds, from a cheap look: `detect_corpus_format` by its suffix and first
bytes, `count_records` and `count_lines` by a scan in flat memory (for progress)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from xml.parsers import expat

from .lines import READ_ERRORS, DataError, bounded_lines, existing_file, format_suffix, open_binary, read_head

__all__ = ["count_lines", "count_records", "detect_corpus_format"]


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
# The root element of each XML corpus format, as its reader (`pubmed_bioc`) requires it.
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
    """The corpus format of a file (one of `corpus_readers.CORPUS_FORMATS`), from its suffix and first bytes; None
    where unsure.

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
