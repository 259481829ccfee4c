"""predict's results as a self-contained HTML page, entities highlighted (spaCy's displaCy, manual mode)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..base.extras import require
from ..base.files import atomic_writer

__all__ = ["entities_html", "write_html"]


def entities_html(records: Iterable[Mapping[str, Any]]) -> str:
    """One HTML page showing every record's text with its entities marked and labelled.

    ``records`` are predict's JSON-lines objects: ``{"text": str, "entities": [{"entity_group" (or
    ``"entity"``), "start", "end", ...}]}``, with an optional ``"id"`` shown as the document's title.
    Text, labels and titles are HTML-escaped. A `ValueError` names the record (counted from 1)
    whose text or entity is malformed; an `extras.MissingExtraError` (an `ImportError`) says how to install
    spaCy if it is missing.
    """
    require("spacy", "the HTML output (displaCy)")  # predict checks it before the model loads
    from spacy import displacy

    documents = [_manual_document(number, record) for number, record in enumerate(records, start=1)]
    # jupyter=False: in a notebook displacy would display the page and return None.
    page = displacy.render(documents, style="ent", manual=True, page=True, jupyter=False)
    # displaCy's page declares no encoding; a browser opening the file might then guess wrong on
    # anything beyond ASCII (biomedical text has plenty: "naïve", "β-thalassemia").
    return page.replace("<head>", '<head>\n        <meta charset="utf-8">', 1)


def _manual_document(number: int, record: Mapping[str, Any]) -> dict[str, Any]:
    """displaCy's manual form of one record: ``{"text", "ents": [{"start", "end", "label"}], "title"}``."""
    if not isinstance(record, Mapping) or not isinstance(record.get("text"), str):
        raise ValueError(f"record {number} has no text (a string under 'text'): {str(record)[:200]}")
    text = record["text"]
    ents = []
    for entity in record.get("entities") or []:
        label = entity.get("entity_group", entity.get("entity")) if isinstance(entity, Mapping) else None
        start, end = (entity.get("start"), entity.get("end")) if isinstance(entity, Mapping) else (None, None)
        if not isinstance(label, str) or not isinstance(start, int) or not isinstance(end, int):
            raise ValueError(f"record {number}: entity {entity!r} needs an entity_group (or entity), start and end.")
        if not 0 <= start <= end <= len(text):
            raise ValueError(f"record {number}: entity {entity!r} lies outside its text ({len(text)} characters).")
        # displaCy escapes the text but writes labels and titles as they are.
        ents.append({"start": start, "end": end, "label": html.escape(label)})
    document: dict[str, Any] = {"text": text, "ents": ents}
    if record.get("id") is not None:
        document["title"] = html.escape(str(record["id"]))
    return document


def write_html(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Writes `entities_html` of ``records`` to ``path``, atomically (the page is built before the file opens)."""
    page = entities_html(records)
    with atomic_writer(path) as f:
        f.write(page)
