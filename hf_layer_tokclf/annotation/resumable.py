"""A corpus run's output file, resumable: written chunk by chunk, its progress recorded beside it.

Each chunk is appended and synced, then the output's length recorded beside it (`ResumableOutput`): a
killed run started again goes on after the last complete chunk, and the output appears under its name
only once complete. `StreamOutput` stands in for it when the output goes to standard output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ..base.files import OutputExistsError, open_for_resume, open_new, publish, write_json
from ..base.locks import acquire_lock, refuse_live_lock
from ..base.outputs import check_output_path
from ..formats.corpus_documents import Document
from ..formats.sentence import Sentence
from .summary import summary_path

__all__ = ["ResumableOutput", "StreamOutput"]


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
    ``overwrite``. ``OUTPUT.lock`` (`locks.acquire_lock`) refuses a second run while one is in progress.
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

        ``lead``: how many of its first bytes part it from the chunk before (`summary.merge_shards` leaves them out).
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


class StreamOutput:
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
