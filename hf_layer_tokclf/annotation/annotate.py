"""Annotating a corpus: the run that reads it in chunks, annotates them and writes them, resumably.

`annotate_corpus` runs `chunks.annotated_chunks` over a stream of records and writes this shard of it
with a corpus writer, chunk by chunk (`resumable.ResumableOutput`: a killed run started again goes on
after the last complete chunk), its progress shown (`CorpusProgress`) and its summary saved beside the
output (`summary.RunTally`). `label_sentences` does the same for pre-tokenized sentences (CoNLL, word
lists), labels in place of entities.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from tqdm.auto import tqdm

from ..base.defaults import CORPUS_CHUNK_SIZE
from ..base.files import write_json
from ..base.stages import recording, stage, timed_iter
from ..formats.corpus_documents import Document, RecordError
from ..formats.corpus_writers import render_document
from ..formats.documents import format_name
from ..formats.sentence import Sentence
from ..running.sentences import SENTENCE_CHUNK_SIZE, sentence_chunks
from .chunks import Chunk, Shard, annotated_chunks
from .resumable import ResumableOutput, StreamOutput
from .summary import RunTally, describe_run, summary_path

__all__ = ["CorpusProgress", "annotate_corpus", "label_sentences"]


class CorpusProgress:
    """Documents done, documents per second, time left and errors so far, for a person watching a long run.

    On a terminal a tqdm bar; elsewhere (a batch job's log) one line every ``interval`` seconds and at
    the end. ``done`` documents were annotated before a resumed run started: they count as done,
    not in the rate.
    """

    def __init__(
        self,
        total: int | None,
        *,
        done: int = 0,
        errors: int = 0,
        desc: str = "Annotating",
        enabled: bool = True,
        interval: float = 30.0,
        stream: IO[str] | None = None,
    ) -> None:
        self.total, self.done, self.errors, self.desc, self.interval = total, done, errors, desc, interval
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._start = self._last = time.monotonic()
        self._first = done
        terminal = enabled and self.stream.isatty()
        self._bar = tqdm(total=total, initial=done, desc=desc, unit="doc", file=self.stream) if terminal else None
        if self._bar is not None and errors:
            self._bar.set_postfix(errors=errors)

    def update(self, records: int, errors: int = 0) -> None:
        self.done += records
        self.errors += errors
        if self._bar is not None:
            self._bar.update(records)
            if errors:
                self._bar.set_postfix(errors=self.errors)
        elif self.enabled and time.monotonic() - self._last >= self.interval:
            self._print()

    def line(self) -> str:
        """``desc: 1200/36000 documents, 45.1 documents/s, 00:12:51 left, 0 errors``."""
        elapsed = time.monotonic() - self._start
        rate = (self.done - self._first) / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total}" if self.total is not None else ""
        left = ""
        if self.total is not None and rate > 0:
            left = f", {tqdm.format_interval(max(0, self.total - self.done) / rate)} left"
        return f"{self.desc}: {self.done}{of} documents, {rate:.1f} documents/s{left}, {self.errors} errors"

    def _print(self) -> None:
        self._last = time.monotonic()
        print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            self._print()


def _rendered(writer: Any, chunk: Chunk, on_error: str) -> list[bytes]:
    """Each document of the chunk as ``writer`` writes it (`corpus_writers.render_document`), before any of it is
    written.

    A document the writer cannot write is raised with ``stop``, else moved from the chunk's documents to
    its errors, so that the output holds whole records only.
    """
    rendered, documents, entities = [], [], []
    for document, found in zip(chunk.documents, chunk.entities, strict=True):
        try:
            rendered.append(render_document(writer, document, found))
        except RecordError as error:
            if on_error == "stop":
                raise
            chunk.errors.append(error)
            continue
        documents.append(document)
        entities.append(found)
    chunk.documents, chunk.entities = documents, entities
    return rendered


def annotate_corpus(
    model: Any,
    tokenizer: Any,
    records: Iterable[Document | RecordError],
    writer: Any,
    output: str | Path | None = None,
    *,
    run: dict[str, Any] | None = None,
    shard: Shard = Shard(),  # noqa: B008 (frozen: a default no call can change)
    chunk_size: int = CORPUS_CHUNK_SIZE,
    on_error: str = "skip",
    overwrite: bool = False,
    total: int | None = None,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Annotates this shard of ``records`` and writes it with ``writer`` (`corpus_writers.get_writer`); returns the
    summary.

    With ``output`` the file is written chunk by chunk, resumably (`resumable.ResumableOutput`: the same call
    after a kill continues the run), and the summary is saved beside it (`summary.summary_path`); without,
    the output goes to standard output. ``run`` describes the run (input, model, formats) for the
    resume check and the summary; ``total`` (records in the whole input) gives the progress line
    its end. ``options`` go to `chunks.annotate_documents`.
    """
    run = describe_run(run, shard, chunk_size, on_error, options.get("max_batch_tokens"))
    out = ResumableOutput(output, run, overwrite=overwrite) if output else StreamOutput(sys.stdout)
    tally = RunTally.resumed(out.state)
    bar = _progress(run, shard, total, chunk_size, tally, progress)
    try:
        if out.state["writes"] == 0:
            out.write(writer.header().encode("utf-8"))
        read = timed_iter(out.checked_input(records, chunk_size), "read")
        chunks = annotated_chunks(
            model, tokenizer, read, chunk_size=chunk_size, shard=shard, on_error=on_error,
            skip_chunks=max(0, out.state["writes"] - 1), **options,
        )  # fmt: skip
        with recording(tally.times), contextlib.closing(chunks):  # closed at once on an error: its thread stops
            for chunk in chunks if not out.state.get("complete") else ():  # killed after the footer: only the rename
                with stage("write"):
                    _write_chunk(out, writer, chunk, tally, on_error, chunk_size)
                bar.update(chunk.records, len(chunk.errors))
        if not out.state.get("complete"):
            out.write(writer.footer().encode("utf-8"), complete=True)
        lengths = out.lengths()
    except BaseException:
        out.close()
        raise
    finally:
        bar.close()
    out.finish()
    separator = getattr(writer, "separator", "")  # BioC JSON's "," between documents
    lengths = lengths if shard.count > 1 else None  # where a shard's chunks lie, for `summary.merge_shards`
    summary = tally.summary(run, output, out.resumed, lengths, options.get("max_batch_tokens"), separator)
    if output:
        write_json(summary_path(output), summary)
    return summary


def _write_chunk(
    out: ResumableOutput | StreamOutput, writer: Any, chunk: Chunk, tally: RunTally, on_error: str, chunk_size: int
) -> None:
    """Writes a chunk's documents (`_rendered`), after a separator where documents came before, and counts it
    (`summary.RunTally.add`): the progress file records the chunk with the tally and the input read up to its end."""
    separator = getattr(writer, "separator", "").encode()  # BioC JSON's "," between documents
    data = separator.join(_rendered(writer, chunk, on_error))
    lead = separator if data and tally.counts["documents"] else b""
    state = tally.add(chunk)
    out.write(lead + data, len(lead), input_records=chunk.index * chunk_size + chunk.records, **state)


def _progress(
    run: dict[str, Any], shard: Shard, total: int | None, chunk_size: int, tally: RunTally, enabled: bool
) -> CorpusProgress:
    """The progress line of this shard's run: its end where ``total`` (records in the whole input) is known."""
    return CorpusProgress(
        shard.records(total, chunk_size) if total is not None else None,
        done=tally.counts["records"],
        errors=tally.counts["errors"],
        desc=_progress_desc(run, shard),
        enabled=enabled,
    )


def _progress_desc(run: dict[str, Any], shard: Shard) -> str:
    """``Annotating [shard I/N] [PubTator to BioC XML]``: the formats where the run names them."""
    desc = "Annotating" if shard.count == 1 else f"Annotating shard {shard}"
    if run.get("input_format") and run.get("output_format"):
        desc += f" {format_name(run['input_format'])} to {format_name(run['output_format'])}"
    return desc


def label_sentences(
    model: Any,
    tokenizer: Any,
    sentences: Iterable[Sentence],
    render: Callable[[list[Sentence], list[list[str]]], str],
    output: str | Path | None = None,
    *,
    run: dict[str, Any] | None = None,
    chunk_size: int = SENTENCE_CHUNK_SIZE,
    overwrite: bool = False,
    total: int | None = None,
    progress: bool = True,
    **options: Any,
) -> int:
    """Labels pre-tokenized ``sentences`` (CoNLL, word lists) ``chunk_size`` at a time and writes each chunk as
    ``render(chunk, labels)`` gives it; returns how many sentences the output holds.

    As `annotate_corpus` does documents: the input is read lazily (memory stays flat however long it is), and
    with ``output`` each chunk is appended and counted (`ResumableOutput`), so that the same call after a kill
    goes on after the last complete chunk and the output is byte for byte that of an uninterrupted run; without,
    chunks go to standard output. ``run`` describes the run for the resume check (`describe_run`); ``total``
    (sentences in the input) gives the progress bar its end; ``options`` go to `sentences.predict_sentences`.
    """
    run = describe_run(run, Shard(), chunk_size, max_batch_tokens=options.get("max_batch_tokens"))
    out = ResumableOutput(output, run, overwrite=overwrite) if output else StreamOutput(sys.stdout)
    done = out.state.get("sentences", 0)
    try:
        read = timed_iter(out.checked_input(sentences, chunk_size), "read")
        chunks = sentence_chunks(
            model, tokenizer, read, chunk_size=chunk_size, skip_chunks=out.state["writes"], progress=progress,
            total=total, **options,
        )  # fmt: skip
        with contextlib.closing(chunks):  # closed at once on an error: its thread stops
            for chunk, labels in chunks:
                done += len(chunk)
                with stage("write"):
                    out.write(render(chunk, labels).encode("utf-8"), input_records=done, sentences=done)
                del chunk, labels  # before the next chunk is taken
    except BaseException:
        out.close()
        raise
    out.finish()
    return done
