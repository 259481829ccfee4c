"""`load_sentences`: labeled sentences from any source the training and evaluation commands take, and `datasets`.

A CoNLL file (`conll`), a JSON lines file (`records`), a directory written by `datasets`' ``save_to_disk`` or a Hub
dataset, each row a record (`records.record_sentence`); `label_names_from` reads ``--label-names``.
"""

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..base.locations import is_repo_id
from .conll import read_conll
from .labels import parse_label
from .lines import DataError, format_suffix
from .records import JSON_SUFFIXES, Columns, read_jsonl, record_sentence
from .sentence import Sentence

__all__ = ["MissingSplitError", "label_names_from", "load_sentences"]


class MissingSplitError(DataError):
    """A dataset that has no split of the name asked for."""


# Suffixes that mark a path as a local file that is missing, rather than a Hub dataset id.
_FILE_SUFFIXES = (*JSON_SUFFIXES, ".tsv", ".txt", ".conll", ".conllu", ".iob", ".iob2", ".bio", ".bioes", ".csv")


def _pick_split(dataset: Any, split: str | None, source: str) -> tuple[Any, str]:
    """Returns (dataset, name) for a Dataset, or the chosen split of a DatasetDict."""
    import datasets

    if not isinstance(dataset, datasets.DatasetDict):
        return dataset, source
    available = ", ".join(dataset)
    if split is None:
        if len(dataset) != 1:
            raise DataError(f"{source}: holds several splits ({available}); choose one with split=")
        split = next(iter(dataset))
    if split not in dataset:
        raise MissingSplitError(f"{source}: no split {split!r} (available: {available})")
    return dataset[split], f"{source}[{split}]"


def _class_label_names(feature: Any) -> list[str] | None:
    """The names of a label feature that is a sequence of `ClassLabel`, else `None`."""
    import datasets

    # `Sequence(ClassLabel)` (datasets < 4), `List` / `LargeList` (datasets >= 4) or a plain list.
    inner = feature[0] if isinstance(feature, list) and feature else getattr(feature, "feature", None)
    return list(inner.names) if isinstance(inner, datasets.ClassLabel) else None


def _dataset_sentences(dataset: Any, source: str, labeled: bool | None, columns: Columns) -> list[Sentence]:
    """Converts the rows of a `datasets.Dataset` with word and label columns to sentences."""
    names = ", ".join(dataset.column_names)
    if columns.tokens not in dataset.column_names:
        raise DataError(f"{source}: no {columns.tokens!r} column (columns: {names}); name it with --text-column-name")
    if labeled is None:
        labeled = columns.labels in dataset.column_names
    if labeled and columns.labels not in dataset.column_names:
        raise DataError(
            f"{source}: no {columns.labels!r} column (columns: {names}); name it with --label-column-name, "
            "or for unlabeled data use labeled=False"
        )
    if labeled:
        class_names = _class_label_names(dataset.features[columns.labels])
        if class_names is not None:
            columns = replace(columns, label_names=tuple(class_names))
    sentences = []
    for row, record in enumerate(
        dataset.select_columns([c for c in (columns.tokens, columns.labels) if c in dataset.column_names])
    ):
        if labeled and record.get(columns.labels) is None:
            raise DataError(
                f"{source}, line {row + 1}: the row has no {columns.labels!r}; for unlabeled data use labeled=False"
            )
        sentence = record_sentence(
            record if labeled else {columns.tokens: record[columns.tokens]}, columns, source, row + 1
        )
        sentences.append(sentence)
    return sentences


def label_names_from(values: Sequence[str], label_column: str = "ner_tags") -> tuple[str, ...]:
    """``--label-names``: the names of integer label ids, given as a list (``O B-X I-X``, or comma-separated),
    or as a folder written by `datasets`' ``save_to_disk`` whose label column is a sequence of `ClassLabel`.

    Raises:
        DataError: a folder without such a column, or a name that is not a label.
    """
    if len(values) == 1 and Path(values[0]).is_dir():
        import datasets

        folder = values[0]
        loaded = datasets.load_from_disk(folder)
        dataset = next(iter(loaded.values())) if isinstance(loaded, datasets.DatasetDict) else loaded
        feature = dataset.features.get(label_column)
        names = _class_label_names(feature) if feature is not None else None
        if names is None:
            raise DataError(f"--label-names {folder}: its {label_column!r} column is not a sequence of ClassLabel")
        return tuple(names)
    names = tuple(name for value in values for name in value.split(",") if name)
    for name in names:
        try:
            parse_label(name)
        except DataError as error:
            raise DataError(f"--label-names: {error}") from None
    return names


