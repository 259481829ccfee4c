"""Model inputs from sentences and back: subword alignment, windows of whole words, length-sorted batches.

`encode` tokenizes words into subwords, aligns word labels to them and splits sentences that do
not fit into the model into overlapping windows of whole words; `word_positions` says which
window and token each word is read from, so that `merge_windows` (label ids) and `word_rows`
(score rows) give exactly one prediction per word. `length_sorted_batches` groups windows of
similar length, so little compute goes to padding (`token_budget_batches`: as many as fit a budget of
padded tokens), and `pad_windows` pads a batch of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..formats.labels import check_known_labels
from ..formats.lines import DataError
from ..formats.sentence import Sentence

__all__ = [
    "BOOKKEEPING_KEYS",
    "IGNORE_INDEX",
    "MODEL_INPUT_NAMES",
    "check_stride",
    "encode",
    "length_sorted_batches",
    "merge_windows",
    "model_inputs",
    "pad_windows",
    "token_budget_batches",
    "word_positions",
    "word_rows",
]

# Keys of an `encode` feature that are not model inputs: drop them before collating.
BOOKKEEPING_KEYS = ("sentence_index", "word_offset", "word_ids")

# What the encoders take; a tokenizer's other outputs (offsets, special-token masks) stay out of the batch.
MODEL_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

# Label id that `torch.nn.CrossEntropyLoss` (and so every HF model) ignores.
IGNORE_INDEX = -100


def check_stride(stride: int | None, max_length: int, tokenizer: Any) -> int:
    """The overlap of consecutive windows: ``stride``, or ``max_length // 4`` when it is None.

    Raises:
        ValueError: a ``max_length`` that leaves no room for words after the special tokens, or a
            stride that is negative or not smaller than that room.
    """
    room = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if room < 1:
        raise ValueError(f"max_length={max_length} leaves no room for words after the special tokens")
    stride = max_length // 4 if stride is None else stride
    if not 0 <= stride < room:
        raise ValueError(f"stride={stride} must be >= 0 and smaller than max_length minus special tokens ({room})")
    return stride


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices in batches of similar length (shortest first), so little compute goes to padding."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def token_budget_batches(
    lengths: Sequence[int], batch_size: int, max_batch_tokens: int | None = None
) -> list[list[int]]:
    """Indices in batches of similar length, shortest first: ``batch_size`` at a time, or, with ``max_batch_tokens``,
    as many as fit that many padded tokens (rows times the longest row), so that a batch of short windows holds
    more of them than a batch of long ones. A window longer than the budget makes a batch of its own."""
    if max_batch_tokens is None:
        return length_sorted_batches(lengths, batch_size)
    if max_batch_tokens < 1:
        raise ValueError(f"max_batch_tokens must be at least 1, got {max_batch_tokens}.")
    batches: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        # Sorted: the newcomer is the longest, so the padded size is its length times the count.
        if batches and (len(batches[-1]) + 1) * lengths[index] <= max_batch_tokens:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def pad_windows(windows: Sequence[Mapping[str, Any]], tokenizer: Any) -> dict[str, np.ndarray]:
    """The model inputs of ``windows`` padded into one batch, as ``tokenizer.pad`` pads them: ``input_ids`` with
    the pad token, on the tokenizer's padding side; ``attention_mask`` (where the model takes one) 0 on padding;
    ``token_type_ids`` (where the windows have them) with the pad token type.

    Read from the tokenizer, never run: `prefetch` tokenizes the next chunk in another thread meanwhile, and
    a fast tokenizer's settings are shared state (a call that changes them from a second thread raises
    "Already borrowed", or silently changes the other call's truncation).
    """
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise ValueError(f"{type(tokenizer).__name__} has no padding token; batches of windows need one.")
    longest = max(len(window["input_ids"]) for window in windows)
    names = ["input_ids", *(["token_type_ids"] if "token_type_ids" in windows[0] else [])]
    values = {"input_ids": pad_id, "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0)}
    mask = "attention_mask" in tokenizer.model_input_names or "attention_mask" in windows[0]
    batch = {name: np.full((len(windows), longest), values[name], dtype=np.int64) for name in names}
    if mask:
        batch["attention_mask"] = np.zeros((len(windows), longest), dtype=np.int64)
    left = tokenizer.padding_side == "left"
    for row, window in enumerate(windows):
        length = len(window["input_ids"])
        place = slice(longest - length, longest) if left else slice(0, length)
        for name in names:
            batch[name][row, place] = window[name]
        if mask:
            batch["attention_mask"][row, place] = window.get("attention_mask", 1)
    return batch


def model_inputs(feature: Mapping[str, Any]) -> dict[str, Any]:
    """What of a feature (or a tokenizer's window) the model reads: not the labels, offsets or bookkeeping."""
    return {key: feature[key] for key in MODEL_INPUT_NAMES if key in feature}


def _check_tokenizer(tokenizer: Any) -> str:
    """Refuses a slow tokenizer; returns the word that stands in for words it tokenizes to nothing."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"{type(tokenizer).__name__} is a slow tokenizer; word alignment needs a fast one "
            "(AutoTokenizer.from_pretrained(..., use_fast=True))"
        )
    # Byte-level tokenizers (EuroBERT's) have no unk_token: any word that gives a subword will do.
    for word in (tokenizer.unk_token, "?", "."):
        if word and tokenizer([[word]], is_split_into_words=True, add_special_tokens=False)["input_ids"][0]:
            return word
    raise ValueError("the tokenizer has no unk_token, nor any word, to stand in for words it tokenizes to nothing")


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
    into nothing (e.g. a lone zero-width space) is encoded as the tokenizer's ``unk_token`` (or, for
    tokenizers without one, a word that gives a subword).

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
    stand_in = _check_tokenizer(tokenizer)
    stride = check_stride(stride, max_length, tokenizer)
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    with_labels = _wants_labels(sentences, label2id)
    inside = _inside_ids(label2id) if with_labels and label_all_subwords else {}
    spans = _plan_windows(sentences, tokenizer, budget, stride, stand_in)
    if not spans:
        return []
    features = _encode_windows(spans, tokenizer, max_length)
    if with_labels:
        for feature in features:
            word_labels = [label2id[label] for label in sentences[feature["sentence_index"]].labels]
            feature["labels"] = _align_labels(feature["word_ids"], word_labels, inside, label_all_subwords)
    return features


def _plan_windows(
    sentences: Sequence[Sentence], tokenizer: Any, budget: int, stride: int, stand_in: str
) -> list[tuple[int, list[str], int, int]]:
    """``(sentence index, words to encode, first word, end word)`` of every window, from subword counts.

    A word the tokenizer turns into nothing is replaced by ``stand_in``; empty sentences get no window.
    """
    spans = []
    for index, (sentence, counts) in enumerate(zip(sentences, _subword_counts(sentences, tokenizer), strict=True)):
        if not sentence.tokens:  # nothing to predict; merge_windows returns [] for it
            continue
        words = [word if n else stand_in for word, n in zip(sentence.tokens, counts, strict=True)]
        spans += [(index, words, start, end) for start, end in _windows([n or 1 for n in counts], budget, stride)]
    return spans


def _encode_windows(
    spans: Sequence[tuple[int, list[str], int, int]], tokenizer: Any, max_length: int
) -> list[dict[str, Any]]:
    """Every window in one tokenizer batch, with its bookkeeping; truncation only cuts a lone over-long word."""
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


def word_positions(
    features: Sequence[Mapping[str, Any]], num_sentences_or_lengths: int | Sequence[int]
) -> list[list[tuple[int, int]]]:
    """For every word of every sentence, the ``(feature, token position)`` its prediction is read from.

    That is the word's first subword. For a word in several windows, it is the window where the
    word is farthest (in tokens) from a window edge that cuts the sentence, i.e. where it sees
    the most context; ties go to the earlier window.

    Args:
        features: The features from `encode` (only ``sentence_index`` and ``word_ids`` are used).
        num_sentences_or_lengths: The number of sentences given to `encode`, or the number of
            words of each; lengths also check that every word is in a window.

    Raises:
        ValueError: a word in no window, or a feature of a sentence out of range.
    """
    lengths = _sentence_lengths(features, num_sentences_or_lengths)
    best: list[dict[int, tuple[float, int, int]]] = [{} for _ in lengths]  # word -> (context, feature, position)
    for number, feature in enumerate(features):
        index, word_ids = feature["sentence_index"], feature["word_ids"]
        if not 0 <= index < len(lengths):
            raise ValueError(f"feature {number} belongs to sentence {index}, but there are {len(lengths)} sentences")
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
                    best[index][word] = (context, number, position)
            previous = word
    merged = []
    for index, length in enumerate(lengths):
        missing = [w for w in range(length) if w not in best[index]]
        if missing:
            raise ValueError(f"sentence {index}: no feature predicts word {missing[0]} (of {length})")
        extra = [w for w in best[index] if w >= length]
        if extra:
            raise ValueError(f"sentence {index} has {length} words, but a feature predicts word {extra[0]}")
        merged.append([best[index][w][1:] for w in range(length)])
    return merged


def word_rows(
    features: Sequence[Mapping[str, Any]],
    token_rows: Sequence[Sequence[Any]],
    num_sentences_or_lengths: int | Sequence[int],
) -> list[list[Any]]:
    """For every sentence, the row of ``token_rows`` (e.g. a token's label scores) of each word (`word_positions`).

    Raises:
        ValueError: a word without a prediction, or rows shorter than their feature (padding may follow).
    """
    if len(token_rows) != len(features):
        raise ValueError(f"{len(token_rows)} rows of predictions for {len(features)} features")
    for number, (feature, rows) in enumerate(zip(features, token_rows, strict=True)):
        if len(rows) < len(feature["word_ids"]):
            raise ValueError(f"feature {number}: {len(rows)} predictions for {len(feature['word_ids'])} tokens")
    return [
        [token_rows[feature][position] for feature, position in words]
        for words in word_positions(features, num_sentences_or_lengths)
    ]


def merge_windows(
    features: Sequence[Mapping[str, Any]],
    token_predictions: Iterable[Sequence[int]],
    num_sentences_or_lengths: int | Sequence[int],
) -> list[list[int]]:
    """Turns per-token label ids of `encode` features into one label id per word (`word_positions`).

    Args:
        features: The features from `encode`.
        token_predictions: For every feature, a label id per token (e.g. ``logits.argmax(-1)``);
            rows may be longer than the feature (padding), never shorter.
        num_sentences_or_lengths: The number of sentences given to `encode`, or the number of
            words of each.

    Raises:
        ValueError: a word without a prediction, or predictions shorter than their feature.
    """
    rows = word_rows(features, list(token_predictions), num_sentences_or_lengths)
    return [[int(label) for label in words] for words in rows]
