"""Annotating a corpus: documents in, entities with document offsets out, chunk by chunk.

`annotate_documents` finds the entities of a list of `corpus.Document` (every passage through the
model, offsets moved to the document). `annotate_corpus` runs it over a stream of records in chunks
of ``chunk_size`` records: chunk ``c`` belongs to shard ``c % N`` (`Shard`), so a shard is a
deterministic slice that needs no count of the input, and every chunk holds the same records however
the work is split, so it gives the same bytes. Written to a file, each chunk is appended and synced,
then the output's length recorded beside it (`ResumableOutput`): a killed run started again goes on
after the last complete chunk, and the output appears under its name only once complete.
`label_sentences` does the same for pre-tokenized sentences (CoNLL, word lists), labels in place of entities.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tqdm.auto import tqdm

from ..base.defaults import CORPUS_CHUNK_SIZE, ON_ERROR
from ..base.files import OutputExistsError, atomic_writer, open_for_resume, open_new, publish, write_json
from ..base.locks import acquire_lock, refuse_live_lock
from ..base.outputs import check_output_path
from ..base.stages import StageTimes, recording, stage, timed_iter
from ..formats.corpus import Document, RecordError, document_text, render_document
from ..formats.data import Sentence
from ..formats.documents import format_name
from ..running.sentences import SENTENCE_CHUNK_SIZE, sentence_chunks
from ..running.texts import chunk_entities, predict_texts

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
    "label_sentences",
    "merge_shards",
    "model_digest",
    "summary_path",
]

_ERROR_SAMPLES = 100  # errors listed in the summary; all are counted
_ERRORS_SHOWN = 20  # errors printed as warnings; the rest are only counted
_COUNTS = ("records", "documents", "passages", "entities", "errors")


def annotate_documents(model: Any, tokenizer: Any, documents: Sequence[Document], **options: Any) -> list[list[dict]]:
    """The entities of each document, offsets into its text (`corpus.document_text`), in document order.

    All passages of all ``documents`` go through `inference.predict_texts` together (sorted by length
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
    this one (`inference.chunk_entities`). ``progress`` shows a bar counting records; ``options`` are
    `inference.predict_texts`'s (``batch_size``, ``max_batch_tokens``, ``aggregation_strategy``, ...).
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


def summary_path(output: str | Path) -> Path:
    """The JSON sidecar beside a corpus output: what was done, how fast, what failed."""
    return Path(f"{output}.summary.json")


class ResumableOutput:
    """A file written chunk by chunk to ``OUTPUT.partial``, its progress in ``OUTPUT.progress.json``.

    Each chunk is appended and synced to disk before the progress file (written atomically) counts
    it, so after a kill the partial file is cut back to the last counted chunk and the run goes on
    from there. The length of every write goes to ``OUTPUT.partial.index`` (one number a line, kept
    as long as the progress file says), so that shards can be merged chunk by chunk. `finish`
    renames the partial file to ``OUTPUT``. ``overwrite`` lets the output replace a file of that
    name, and a partial output of another run be started again.

    The progress file is the record of what the run wrote: it is written before the partial and index
    files are created (``O_EXCL``: never over a file that is there, never through a symlink), and a
    partial file that no progress file of this package accounts for is refused, even with
    ``overwrite``. ``OUTPUT.lock`` (`files.acquire_lock`) refuses a second run while one is in progress.
    To continue, a run must be the same run: ``run`` (what produced the output: input, model and its
    digests, options) must match, and the input read again up to the last counted chunk must hash to
    what was counted (`checked_input`); what changed is named.
    """

    def __init__(self, path: str | Path, run: dict[str, Any], *, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.partial, self.progress, self.index, self.lock = _sidecars(path)
        self.overwrite = overwrite
        self.check(path, overwrite)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = acquire_lock(self.lock, "predict")
        try:
            self.state = self._resumed(run, overwrite) or self._fresh(run)
            self.resumed = self.state["writes"] > 0
            opener = open_for_resume if self.resumed else open_new
            self._file = self._cut(opener(self.partial), self.state["bytes"])
            self._index = self._cut(opener(self.index), self.state["index_bytes"])
        except BaseException:
            self._lock.release()
            raise
        self._digest, self._records = hashlib.sha256(), 0
        self._marks: dict[int, str] = {}  # records read -> their hash, at chunk ends (`checked_input`)
        self._hash_lock = threading.Lock()  # the reading thread hashes while `write` reads the hash

    @staticmethod
    def check(path: str | Path, overwrite: bool = False) -> None:
        """Refuses, before any work, an output this run may not write: a folder, an existing file unless
        ``overwrite``, a symlink among its partial files, a partial file no progress file of this
        package accounts for, and an output another run is writing."""
        check_output_path(path, overwrite)
        partial, progress, index, lock = _sidecars(path)
        for sidecar in (partial, progress, index, summary_path(path)):
            if sidecar.is_dir() or sidecar.is_symlink():
                raise OutputExistsError(f"{sidecar} is a {'symlink' if sidecar.is_symlink() else 'folder'}; "
                                        "a run never writes through one. Move it away.")  # fmt: skip
        refuse_live_lock(lock)
        if not progress.exists() and (partial.exists() or index.exists()):
            found = " and ".join(str(p) for p in (partial, index) if p.exists())
            raise OutputExistsError(
                f"{found} exists, and no {progress} says that a run of this package wrote it; move it away."
            )
        if progress.exists():
            _load_progress(progress)

    @staticmethod
    def _cut(stream: IO[bytes], length: int) -> IO[bytes]:
        """The stream cut back to ``length``, for appending: what was written after the last count is written again."""
        stream.truncate(length)
        stream.seek(length)
        return stream

    def _fresh(self, run: dict[str, Any]) -> dict[str, Any]:
        """A new run's state, recorded (in the progress file) before its files are created."""
        self._discard()
        state = {"run": run, "writes": 0, "bytes": 0, "index_bytes": 0, "files": [self.partial.name, self.index.name]}
        write_json(self.progress, state)
        return state

    def _discard(self) -> None:
        """Deletes the partial output of an earlier run of this package (a progress file of ours lists it)."""
        if self.progress.exists():
            for path in (self.partial, self.index, self.progress):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _resumed(self, run: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
        """The progress of the same run, killed: continued even with ``overwrite`` (it repeats the command)."""
        if not (self.partial.exists() and self.progress.exists() and self.index.exists()):
            return None
        state = _load_progress(self.progress)
        if state.get("run") != run and overwrite:
            return None
        if state.get("run") != run:
            before = state.get("run") or {}
            changed = [key for key in {*run, *before} if run.get(key) != before.get(key)]
            raise OutputExistsError(
                f"{self.partial} is the unfinished output of another run (changed: {_changes(changed)}); run the same "
                "command on the same input and model to continue it, or pass --overwrite to start again."
            )
        if self.partial.stat().st_size < state["bytes"] or self.index.stat().st_size < state["index_bytes"]:
            raise OutputExistsError(f"{self.partial} is shorter than {self.progress} says; pass --overwrite.")
        return state

    def checked_input(self, records: Iterable[Any], every: int | None = None) -> Iterator[Any]:
        """The input's records, hashed as they are read (the hash goes into the progress file with every
        write); a resumed run's input, read again up to the last counted chunk, must hash as it did.

        The hash covers what the model reads of each record (`_record_bytes`), so it works the same for
        a file of any format, standard input and ``--text``. Reading may run ahead of writing (the next chunk
        is read while this one is annotated: `prefetch.prefetch`), so the hash is kept at every ``every``
        records (a chunk's end) and at the input's end, for `write` to record the hash of the records its
        chunk ends at.
        """
        expected = self.state.get("input_records", 0) if self.resumed else 0
        for record in records:
            with self._hash_lock:
                self._digest.update(_record_bytes(record))
                self._records += 1
                if every and self._records % every == 0:
                    self._marks[self._records] = self._digest.hexdigest()
            if self._records == expected and self._digest.hexdigest() != self.state.get("input_sha256"):
                self._refuse_input(f"its first {expected} records differ from those the run read")
            yield record
        with self._hash_lock:
            self._marks[self._records] = self._digest.hexdigest()
        if self._records < expected:
            self._refuse_input(f"it has {self._records} records; the run had read {expected}")

    def _input_mark(self, records: int | None) -> tuple[int, str]:
        """``(records, hash)`` of the input's first ``records`` (None: of all read so far), as `checked_input`
        kept it; the marks up to it are dropped."""
        with self._hash_lock:
            if records is None or records == self._records:
                return self._records, self._digest.hexdigest()
            if records not in self._marks:
                raise RuntimeError(f"no hash kept of the input's first {records} records (read: {self._records})")
            digest = self._marks[records]
            self._marks = {count: mark for count, mark in self._marks.items() if count > records}
            return records, digest

    def _refuse_input(self, how: str) -> None:
        """A resumed run on another input: refused before anything is written (with ``overwrite``, the
        unfinished output is discarded, so that the command run again starts over)."""
        self.close()
        if self.overwrite:
            self._discard()
            raise OutputExistsError(
                f"the input is not the one {self.partial} was started on ({how}); that unfinished output was "
                "discarded: run the command again to start over."
            )
        raise OutputExistsError(
            f"{self.partial} is the unfinished output of another run (changed: the input; {how}); run the command "
            "on the input it was started on to continue it, or pass --overwrite to start again."
        )

    def write(self, data: bytes, lead: int = 0, *, input_records: int | None = None, **counts: Any) -> None:
        """Appends ``data`` (a chunk, the header or the footer), syncs it, then counts it, with ``counts``
        and the hash of the input's first ``input_records`` records: those up to the end of the chunk written
        (None: all read so far).

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
        records, digest = self._input_mark(input_records)
        self.state.update(counts, input_records=records, input_sha256=digest)
        write_json(self.progress, self.state)

    def lengths(self) -> list[list[int]]:
        """``[length, lead]`` of each write so far, in order."""
        self._index.flush()
        return [[int(n) for n in line.split()] for line in self.index.read_text(encoding="ascii").splitlines()]

    def finish(self) -> None:
        """The output, complete, under its name; the progress files removed."""
        self._file.close()
        self._index.close()
        publish(self.partial, self.path)
        self.progress.unlink()
        self.index.unlink()
        self.close()

    def close(self) -> None:
        self._file.close()
        self._index.close()
        self._lock.release()


def _sidecars(output: str | Path) -> tuple[Path, Path, Path, Path]:
    """A resumable output's partial file, progress file, index and lock."""
    return tuple(Path(f"{output}{suffix}") for suffix in (".partial", ".progress.json", ".partial.index", ".lock"))


def _load_progress(path: Path) -> dict[str, Any]:
    """A progress file of this package (one it did not write is refused, never taken as a run's)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = None
    if not (isinstance(state, dict) and isinstance(state.get("run"), dict) and isinstance(state.get("writes"), int)):
        raise OutputExistsError(f"{path} is not a progress file of this package; move it away.")
    return state


def _record_bytes(record: Any) -> bytes:
    """What the model reads of a record, for the input's hash: a document's id, passages and fields, a sentence's
    words, labels, line and fields, or an unreadable record's place and reason."""
    if isinstance(record, Document):
        passages = [[p.text, p.offset, p.infons] for p in record.passages]
        content = [record.id, record.record, passages, record.fields]
    elif isinstance(record, Sentence):
        content = [record.tokens, record.labels, record.line, record.fields]
    else:
        content = [getattr(record, "record", None), getattr(record, "reason", str(record))]
    return json.dumps(content, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8") + b"\n"


def _changes(keys: Iterable[str]) -> str:
    """What changed between two runs, in words: ``the model (weights)``, ``the input``, ``chunk_size``..."""
    words = []
    for key in sorted(keys):
        if key.startswith("model_") and key.endswith("_sha256"):
            word = f"the model ({key.removeprefix('model_').removesuffix('_sha256')})"
        elif key == "model":
            word = "the model"
        elif key.startswith("input") and key != "input_format":
            word = "the input"
        else:
            word = key
        if word not in words:
            words.append(word)
    return ", ".join(words)


class _StreamOutput:
    """Standard output in `ResumableOutput`'s place: written as it comes, nothing to resume."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream, self.state, self.resumed, self._lengths = stream, {"writes": 0}, False, []

    def write(self, data: bytes, lead: int = 0, *, input_records: int | None = None, **counts: Any) -> None:
        self.stream.write(data.decode("utf-8"))
        self.stream.flush()
        self._lengths.append([len(data), lead])
        self.state["writes"] += 1
        self.state.update(counts)

    def lengths(self) -> list[list[int]]:
        return list(self._lengths)

    def checked_input(self, records: Iterable[Any], every: int | None = None) -> Iterable[Any]:
        return records  # nothing to resume

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
    run: dict[str, Any] | None,
    shard: Shard,
    chunk_size: int | None = None,
    on_error: str | None = None,
    max_batch_tokens: int | None = None,
) -> dict[str, Any]:
    """What produced an output, as its progress file and summary record it: ``run``, the model's content
    (`model_digest` of ``run["model"]``, where the run names one), the slicing, and ``max_batch_tokens`` where
    one is given (batches change float sums, so a run continues only with its own; without one, the record is
    that of a run from before the option, which continues as it was started)."""
    run = dict(run or {})
    if run.get("model"):
        run.update({f"model_{part}_sha256": digest for part, digest in model_digest(run["model"]).items()})
    if max_batch_tokens is not None:
        run["max_batch_tokens"] = max_batch_tokens
    return {**run, "shard": str(shard), "chunk_size": chunk_size or CORPUS_CHUNK_SIZE, "on_error": on_error or "skip"}


# The files of a model folder that decide its output, by part (a weights file, an ONNX model and its data,
# the tokenizer's files, the code with trust_remote_code); README.md, metrics.json, eval_*.json do not.
_MODEL_PARTS = {
    "config": re.compile(r"^config\.json$"),
    "weights": re.compile(
        r"^(?!training_args\.bin$).+\.(safetensors|bin|pt|onnx|onnx\.data|onnx_data)$|\.index\.json$"
    ),
    "tokenizer": re.compile(
        r"^(tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json|added_tokens\.json|vocab\.(txt|json)"
        r"|merges\.txt|.*\.model)$"
    ),
    "code": re.compile(r"^.+\.py$"),
}


def model_digest(model: str | Path) -> dict[str, str]:
    """The sha256 of each part of a model's files (`_MODEL_PARTS`: config, weights, tokenizer, code), by
    content, streamed in chunks: a run continues another only on the same model. A Hub id is read from
    the local cache; a model found nowhere on this machine gives an empty dict (the run names it only)."""
    folder = Path(model)
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(str(model), local_files_only=True))
        except Exception:  # not cached (a download error, an invalid id): nothing to hash here
            return {}
    files = sorted(entry for entry in folder.iterdir() if entry.is_file())  # a Hub cache's links are followed
    signature = tuple((str(entry), entry.stat().st_size, entry.stat().st_mtime_ns) for entry in files)
    return dict(_digest_files(signature))


@functools.lru_cache(maxsize=8)
def _digest_files(signature: tuple[tuple[str, int, int], ...]) -> tuple[tuple[str, str], ...]:
    """Cached by path, size and modification time: a run hashes its model once, however often it is described."""
    digests = {part: hashlib.sha256() for part in _MODEL_PARTS}
    for path, _, _ in signature:
        name = Path(path).name
        part = next((part for part, pattern in _MODEL_PARTS.items() if pattern.search(name)), None)
        if part is None:
            continue
        digests[part].update(f"{name}\0".encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digests[part].update(block)
    return tuple((part, digest.hexdigest()) for part, digest in digests.items())


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
    run = describe_run(run, shard, chunk_size, on_error, options.get("max_batch_tokens"))
    out = ResumableOutput(output, run, overwrite=overwrite) if output else _StreamOutput(sys.stdout)
    times = _stage_times(out.state)
    counts = out.state.get("counts", dict.fromkeys(_COUNTS, 0))
    samples = out.state.get("error_samples", [])
    seconds, started = out.state.get("seconds", 0.0), time.monotonic()
    bar = CorpusProgress(
        shard.records(total, chunk_size) if total is not None else None,
        done=counts["records"],
        errors=counts["errors"],
        desc=_progress_desc(run, shard),
        enabled=progress,
    )
    separator = getattr(writer, "separator", "")  # BioC JSON's "," between documents
    try:
        if out.state["writes"] == 0:
            out.write(writer.header().encode("utf-8"))
        read = timed_iter(out.checked_input(records, chunk_size), "read")
        chunks = annotated_chunks(
            model, tokenizer, read, chunk_size=chunk_size, shard=shard, on_error=on_error,
            skip_chunks=max(0, out.state["writes"] - 1), **options,
        )  # fmt: skip
        with recording(times), contextlib.closing(chunks):  # closed at once on an error: its thread stops
            for chunk in chunks if not out.state.get("complete") else ():  # killed after the footer: only the rename
                with stage("write"):
                    data = separator.encode().join(_rendered(writer, chunk, on_error))
                    lead = separator.encode() if data and counts["documents"] else b""
                    _report(chunk.errors, counts, samples)
                    _count(chunk, counts)
                    elapsed = seconds + time.monotonic() - started
                    state = dict(counts=counts, error_samples=samples, seconds=elapsed, stage_seconds=times.as_dict())
                    out.write(lead + data, len(lead), input_records=chunk.index * chunk_size + chunk.records, **state)
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
    summary.update(max_batch_tokens=options.get("max_batch_tokens"), stage_seconds=times.as_dict())
    summary["separator"] = separator
    if output:
        write_json(summary_path(output), summary)
    return summary


def _stage_times(state: dict[str, Any]) -> StageTimes:
    """Where a run's time went (`stages`): a resumed run's record goes on from what its progress file says."""
    times = StageTimes()
    for name, seconds in state.get("stage_seconds", {}).items():
        times.add(name, seconds)
    return times


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
    (sentences in the input) gives the progress bar its end; ``options`` go to `inference.predict_sentences`.
    """
    run = describe_run(run, Shard(), chunk_size, max_batch_tokens=options.get("max_batch_tokens"))
    out = ResumableOutput(output, run, overwrite=overwrite) if output else _StreamOutput(sys.stdout)
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
    from .. import __version__

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
    check_output_path(output, overwrite)
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
    """The shards' summaries added up (time: the slowest shard's), and each one's records and seconds (a shard
    that got little shows there), saved beside the merged output."""
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
        "shards": [{key: summary[key] for key in ("shard", "records", "seconds")} for summary in summaries],
    }
    write_json(summary_path(output), summary)
    return summary
