"""The formats biomedical corpora come in: documents of passages read from, and entities written to, files.

A `Document` is an id and its passages, each with its character offset in the document as the
format defines it (PubTator and BioC: the title at 0, the abstract after the title and one
space). Readers yield documents lazily, in file order, and a `RecordError` in place of a record
that cannot be read, so that a corpus run can count it and go on. Writers turn one document and
its entities (offsets into the document) into text; a run writes ``header()``, the documents,
then ``footer()``, so that chunks of documents can be written, resumed and merged as bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import DataError

__all__ = [
    "CORPUS_FORMATS",
    "OUTPUT_FORMATS",
    "Document",
    "Passage",
    "RecordError",
    "count_records",
    "document_text",
    "get_writer",
    "read_corpus",
]

CORPUS_FORMATS = ("jsonl",)
OUTPUT_FORMATS = ("jsonl",)


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
        fields: Other fields of a JSON lines record, written back beside the entities.
    """

    id: str
    passages: list[Passage]
    source: str = ""
    record: int = 0
    fields: dict[str, Any] = field(default_factory=dict)


class RecordError(DataError):
    """A record of a corpus file that cannot be read; it names the file and the record."""

    def __init__(self, source: str | Path, record: int, message: str) -> None:
        self.source, self.record, self.reason = str(source), record, message
        super().__init__(f"{source}, record {record}: {message}")


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


def _read_jsonl(path: Path, column: str = "text") -> Iterator[Document | RecordError]:
    """JSON lines of ``{"id": ..., "text": ...}``; other fields are kept; a bad line is a `RecordError`."""
    with open(path, "rb") as stream:
        for number, raw in enumerate(stream, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                if not line.strip():
                    continue
                record = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                yield RecordError(path, number, f"not a JSON object ({error})")
                continue
            if not isinstance(record, dict) or not isinstance(record.get(column), str):
                keys = ", ".join(record) if isinstance(record, dict) else type(record).__name__
                yield RecordError(path, number, f"no {column!r} text (keys: {keys or 'none'})")
                continue
            fields = {key: value for key, value in record.items() if key != column}
            yield Document(str(record.get("id", number)), [Passage(record[column])], str(path), number, fields)


_READERS = {"jsonl": _read_jsonl}


def read_corpus(path: str | Path, corpus_format: str, **options: Any) -> Iterator[Document | RecordError]:
    """The documents of a corpus file, lazily and in order; a `RecordError` for each record that cannot be read.

    Raises:
        DataError: the file is missing, or cannot be read at all (not the format it is said to be).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    if corpus_format not in _READERS:
        raise ValueError(f"unknown corpus format {corpus_format!r}; expected one of {', '.join(CORPUS_FORMATS)}")
    return _READERS[corpus_format](path, **options)


def count_records(path: str | Path, corpus_format: str) -> int | None:
    """How many records a corpus file holds, by a cheap scan (for progress); None where that needs a full parse."""
    if corpus_format != "jsonl":
        return None
    with open(path, "rb") as stream:
        return sum(1 for line in stream if line.strip())


class JsonlWriter:
    """One JSON object per document: its id, its text, its other fields, and ``entities`` with document offsets."""

    def header(self) -> str:
        return ""

    def document(self, document: Document, entities: list[dict[str, Any]]) -> str:
        record = {"id": document.id, **document.fields, "text": document_text(document), "entities": entities}
        return json.dumps(record, ensure_ascii=False) + "\n"

    def footer(self) -> str:
        return ""


_WRITERS = {"jsonl": JsonlWriter}


def get_writer(output_format: str) -> Any:
    """A writer of ``output_format`` (`OUTPUT_FORMATS`): ``header()``, ``document(doc, entities)``, ``footer()``."""
    if output_format not in _WRITERS:
        raise ValueError(f"unknown output format {output_format!r}; expected one of {', '.join(OUTPUT_FORMATS)}")
    return _WRITERS[output_format]()
