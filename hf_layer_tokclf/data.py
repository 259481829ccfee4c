"""Reading NER data and its label schemes.

From files to labeled sentences (`features` turns them into model inputs):

1. `load_sentences` reads CoNLL-style text, JSON Lines, a `datasets.save_to_disk` directory or a
   Hub dataset into `Sentence` objects that remember where they came from, so that every
   `DataError` can point at a file and line.
2. `normalize_labels` converts IOB1 / IOBES labels to IOB2, because the token-classification
   pipeline's ``aggregation_strategy`` only understands ``B-`` / ``I-``; `label_list` builds the
   label set from the training data and `check_known_labels` rejects labels seen nowhere else.
"""

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .locations import is_repo_id

__all__ = [
    "SCHEMES",
    "DataError",
    "MissingSplitError",
    "Sentence",
    "check_known_labels",
    "detect_scheme",
    "label_list",
    "load_sentences",
    "normalize_labels",
    "read_conll",
    "read_jsonl",
    "to_iob2",
]

SCHEMES = ("IOB1", "IOB2", "IOBES")

DOCSTART = "-DOCSTART-"
JSON_SUFFIXES = (".jsonl", ".json")
# Suffixes that mark a path as a local file that is missing, rather than a Hub dataset id.
_FILE_SUFFIXES = (*JSON_SUFFIXES, ".tsv", ".txt", ".conll", ".conllu", ".iob", ".iob2", ".bio", ".bioes", ".csv")
# CoNLL columns: only ASCII spaces and tabs separate them, so tokens such as a no-break space or a
# zero-width space survive (`str.split()` would swallow them).
_COLUMN_SEP = re.compile(r"[ \t]+")
_LABEL = re.compile(r"^([BIES])-(.+)$")


class DataError(ValueError):
    """An error in the user's data that they can fix; the message names the file, line and value."""


class MissingSplitError(DataError):
    """A dataset that has no split of the name asked for."""


@dataclass
class Sentence:
    """One sentence of words, with its word labels and where it was read from.

    Args:
        tokens: The words.
        labels: One label per word, or `None` for unlabeled input.
        source: The file path or dataset name the sentence was read from.
        line: 1-based line where the sentence starts: a CoNLL file's line of the first token, a
            JSON Lines file's line of the record, a dataset's row index + 1.
        token_lines: `True` when every token sits on its own line (CoNLL), so that token ``i`` is
            on line ``line + i``; otherwise every token is reported at ``line``.
    """

    tokens: list[str]
    labels: list[str] | None
    source: str
    line: int
    token_lines: bool = False

    def where(self, index: int | None = None) -> str:
        """``"<source>, line <n>"`` for the sentence, or for its token number ``index``."""
        line = self.line + index if self.token_lines and index is not None else self.line
        return f"{self.source}, line {line}"


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


