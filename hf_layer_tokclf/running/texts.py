"""Entities of raw texts, as ``pipeline("token-classification")`` finds them: a corpus read lazily a chunk at a time,
each text cut into the pipeline's windows, the model run on length-sorted batches; JSON lines out."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

from ..base.files import atomic_writer
from ..base.stages import stage
from .decoding import DEFAULT_DECODING, DEFAULT_STRATEGY, check_decoding, check_strategy, texts_entities
from .features import check_stride
from .logits import check_max_length, chunk_tokenizers, default_max_length, task_logits
from .prefetch import prefetch
from .tasks import TASK_KEY, Head, model_heads

T = TypeVar("T")


TEXT_CHUNK_SIZE = 1024


def predict_texts(
    model: Any,
    tokenizer: Any,
    texts: Iterable[str],
    *,
    aggregation_strategy: str = DEFAULT_STRATEGY,
    batch_size: int = 32,
    max_batch_tokens: int | None = None,
    max_length: int | None = None,
    stride: int | None = None,
    chunk_size: int = TEXT_CHUNK_SIZE,
    progress: bool = False,
    total: int | None = None,
    decoding: str = DEFAULT_DECODING,
    min_score: float | None = None,
    tasks: Sequence[str] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Entities of each raw text, in input order, as ``pipeline("token-classification")`` finds them.

    Built for corpora: ``texts`` is read lazily, ``chunk_size`` documents at a time (memory stays
    flat however many there are, and results stream out as each chunk is done); while the model runs
    a chunk, the next is read and tokenized in a background thread (`prefetch.prefetch`). Within a chunk
    the model runs on windows sorted by length, ``batch_size`` at a time (or, with ``max_batch_tokens``,
    as many as fit that many padded tokens: `window_logits`), so little compute goes
    to padding; a text longer than ``max_length`` subwords (default: the model's maximum) is cut
    into windows overlapping by ``stride`` subwords (default ``max_length // 4``), so nothing is
    dropped. The entities are those the pipeline gives with the same ``aggregation_strategy``
    and ``stride`` (see `entities`): ``{"entity_group", "score", "word", "start", "end"}``
    (``"entity"`` instead of ``"entity_group"`` for ``"none"``), offsets into the text.
    ``decoding="viterbi"`` (default) gives valid label sequences and entity probabilities as scores
    (`pipeline_layer_tokclf.LayerTokenClassificationPipeline`); ``"argmax"`` the stock pipeline's
    entities. Entities scoring below ``min_score`` are left out.

    A multi-task model gives every task's entities (default: all its tasks; ``tasks`` chooses, `tasks.model_heads`),
    each with ``"task"``, together sorted by ``start`` (the tasks' order where two start together), as its
    travelling pipeline does: overlaps across tasks are all kept, each task decoded as a single-task model would be.

    ``model`` is a PyTorch token classifier (on any device) or an `export.OnnxTokenClassifier`;
    ``tokenizer`` must be fast. ``progress`` shows a bar counting documents (of ``total``, if known) when
    standard error is a terminal.
    """
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size ({batch_size}) and chunk_size ({chunk_size}) must be at least 1.")
    documents = iter(texts)
    chunks = iter(lambda: list(itertools.islice(documents, chunk_size)), [])
    options = dict(aggregation_strategy=aggregation_strategy, batch_size=batch_size, max_length=max_length)
    options.update(max_batch_tokens=max_batch_tokens, stride=stride, decoding=decoding, min_score=min_score)
    options.update(tasks=tasks)
    bar = tqdm(total=total, desc="Predicting", unit="doc", disable=None if progress else True)
    found = chunk_entities(model, tokenizer, _checked_texts(chunks, chunk_size), **options)
    try:
        for chunk, results in found:
            bar.update(len(chunk))
            yield from results
    finally:
        found.close()
        bar.close()


def _checked_texts(chunks: Iterable[list[Any]], chunk_size: int) -> Iterator[tuple[list[str], list[str]]]:
    """Each chunk of texts as ``(chunk, texts)`` for `chunk_entities`, a text that is not a string refused."""
    for start, chunk in zip(itertools.count(0, chunk_size), chunks):
        for number, text in enumerate(chunk, start=start + 1):
            if not isinstance(text, str):
                raise ValueError(f"document {number} is a {type(text).__name__}, not a string.")
        yield chunk, chunk


