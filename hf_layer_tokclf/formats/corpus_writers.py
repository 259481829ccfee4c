"""The corpus writers: one document and its entities (offsets into `document_text`) as text in an output format.

Writers (`OUTPUT_FORMATS`, `get_writer`): ``jsonl``, ``pubtator`` (written as PubTator3 writes it, annotations with
a 6th column, the concept id), ``bioc`` and ``bioc-json``. An entity of a multi-task model carries its task
(``"task": "disease"``): JSON lines keep the key, PubTator writes it in a 7th column, BioC as the annotation's
``task`` infon; entities of different tasks that overlap are all written, each on its own.

A run writes ``header()``, the documents, then ``footer()``, and writes the writer's ``separator`` between two
documents (``""`` for every format but ``bioc-json``, whose JSON array needs ``",\\n"``), so that chunks of
documents can be written, resumed and merged: the output is ``header() + separator.join(documents) + footer()``.
`render_document` turns what a writer cannot write into a `RecordError`.
"""

from __future__ import annotations

import bisect
import json
import re
import xml.etree.ElementTree as ET
from typing import Any

from .corpus_documents import Document, RecordError, document_text

__all__ = [
    "OUTPUT_FORMATS",
    "BiocJsonWriter",
    "BiocXmlWriter",
    "JsonlWriter",
    "PubtatorWriter",
    "get_writer",
    "render_document",
]

OUTPUT_FORMATS = ("jsonl", "pubtator", "bioc", "bioc-json")


def _entity_spans(
    document: Document, text: str, entities: list[dict[str, Any]]
) -> list[tuple[int, int, str, str | None]]:
    """Each entity's (start, end, type, task), checked against the document's text; type: ``entity_group`` or
    ``entity``; task: a multi-task model's ``task``, None for a single-task model's entity (it has none).

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
        task = entity.get("task")
        label = str(entity.get("entity_group", entity.get("entity", "")))
        spans.append((start, end, label, None if task is None else str(task)))
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
    line's trailing space when they strip it. A multi-task model's entity adds its task as a 7th column: the
    type column stays the type (what PubTator's consumers count and filter on), the concept id stays ``-``, and
    the ``bioc`` library reads a 7th column whose 6th holds no ``|`` into the annotation's ``others`` (a reader
    that takes 6 columns passes over it); a single-task model's lines keep their 6 columns.

    The title is the first passage and the abstract the rest of `document_text` after it and one space, so
    that the entity offsets (into `document_text`) are PubTator's (into title + " " + abstract). Where the
    text goes on right after the first passage, with no space, the whole text is the title.
    """

    separator = ""

    def header(self) -> str:
        """Nothing: PubTator has no header."""
        return ""

    def document(self, document: Document, entities: list[dict[str, Any]]) -> str:
        """The document's two text lines, ``id<TAB>start<TAB>end<TAB>mention<TAB>type<TAB>-`` per entity (and
        ``<TAB>task`` where the entity has one), a blank line."""
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
        for start, end, label, task in _entity_spans(document, text, entities):
            mention = text[start:end].translate(_PUBTATOR_LINE_SAFE)
            line = f"{document.id}\t{start}\t{end}\t{mention}\t{label}\t-"
            lines.append(line if task is None else f"{line}\t{task.translate(_PUBTATOR_LINE_SAFE)}")
        return "\n".join(lines) + "\n\n"

    def footer(self) -> str:
        """Nothing: PubTator has no footer."""
        return ""


def _bioc_annotations(document: Document, entities: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Per passage, its annotations (BioC JSON's shape); ids ``T1``, ``T2``, ... unique in the document.

    An entity goes to the passage it starts in (the last one starting at or before it), its location in
    document offsets, as BioC counts them; its text is the document's text at that location. Its infons:
    ``type``, ``task`` (a multi-task model's entity only) and ``score``, strings as BioC's infons are.
    """
    text = document_text(document)
    starts = [passage.offset for passage in document.passages]
    by_passage: list[list[dict[str, Any]]] = [[] for _ in document.passages]
    for number, (entity, (start, end, label, task)) in enumerate(
        zip(entities, _entity_spans(document, text, entities), strict=True), start=1
    ):
        infons = {"type": label} if task is None else {"type": label, "task": task}
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