def _read_text(path: str | Path) -> str:
    """Returns the file's text decoded as UTF-8 (without a BOM); DataError if missing or not UTF-8."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    data = path.read_bytes()
    try:
        # utf-8-sig drops the byte-order mark that Windows editors like to write.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        bad = data[error.start : error.start + 1]
        raise DataError(
            f"{path}, line {line}: not valid UTF-8 (byte 0x{bad.hex()} at byte offset {error.start}); "
            "convert the file to UTF-8, e.g. with `iconv -f latin1 -t utf-8`"
        ) from None


def _lines(text: str) -> list[str]:
    # Split on "\n" only: `str.splitlines` also splits on characters such as U+2028 or U+0085
    # that can be tokens of their own in biomedical text. Stripping "\r" handles CRLF files.
    return [line.removesuffix("\r") for line in text.split("\n")]


def read_conll(path: str | Path, *, labeled: bool = True) -> list[Sentence]:
    """Reads a CoNLL-style file: one token per line, the label in the last column.

    Columns are separated by tabs or runs of spaces, so both CoNLL-2003 (``token POS chunk label``)
    and ``token<TAB>label`` files work. A blank line ends a sentence; ``-DOCSTART-`` lines are
    skipped; a UTF-8 byte-order mark and CRLF line ends are fine. With ``labeled=False`` the first
    column is the token and the labels are `None`.

    Raises:
        DataError: the file is missing, not UTF-8, holds no sentences, or a labeled line has a
            single column.
    """
    sentences = []
    tokens: list[str] = []
    labels: list[str] = []
    start = 0

    def end_sentence() -> None:
        if tokens:
            sentences.append(Sentence(list(tokens), list(labels) if labeled else None, str(path), start, True))
        tokens.clear()
        labels.clear()

    for number, line in enumerate(_lines(_read_text(path)), start=1):
        stripped = line.strip(" \t")
        if not stripped:
            end_sentence()
            continue
        columns = _COLUMN_SEP.split(stripped)
        if columns[0] == DOCSTART:
            end_sentence()
            continue
        if labeled and len(columns) < 2:
            raise DataError(
                f"{path}, line {number}: expected a token and a label separated by a tab or spaces, "
                f"got {stripped!r} (for unlabeled text use labeled=False)"
            )
        if not tokens:
            start = number
        tokens.append(columns[0])
        labels.append(columns[-1])
    end_sentence()
    if not sentences:
        raise DataError(f"{path}: no sentences found (the file is empty or holds only blank lines)")
    return sentences


def _record_labels(tags: Any, label_names: Sequence[str] | None, where: str) -> list[str]:
    """Turns a JSON ``ner_tags`` list (label strings or integer ids) into label strings."""
    if not isinstance(tags, list):
        raise DataError(f"{where}: 'ner_tags' must be a list, got {tags!r}")
    labels = []
    for tag in tags:
        if isinstance(tag, str):
            labels.append(tag)
        elif isinstance(tag, int) and not isinstance(tag, bool):
            if label_names is None:
                raise DataError(
                    f"{where}: 'ner_tags' holds integer id {tag} but no label names are known; "
                    "write label strings, or call read_jsonl(..., label_names=[...])"
                )
            if not 0 <= tag < len(label_names):
                raise DataError(f"{where}: label id {tag} is out of range for {len(label_names)} label_names")
            labels.append(label_names[tag])
        else:
            raise DataError(f"{where}: 'ner_tags' must hold strings or integer ids, got {tag!r}")
    return labels


def read_jsonl(path: str | Path, *, label_names: list[str] | None = None) -> list[Sentence]:
    """Reads JSON Lines: one object per line with ``tokens`` and, optionally, ``ner_tags``.

    ``ner_tags`` holds label strings, or integer ids that ``label_names`` maps to strings. Records
    without ``ner_tags`` get ``labels=None``. Blank lines are skipped.

    Raises:
        DataError: naming the file and line, for invalid JSON, a missing or malformed ``tokens``,
            ``ner_tags`` of another length, or an id out of range.
    """
    sentences = []
    for number, line in enumerate(_lines(_read_text(path)), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: invalid JSON ({error.msg} at column {error.colno}): {line[:80]!r}") from None
        except RecursionError:
            raise DataError(f"{where}: JSON nested too deeply to read: {line[:80]!r}") from None
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected one JSON object per line, got {line[:80]!r}")
        if "tokens" not in record:
            raise DataError(f"{where}: the record has no 'tokens' (keys: {', '.join(record) or 'none'})")
        tokens = record["tokens"]
        if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
            raise DataError(f"{where}: 'tokens' must be a list of strings, got {tokens!r}")
        labels = None
        if record.get("ner_tags") is not None:
            labels = _record_labels(record["ner_tags"], label_names, where)
            if len(labels) != len(tokens):
                raise DataError(f"{where}: {len(tokens)} tokens but {len(labels)} ner_tags")
        sentences.append(Sentence(tokens, labels, str(path), number))
    if not sentences:
        raise DataError(f"{path}: no sentences found (the file is empty or holds only blank lines)")
    return sentences


# --------------------------------------------------------------------------------------------
# Datasets (save_to_disk directories and the Hub)
# --------------------------------------------------------------------------------------------


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
    """The names of a ``ner_tags`` feature that is a sequence of `ClassLabel`, else `None`."""
    import datasets

    # `Sequence(ClassLabel)` (datasets < 4), `List` / `LargeList` (datasets >= 4) or a plain list.
    inner = feature[0] if isinstance(feature, list) and feature else getattr(feature, "feature", None)
    return list(inner.names) if isinstance(inner, datasets.ClassLabel) else None


def _dataset_sentences(dataset: Any, source: str, labeled: bool) -> list[Sentence]:
    """Converts the rows of a `datasets.Dataset` with ``tokens`` / ``ner_tags`` to sentences."""
    columns = ", ".join(dataset.column_names)
    if "tokens" not in dataset.column_names:
        raise DataError(f"{source}: no 'tokens' column (columns: {columns})")
    if labeled and "ner_tags" not in dataset.column_names:
        raise DataError(f"{source}: no 'ner_tags' column (columns: {columns}); for unlabeled data use labeled=False")
    names = _class_label_names(dataset.features["ner_tags"]) if labeled else None
    all_tokens = list(dataset["tokens"])
    all_tags = list(dataset["ner_tags"]) if labeled else [None] * len(all_tokens)
    sentences = []
    for row, (tokens, tags) in enumerate(zip(all_tokens, all_tags, strict=True)):
        where = f"{source}, line {row + 1}"
        if labeled and tags is None:
            raise DataError(f"{where}: the row has no 'ner_tags'; for unlabeled data use labeled=False")
        labels = _record_labels(list(tags), names, where) if labeled else None
        if labels is not None and len(labels) != len(tokens):
            raise DataError(f"{where}: {len(tokens)} tokens but {len(labels)} ner_tags")
        sentences.append(Sentence(list(tokens), labels, source, row + 1))
    return sentences


def _load_hub_dataset(source: str, split: str | None) -> Any:
    import datasets  # imported lazily: it is slow to import and only needed here

    try:
        return datasets.load_dataset(source, split=split)
    except Exception as error:  # the Hub raises many types; the user needs the message
        raise DataError(
            f"{source}: no such file or directory, and loading it as a Hugging Face Hub dataset failed "
            f"({type(error).__name__}: {error})"
        ) from error


def load_sentences(source: str, *, split: str | None = None, labeled: bool = True) -> list[Sentence]:
    """Reads sentences from a file, a ``save_to_disk`` directory or a Hub dataset.

    - a directory written by `datasets.Dataset.save_to_disk` or `datasets.DatasetDict.save_to_disk`
      (``split`` picks the split of a DatasetDict): rows with ``tokens`` and ``ner_tags``, which
      are label strings or `ClassLabel` ids;
    - a ``.jsonl`` / ``.json`` file: `read_jsonl`;
    - any other file: `read_conll`;
    - a path that does not exist but looks like a Hub dataset id (``name`` or ``owner/name``):
      `datasets.load_dataset(source, split=split)`.

    ``split`` is ignored for files and for a directory holding a single Dataset. With
    ``labeled=False`` every sentence has ``labels=None``.

    Raises:
        DataError: the source cannot be found or read, or is missing labels when ``labeled``.
    """
    path = Path(source)
    if path.is_dir():
        if not any((path / name).exists() for name in ("dataset_dict.json", "state.json")):
            raise DataError(f"{source}: a directory, but not one written by datasets' save_to_disk")
        import datasets

        dataset, name = _pick_split(datasets.load_from_disk(str(path)), split, source)
        return _dataset_sentences(dataset, name, labeled)
    if path.exists():
        if path.suffix.lower() in JSON_SUFFIXES:
            sentences = read_jsonl(path)
            if labeled:
                for sentence in sentences:
                    if sentence.labels is None:
                        raise DataError(f"{sentence.where()}: the record has no 'ner_tags'; use labeled=False")
            else:
                sentences = [Sentence(s.tokens, None, s.source, s.line, s.token_lines) for s in sentences]
            return sentences
        return read_conll(path, labeled=labeled)
    if path.suffix.lower() in _FILE_SUFFIXES or not is_repo_id(source):
        raise DataError(f"{source}: no such file or directory")
    dataset, name = _pick_split(_load_hub_dataset(source, split), split, source)
    return _dataset_sentences(dataset, name, labeled)


# --------------------------------------------------------------------------------------------
# Label schemes
# --------------------------------------------------------------------------------------------


def _parse(label: str) -> tuple[str, str | None]:
    """Splits a label into (prefix, type): ``"B-Disease"`` -> ``("B", "Disease")``, ``"O"`` -> ``("O", None)``."""
    if label == "O":
        return "O", None
    match = _LABEL.match(label)
    if match is None:
        raise DataError(f"label {label!r} is neither 'O' nor of the form B-TYPE, I-TYPE, E-TYPE or S-TYPE")
    return match.group(1), match.group(2)


def _check_labels(sentences: Iterable[Sentence]) -> None:
    """DataError naming file, line and label for the first label `_parse` rejects."""
    for sentence in sentences:
        for index, label in enumerate(sentence.labels or ()):
            try:
                _parse(label)
            except DataError as error:
                raise DataError(f"{sentence.where(index)}: {error}") from None


def detect_scheme(label_sequences: Iterable[Sequence[str]]) -> str:
    """Returns the tagging scheme of some label sequences: ``"IOB1"``, ``"IOB2"`` or ``"IOBES"``.

    ``S-`` or ``E-`` prefixes mean IOBES; an ``I-`` that starts an entity (first, after ``O`` or
    after another type) means IOB1; everything else, including ``O``-only data, is IOB2.
    """
    starts_with_inside = False
    for labels in label_sequences:
        previous = ("O", None)
        for label in labels:
            prefix, kind = _parse(label)
            if prefix in ("E", "S"):
                return "IOBES"
            if prefix == "I" and previous[1] != kind:
                starts_with_inside = True
            previous = (prefix, kind)
    return "IOB1" if starts_with_inside else "IOB2"


def to_iob2(labels: Sequence[str], scheme: str) -> list[str]:
    """Converts one sentence's labels from ``scheme`` (IOB1, IOB2 or IOBES) to IOB2.

    An entity starts at ``B-`` / ``S-``, or at an ``I-`` / ``E-`` that does not continue a ``B-`` /
    ``I-`` of the same type; it becomes ``B-``, its other tokens ``I-``. This one rule converts
    IOB1 and IOBES, and repairs IOB2 whose entities start with ``I-``.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    converted = []
    previous: tuple[str, str | None] = ("O", None)
    for label in labels:
        prefix, kind = _parse(label)
        if prefix == "O":
            converted.append("O")
        else:
            continues = prefix in ("I", "E") and previous[0] in ("B", "I") and previous[1] == kind
            converted.append(f"{'I' if continues else 'B'}-{kind}")
        previous = (prefix, kind)
    return converted


