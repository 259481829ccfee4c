"""predict's results as a self-contained HTML page, entities highlighted.

A single-task model's entities (no ``"task"`` key) are drawn by spaCy's displaCy (manual mode), whose marks
cannot overlap. A multi-task model's entities (each with its ``"task"``) overlap across tasks: they are drawn
as nested ``<mark>`` elements, each labelled ``task: type``, with a legend of each task's types.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ..base.extras import require
from ..base.files import atomic_writer

__all__ = ["entities_html", "write_html"]


class _Entity(NamedTuple):
    start: int
    end: int
    label: str
    task: str | None


def entities_html(records: Iterable[Mapping[str, Any]]) -> str:
    """One HTML page showing every record's text with its entities marked and labelled.

    ``records`` are predict's JSON-lines objects: ``{"text": str, "entities": [{"entity_group" (or
    ``"entity"``), "start", "end", ...}]}``, with an optional ``"id"`` shown as the document's title.
    Where any entity has a ``"task"`` (a multi-task model's), the page is `_multitask_page`'s (no spaCy
    needed): every entity marked, overlaps nested, each labelled with its task and type. Text, labels and
    titles are HTML-escaped. A `ValueError` names the record (counted from 1) whose text or entity is
    malformed; an `extras.MissingExtraError` (an `ImportError`) says how to install spaCy where displaCy draws
    the page and it is missing.
    """
    documents = [(record, _checked_entities(number, record)) for number, record in enumerate(records, start=1)]
    if any(entity.task is not None for _, entities in documents for entity in entities):
        return _multitask_page(documents)
    require("spacy", "the HTML output (displaCy)")  # predict checks it before the model loads
    from spacy import displacy

    manual = [_manual_document(record, entities) for record, entities in documents]
    # jupyter=False: in a notebook displacy would display the page and return None.
    page = displacy.render(manual, style="ent", manual=True, page=True, jupyter=False)
    # displaCy's page declares no encoding; a browser opening the file might then guess wrong on
    # anything beyond ASCII (biomedical text has plenty: "naïve", "β-thalassemia").
    return page.replace("<head>", '<head>\n        <meta charset="utf-8">', 1)


def _checked_entities(number: int, record: Mapping[str, Any]) -> list[_Entity]:
    """A record's entities, checked: a label, integer offsets within its text, a string task where it has one."""
    if not isinstance(record, Mapping) or not isinstance(record.get("text"), str):
        raise ValueError(f"record {number} has no text (a string under 'text'): {str(record)[:200]}")
    checked = []
    for entity in record.get("entities") or []:
        entity = entity if isinstance(entity, Mapping) else {}
        label, task = entity.get("entity_group", entity.get("entity")), entity.get("task")
        start, end = entity.get("start"), entity.get("end")
        if not isinstance(label, str) or not isinstance(start, int) or not isinstance(end, int):
            raise ValueError(f"record {number}: entity {entity!r} needs an entity_group (or entity), start and end.")
        if not 0 <= start <= end <= len(record["text"]):
            raise ValueError(
                f"record {number}: entity {entity!r} lies outside its text ({len(record['text'])} characters)."
            )
        if task is not None and not isinstance(task, str):
            raise ValueError(f"record {number}: entity {entity!r} has a task that is not a string.")
        checked.append(_Entity(start, end, label, task))
    return checked


def _manual_document(record: Mapping[str, Any], entities: list[_Entity]) -> dict[str, Any]:
    """displaCy's manual form of one record: ``{"text", "ents": [{"start", "end", "label"}], "title"}``."""
    # displaCy escapes the text but writes labels and titles as they are.
    ents = [{"start": e.start, "end": e.end, "label": html.escape(e.label)} for e in entities]
    document: dict[str, Any] = {"text": record["text"], "ents": ents}
    if record.get("id") is not None:
        document["title"] = html.escape(str(record["id"]))
    return document


# displaCy's look: light fills for the types, stronger colours for the tasks' borders and legend.
_TYPE_COLOURS = ("#7aecec", "#feca74", "#aa9cfc", "#bfeeb7", "#ff9561", "#c887fb", "#e4e7d2", "#9cc9cc", "#ffeb80")
_TASK_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_STYLE = """
body { font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", Helvetica, Arial, sans-serif; padding: 2rem; }
figure { margin: 0 0 3rem; }
.entities { line-height: 2.8; }
mark.entity { padding: 0.2em 0.3em; margin: 0 0.1em; border-radius: 0.35em; border: 2px solid; }
.label { font-size: 0.7em; font-weight: bold; margin-left: 0.4em; vertical-align: middle; }
.legend { margin-bottom: 2rem; line-height: 2.2; }
.legend .task { font-weight: bold; margin-right: 0.5em; }
"""


def _multitask_page(documents: list[tuple[Mapping[str, Any], list[_Entity]]]) -> str:
    """The page of a multi-task model's entities: a legend (a line per task: its name and its types' colours),
    then each record's text, every entity a ``<mark class="entity">`` with ``data-task``, ``data-type`` and
    ``data-entity`` (its index in the record's entities) and a ``<span class="label">task: type</span>``.

    An entity inside another is a mark inside its mark; two that cross (neither holds the other) cannot both
    be one element, so the later one is split where the earlier ends: its pieces share its ``data-entity``, and
    its label follows its last piece. ``records`` are `entities_html`'s, already checked.
    """
    colours: dict[tuple[str, str], str] = {}
    tasks: dict[str, str] = {}
    for _, entities in documents:
        for entity in entities:
            tasks.setdefault(entity.task or "", _TASK_COLOURS[len(tasks) % len(_TASK_COLOURS)])
            colours.setdefault((entity.task or "", entity.label), _TYPE_COLOURS[len(colours) % len(_TYPE_COLOURS)])
    legend = "".join(
        f'<div class="legend-task" data-task="{html.escape(task)}"><span class="task" style="color: {colour}">'
        f"{html.escape(task)}</span>"
        + "".join(
            f'<mark class="entity" style="background: {fill}; border-color: {colour}">{html.escape(label)}</mark>'
            for (owner, label), fill in colours.items()
            if owner == task
        )
        + "</div>"
        for task, colour in tasks.items()
    )
    figures = []
    for record, entities in documents:
        paint = {i: (colours[(e.task or "", e.label)], tasks[e.task or ""]) for i, e in enumerate(entities)}
        pieces = [_Piece(i, e.start, e.end) for i, e in enumerate(entities)]
        body = _marked(record["text"], entities, pieces, 0, len(record["text"]), paint)
        title = f"<h2>{html.escape(str(record['id']))}</h2>" if record.get("id") is not None else ""
        figures.append(f'<figure>{title}<div class="entities">{body}</div></figure>')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>hf-layer-tokclf entities</title>\n'
        f'<style>{_STYLE}</style>\n</head>\n<body>\n<div class="legend">{legend}</div>\n'
        + "\n".join(figures)
        + "\n</body>\n</html>\n"
    )


