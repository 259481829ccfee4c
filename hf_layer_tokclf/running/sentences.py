"""Labels of sentences: one predicted label per word (long sentences through overlapping windows, a corpus a
chunk at a time), entity-level evaluation on gold labels with every gold token scored, and CoNLL lines out."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..base.files import atomic_writer
from ..base.stages import stage
from ..formats.conll import check_conll_columns
from ..formats.labels import check_known_labels, from_iob2
from ..formats.sentence import Sentence
from .decoding import DEFAULT_DECODING, check_decoding, word_labels
from .features import encode, word_rows
from .logits import check_max_length, chunk_tokenizers, default_max_length, task_logits
from .metrics import entity_scores
from .prefetch import prefetch
from .tasks import Head, model_heads, task_head

# A multi-task model's labels of one sentence: task -> one label per word, in the order of the tasks predicted.
TaskLabels = dict[str, list[str]]


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
    tasks: Sequence[str] | None = None,
) -> list[list[str]] | list[TaskLabels]:
    """One predicted label per word of every sentence; long sentences go through overlapping windows.

    ``batch_size`` and ``max_batch_tokens``: see `window_logits`. ``decoding`` and ``min_score``: see
    `decoding.word_labels` (the model's CRF is used where it has one). A multi-task model gives each sentence
    a dict task -> labels, for ``tasks`` (default: all the model's, in its order: `tasks.model_heads`), each
    task decoded as a single-task model with its labels and CRF would be.
    """
    max_length = _sentence_options(model, tokenizer, max_length, decoding)
    heads = model_heads(model, tasks)
    with stage("tokenize"):
        features = encode(sentences, tokenizer, max_length=max_length, stride=stride)
    options = (batch_size, max_batch_tokens, progress, decoding, min_score)
    return _sentence_labels(model, tokenizer, heads, sentences, features, *options)


def _sentence_labels(
    model: Any,
    tokenizer: Any,
    heads: Sequence[Head],
    sentences: Sequence[Sentence],
    features: list[dict[str, Any]],
    batch_size: int,
    max_batch_tokens: int | None,
    progress: bool,
    decoding: str,
    min_score: float | None,
) -> list[list[str]] | list[TaskLabels]:
    """The labels of encoded ``sentences``: their windows through the model (once for all ``heads``), one row a
    word, each head's rows decoded with its labels and decoder."""
    names = [head.name for head in heads]
    logits = task_logits(model, tokenizer, features, names, batch_size, progress, max_batch_tokens=max_batch_tokens)
    lengths = [len(s.tokens) for s in sentences]
    with stage("decode"):
        labels = [
            word_labels(
                word_rows(features, own, lengths),
                head.id2label,
                decoding=decoding,
                decoder=head.decoder,
                min_score=min_score,
            )
            for head, own in zip(heads, logits, strict=True)
        ]
    if names == [None]:
        return labels[0]
    return [dict(zip(names, per_sentence, strict=True)) for per_sentence in zip(*labels, strict=True)]


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
    tasks: Sequence[str] | None = None,
) -> Iterator[tuple[list[Sentence], list[list[str]] | list[TaskLabels]]]:
    """``sentences`` read lazily, ``chunk_size`` at a time: each chunk with its labels (`predict_sentences`), in order.

    The first ``skip_chunks`` chunks are read but not predicted (what a resumed run wrote before). While the
    model runs a chunk, the next is read and tokenized in a background thread (`prefetch.prefetch`). ``progress``
    shows a bar counting sentences (of ``total``, if known); the other options are `predict_sentences`'s.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")
    max_length = _sentence_options(model, tokenizer, max_length, decoding)
    heads = model_heads(model, tasks)
    pending = iter(sentences)
    skipped = sum(len(list(itertools.islice(pending, chunk_size))) for _ in range(skip_chunks))
    chunks = iter(lambda: list(itertools.islice(pending, chunk_size)), [])
    encoded = prefetch(_encoded_sentences(chunks, tokenizer, max_length, stride))
    bar = tqdm(total=total, initial=skipped, desc="Predicting", unit="sentence", disable=None if progress else True)
    try:
        for chunk, features in encoded:
            options = (batch_size, max_batch_tokens, False, decoding, min_score)
            predictions = _sentence_labels(model, tokenizer, heads, chunk, features, *options)
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
) -> Iterator[list[str] | TaskLabels]:
    """`predict_sentences` over ``chunk_size`` sentences at a time: labels stream out in input order.

    ``sentences`` is read lazily; ``progress`` shows a bar counting sentences (of ``total``, if known);
    ``kwargs`` go to `predict_sentences` (``batch_size``, ``max_length``, ``stride``, ``decoding``, ``min_score``,
    ``tasks``).
    """
    chunks = sentence_chunks(
        model, tokenizer, sentences, chunk_size=chunk_size, progress=progress, total=total, **kwargs
    )
    for _, predictions in chunks:
        yield from predictions


def evaluate_sentences(
    model: Any, tokenizer: Any, sentences: Sequence[Sentence], *, task: str | None = None, **kwargs: Any
) -> tuple[dict[str, Any], list[list[str]]]:
    """Entity-level scores of the model on labeled sentences, every gold token included; a label the model does
    not know is refused first, with its file and line (`labels.check_known_labels`).

    A multi-task model is scored one task at a time, on that task's own data: ``task`` names it (`tasks.task_head`:
    it may be left out where the model has one task only), and the labels are that task's head's alone.
    """
    head = task_head(model, task)
    known_as = "the model's labels" if head.name is None else f"the labels of task {head.name!r}"
    check_known_labels(sentences, head.label2id, known_as=known_as)
    if head.name is None:
        predictions = predict_sentences(model, tokenizer, sentences, **kwargs)
    else:
        predictions = [
            own[head.name] for own in predict_sentences(model, tokenizer, sentences, tasks=[head.name], **kwargs)
        ]
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
    sentences: Iterable[Sentence],
    predictions: Iterable[Sequence[str] | Mapping[str, Sequence[str]]],
    *,
    scheme: str | Mapping[str, str] | None = None,
) -> Iterator[str]:
    """CoNLL lines: the token, the gold label when there is one, and the predicted label, tab-separated; a blank
    line after each sentence.

    A multi-task model's predictions (a dict task -> labels for each sentence: `predict_sentences`) give one
    predicted column per task, in the dict's order (the tasks predicted, in the model's order or ``--tasks``'s).
    ``scheme`` (`labels.SCHEMES`) writes the label columns in that scheme rather than IOB2: the scheme
    the model's training data was written in (`label_scheme`); for several tasks a dict task -> scheme, the gold
    column written in their scheme where they share one, else in IOB2. A token or label that a line cannot hold
    (a tab, a line break, empty: `conll.check_conll_columns`) is a `lines.DataError` naming its sentence's
    file and line, before any line of that sentence is given.
    """
    for sentence, labels in zip(sentences, predictions, strict=True):
        columns = {task: own for task, own in labels.items()} if isinstance(labels, Mapping) else {None: labels}
        schemes = scheme if isinstance(scheme, Mapping) else dict.fromkeys(columns, scheme)
        gold = sentence.labels
        if any(schemes.values()):
            columns = {task: from_iob2(own, schemes[task] or "IOB2") for task, own in columns.items()}
            gold_scheme = set(schemes.values()).pop() if len(set(schemes.values())) == 1 else None
            gold = from_iob2(gold, gold_scheme or "IOB2") if gold is not None else None
        for own in columns.values():
            check_conll_columns(replace(sentence, labels=gold), own)
        rows = zip(sentence.tokens, gold or [None] * len(sentence.tokens), *columns.values(), strict=True)
        for token, gold_label, *predicted in rows:
            yield "\t".join(x for x in (token, gold_label, *predicted) if x is not None) + "\n"
        yield "\n"


def write_conll(
    path: str | Path,
    sentences: Iterable[Sentence],
    predictions: Iterable[Sequence[str] | Mapping[str, Sequence[str]]],
    *,
    scheme: str | Mapping[str, str] | None = None,
) -> None:
    """Writes `conll_lines` to ``path``, atomically (nothing is left under ``path`` where a sentence is refused)."""
    with atomic_writer(path) as f:
        f.writelines(conll_lines(sentences, predictions, scheme=scheme))


def label_scheme(model: Any, tasks: Sequence[str] | None = None) -> str | dict[str, str]:
    """The scheme a model's training labels were written in (``config.label_scheme``, saved by `train`; IOB2 for
    models that do not say); for a multi-task model a dict task -> its scheme, for ``tasks`` (default: all)."""
    heads = model_heads(model, tasks)
    return heads[0].scheme if heads[0].name is None else {head.name: head.scheme for head in heads}
