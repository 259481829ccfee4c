"""Forward latency and throughput of ours at k = 1..L against the stock head and the notebook recipe.

Every contender is in eval mode under ``torch.inference_mode()`` with sdpa attention. Timing:
warm-up calls, then rounds; in every round each model runs once, in a freshly shuffled order,
and a model's time is the median over rounds, so a drift of the machine hits all models alike.
Tiny forwards repeat inside one sample until it lasts >= 20 ms. Beside each row: achieved FLOP/s
and the fraction of the `ceiling.Ceiling` (``torch.matmul`` on the same shapes) it reaches.
"""

from __future__ import annotations

import gc
import math
import random
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from benchmarks.ceiling import Ceiling, where_time_goes
from benchmarks.common import CpuShare, contention_lines, log, sync
from benchmarks.models import NUM_LABELS, SEED, SEQ_LEN, Family, Spec, make_inputs

MIN_SAMPLE_S = 0.02
MIN_ROUNDS = 3


@dataclass
class Entry:
    spec: Spec
    fn: Callable[[dict[str, torch.Tensor]], Any]
    samples: list[float] = field(default_factory=list)
    inner: int = 1
    page_faults: list[float] = field(default_factory=list)  # minor page faults per pass
    kernel_share: list[float] = field(default_factory=list)  # system CPU / all CPU of this process


def time_entries(
    entries: list[Entry],
    inputs: dict[str, torch.Tensor],
    warmup: int,
    rounds: int,
    budget_s: float,
    label: str,
    device: torch.device,
) -> dict[str, float] | None:
    """Warm-up, then up to `rounds` rounds (each runs every model once, in a new random order).

    Stops after the round that exceeds `budget_s` seconds, once MIN_ROUNDS rounds are done.
    Returns the CPU share of other processes while timing.
    """

    def call(entry: Entry) -> None:
        entry.fn(inputs)
        sync(device)

    with torch.inference_mode():
        for _ in range(warmup):
            for entry in entries:
                call(entry)
        for entry in entries:
            start = time.perf_counter()
            call(entry)
            entry.inner = max(1, math.ceil(MIN_SAMPLE_S / (time.perf_counter() - start)))
            entry.samples, entry.page_faults, entry.kernel_share = [], [], []
        rng = random.Random(SEED)
        order = list(entries)
        began = time.perf_counter()
        share = CpuShare()
        for number in range(1, rounds + 1):
            rng.shuffle(order)
            gc.collect()
            gc.disable()  # a collection inside one sample would charge it to one model
            try:
                for entry in order:
                    before = resource.getrusage(resource.RUSAGE_SELF)
                    start = time.perf_counter()
                    for _ in range(entry.inner):
                        call(entry)
                    entry.samples.append((time.perf_counter() - start) / entry.inner)
                    after = resource.getrusage(resource.RUSAGE_SELF)
                    entry.page_faults.append((after.ru_minflt - before.ru_minflt) / entry.inner)
                    system, user = after.ru_stime - before.ru_stime, after.ru_utime - before.ru_utime
                    entry.kernel_share.append(system / max(system + user, 1e-9))
            finally:
                gc.enable()
            elapsed = time.perf_counter() - began
            over_budget = elapsed > budget_s and number >= MIN_ROUNDS
            if number == 1 or number % 5 == 0 or number == rounds or over_budget:
                log(f"  [{label}] round {number}/{rounds}, {elapsed:.0f} s")
            if over_budget and number < rounds:
                log(f"  [{label}] time budget of {budget_s:.0f} s spent: stopping after {number} rounds")
                break
    return share.stop()


def summarise(entries: list[Entry], family: Family, batch: int, ceiling: Ceiling) -> list[dict[str, Any]]:
    medians = {entry.spec.kind: statistics.median(entry.samples) for entry in entries if entry.spec.kind != "ours"}
    rows = []
    for entry in entries:
        median = statistics.median(entry.samples)
        p25, _, p75 = statistics.quantiles(entry.samples, n=4) if len(entry.samples) > 1 else (median,) * 3
        layers = entry.spec.layers_run(family)
        flops, matmul_s = ceiling.of(layers, pooler=entry.spec.kind == "notebook")
        rows.append(
            {
                "name": entry.spec.name(),
                "kind": entry.spec.kind,
                "k": entry.spec.k,
                "layers_run": layers,
                "median_ms": median * 1e3,
                "min_ms": min(entry.samples) * 1e3,
                "iqr_pct": (p75 - p25) / median * 100,
                "tokens_per_s": batch * SEQ_LEN / median,
                "ratio_vs_stock": median / medians["stock"],
                "ratio_vs_notebook": median / medians["notebook"],
                "ideal_ratio": entry.spec.k / family.num_layers if entry.spec.k is not None else None,
                "gflop": flops / 1e9,
                "gflop_per_s": flops / median / 1e9,
                "ceiling_gflop_per_s": flops / matmul_s / 1e9,
                "fraction_of_ceiling": matmul_s / median,
                "page_faults_per_pass": statistics.median(entry.page_faults),
                "kernel_cpu_share": statistics.median(entry.kernel_share),
                "repeats_per_sample": entry.inner,
                "samples_ms": [s * 1e3 for s in entry.samples],
            }
        )
    return rows