class _Piece(NamedTuple):
    index: int  # the entity's, in its record
    start: int
    end: int


def _text(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


def _marked(
    text: str, entities: list[_Entity], pieces: list[_Piece], low: int, high: int, paint: dict[int, tuple[str, str]]
) -> str:
    """``text[low:high]`` with ``pieces`` (all within it) marked: the first (leftmost, then longest) holds those
    it contains, a piece that crosses its end is cut there, and the rest follow it."""
    out, position = [], low
    pending = sorted(pieces, key=lambda p: (p.start, -p.end, p.index))
    while pending:
        first, inner, rest = pending[0], [], []
        for other in pending[1:]:
            if other.start >= first.end:
                rest.append(other)
            elif other.end <= first.end:
                inner.append(other)
            else:  # crosses first's end: the part inside first, and the part after it
                inner.append(other._replace(end=first.end))
                rest.append(other._replace(start=first.end))
        entity = entities[first.index]
        fill, border = paint[first.index]
        task, label = html.escape(entity.task or ""), html.escape(entity.label)
        named = f"{task}: {label}" if task else label
        tail = f'<span class="label">{named}</span>' if first.end == entity.end else ""
        out.append(
            f'{_text(text[position : first.start])}<mark class="entity" data-entity="{first.index}" '
            f'data-task="{task}" data-type="{label}" style="background: {fill}; border-color: {border}">'
            f"{_marked(text, entities, inner, first.start, first.end, paint)}{tail}</mark>"
        )
        position, pending = first.end, sorted(rest, key=lambda p: (p.start, -p.end, p.index))
    return "".join(out) + _text(text[position:high])


def write_html(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Writes `entities_html` of ``records`` to ``path``, atomically (the page is built before the file opens)."""
    page = entities_html(records)
    with atomic_writer(path) as f:
        f.write(page)