def _load_hub_dataset(source: str, split: str | None, config_name: str | None) -> Any:
    import datasets  # imported lazily: it is slow to import and only needed here

    try:
        # A Hub dataset's loading script is code from the Hub: datasets 2.x runs it unless told not to (3.x
        # asks; 4.0 removed scripts and drops the option), so it is refused on every version declared.
        return datasets.load_dataset(source, config_name, split=split, trust_remote_code=False)
    except Exception as error:  # the Hub raises many types; the user needs the message
        raise DataError(
            f"{source}: no such file or directory, and loading it as a Hugging Face Hub dataset failed "
            f"({type(error).__name__}: {error})"
        ) from error


def load_sentences(
    source: str,
    *,
    split: str | None = None,
    labeled: bool | None = True,
    columns: Columns | None = None,
    config_name: str | None = None,
    hub: bool = False,
) -> list[Sentence]:
    """Reads sentences from a file, a ``save_to_disk`` directory or (with ``hub``) a Hub dataset.

    - a directory written by `datasets.Dataset.save_to_disk` or `datasets.DatasetDict.save_to_disk`
      (``split`` picks the split of a DatasetDict): rows with ``tokens`` and ``ner_tags``, which
      are label strings or `ClassLabel` ids;
    - a ``.jsonl`` / ``.json`` file: `read_jsonl`;
    - any other file: `read_conll` (``.conllu`` as CoNLL-U);
    - with ``hub`` (``--dataset-name``), a path that does not exist but looks like a Hub dataset id
      (``name`` or ``owner/name``): `datasets.load_dataset(source, config_name, split=split)`, its
      loading script (if any) never run. Without, such a path is a missing file: a file option
      (``--train-file owner/name``) never downloads a dataset.

    ``split`` is ignored for files and for a directory holding a single Dataset. ``columns`` names
    the word and label fields (default ``tokens`` / ``ner_tags``) and integer labels' names. With
    ``labeled=False`` every sentence has ``labels=None``; with ``labeled=None`` labels are read
    where the data has them.

    Raises:
        DataError: the source cannot be found or read, or is missing labels when ``labeled``.
    """
    columns = columns or Columns()
    path = Path(source)
    if path.is_dir():
        if not any((path / name).exists() for name in ("dataset_dict.json", "state.json")):
            raise DataError(f"{source}: a directory, but not one written by datasets' save_to_disk")
        import datasets

        dataset, name = _pick_split(datasets.load_from_disk(str(path)), split, source)
        return _dataset_sentences(dataset, name, labeled, columns)
    if path.exists():
        if format_suffix(path) in JSON_SUFFIXES:
            return _labeled_as_asked(read_jsonl(path, columns=columns), labeled, columns)
        return read_conll(path, labeled=labeled)
    if not hub or format_suffix(path) in _FILE_SUFFIXES or not is_repo_id(source):
        raise DataError(f"{source}: no such file or directory")
    dataset, name = _pick_split(_load_hub_dataset(source, split, config_name), split, source)
    return _dataset_sentences(dataset, name, labeled, columns)


def _labeled_as_asked(sentences: list[Sentence], labeled: bool | None, columns: Columns) -> list[Sentence]:
    """JSON lines sentences with labels where ``labeled`` asks: all (True), none (False), or as read (None)."""
    if labeled is None:
        return sentences
    if not labeled:
        return [Sentence(s.tokens, None, s.source, s.line, s.token_lines) for s in sentences]
    for sentence in sentences:
        if sentence.labels is None:
            raise DataError(f"{sentence.where()}: the record has no {columns.labels!r}; use labeled=False")
    return sentences