def normalize_labels(sentences: Sequence[Sentence]) -> tuple[list[Sentence], str]:
    """Returns copies of ``sentences`` with labels in IOB2, and the scheme they were written in.

    Unlabeled sentences are copied unchanged.

    Raises:
        DataError: naming file, line and label, for a label that is not ``O`` or ``X-TYPE``.
    """
    _check_labels(sentences)
    scheme = detect_scheme(s.labels for s in sentences if s.labels is not None)
    normalized = [
        Sentence(
            list(s.tokens),
            to_iob2(s.labels, scheme) if s.labels is not None else None,
            s.source,
            s.line,
            s.token_lines,
        )
        for s in sentences
    ]
    return normalized, scheme


def label_list(sentences: Iterable[Sentence]) -> list[str]:
    """``"O"``, then ``B-TYPE``, ``I-TYPE`` for every entity type seen, types sorted.

    Both ``B-`` and ``I-`` of every type are included even if the data shows only one, so that
    the model can predict (and `encode` can use) either.
    """
    sentences = list(sentences)
    _check_labels(sentences)
    kinds = {_parse(label)[1] for s in sentences for label in s.labels or ()}
    return ["O"] + [f"{prefix}-{kind}" for kind in sorted(kinds - {None}) for prefix in ("B", "I")]


def check_known_labels(sentences: Iterable[Sentence], label2id: Mapping[str, int]) -> None:
    """Raises DataError, naming file, line and label, for the first label not in ``label2id``."""
    known = None
    for sentence in sentences:
        for index, label in enumerate(sentence.labels or ()):
            if label not in label2id:
                known = known or ", ".join(sorted(label2id, key=label2id.__getitem__))
                raise DataError(
                    f"{sentence.where(index)}: label {label!r} never appears in the training data (known: {known})"
                )
