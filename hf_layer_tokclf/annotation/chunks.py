"""A corpus in chunks: documents in, entities with document offsets out, chunk by chunk, shard by shard.

`annotate_documents` finds the entities of a list of `corpus_documents.Document` (every passage through the
model, offsets moved to the document). `annotated_chunks` cuts a stream of records into chunks of
``chunk_size`` records: chunk ``c`` belongs to shard ``c % N`` (`Shard`), so a shard is a
deterministic slice that needs no count of the input, and every chunk holds the same records however
the work is split, so it gives the same bytes. A multi-task model's entities carry their ``"task"`` through to the
writers (`texts.predict_texts`; ``tasks`` among the options chooses them); a single-task model's have none.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from ..base.defaults import CORPUS_CHUNK_SIZE, ON_ERROR
from ..formats.corpus_documents import Document, RecordError, document_text
from ..running.texts import chunk_entities, predict_texts

__all__ = ["Chunk", "Shard", "annotate_documents", "annotated_chunks"]


def annotate_documents(model: Any, tokenizer: Any, documents: Sequence[Document], **options: Any) -> list[list[dict]]:
    """The entities of each document, offsets into its text (`corpus_documents.document_text`), in document order.

    All passages of all ``documents`` go through `texts.predict_texts` together (sorted by length
    into batches); ``options`` are its keyword options (``batch_size``, ``max_batch_tokens``,
    ``aggregation_strategy``, ``decoding``, ``min_score``, ...).
    """
    texts = _passage_texts(documents)
    found = list(predict_texts(model, tokenizer, texts, chunk_size=max(1, len(texts)), **options))
    return _document_entities(documents, found)


def _passage_texts(documents: Sequence[Document]) -> list[str]:
    return [passage.text for document in documents for passage in document.passages]


def _document_entities(documents: Sequence[Document], found: list[list[dict]]) -> list[list[dict]]:
    """Each document's entities from those of its passages (``found``, the passages of all documents in order),
    moved to document offsets."""
    passages = iter(found)
    results = []
    for document in documents:
        entities = []
        for passage, passage_entities in zip(document.passages, passages, strict=False):  # shared by all documents
            for entity in passage_entities:
                entities.append(
                    {**entity, "start": entity["start"] + passage.offset, "end": entity["end"] + passage.offset}
                )
        results.append(entities)
    return results


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based, as torch ranks): the chunks ``c`` with ``c % count == index``."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` (``--shard``), with ``0 <= I < N``."""
        index, slash, count = text.partition("/")
        try:
            shard = cls(int(index), int(count))
        except ValueError:
            shard = None
        if not slash or shard is None or not 0 <= shard.index < shard.count:
            raise ValueError(f"--shard {text!r}: expected I/N with 0 <= I < N (0/2 and 1/2 split a corpus in two).")
        return shard

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def records(self, total: int, chunk_size: int) -> int:
        """How many of ``total`` records fall in this shard."""
        return sum(
            min(chunk_size, total - start) for start in range(self.index * chunk_size, total, self.count * chunk_size)
        )

    def short_input_note(self, total: int, chunk_size: int, source: str) -> str | None:
        """What to tell a run of this shard when ``total`` records (of ``source``) make fewer chunks than there are
        shards, so that some shards get none: why (shards are dealt whole chunks) and the ``--chunk-size`` that
        deals them to all; None when every shard gets some, or when there is no record at all."""
        chunks = -(-total // chunk_size)
        if total == 0 or chunks >= self.count:
            return None
        mine = self.records(total, chunk_size)
        gets = "no record" if not mine else f"all {total} records" if mine == total else f"{mine} records"
        empty = [str(index) for index in range(chunks, self.count)]
        named = " and ".join([", ".join(empty[:-1]), empty[-1]] if len(empty) > 1 else empty)
        none = (
            f"shard {named} of {self.count} gets none"
            if len(empty) == 1
            else f"shards {named} of {self.count} get none"
        )
        note = (
            f"--shard {self} gets {gets}: shards are dealt chunks of {chunk_size} records (--chunk-size), and the "
            f"{total} records of {source} make {chunks} chunk{'s' if chunks > 1 else ''}, so {none}."
        )
        if total < self.count:
            return f"{note} There are fewer records than shards: give at most --shard I/{total} with --chunk-size 1."
        size = total // self.count  # ceil(total / size) >= count chunks: one at least for every shard
        return f"{note} Give every shard's run --chunk-size {size} (or less) to deal them to all {self.count}."


@dataclass
class Chunk:
    """One chunk of a shard: its documents and their entities, and the records that could not be read."""

    index: int
    records: int
    documents: list[Document] = field(default_factory=list)
    entities: list[list[dict]] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)


def _checked(records: Iterable[Document | RecordError], on_error: str) -> Iterator[Document | RecordError]:
    """The records, each document's passages checked (`document_text`); a bad one raised with ``stop``."""
    for record in records:
        if isinstance(record, Document):
            try:
                document_text(record)
            except RecordError as error:
                record = error
        if isinstance(record, RecordError) and on_error == "stop":
            raise record
        yield record


def annotated_chunks(
    model: Any,
    tokenizer: Any,
    records: Iterable[Document | RecordError],
    *,
    chunk_size: int = CORPUS_CHUNK_SIZE,
    shard: Shard = Shard(),
    skip_chunks: int = 0,
    on_error: str = "skip",
    progress: bool = False,
    **options: Any,
) -> Iterator[Chunk]:
    """This shard's chunks of ``records``, annotated, in order, after the first ``skip_chunks`` of them.

    Records of other shards, and of skipped chunks, are read (to know where chunks start) but not annotated.
    ``on_error="stop"`` raises the first `RecordError`, after the chunks before its own; ``"skip"`` keeps it in
    its chunk's ``errors``. The next chunk is read and tokenized in a background thread while the model runs
    this one (`texts.chunk_entities`). ``progress`` shows a bar counting records; ``options`` are
    `texts.predict_texts`'s (``batch_size``, ``max_batch_tokens``, ``aggregation_strategy``, ...).
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error={on_error!r}; expected one of {', '.join(ON_ERROR)}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")
    chunks = _shard_chunks(records, chunk_size, shard, skip_chunks, on_error)
    found = chunk_entities(model, tokenizer, chunks, **options)
    bar = tqdm(desc="Annotating", unit="doc", disable=None if progress else True)
    try:
        for chunk, passage_entities in found:
            chunk.entities = _document_entities(chunk.documents, passage_entities)
            bar.update(chunk.records)
            yield chunk
    finally:
        found.close()
        bar.close()


def _shard_chunks(
    records: Iterable[Document | RecordError], chunk_size: int, shard: Shard, skip_chunks: int, on_error: str
) -> Iterator[tuple[Chunk, list[str]]]:
    """This shard's chunks of ``records`` (from the ``skip_chunks``-th), each with its passages' texts."""
    stream = iter(records)
    for index in itertools.count():
        mine = index % shard.count == shard.index and index // shard.count >= skip_chunks
        batch = list(itertools.islice(_checked(stream, on_error) if mine else stream, chunk_size))
        if not batch:
            return
        if not mine:
            continue
        chunk = Chunk(index, len(batch))
        chunk.documents = [record for record in batch if isinstance(record, Document)]
        chunk.errors = [record for record in batch if isinstance(record, RecordError)]
        yield chunk, _passage_texts(chunk.documents)
