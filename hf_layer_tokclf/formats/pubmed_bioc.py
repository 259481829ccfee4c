"""The XML corpus formats and BioC JSON, read as documents: PubMed XML (`read_pubmed`), BioC XML (`read_bioc`) and
BioC JSON (`read_bioc_json`).

The XML is streamed, each record cleared once read, so that memory stays flat on files of any size; BioC's two
serializations make their documents by one rule (a passage with text, or the sentences of one without).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.parsers import expat

from .corpus_documents import Document, Passage, RecordError, title_and_abstract
from .lines import READ_ERRORS, DataError, not_utf8, open_binary

__all__ = ["read_bioc", "read_bioc_json", "read_pubmed"]


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


def read_pubmed(path: Path) -> Iterator[Document | RecordError]:
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


def read_bioc(path: Path) -> Iterator[Document | RecordError]:
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


def read_bioc_json(path: Path) -> Iterator[Document | RecordError]:
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
