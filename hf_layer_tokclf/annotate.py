"""Annotating a corpus: documents in, entities with document offsets out, chunk by chunk.

`annotate_documents` finds the entities of a list of `corpus.Document` (every passage through the
model, offsets moved to the document). `annotate_corpus` runs it over a stream of records in chunks
of ``chunk_size`` records: chunk ``c`` belongs to shard ``c % N`` (`Shard`), so a shard is a
deterministic slice that needs no count of the input, and every chunk holds the same records however
the work is split, so it gives the same bytes. Written to a file, each chunk is appended and synced,
then the output's length recorded beside it (`ResumableOutput`): a killed run started again goes on
after the last complete chunk, and the output appears under its name only once complete.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tqdm.auto import tqdm

from .corpus import Document, RecordError, document_text, render_document
from .files import OutputExistsError, atomic_writer, check_output_file, write_json
from .inference import predict_texts

__all__ = [
    "CORPUS_CHUNK_SIZE",
    "ON_ERROR",
    "Chunk",
    "CorpusProgress",
    "ResumableOutput",
    "Shard",
    "annotate_corpus",
    "annotate_documents",
    "annotated_chunks",
    "describe_run",
    "merge_shards",
    "summary_path",
]

CORPUS_CHUNK_SIZE = 256
ON_ERROR = ("skip", "stop")
_ERROR_SAMPLES = 100  # errors listed in the summary; all are counted
_ERRORS_SHOWN = 20  # errors printed as warnings; the rest are only counted
_COUNTS = ("records", "documents", "passages", "entities", "errors")


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
    **options: Any,
) -> Iterator[Chunk]:
    """This shard's chunks of ``records``, annotated, in order, after the first ``skip_chunks`` of them.

    Records of other shards, and of skipped chunks, are read (to know where chunks start) but not annotated.
    ``on_error="stop"`` raises the first `RecordError`; ``"skip"`` keeps it in its chunk's ``errors``.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error={on_error!r}; expected one of {', '.join(ON_ERROR)}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")
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
        chunk.entities = annotate_documents(model, tokenizer, chunk.documents, **options) if chunk.documents else []
        yield chunk


def summary_path(output: str | Path) -> Path:
    """The JSON sidecar beside a corpus output: what was done, how fast, what failed."""
    return Path(f"{output}.summary.json")


