"""The documents of a corpus, as every corpus reader makes them and every writer takes them.

A `Document` is an id and its passages (`Passage`), each with its character offset in the document as the
format defines it (PubTator and BioC: the title at 0, the abstract after the title and one space:
`title_and_abstract`); `document_text` is the text entity offsets point into. A record that cannot be read (or
written) is a `RecordError` naming the file and the record, so that a corpus run can count it and go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .lines import DataError

__all__ = ["Document", "Passage", "RecordError", "document_text", "title_and_abstract"]


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


def title_and_abstract(title: str, abstract: str | None) -> list[Passage]:
    """An article's passages as PubTator counts them: the title at 0, the abstract after it and one space."""
    passages = [Passage(title, 0, {"type": "title"})]
    if abstract:
        passages.append(Passage(abstract, len(title) + 1, {"type": "abstract"}))
    return passages