def run(
    family: Family,
    models: dict[Spec, torch.nn.Module],
    batches: dict[int, tuple[int, float]],
    warmup: int,
    device: torch.device,
    dtype: torch.dtype,
    profile_ks: tuple[int, ...] = (3,),
) -> list[dict[str, Any]]:
    """One table per batch size; `batches` maps batch size to (rounds, time budget in s).

    At the largest batch, the profiler also says where the time of the stock head and of ours at
    k = L (and `profile_ks`) goes.
    """
    entries = [Entry(spec, lambda x, m=model: m(**x)) for spec, model in models.items()]
    tables = []
    for batch, (rounds, budget_s) in batches.items():
        inputs = {key: value.to(device) for key, value in make_inputs(batch, family.vocab_size).items()}
        cpu = time_entries(entries, inputs, warmup, rounds, budget_s, f"{family.name} batch {batch}", device)
        ceiling = Ceiling(family.bert_config(), batch, SEQ_LEN, NUM_LABELS, device, dtype)
        table = {
            "family": family.name,
            "title": family.title,
            "num_layers": family.num_layers,
            "hidden_size": family.hidden_size,
            "batch": batch,
            "seq_len": SEQ_LEN,
            "warmup_rounds": warmup,
            "rounds": len(entries[0].samples),
            "rounds_planned": rounds,
            "budget_s": budget_s,
            "cpu_during_timing": cpu,
            "ceiling": ceiling.table(),
            "rows": summarise(entries, family, batch, ceiling),
            "time_breakdown": {},
        }
        if batch == max(batches):
            wanted = [Spec("stock"), Spec("ours", family.num_layers), *(Spec("ours", k) for k in profile_ks)]
            for spec in dict.fromkeys(wanted):
                if spec in models:
                    table["time_breakdown"][spec.name()] = where_time_goes(models[spec], inputs, device)
        tables.append(table)
        print(table_markdown(table), end="\n\n", flush=True)
    return tables


def table_markdown(table: dict[str, Any]) -> str:
    lines = [
        f"#### {table['title']}: {table['num_layers']} layers x {table['hidden_size']}, "
        f"batch {table['batch']} x {table['seq_len']} tokens",
        "",
        f"{table['rounds']} rounds (of {table['rounds_planned']} planned, {table['budget_s']:.0f} s budget) after "
        f"{table['warmup_rounds']} warm-up rounds; median over rounds; IQR = interquartile range / median. "
        "GFLOP/s = the model's matrix-product FLOPs / its median time; ceiling = the time `torch.matmul` alone "
        "needs for the same shapes / the median time; page faults / pass: memory the kernel had to map "
        "afresh (minor faults); kernel CPU: system time's share of this process's CPU time.",
        "",
        *contention_lines(table.get("cpu_during_timing")),
        "| model | layers run | median ms | IQR % | tokens/s | vs stock head | vs notebook | ideal k/L "
        "| GFLOP/s | of matmul ceiling | page faults / pass | kernel CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table["rows"]:
        ideal = f"{row['ideal_ratio']:.3f}" if row["ideal_ratio"] is not None else "—"
        lines.append(
            f"| {row['name']} | {row['layers_run']} | {row['median_ms']:.1f} | {row['iqr_pct']:.1f} | "
            f"{row['tokens_per_s']:,.0f} | {row['ratio_vs_stock']:.3f} | {row['ratio_vs_notebook']:.3f} | {ideal} | "
            f"{row['gflop_per_s']:.0f} | {100 * row['fraction_of_ceiling']:.0f}% | "
            f"{row['page_faults_per_pass']:,.0f} | {100 * row['kernel_cpu_share']:.0f}% |"
        )
    lines += ["", "`torch.matmul` on the shapes of one encoder layer and of the classifier:", ""]
    lines += ["| product | shape | per layer | ms | GFLOP/s |", "|---|---|---:|---:|---:|"]
    for product in table["ceiling"]:
        lines.append(
            f"| {product['name']} | {product['shape']} | {product['count']} | {product['ms']:.2f} | "
            f"{product['gflop_per_s']:.0f} |"
        )
    breakdown = table["time_breakdown"]
    if breakdown:
        categories = list(dict.fromkeys(c for shares in breakdown.values() for c in shares))
        lines += ["", "Where the time goes (PyTorch profiler, self time of three forward passes, % of it):", ""]
        lines += ["| operators | " + " | ".join(breakdown) + " |", "|---|" + "---:|" * len(breakdown)]
        for category in categories:
            lines.append(
                f"| {category} | "
                + " | ".join(f"{shares.get(category, 0.0):.1f}" for shares in breakdown.values())
                + " |"
            )
    return "\n".join(lines)