class ResumableOutput:
    """A file written chunk by chunk to ``OUTPUT.partial``, its progress in ``OUTPUT.progress.json``.

    Each chunk is appended and synced to disk before the progress file (written atomically) counts
    it, so after a kill the partial file is cut back to the last counted chunk and the run goes on
    from there. The length of every write goes to ``OUTPUT.partial.index`` (one number a line, kept
    as long as the progress file says), so that shards can be merged chunk by chunk. `finish`
    renames the partial file to ``OUTPUT``; ``run`` (what produced the output: input, model,
    options) must match for a run to continue another's work. ``overwrite`` lets the output replace
    a file of that name, and a partial output of another run be started again.
    """

    def __init__(self, path: str | Path, run: dict[str, Any], *, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.partial = Path(f"{path}.partial")
        self.progress = Path(f"{path}.progress.json")
        self.index = Path(f"{path}.partial.index")
        if self.path.exists() and not overwrite:
            raise OutputExistsError(f"{self.path} already exists; pass --overwrite to replace it.")
        fresh = {"run": run, "writes": 0, "bytes": 0, "index_bytes": 0}
        self.state = self._resumed(run, overwrite) or fresh
        self.resumed = self.state["writes"] > 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._open(self.partial, self.state["bytes"])
        self._index = self._open(self.index, self.state["index_bytes"])

    @staticmethod
    def _open(path: Path, length: int) -> IO[bytes]:
        """``path`` for appending, cut back to ``length``: what was written after the last count is written again."""
        stream = open(path, "r+b" if path.exists() else "wb")  # noqa: SIM115 - closed by finish() / close()
        stream.truncate(length)
        stream.seek(length)
        return stream

    def _resumed(self, run: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
        """The progress of the same run, killed: continued even with ``overwrite`` (it repeats the command)."""
        if not (self.partial.exists() and self.progress.exists() and self.index.exists()):
            return None
        state = json.loads(self.progress.read_text(encoding="utf-8"))
        if state.get("run") != run and overwrite:
            return None
        if state.get("run") != run:
            before = state.get("run") or {}
            changed = sorted(key for key in {*run, *before} if run.get(key) != before.get(key))
            raise OutputExistsError(
                f"{self.partial} is the unfinished output of another run (it differs in {', '.join(changed)}); "
                "run the same command to continue it, or pass --overwrite to start again."
            )
        if self.partial.stat().st_size < state["bytes"] or self.index.stat().st_size < state["index_bytes"]:
            raise OutputExistsError(f"{self.partial} is shorter than {self.progress} says; pass --overwrite.")
        return state

    def write(self, data: bytes, lead: int = 0, **counts: Any) -> None:
        """Appends ``data`` (a chunk, the header or the footer), syncs it, then counts it, with ``counts``.

        ``lead``: how many of its first bytes separate it from the chunk before (`merge_shards` leaves them out).
        """
        line = f"{len(data)} {lead}\n".encode()
        for stream, raw in ((self._file, data), (self._index, line)):
            stream.write(raw)
            stream.flush()
            os.fsync(stream.fileno())
        self.state["writes"] += 1
        self.state["bytes"] += len(data)
        self.state["index_bytes"] += len(line)
        self.state.update(counts)
        write_json(self.progress, self.state)

    def lengths(self) -> list[list[int]]:
        """``[length, lead]`` of each write so far, in order."""
        self._index.flush()
        return [[int(n) for n in line.split()] for line in self.index.read_text(encoding="ascii").splitlines()]

    def finish(self) -> None:
        """The output, complete, under its name; the progress files removed."""
        self.close()
        os.replace(self.partial, self.path)
        self.progress.unlink()
        self.index.unlink()

    def close(self) -> None:
        self._file.close()
        self._index.close()


class _StreamOutput:
    """Standard output in `ResumableOutput`'s place: written as it comes, nothing to resume."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream, self.state, self.resumed, self._lengths = stream, {"writes": 0}, False, []

    def write(self, data: bytes, lead: int = 0, **counts: Any) -> None:
        self.stream.write(data.decode("utf-8"))
        self.stream.flush()
        self._lengths.append([len(data), lead])
        self.state["writes"] += 1
        self.state.update(counts)

    def lengths(self) -> list[list[int]]:
        return list(self._lengths)

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass


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


def _report(errors: list[RecordError], counts: dict[str, int], samples: list[str]) -> None:
    """Warns of the first `_ERRORS_SHOWN` bad records (each names its file and record); lists `_ERROR_SAMPLES`."""
    for error in errors:
        counts["errors"] += 1
        if len(samples) < _ERROR_SAMPLES:
            samples.append(str(error))
        if counts["errors"] <= _ERRORS_SHOWN:
            more = " (further errors are only counted)" if counts["errors"] == _ERRORS_SHOWN else ""
            print(f"warning: skipped {error}{more}", file=sys.stderr, flush=True)


def _rendered(writer: Any, chunk: Chunk, on_error: str) -> list[bytes]:
    """Each document of the chunk as ``writer`` writes it (`corpus.render_document`), before any of it is written.

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


def _count(chunk: Chunk, counts: dict[str, int]) -> None:
    counts["records"] += chunk.records
    counts["documents"] += len(chunk.documents)
    counts["passages"] += sum(len(document.passages) for document in chunk.documents)
    counts["entities"] += sum(map(len, chunk.entities))


def describe_run(
    run: dict[str, Any] | None, shard: Shard, chunk_size: int | None = None, on_error: str | None = None
) -> dict[str, Any]:
    """What produced an output, as its progress file and summary record it: ``run`` and the slicing."""
    return {
        **(run or {}),
        "shard": str(shard),
        "chunk_size": chunk_size or CORPUS_CHUNK_SIZE,
        "on_error": on_error or "skip",
    }


def annotate_corpus(
    model: Any,
    tokenizer: Any,
    records: Iterable[Document | RecordError],
    writer: Any,
    output: str | Path | None = None,
    *,
    run: dict[str, Any] | None = None,
    shard: Shard = Shard(),
    chunk_size: int = CORPUS_CHUNK_SIZE,
    on_error: str = "skip",
    overwrite: bool = False,
    total: int | None = None,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Annotates this shard of ``records`` and writes it with ``writer`` (`corpus.get_writer`); returns the summary.

    With ``output`` the file is written chunk by chunk, resumably (`ResumableOutput`: the same call
    after a kill continues the run), and the summary is saved beside it (`summary_path`); without,
    the output goes to standard output. ``run`` describes the run (input, model, formats) for the
    resume check and the summary; ``total`` (records in the whole input) gives the progress line
    its end. ``options`` go to `annotate_documents`.
    """
    run = describe_run(run, shard, chunk_size, on_error)
    out = ResumableOutput(output, run, overwrite=overwrite) if output else _StreamOutput(sys.stdout)
    counts = out.state.get("counts", dict.fromkeys(_COUNTS, 0))
    samples = out.state.get("error_samples", [])
    seconds, started = out.state.get("seconds", 0.0), time.monotonic()
    bar = CorpusProgress(
        shard.records(total, chunk_size) if total is not None else None,
        done=counts["records"],
        errors=counts["errors"],
        desc="Annotating" if shard.count == 1 else f"Annotating shard {shard}",
        enabled=progress,
    )
    separator = getattr(writer, "separator", "")  # BioC JSON's "," between documents
    try:
        if out.state["writes"] == 0:
            out.write(writer.header().encode("utf-8"))
        chunks = annotated_chunks(
            model, tokenizer, records, chunk_size=chunk_size, shard=shard, on_error=on_error,
            skip_chunks=max(0, out.state["writes"] - 1), **options,
        )  # fmt: skip
        for chunk in chunks if not out.state.get("complete") else ():  # killed after the footer: only the rename
            data = separator.encode().join(_rendered(writer, chunk, on_error))
            lead = separator.encode() if data and counts["documents"] else b""
            _report(chunk.errors, counts, samples)
            _count(chunk, counts)
            elapsed = seconds + time.monotonic() - started
            out.write(lead + data, len(lead), counts=counts, error_samples=samples, seconds=elapsed)
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
    lengths = lengths if shard.count > 1 else None  # where a shard's chunks lie, for `merge_shards`
    summary = _summary(run, output, counts, samples, seconds + time.monotonic() - started, out.resumed, lengths)
    summary["separator"] = separator
    if output:
        write_json(summary_path(output), summary)
    return summary


def _summary(
    run: dict[str, Any],
    output: str | Path | None,
    counts: dict[str, int],
    samples: list[str],
    seconds: float,
    resumed: bool,
    lengths: list[list[int]] | None,
) -> dict[str, Any]:
    """What a corpus run did, for its JSON sidecar; a shard's also says where its chunks lie (for `merge_shards`)."""
    from . import __version__

    summary = {
        **run,
        "output": str(output) if output else None,
        **counts,
        "seconds": round(seconds, 3),
        "documents_per_second": round(counts["records"] / seconds, 3) if seconds > 0 else None,
        "resumed": resumed,
        "error_samples": samples,
        "hf_layer_tokclf": __version__,
    }
    if lengths is not None:
        summary["write_bytes"] = lengths  # [length, separator bytes] of the header, each chunk, the footer
    return summary


def merge_shards(outputs: Sequence[str | Path], output: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Merges the complete outputs of shards ``0/N`` .. ``N-1/N`` into ``output``, in input order; returns its summary.

    Chunks are taken round-robin (chunk ``c`` is shard ``c % N``'s), between the first shard's header
    and footer, from where each shard's summary (`summary_path`) says they lie. Written atomically;
    the shards' files are left as they are.
    """
    check_output_file(output, overwrite)
    summaries = [json.loads(summary_path(path).read_text(encoding="utf-8")) for path in outputs]
    for number, summary in enumerate(summaries):
        if summary.get("shard") != f"{number}/{len(outputs)}" or "write_bytes" not in summary:
            raise ValueError(f"{outputs[number]} is not the complete output of shard {number}/{len(outputs)}.")
    lengths = [summary["write_bytes"] for summary in summaries]  # header, chunks, footer
    separator = summaries[0].get("separator", "").encode("utf-8")
    with atomic_writer(output, "wb") as merged, contextlib.ExitStack() as stack:
        streams = [stack.enter_context(open(path, "rb")) for path in outputs]
        merged.write(streams[0].read(lengths[0][0][0]))
        for stream, own in zip(streams[1:], lengths[1:], strict=True):
            stream.seek(own[0][0])  # past its header
        chunks = [iter(own[1:-1]) for own in lengths]
        wrote = False
        for number in itertools.count():
            length, lead = next(chunks[number % len(outputs)], (None, 0))
            if length is None:  # every shard's chunks are taken: the last chunk was the shard before's
                break
            data = streams[number % len(outputs)].read(length)[lead:]  # its separator is the shard's, not ours
            if data:
                merged.write(separator + data if wrote else data)
                wrote = True
        merged.write(streams[0].read(lengths[0][-1][0]))  # shard 0's footer follows its last chunk
    return _merged_summary(summaries, output)


def _merged_summary(summaries: list[dict[str, Any]], output: str | Path) -> dict[str, Any]:
    """The shards' summaries added up (time: the slowest shard's), saved beside the merged output."""
    totals = {key: sum(summary[key] for summary in summaries) for key in _COUNTS}
    seconds = max(summary["seconds"] for summary in summaries)
    summary = {
        **{key: value for key, value in summaries[0].items() if key not in ("write_bytes", "resumed")},
        **totals,
        "shard": f"merged from {len(summaries)} shards",
        "output": str(output),
        "seconds": seconds,
        "documents_per_second": round(totals["records"] / seconds, 3) if seconds > 0 else None,
        "resumed": any(summary["resumed"] for summary in summaries),
        "error_samples": [sample for summary in summaries for sample in summary["error_samples"]][:_ERROR_SAMPLES],
    }
    write_json(summary_path(output), summary)
    return summary
