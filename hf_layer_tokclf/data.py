"""Reading NER data, label schemes, subword alignment and sliding windows.

The pipeline from files to model inputs is:

1. `load_sentences` reads CoNLL-style text, JSON Lines, a `datasets.save_to_disk` directory or a
   Hub dataset into `Sentence` objects that remember where they came from, so that every
   `DataError` can point at a file and line.
2. `normalize_labels` converts IOB1 / IOBES labels to IOB2, because the token-classification
   pipeline's ``aggregation_strategy`` only understands ``B-`` / ``I-``; `label_list` builds the
   label set from the training data and `check_known_labels` rejects labels seen nowhere else.
3. `encode` tokenizes words into subwords, aligns word labels to them and splits sentences that do
   not fit into the model into overlapping windows of whole words; `merge_windows` turns the
   per-window token predictions back into exactly one prediction per word.
"""

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BOOKKEEPING_KEYS",
    "SCHEMES",
    "DataError",
    "MissingSplitError",
    "Sentence",
    "check_known_labels",
    "detect_scheme",
    "encode",
    "label_list",
    "load_sentences",
    "merge_windows",
    "normalize_labels",
    "read_conll",
    "read_jsonl",
    "to_iob2",
]

SCHEMES = ("IOB1", "IOB2", "IOBES")

# Keys of an `encode` feature that are not model inputs: drop them before collating.
BOOKKEEPING_KEYS = ("sentence_index", "word_offset", "word_ids")

# Label id that `torch.nn.CrossEntropyLoss` (and so every HF model) ignores.
IGNORE_INDEX = -100

DOCSTART = "-DOCSTART-"
JSON_SUFFIXES = (".jsonl", ".json")
# Suffixes that mark a path as a local file that is missing, rather than a Hub dataset id.
_FILE_SUFFIXES = (*JSON_SUFFIXES, ".tsv", ".txt", ".conll", ".conllu", ".iob", ".iob2", ".bio", ".bioes", ".csv")
# Hub ids are `name` or `owner/name`; anything else that does not exist is a missing local path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
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
    if path.suffix.lower() in _FILE_SUFFIXES or not _HUB_ID.match(source):
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


# --------------------------------------------------------------------------------------------
# Tokenization, alignment and windows
# --------------------------------------------------------------------------------------------


def _check_tokenizer(tokenizer: Any) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"{type(tokenizer).__name__} is a slow tokenizer; word alignment needs a fast one "
            "(AutoTokenizer.from_pretrained(..., use_fast=True))"
        )
    if tokenizer.unk_token is None:
        raise ValueError("the tokenizer has no unk_token to stand in for words it tokenizes to nothing")


def _subword_counts(sentences: Sequence[Sentence], tokenizer: Any) -> list[list[int]]:
    """Number of subwords of every word of every sentence.

    With ``is_split_into_words=True`` fast tokenizers encode every word on its own, so it is
    enough (and much faster) to tokenize each distinct word once.
    """
    vocabulary = sorted({word for sentence in sentences for word in sentence.tokens})
    if not vocabulary:
        return [[] for _ in sentences]
    # verbose=False: no "longer than the model's maximum length" warning for absurd words; they
    # are truncated in their window.
    encoding = tokenizer(
        [[word] for word in vocabulary], is_split_into_words=True, add_special_tokens=False, verbose=False
    )
    count = {word: len(ids) for word, ids in zip(vocabulary, encoding["input_ids"], strict=True)}
    return [[count[word] for word in sentence.tokens] for sentence in sentences]


def _windows(counts: Sequence[int], budget: int, stride: int) -> list[tuple[int, int]]:
    """Splits words with these subword counts into ``[start, end)`` ranges of whole words.

    Each range holds at most ``budget`` subwords, except a single word longer than ``budget``,
    which gets a range of its own (and is truncated by the tokenizer). The next range starts as
    many words back as fit in ``stride`` subwords, but always after the previous start, so the
    windows advance and together cover every word.
    """
    windows = []
    start = 0
    while True:
        end, total = start, 0
        while end < len(counts) and total + counts[end] <= budget:
            total += counts[end]
            end += 1
        end = max(end, start + 1)  # a word longer than the window still gets one
        windows.append((start, end))
        if end >= len(counts):
            return windows
        next_start, overlap = end, 0
        while next_start - 1 > start and overlap + counts[next_start - 1] <= stride:
            overlap += counts[next_start - 1]
            next_start -= 1
        start = next_start


