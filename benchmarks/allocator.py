"""The forward table again, in a child process whose glibc keeps freed memory (``MALLOC_MMAP_THRESHOLD_``) rather
than page-faulting fresh blocks for each large activation: only the allocator differs.
"""

from __future__ import annotations

import sys
from typing import Any

from benchmarks import forward
from benchmarks.common import child_main, default_device, run_child
from benchmarks.models import Family, build, contenders, from_job, to_device, to_job

KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**31)}
LABEL = ", glibc keeping freed memory"


def run(
    family: Family, ks: list[int], batch: int, rounds: int, budget_s: float, warmup: int, threads: int
) -> list[dict[str, Any]]:
    """The forward table of ours at `ks` and k = L (and both baselines) at one batch, in the child."""
    if default_device().type != "cpu":  # glibc's heap does not hold GPU memory
        return []
    ks = [k for k in dict.fromkeys([*ks, family.num_layers]) if k <= family.num_layers]
    job = to_job(family, contenders(family, ks), batch=batch, rounds=rounds, budget_s=budget_s, warmup=warmup)
    table = run_child("benchmarks.allocator", {**job, "threads": threads}, KEEP_FREED_MEMORY)
    table["allocator"] = " ".join(f"{k}={v}" for k, v in KEEP_FREED_MEMORY.items())
    table["title"] += LABEL
    return [table]


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """In the child: build the contenders and run `forward.run` at the one batch (no profile of k = 3)."""
    family, specs = from_job(job)
    device = default_device()
    models = {spec: to_device(build(family, spec), device) for spec in specs}
    batches = {job["batch"]: (job["rounds"], job["budget_s"])}
    (table,) = forward.run(family, models, batches, job["warmup"], device, profile_ks=())  # child_main hides its print
    return table


def verdicts(tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ceiling target again, with the page faults gone."""
    kept = [table for table in tables if forward.has_ceiling_target(table)]
    return [forward.ceiling_verdict(table, LABEL, table["family"]) for table in kept]


# the README summary's lines: (title, key, format)
SUMMARY = (
    ("forward ms, batch {batch}" + LABEL, "median_ms", "{:.0f}"),
    ("… of the torch.matmul ceiling", "fraction_of_ceiling", "{:.0%}"),
    ("… page faults per pass", "page_faults_per_pass", "{:,.0f}"),
)


if __name__ == "__main__":
    sys.exit(child_main(measure))
