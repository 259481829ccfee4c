"""A corpus run's record: what produced it, what it did, and shards' outputs merged into one.

`describe_run` says what produced an output (input, model and its digests, options), for the resume check
and the summary; `RunTally` keeps what a run did (counts, errors, seconds, stages) as its progress file
carries it, and gives the JSON summary saved beside the output (`summary_path`). `merge_shards` puts the
complete outputs of shards ``0/N`` .. ``N-1/N`` together in input order, their summaries added up.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base.defaults import CORPUS_CHUNK_SIZE
from ..base.files import atomic_writer, write_json
from ..base.outputs import check_output_path
from ..base.stages import StageTimes
from ..formats.corpus_documents import RecordError
from .chunks import Chunk, Shard

__all__ = ["RunTally", "describe_run", "merge_shards", "model_digest", "summary_path"]

_ERROR_SAMPLES = 100  # errors listed in the summary; all are counted
_ERRORS_SHOWN = 20  # errors printed as warnings; the rest are only counted
_COUNTS = ("records", "documents", "passages", "entities", "errors")


def summary_path(output: str | Path) -> Path:
    """The JSON sidecar beside a corpus output: what was done, how fast, what failed."""
    return Path(f"{output}.summary.json")


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


@dataclass
class RunTally:
    """What a corpus run has done so far: its counts (records, documents, passages, entities, errors), the errors
    it lists, its seconds and where they went (`stages`). A resumed run's goes on from what its progress file says
    (`resumed`)."""

    counts: dict[str, int]
    samples: list[str]
    seconds: float  # before this process took the run on
    times: StageTimes
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def resumed(cls, state: dict[str, Any]) -> RunTally:
        """The tally a run's progress file records (``state``); a fresh run's is empty."""
        times = StageTimes()
        for name, seconds in state.get("stage_seconds", {}).items():
            times.add(name, seconds)
        counts = state.get("counts", dict.fromkeys(_COUNTS, 0))
        return cls(counts, state.get("error_samples", []), state.get("seconds", 0.0), times)

    def elapsed(self) -> float:
        """The run's seconds, those of the runs it resumed included."""
        return self.seconds + time.monotonic() - self.started

    def add(self, chunk: Chunk) -> dict[str, Any]:
        """Counts a chunk (its errors warned of: `_report`); returns the tally as the progress file records it."""
        _report(chunk.errors, self.counts, self.samples)
        _count(chunk, self.counts)
        elapsed = self.elapsed()
        return dict(counts=self.counts, error_samples=self.samples, seconds=elapsed, stage_seconds=self.times.as_dict())

    def summary(
        self,
        run: dict[str, Any],
        output: str | Path | None,
        resumed: bool,
        lengths: list[list[int]] | None,
        max_batch_tokens: int | None,
        separator: str,
    ) -> dict[str, Any]:
        """What a corpus run did, for its JSON sidecar; a shard's also says where its chunks lie (``lengths``, for
        `merge_shards`)."""
        summary = _summary(run, output, self.counts, self.samples, self.elapsed(), resumed, lengths)
        summary.update(max_batch_tokens=max_batch_tokens, stage_seconds=self.times.as_dict())
        summary["separator"] = separator
        return summary


def _report(errors: list[RecordError], counts: dict[str, int], samples: list[str]) -> None:
    """Warns of the first `_ERRORS_SHOWN` bad records (each names its file and record); lists `_ERROR_SAMPLES`."""
    for error in errors:
        counts["errors"] += 1
        if len(samples) < _ERROR_SAMPLES:
            samples.append(str(error))
        if counts["errors"] <= _ERRORS_SHOWN:
            more = " (further errors are only counted)" if counts["errors"] == _ERRORS_SHOWN else ""
            print(f"warning: skipped {error}{more}", file=sys.stderr, flush=True)


def _count(chunk: Chunk, counts: dict[str, int]) -> None:
    counts["records"] += chunk.records
    counts["documents"] += len(chunk.documents)
    counts["passages"] += sum(len(document.passages) for document in chunk.documents)
    counts["entities"] += sum(map(len, chunk.entities))


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
