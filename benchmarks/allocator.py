"""The forward table again, in a child process whose C allocator keeps freed memory for reuse.

glibc hands every block above its mmap threshold (at most 32 MiB, dynamically) to the kernel on
``free`` and maps a fresh one on the next ``malloc``. A BERT-base feed-forward activation at
batch 32 x 128 is 48 MiB, so every layer of every pass page-faults its way through freshly zeroed
memory: kernel time, not arithmetic. With ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``
raised, glibc keeps those blocks in its heap and the page faults disappear (jemalloc or tcmalloc
through ``LD_PRELOAD`` do the same). The child runs the same `forward.run` on the same models;
only the allocator differs, which is how this section says where that part of the time goes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.models import Family, Spec

KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**31)}


def run_in_child(
    family: Family, specs: list[Spec], batch: int, rounds: int, budget_s: float, warmup: int, threads: int
) -> dict[str, Any]:
    job = {
        "family": family.__dict__,
        "specs": [spec.__dict__ for spec in specs],
        "batch": batch,
        "rounds": rounds,
        "budget_s": budget_s,
        "warmup": warmup,
        "threads": threads,
    }
    env = {**os.environ, **KEEP_FREED_MEMORY, "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.allocator", json.dumps(job)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"allocator child exited with {done.returncode} (its errors are above)")
    table = json.loads(done.stdout.strip().splitlines()[-1])
    table["allocator"] = " ".join(f"{k}={v}" for k, v in KEEP_FREED_MEMORY.items())
    table["title"] += ", glibc keeping freed memory"
    return table


def _child(argv: list[str]) -> int:
    import contextlib
    import io

    import transformers

    from benchmarks.common import default_device
    from benchmarks.forward import run
    from benchmarks.models import build, to_device

    job = json.loads(argv[0])
    torch.set_num_threads(job["threads"])
    transformers.logging.set_verbosity_error()
    device = default_device()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    family = Family(**job["family"])
    specs = [Spec(**spec) for spec in job["specs"]]
    models = {spec: to_device(build(family, spec), device) for spec in specs}
    batches = {job["batch"]: (job["rounds"], job["budget_s"])}
    with contextlib.redirect_stdout(io.StringIO()):  # stdout carries the JSON only
        (table,) = run(family, models, batches, job["warmup"], device, dtype, profile_ks=())
    print(json.dumps(table))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