def _inside_ids(label2id: Mapping[str, int]) -> dict[int, int]:
    """Maps the id of every ``B-TYPE`` to the id of ``I-TYPE``, for labelling later subwords."""
    return {
        index: label2id[f"I-{label[2:]}"]
        for label, index in label2id.items()
        if label.startswith("B-") and f"I-{label[2:]}" in label2id
    }


def _align_labels(
    word_ids: list[int | None], word_labels: list[int], inside: Mapping[int, int], label_all_subwords: bool
) -> list[int]:
    """Token label ids: the word's label on its first subword; -100 (or the I- label) on the rest."""
    labels = []
    previous = None
    for word in word_ids:
        if word is None:
            labels.append(IGNORE_INDEX)
        elif word != previous:
            labels.append(word_labels[word])
        elif label_all_subwords:
            labels.append(inside.get(word_labels[word], word_labels[word]))
        else:
            labels.append(IGNORE_INDEX)
        previous = word
    return labels


def _wants_labels(sentences: Sequence[Sentence], label2id: Mapping[str, int] | None) -> bool:
    if label2id is None:
        return False
    unlabeled = [s for s in sentences if s.labels is None]
    if unlabeled and len(unlabeled) < len(sentences):
        raise DataError(f"{unlabeled[0].where()}: the sentence has no labels but others have")
    if unlabeled:
        return False
    check_known_labels(sentences, label2id)
    return True


def encode(
    sentences: Sequence[Sentence],
    tokenizer: Any,
    label2id: Mapping[str, int] | None = None,
    *,
    max_length: int = 512,
    stride: int | None = None,
    label_all_subwords: bool = False,
) -> list[dict[str, Any]]:
    """Tokenizes sentences into model features, splitting long ones into windows of whole words.

    A sentence whose subwords do not fit in ``max_length`` (special tokens included) becomes
    several windows of whole words; consecutive windows share up to ``stride`` subwords' worth of
    words (default ``max_length // 4``). No word is ever dropped: a single word longer than a
    window gets a window of its own with its subwords truncated, and a word the tokenizer turns
    into nothing (e.g. a lone zero-width space) is encoded as the tokenizer's ``unk_token``.

    Args:
        sentences: The sentences to encode.
        tokenizer: A fast tokenizer (word alignment needs ``word_ids()``).
        label2id: Label to id. When given and the sentences are labeled, features get ``labels``.
        max_length: Maximum number of tokens of a feature, special tokens included.
        stride: Subwords of overlap between consecutive windows of a sentence.
        label_all_subwords: Label every subword of a word (a ``B-`` word's later subwords get
            ``I-``) instead of only the first one (the others get -100, which the loss ignores).

    Returns:
        One dict per window with ``input_ids``, ``attention_mask`` (and ``token_type_ids`` if the
        tokenizer makes them), ``labels`` when labeled, and the bookkeeping `merge_windows` needs
        (see `BOOKKEEPING_KEYS`; remove it before collating):

        - ``sentence_index``: index of the sentence in ``sentences``;
        - ``word_offset``: index in the sentence of the window's first word;
        - ``word_ids``: for every token, the index *in the sentence* of the word it belongs to, or
          `None` for special tokens (like `BatchEncoding.word_ids`, shifted by ``word_offset``).
          A word's first subword is the first token with its index.

    Raises:
        DataError: a label that is not in ``label2id``.
        ValueError: a slow tokenizer, or a ``max_length`` / ``stride`` that leaves no room.
    """
    _check_tokenizer(tokenizer)
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if budget < 1:
        raise ValueError(f"max_length={max_length} leaves no room for words after the special tokens")
    stride = max_length // 4 if stride is None else stride
    if not 0 <= stride < budget:
        raise ValueError(f"stride={stride} must be >= 0 and smaller than max_length minus special tokens ({budget})")
    with_labels = _wants_labels(sentences, label2id)
    inside = _inside_ids(label2id) if with_labels and label_all_subwords else {}

    # Pass 1: subword counts per word, to replace empty words and to plan the windows.
    plans = []  # (sentence index, words to encode, windows)
    for index, (sentence, counts) in enumerate(zip(sentences, _subword_counts(sentences, tokenizer), strict=True)):
        if not sentence.tokens:  # nothing to predict; merge_windows returns [] for it
            continue
        words = [word if n else tokenizer.unk_token for word, n in zip(sentence.tokens, counts, strict=True)]
        plans.append((index, words, _windows([n or 1 for n in counts], budget, stride)))

    # Pass 2: encode every window in one batch; truncation only cuts a lone over-long word.
    spans = [(index, words, start, end) for index, words, windows in plans for start, end in windows]
    if not spans:
        return []
    encoding = tokenizer(
        [words[start:end] for _, words, start, end in spans],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
    )
    features = []
    for row, (index, _, start, end) in enumerate(spans):
        word_ids = [None if w is None else w + start for w in encoding.word_ids(row)]
        if {w for w in word_ids if w is not None} != set(range(start, end)):
            # Guards the promise that no word is lost, e.g. if unk_token did not encode to one token.
            raise RuntimeError(f"sentence {index}: words {start}..{end - 1} did not all fit in their window")
        feature = {key: encoding[key][row] for key in encoding}
        feature.update(sentence_index=index, word_offset=start, word_ids=word_ids)
        if with_labels:
            word_labels = [label2id[label] for label in sentences[index].labels]
            feature["labels"] = _align_labels(word_ids, word_labels, inside, label_all_subwords)
        features.append(feature)
    return features


