"""``predict``'s local engine, one function per kind of input: CoNLL sentences, JSON lines of word lists, and
documents (written in a corpus format, or as an HTML page); each streams, resumable to --output.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def predict_conll(args: argparse.Namespace, model: Any, tokenizer: Any, scheme: Any, options: dict) -> None:
    """CoNLL in, CoNLL out: token, the gold label where the file has a label column, the predicted label (a
    multi-task model's: one column per task, in the order of --tasks or the model's; ``scheme`` then a dict
    task -> scheme: `sentences.label_scheme`).

    Streamed (`annotate.label_sentences`: chunk by chunk, resumable to --output). A first pass over the file,
    in flat memory (`conll.scan_conll`), counts its sentences and decides, on the whole file as when it was read
    whole, whether its last column is labels and in which scheme: gold, kept beside the predictions in the
    model's scheme.
    """
    from ..annotation.annotate import label_sentences
    from ..formats.conll import iter_conll, scan_conll
    from ..formats.labels import with_iob2
    from ..running.sentences import conll_lines

    total, gold_scheme = scan_conll(args.input)
    sentences = iter_conll(args.input, labeled=gold_scheme is not None)
    if gold_scheme:  # in IOB2 as the model's labels are; both are written back in the model's scheme
        sentences = (with_iob2(sentence, gold_scheme) for sentence in sentences)
    label_sentences(
        model, tokenizer, sentences, lambda chunk, labels: "".join(conll_lines(chunk, labels, scheme=scheme)),
        args.output, run=_corpus_run(args, "conll"), overwrite=args.overwrite, total=total, **options,
    )  # fmt: skip


def predict_word_lists(
    args: argparse.Namespace, model: Any, tokenizer: Any, column: str, scheme: Any, options: dict
) -> None:
    """JSON lines of word lists (``Dataset.to_json``): each record back, with ``predictions`` (one label per word;
    a multi-task model's a dict task -> labels), streamed as CoNLL is (`annotate.label_sentences`)."""
    import json

    from ..annotation.annotate import label_sentences
    from ..formats.corpus_scan import count_records
    from ..formats.labels import from_iob2
    from ..formats.records import Columns, iter_word_lists

    def written(own: Any) -> Any:
        if isinstance(own, dict):  # a multi-task model's: each task's labels in its own scheme
            return {task: from_iob2(labels, scheme[task]) for task, labels in own.items()}
        return from_iob2(own, scheme)

    def render(chunk: list[Any], labels: list[Any]) -> str:
        return "".join(
            json.dumps({**sentence.fields, "predictions": written(own)}, ensure_ascii=False) + "\n"
            for sentence, own in zip(chunk, labels, strict=True)
        )

    sentences = iter_word_lists(args.input, Columns(tokens=column))
    total = count_records(args.input, "jsonl")
    label_sentences(
        model, tokenizer, sentences, render, args.output, run=_corpus_run(args, "jsonl"), overwrite=args.overwrite,
        total=total, **options,
    )  # fmt: skip


def _documents(args: argparse.Namespace, input_format: str, column: str | None) -> Iterator[Any]:
    """predict's documents (`corpus_documents.Document`, or `corpus_documents.RecordError` for a record that
    cannot be read), lazily."""
    from ..formats.corpus_documents import Document, Passage
    from ..formats.corpus_readers import read_corpus, read_text_lines

    if input_format != "text":
        return read_corpus(args.input, input_format, **({"column": column} if column else {}))
    if not args.text:
        return read_text_lines(args.input)  # a file, or standard input
    return (
        Document(str(number), [Passage(text)], "--text", number, {"text": text})
        for number, text in enumerate(args.text, start=1)
    )


def predict_documents(
    args: argparse.Namespace,
    model: Any,
    tokenizer: Any,
    input_format: str,
    column: str | None,
    options: dict[str, Any],
    shard: Any,
    world: Any,
) -> None:
    """Documents in, entities out (`annotate.annotate_corpus`): resumable to --output, merged under torchrun."""
    from ..annotation.annotate import annotate_corpus
    from ..annotation.chunks import annotated_chunks
    from ..annotation.summary import summary_path
    from ..base.defaults import CORPUS_CHUNK_SIZE
    from ..formats.corpus_scan import count_lines, count_records
    from ..formats.corpus_writers import get_writer
    from ..formats.documents import format_name

    common = dict(
        model=model,
        tokenizer=tokenizer,
        records=_documents(args, input_format, column),
        chunk_size=args.chunk_size or CORPUS_CHUNK_SIZE,
        on_error=args.on_error,
        aggregation_strategy=args.aggregation_strategy,
        **options,
    )
    if args.format == "html":
        _write_html(args, input_format, annotated_chunks(shard=shard, **common))
        return
    if args.text:
        total = len(args.text)
    elif args.input:
        total = count_lines(args.input) if input_format == "text" else count_records(args.input, input_format)
    else:
        total = None
    if world is not None:  # this rank's shard; a small input is dealt to every rank unless --chunk-size says
        shard = world.shard
        if total and not args.chunk_size:
            from ..annotation.parallel import world_chunk_size

            common["chunk_size"] = world_chunk_size(total, world.size)
    note = shard.short_input_note(total, common["chunk_size"], args.input) if total and args.input else None
    if note and (world is None or world.rank == 0):  # once: rank 0 speaks for all; empty parts are still written
        print(f"warning: {note}", file=sys.stderr)
    kwargs = dict(common, writer=get_writer(args.format), run=_corpus_run(args, input_format), total=total)
    if world is not None:
        from ..annotation.parallel import annotate_with_world

        summary = annotate_with_world(world, args.output, overwrite=args.overwrite, **kwargs)
    else:
        summary = annotate_corpus(output=args.output, shard=shard, overwrite=args.overwrite, **kwargs)
    if summary is not None:
        _warn_if_no_document(args, summary["records"])
    if summary is not None and args.output:
        print(f"{summary['documents']} documents annotated, written as {format_name(args.format)}, "
              f"{summary['errors']} skipped; summary in {summary_path(args.output)}", file=sys.stderr)  # fmt: skip


def _warn_if_no_document(args: argparse.Namespace, records: int) -> None:
    """An input without a single record is most likely the wrong one: said, though the (empty) output is written."""
    if records == 0:
        source = args.input or "standard input"
        print(f"warning: found no document in {source}; the output holds none.", file=sys.stderr)


def _corpus_run(args: argparse.Namespace, input_format: str) -> dict[str, Any]:
    """What a resumed run must share with the one it continues: the same input, model and options.

    The model's content and the input's are checked too: `summary.describe_run` adds the model's
    digests, and `resumable.ResumableOutput.checked_input` hashes the records read.
    """
    source = Path(args.input) if args.input else None
    stat = source.stat() if source else None
    return {
        "input": str(source.resolve()) if source else None,
        "input_bytes": stat.st_size if stat else None,
        "input_format": input_format,
        "text_column_name": args.text_column_name,
        "output_format": args.format,
        "model": str(Path(args.model).resolve()) if Path(args.model).exists() else args.model,
        "aggregation_strategy": args.aggregation_strategy,
        "decoding": args.decoding,
        "min_score": args.min_score,
        "batch_size": args.batch_size,
        "device": args.device,
        "dtype": args.dtype,
        # Only where given: the record of a run without (every single-task run) stays as it was.
        **({"tasks": args.tasks} if args.tasks else {}),
    }


def _title(document: Any, input_format: str) -> str | None:
    """A document's id where its input has one (a JSON lines record may not; text lines have none)."""
    if input_format == "text":
        return None
    return document.fields.get("id") if input_format == "jsonl" else document.id


def _write_html(args: argparse.Namespace, input_format: str, chunks: Iterator[Any]) -> None:
    """An HTML page of the annotated documents with their entities highlighted (displaCy)."""
    from ..formats.corpus_documents import document_text
    from ..formats.rendering import entities_html, write_html

    read = [0]

    def counted(chunks: Iterator[Any]) -> Iterator[Any]:
        for chunk in chunks:
            read[0] += chunk.records
            yield chunk

    records = (
        {"id": _title(document, input_format), "text": document_text(document), "entities": entities}
        for chunk in counted(chunks)
        for document, entities in zip(chunk.documents, chunk.entities, strict=True)
    )
    if args.output:
        write_html(args.output, records)
    else:
        sys.stdout.write(entities_html(records))
    _warn_if_no_document(args, read[0])
