"""Annotating a corpus: documents in, entities with document offsets out, chunk by chunk.

`annotate_documents` finds the entities of a list of `corpus.Document` (every passage through the
model, offsets moved to the document). `annotate_corpus` runs it over a corpus file in chunks of
``chunk_size`` records: chunk ``c`` belongs to shard ``c % N``, so a shard is a deterministic slice
that needs no count of the input; after each chunk the output so far is flushed and its length
recorded beside it, so a killed run started again continues after the last complete chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .corpus import Document
from .inference import predict_texts

__all__ = ["annotate_documents"]


def annotate_documents(model: Any, tokenizer: Any, documents: Sequence[Document], **options: Any) -> list[list[dict]]:
    """The entities of each document, offsets into its text (`corpus.document_text`), in document order.

    All passages of all ``documents`` go through `inference.predict_texts` together (sorted by length
    into batches); ``options`` are its keyword options (``batch_size``, ``aggregation_strategy``,
    ``decoding``, ``min_score``, ...).
    """
    texts = [passage.text for document in documents for passage in document.passages]
    found = iter(predict_texts(model, tokenizer, texts, chunk_size=max(1, len(texts)), **options))
    results = []
    for document in documents:
        entities = []
        for passage, passage_entities in zip(document.passages, found, strict=False):  # found: shared by all documents
            for entity in passage_entities:
                entities.append(
                    {**entity, "start": entity["start"] + passage.offset, "end": entity["end"] + passage.offset}
                )
        results.append(entities)
    return results
