"""JSON lines records and `datasets` rows as sentences: which fields hold the words and the labels (`Columns`),
labels given as strings or as integer ids, and the readers of JSON lines (`read_json_records`, `read_jsonl`,
`iter_word_lists`)."""

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .lines import DataError, existing_file, text_lines
from .sentence import Sentence

__all__ = [
    "JSON_SUFFIXES",
    "Columns",
    "iter_word_lists",
    "read_json_records",
    "read_jsonl",
    "record_sentence",
]

JSON_SUFFIXES = (".jsonl", ".json")


@dataclass(frozen=True)
class Columns:
    """Which fields of a JSON lines record or dataset row hold the words and the labels (run_ner.py's
    ``--text_column_name`` / ``--label_column_name``), and the names of integer labels.

    Args:
        tokens: The field with the list of words.
        labels: The field with one label per word: strings, or integer ids into ``label_names``
            (what `datasets.Dataset.to_json` writes for a `ClassLabel` feature).
        label_names: The label of each id (``--label-names``); a dataset's `ClassLabel` names are
            used where it has them.
    """

    tokens: str = "tokens"
    labels: str = "ner_tags"
    label_names: tuple[str, ...] | None = None


def _record_labels(tags: Any, columns: Columns, where: str) -> list[str]:
    """Turns a record's label list (label strings or integer ids) into label strings."""
    field = columns.labels
    if not isinstance(tags, list):
        raise DataError(f"{where}: {field!r} must be a list, got {tags!r}")
    names = columns.label_names
    labels = []
    for tag in tags:
        if isinstance(tag, str):
            labels.append(tag)
        elif isinstance(tag, int) and not isinstance(tag, bool):
            if names is None:
                raise DataError(
                    f"{where}: {field!r} holds integer id {tag} but no label names are known; give them with "
                    "--label-names (a list such as O B-Disease I-Disease, or a datasets folder with a ClassLabel "
                    "feature), or write label strings (label_names= in Python)"
                )
            if not 0 <= tag < len(names):
                raise DataError(f"{where}: label id {tag} is out of range for {len(names)} label_names")
            labels.append(names[tag])
        else:
            raise DataError(f"{where}: {field!r} must hold strings or integer ids, got {tag!r}")
    return labels


def _json_object(line: str, where: str) -> dict[str, Any]:
    """One JSON Lines line as an object; DataError naming ``where`` otherwise."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: invalid JSON ({error.msg} at column {error.colno}): {line[:80]!r}") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply to read: {line[:80]!r}") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected one JSON object per line, got {line[:80]!r}")
    return record


def read_json_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields (line number, object) for each non-blank line of a JSON Lines file, lazily (a corpus of
    any size reads in flat memory; gzip is read through).

    Raises:
        DataError: naming the file and line, for invalid JSON, a line that is not an object, bytes
            that are not UTF-8, or a line past the record-size limit (`record_limit`).
    """
    for number, line in text_lines(existing_file(path)):
        if line.strip():
            yield number, _json_object(line, f"{path}, line {number}")


def read_jsonl(
    path: str | Path, *, label_names: Sequence[str] | None = None, columns: Columns | None = None
) -> list[Sentence]:
    """Reads JSON Lines: one object per line with ``tokens`` and, optionally, ``ner_tags``.

    ``ner_tags`` holds label strings, or integer ids that ``label_names`` maps to strings. Records
    without ``ner_tags`` get ``labels=None``. Blank lines are skipped. ``columns`` names other
    fields (and the label names).

    Raises:
        DataError: naming the file and line, for invalid JSON, a missing or malformed ``tokens``,
            ``ner_tags`` of another length, an id out of range, or a line `read_json_records` refuses.
    """
    columns = columns or Columns()
    if label_names is not None:
        columns = replace(columns, label_names=tuple(label_names))
    sentences = [record_sentence(record, columns, str(path), number) for number, record in read_json_records(path)]
    if not sentences:
        raise DataError(f"{path}: no sentences found (the file is empty or holds only blank lines)")
    return sentences


def iter_word_lists(path: str | Path, columns: Columns | None = None) -> Iterator[Sentence]:
    """JSON lines of word lists as unlabeled sentences, lazily (`read_jsonl`'s rules, flat memory), each with its
    whole record as ``fields``, so that it can be written back beside its predictions."""
    columns = columns or Columns()
    for number, record in read_json_records(path):
        words = {key: value for key, value in record.items() if key != columns.labels}  # labels are not read here
        yield replace(record_sentence(words, columns, str(path), number), fields=record)


def record_sentence(record: Mapping[str, Any], columns: Columns, source: str, line: int) -> Sentence:
    """One JSON record or dataset row as a sentence; labels `None` where it has no label field.

    Raises:
        DataError: naming ``source`` and ``line``, for a missing or malformed word field, labels that are not
            strings or known ids, or labels of another length than the words.
    """
    where = f"{source}, line {line}"
    if columns.tokens not in record:
        raise DataError(
            f"{where}: the record has no {columns.tokens!r} (keys: {', '.join(record) or 'none'}); "
            "name the words' field with --text-column-name"
        )
    tokens = record[columns.tokens]
    if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
        raise DataError(f"{where}: {columns.tokens!r} must be a list of strings, got {tokens!r}")
    labels = None
    if record.get(columns.labels) is not None:
        labels = _record_labels(record[columns.labels], columns, where)
        if len(labels) != len(tokens):
            raise DataError(f"{where}: {len(tokens)} tokens but {len(labels)} {columns.labels}")
    return Sentence(list(tokens), labels, source, line)