def _sentence_lengths(
    features: Sequence[Mapping[str, Any]], num_sentences_or_lengths: int | Sequence[int]
) -> list[int]:
    """Word counts per sentence: given, or (with a number of sentences) the highest word id + 1."""
    if not isinstance(num_sentences_or_lengths, int):
        return [int(n) for n in num_sentences_or_lengths]
    lengths = [0] * num_sentences_or_lengths
    for feature in features:
        index = feature["sentence_index"]
        if 0 <= index < len(lengths):  # merge_windows reports indices out of range
            words = [w for w in feature["word_ids"] if w is not None]
            lengths[index] = max(lengths[index], max(words, default=-1) + 1)
    return lengths


def merge_windows(
    features: Sequence[Mapping[str, Any]],
    token_predictions: Iterable[Sequence[int]],
    num_sentences_or_lengths: int | Sequence[int],
) -> list[list[int]]:
    """Turns per-token predictions of `encode` features into one prediction per word.

    A word's prediction is the one at its first subword. For a word in several windows, it comes
    from the window where the word is farthest (in tokens) from a window edge that cuts the
    sentence, i.e. where it sees the most context; ties go to the earlier window.

    Args:
        features: The features from `encode` (only ``sentence_index`` and ``word_ids`` are used).
        token_predictions: For every feature, a label id per token (e.g. ``logits.argmax(-1)``);
            rows may be longer than the feature (padding), never shorter.
        num_sentences_or_lengths: The number of sentences given to `encode`, or the number of
            words of each; lengths also check that every word got a prediction.

    Returns:
        For every sentence, one label id per word.

    Raises:
        ValueError: a word without a prediction, or predictions shorter than their feature.
    """
    lengths = _sentence_lengths(features, num_sentences_or_lengths)
    best: list[dict[int, tuple[float, int]]] = [{} for _ in lengths]  # word -> (context, prediction)
    for number, (feature, predictions) in enumerate(zip(features, token_predictions, strict=True)):
        index, word_ids = feature["sentence_index"], feature["word_ids"]
        if not 0 <= index < len(lengths):
            raise ValueError(f"feature {number} belongs to sentence {index}, but there are {len(lengths)} sentences")
        if len(predictions) < len(word_ids):
            raise ValueError(f"feature {number}: {len(predictions)} predictions for {len(word_ids)} tokens")
        positions = [i for i, w in enumerate(word_ids) if w is not None]
        if not positions:
            continue
        first, last = positions[0], positions[-1]
        # An edge at the start or end of the sentence costs no context, so it does not count.
        cut_left = word_ids[first] > 0
        cut_right = word_ids[last] < lengths[index] - 1
        previous = None
        for position, word in enumerate(word_ids):
            if word is not None and word != previous:
                context = min(
                    position - first if cut_left else float("inf"),
                    last - position if cut_right else float("inf"),
                )
                if word not in best[index] or context > best[index][word][0]:
                    best[index][word] = (context, int(predictions[position]))
            previous = word
    merged = []
    for index, length in enumerate(lengths):
        missing = [w for w in range(length) if w not in best[index]]
        if missing:
            raise ValueError(f"sentence {index}: no feature predicts word {missing[0]} (of {length})")
        extra = [w for w in best[index] if w >= length]
        if extra:
            raise ValueError(f"sentence {index} has {length} words, but a feature predicts word {extra[0]}")
        merged.append([best[index][w][1] for w in range(length)])
    return merged
