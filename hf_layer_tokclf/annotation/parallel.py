"""Several processes on one machine (or several): ``torchrun --nproc_per_node N -m hf_layer_tokclf predict ...``.

torchrun starts N copies of the command and tells each its place in ``RANK`` / ``WORLD_SIZE`` /
``LOCAL_RANK`` / ``LOCAL_WORLD_SIZE``. Each process annotates the shard of its rank
(`chunks.Shard`) into a file of its own beside the output, resumably; when all are done, rank 0
merges them in input order (`summary.merge_shards`) into the output the user named.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from ..base.defaults import CORPUS_CHUNK_SIZE
from .annotate import annotate_corpus
from .chunks import Shard
from .summary import describe_run, merge_shards, summary_path

__all__ = [
    "World",
    "annotate_with_world",
    "pick_world_device",
    "shard_output",
    "worker_threads",
    "world_chunk_size",
    "world_from_env",
]

# A rank waits for the slowest: a corpus shard can take hours (the default process group timeout is 30 min).
_WAIT_FOR_OTHERS = timedelta(days=7)


@dataclass(frozen=True)
class World:
    """This process's place among the processes torchrun started."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.size)


def world_from_env(environ: dict[str, str] | None = None) -> World | None:
    """The `World` torchrun describes in the environment, or None when this process was not started by it."""
    environ = os.environ if environ is None else environ
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        return None
    size = int(environ["WORLD_SIZE"])
    return World(
        rank=int(environ["RANK"]),
        size=size,
        local_rank=int(environ.get("LOCAL_RANK", environ["RANK"])),
        local_size=int(environ.get("LOCAL_WORLD_SIZE", size)),
    )


def worker_threads(world: World, requested: int | None = None, cores: int | None = None) -> int:
    """CPU threads for each process: ``requested``, else the machine's cores shared out among the local processes.

    torchrun sets ``OMP_NUM_THREADS=1`` for every process, which would leave a CPU run on one core a process.
    """
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--num-threads must be at least 1, got {requested}.")
        return requested
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // world.local_size)


def world_chunk_size(total: int, size: int, most: int = CORPUS_CHUNK_SIZE) -> int:
    """The chunk size, at most ``most``, that deals ``total`` records to ``size`` processes in near-equal shares.

    Shards are dealt whole chunks, round-robin: 210 records in the default chunks of 256 are one chunk, all of
    it rank 0's, while rank 1 idles. Each rank gets the same number of chunks of (within one) the same size:
    210 on 2 ranks are chunks of 105, 600 are four of 150 (not 256 + 88 against 256).
    """
    if size < 1 or most < 1:
        raise ValueError(f"world_chunk_size: size ({size}) and most ({most}) must be at least 1.")
    rounds = max(1, -(-total // (size * most)))  # chunks per rank
    return max(1, -(-total // (size * rounds)))


def shard_output(output: str | Path, shard: Shard) -> Path:
    """Where a process writes its shard before the merge: ``OUTPUT.shard-I-of-N``."""
    return Path(f"{output}.shard-{shard.index}-of-{shard.count}")


def _done_before(path: Path, run: dict[str, Any]) -> bool:
    """Whether an earlier launch of the same run finished this shard (and stopped before the merge)."""
    summary = summary_path(path)
    if not path.exists() or not summary.exists():
        return False
    done = json.loads(summary.read_text(encoding="utf-8"))
    return all(done.get(key) == value for key, value in run.items())


def annotate_with_world(world: World, output: str | Path, *, overwrite: bool = False, **kwargs: Any) -> dict | None:
    """Annotates this rank's shard (`annotate.annotate_corpus` with ``kwargs``), waits for every rank, and on
    rank 0 merges the shards into ``output`` and removes them; returns the merged summary on rank 0, else None.
    """
    import torch.distributed as dist

    from ..base.outputs import check_output_path

    check_output_path(output, overwrite)  # every rank checks before any work
    dist.init_process_group("gloo", timeout=_WAIT_FOR_OTHERS)
    try:
        part = shard_output(output, world.shard)
        run = describe_run(kwargs.get("run"), world.shard, kwargs.get("chunk_size"), kwargs.get("on_error"))
        if not _done_before(part, run):  # the same run finished it before it was killed: its shard stands
            annotate_corpus(output=part, shard=world.shard, overwrite=overwrite, **kwargs)
        dist.barrier()
        if world.rank != 0:
            return None
        parts = [shard_output(output, Shard(rank, world.size)) for rank in range(world.size)]
        summary = merge_shards(parts, output, overwrite=overwrite)
        for path in parts:  # the merged output holds all of them
            path.unlink()
            summary_path(path).unlink()
        return summary
    finally:
        dist.destroy_process_group()


def pick_world_device(world: World, device: str | None) -> str | None:
    """One GPU per local rank (``cuda:LOCAL_RANK``) where the device is a GPU; the CPU stays the CPU."""
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{world.local_rank % torch.cuda.device_count()}"
    return "cpu" if device == "auto" else device
