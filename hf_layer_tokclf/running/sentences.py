"""Labels of sentences: one predicted label per word (long sentences through overlapping windows, a corpus a
chunk at a time), entity-level evaluation on gold labels with every gold token scored, and CoNLL lines out."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..base.files import atomic_writer
from ..base.stages import stage
from ..formats.conll import check_conll_columns
from ..formats.labels import check_known_labels, from_iob2
from ..formats.sentence import Sentence
from .decoding import DEFAULT_DECODING, check_decoding, label_decoder, word_labels
from .features import encode, word_rows
from .logits import check_max_length, chunk_tokenizers, default_max_length, window_logits
from .metrics import entity_scores
from .prefetch import prefetch


def _sentence_options(model: Any, tokenizer: Any, max_length: int | None, decoding: str) -> int:
    """The window length of `predict_sentences` (the model's maximum by default), its options checked first."""
    check_decoding(decoding)
    check_max_length(max_length, getattr(model.config, "max_position_embeddings", None))
    return max_length or default_max_length(model, tokenizer)


def predict_sentences(
    model: Any,
    tokenizer: Any,
    sentences: Sequence[Sentence],
    *,
    batch_size: int = 32,
    max_batch_tokens: int | None = None,
    max_length: int | None = None,
    stride: int | None = None,
    progress: bool = True,
    decoding: str = DEFAULT_DECODING,
    min_score: float | None = None,
) -> list[list[str]]:
    """One predicted label per word of every sentence; long sentences go through overlapping windows.

    ``batch_size`` and ``max_batch_tokens``: see `window_logits`. ``decoding`` and ``min_score``: see
    `decoding.word_labels` (the model's CRF is used where it has one).
    """
    max_length = _sentence_options(model, tokenizer, max_length, decoding)
    with stage("tokenize"):
        features = encode(sentences, tokenizer, max_length=max_length, stride=stride)
    return _sentence_labels(
        model, tokenizer, sentences, features, batch_size, max_batch_tokens, progress, decoding, min_score
    )


def _sentence_labels(
    model: Any,
    tokenizer: Any,
    sentences: Sequence[Sentence],
    features: list[dict[str, Any]],
    batch_size: int,
    max_batch_tokens: int | None,
    progress: bool,
    decoding: str,
    min_score: float | None,
) -> list[list[str]]:
    """The labels of encoded ``sentences``: their windows through the model, one row a word, decoded."""
    logits = window_logits(model, tokenizer, features, batch_size, progress, max_batch_tokens=max_batch_tokens)
    with stage("decode"):
        rows = word_rows(features, logits, [len(s.tokens) for s in sentences])
        return word_labels(
            rows, model.config.id2label, decoding=decoding, decoder=label_decoder(model), min_score=min_score
        )


SENTENCE_CHUNK_SIZE = 4096


def sentence_chunks(
    model: Any,
    tokenizer: Any,
    sentences: Iterable[Sentence],
    *,
    chunk_size: int = SENTENCE_CHUNK_SIZE,
    skip_chunks: int = 0,
    progress: bool = False,
    total: int | None = None,
    batch_size: int = 32,
    max_batch_tokens: int | None = None,
    max_length: int | None = None,
    stride: int | None = None,
    decoding: str = DEFAULT_DECODING,
    min_score: float | None = None,
) -> Iterator[tuple[list[Sentence], list[list[str]]]]:
    """``sentences`` read lazily, ``chunk_size`` at a time: each chunk with its labels (`predict_sentences`), in order.

    The first ``skip_chunks`` chunks are read but not predicted (what a resumed run wrote before). While the
    model runs a chunk, the next is read and tokenized in a background thread (`prefetch.prefetch`). ``progress``
    shows a bar counting sentences (of ``total``, if known); the other options are `predict_sentences`'s.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")
    max_length = _sentence_options(model, tokenizer, max_length, decoding)
    pending = iter(sentences)
    skipped = sum(len(list(itertools.islice(pending, chunk_size))) for _ in range(skip_chunks))
    chunks = iter(lambda: list(itertools.islice(pending, chunk_size)), [])
    encoded = prefetch(_encoded_sentences(chunks, tokenizer, max_length, stride))
    bar = tqdm(total=total, initial=skipped, desc="Predicting", unit="sentence", disable=None if progress else True)
    try:
        for chunk, features in encoded:
            options = (batch_size, max_batch_tokens, False, decoding, min_score)
            predictions = _sentence_labels(model, tokenizer, chunk, features, *options)
            bar.update(len(chunk))
            yield chunk, predictions
            del chunk, features, predictions  # gone before the next chunk is taken: two chunks in memory at most
    finally:
        encoded.close()
        bar.close()


def _encoded_sentences(
    chunks: Iterable[list[Sentence]], tokenizer: Any, max_length: int, stride: int | None
) -> Iterator[tuple[list[Sentence], list[dict[str, Any]]]]:
    """Each chunk with its windows (`features.encode`), for `prefetch`."""
    for chunk, own in zip(chunks, chunk_tokenizers(tokenizer), strict=False):
        with stage("tokenize"):
            features = encode(chunk, own, max_length=max_length, stride=stride)
        yield chunk, features


def iter_sentence_predictions(
    model: Any,
    tokenizer: Any,
    sentences: Iterable[Sentence],
    *,
    chunk_size: int = SENTENCE_CHUNK_SIZE,
    progress: bool = False,
    total: int | None = None,
    **kwargs: Any,
) -> Iterator[list[str]]:
    """`predict_sentences` over ``chunk_size`` sentences at a time: labels stream out in input order.

    ``sentences`` is read lazily; ``progress`` shows a bar counting sentences (of ``total``, if known);
    ``kwargs`` go to `predict_sentences` (``batch_size``, ``max_length``, ``stride``, ``decoding``, ``min_score``).
    """
    chunks = sentence_chunks(
        model, tokenizer, sentences, chunk_size=chunk_size, progress=progress, total=total, **kwargs
    )
    for _, predictions in chunks:
        yield from predictions


def evaluate_sentences(
    model: Any, tokenizer: Any, sentences: Sequence[Sentence], **kwargs: Any
) -> tuple[dict[str, Any], list[list[str]]]:
    """Entity-level scores of the model on labeled sentences, every gold token included; a label the model does
    not know is refused first, with its file and line (`labels.check_known_labels`)."""
    check_known_labels(sentences, model.config.label2id, known_as="the model's labels")
    predictions = predict_sentences(model, tokenizer, sentences, **kwargs)
    return entity_scores([s.labels for s in sentences], predictions), predictions


def flat_scores(scores: dict[str, Any], prefix: str) -> dict[str, float]:
    """`entity_scores` output as Trainer-style flat keys: ``eval_f1``, ``eval_Disease_f1``, ...

    An empty prefix gives ``f1``, ``Disease_f1``: what `compute_metrics` returns, the Trainer adds ``eval_``.
    """
    start = f"{prefix}_" if prefix else ""
    flat = {f"{start}{k}": v for k, v in scores.items() if k != "per_type"}
    for entity_type, values in scores.get("per_type", {}).items():
        flat.update({f"{start}{entity_type}_{k}": v for k, v in values.items()})
    return flat


def conll_lines(
    sentences: Iterable[Sentence], predictions: Iterable[Sequence[str]], *, scheme: str | None = None
) -> Iterator[str]:
    """CoNLL lines: the token, the gold label when there is one, and the predicted label, tab-separated; a blank
    line after each sentence.

    ``scheme`` (`labels.SCHEMES`) writes both label columns in that scheme rather than IOB2: the scheme
    the model's training data was written in (`label_scheme`). A token or label that a line cannot hold
    (a tab, a line break, empty: `conll.check_conll_columns`) is a `lines.DataError` naming its sentence's
    file and line, before any line of that sentence is given.
    """
    for sentence, labels in zip(sentences, predictions, strict=True):
        gold = sentence.labels
        if scheme is not None:
            labels = from_iob2(labels, scheme)
            gold = from_iob2(gold, scheme) if gold is not None else None
        check_conll_columns(replace(sentence, labels=gold), labels)
        for token, gold_label, label in zip(sentence.tokens, gold or [None] * len(labels), labels, strict=True):
            yield "\t".join(x for x in (token, gold_label, label) if x is not None) + "\n"
        yield "\n"


def write_conll(
    path: str | Path, sentences: Iterable[Sentence], predictions: Iterable[Sequence[str]], *, scheme: str | None = None
) -> None:
    """Writes `conll_lines` to ``path``, atomically (nothing is left under ``path`` where a sentence is refused)."""
    with atomic_writer(path) as f:
        f.writelines(conll_lines(sentences, predictions, scheme=scheme))


def label_scheme(model: Any) -> str:
    """The scheme a model's training labels were written in (``config.label_scheme``, saved by `train`);
    IOB2 for models that do not say."""
    return getattr(model.config, "label_scheme", None) or "IOB2"