def chunk_entities(
    model: Any,
    tokenizer: Any,
    chunks: Iterable[tuple[T, list[str]]],
    *,
    aggregation_strategy: str = DEFAULT_STRATEGY,
    batch_size: int = 32,
    max_batch_tokens: int | None = None,
    max_length: int | None = None,
    stride: int | None = None,
    decoding: str = DEFAULT_DECODING,
    min_score: float | None = None,
    tasks: Sequence[str] | None = None,
) -> Iterator[tuple[T, list[list[dict[str, Any]]]]]:
    """For each ``(key, texts)`` of ``chunks``, in order: ``key`` and the entities of each of its texts.

    The loop `predict_texts` and `chunks.annotated_chunks` share: ``chunks`` is read, and each chunk's texts
    tokenized, in a background thread one chunk ahead of the model (`prefetch.prefetch`), so that reading
    (whatever ``chunks`` does: a file, a parser) and tokenizing overlap the forward pass; an error of ``chunks``
    is raised after the entities of the chunks before it. The options are `predict_texts`'s.
    """
    options = {"strategy": check_strategy(aggregation_strategy), "decoding": check_decoding(decoding)}
    options.update(min_score=min_score, heads=model_heads(model, tasks))
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("predict_texts needs a fast tokenizer (character offsets and windows).")
    if batch_size < 1:
        raise ValueError(f"batch_size ({batch_size}) must be at least 1.")
    if max_batch_tokens is not None and max_batch_tokens < 1:
        raise ValueError(f"max_batch_tokens must be at least 1, got {max_batch_tokens}.")
    check_max_length(max_length, getattr(model.config, "max_position_embeddings", None))
    max_length = max_length or default_max_length(model, tokenizer)
    stride = check_stride(stride, max_length, tokenizer)
    encoded = prefetch(_encoded_texts(chunks, tokenizer, max_length, stride))
    try:
        for key, texts, windows in encoded:
            yield key, _chunk_entities(model, tokenizer, texts, windows, batch_size, max_batch_tokens, options)
    finally:
        encoded.close()


def _encoded_texts(
    chunks: Iterable[tuple[T, list[str]]], tokenizer: Any, max_length: int, stride: int
) -> Iterator[tuple[T, list[str], list[dict[str, Any]]]]:
    """Each chunk with the windows of its texts (`text_windows`), for `prefetch`."""
    for (key, texts), own in zip(chunks, chunk_tokenizers(tokenizer), strict=False):
        yield key, texts, text_windows(own, texts, max_length, stride)


def text_windows(tokenizer: Any, texts: list[str], max_length: int, stride: int) -> list[dict[str, Any]]:
    """The windows of ``texts`` as the pipeline cuts them, each a dict of the fast tokenizer's outputs (ids, offsets,
    special-tokens mask, and ``overflow_to_sample_mapping``: the text it belongs to); stage ``tokenize``."""
    if not texts:
        return []
    with stage("tokenize"):
        encoding = tokenizer(
            texts,
            truncation=True,
            max_length=max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        return [{key: encoding[key][i] for key in encoding} for i in range(len(encoding["input_ids"]))]


def _chunk_entities(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    windows: list[dict[str, Any]],
    batch_size: int,
    max_batch_tokens: int | None,
    options: dict[str, Any],
) -> list[list[dict[str, Any]]]:
    """The entities of each text: its windows (`text_windows`) through the model once, then `windows_entities`."""
    options = dict(options)
    heads = options.pop("heads")
    names = [head.name for head in heads]
    logits = task_logits(model, tokenizer, windows, names, batch_size, max_batch_tokens=max_batch_tokens)
    return windows_entities(texts, windows, logits, heads, tokenizer, **options)


def windows_entities(
    texts: Sequence[str],
    windows: Sequence[Mapping[str, Any]],
    logits: Sequence[Sequence[Any]],
    heads: Sequence[Head],
    tokenizer: Any,
    *,
    strategy: str = DEFAULT_STRATEGY,
    decoding: str = DEFAULT_DECODING,
    min_score: float | None = None,
) -> list[list[dict[str, Any]]]:
    """The entities of each of ``texts`` from the logits of its windows: `decoding.texts_entities` with each head's
    labels and decoder (`tasks.Head`); a multi-task model's entities with their task, every task's of a text
    together sorted by start (a stable sort: the heads' order where two start together).

    ``windows`` are `text_windows`'s (each names its text by ``overflow_to_sample_mapping``), ``logits[h][w]`` head
    ``h``'s logits of window ``w`` (`logits.task_logits`). `predict_texts` and the entity server
    (`server.batcher`, which runs the windows of several requests in one batch) both decode here.
    """
    options = {"strategy": strategy, "decoding": decoding, "min_score": min_score}
    per_task = []
    for head, head_logits in zip(heads, logits, strict=True):
        per_text: list[list[dict[str, Any]]] = [[] for _ in texts]
        for window, own in zip(windows, head_logits, strict=True):
            per_text[window["overflow_to_sample_mapping"]].append({**window, "logits": own})
        with stage("decode"):
            entities = texts_entities(
                texts, per_text, tokenizer=tokenizer, id2label=head.id2label, crf=head.decoder, **options
            )
        per_task.append(entities if head.name is None else [[{**e, TASK_KEY: head.name} for e in t] for t in entities])
    if [head.name for head in heads] == [None]:
        return per_task[0]
    return [sorted(itertools.chain(*own), key=lambda entity: entity["start"]) for own in zip(*per_task, strict=True)]


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Writes one JSON object per line, atomically; returns the number written."""
    count = 0
    with atomic_writer(path) as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count
