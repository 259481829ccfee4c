"""Training step time (forward + backward + AdamW step) of ours at a few k, the stock head and the
notebook recipe reading the same k.

Every contender is in train mode (dropout on) with its own ``torch.optim.AdamW``; the labels are
random with a few ``-100`` positions, as a real batch has. The notebook recipe computes every
layer forward; autograd then only goes back through layers 1..k, and AdamW skips parameters
without gradients, so its cost falls between ours and the stock head. Rounds interleave the
contenders in a fresh random order; on a GPU, steps run under bfloat16 autocast.
"""

from __future__ import annotations

import contextlib
import gc
import random
import statistics
import time
from typing import Any

import torch

from benchmarks.common import CpuShare, contention_lines, log, sync
from benchmarks.models import NUM_LABELS, SEED, SEQ_LEN, Family, Spec, build, make_inputs


def step_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device):
    model.to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        sync(device)

    return step


def run(
    family: Family, ks: list[int], batch_size: int, rounds: int, warmup: int, device: torch.device
) -> dict[str, Any]:
    ks = [k for k in ks if 1 <= k <= family.num_layers]
    specs = [Spec("stock"), *(Spec("notebook", k) for k in ks), *(Spec("ours", k) for k in ks)]
    batch = {key: value.to(device) for key, value in make_inputs(batch_size, family.vocab_size).items()}
    generator = torch.Generator().manual_seed(SEED)
    labels = torch.randint(0, NUM_LABELS, (batch_size, SEQ_LEN), generator=generator)
    labels[:, 0] = labels[:, -1] = -100  # [CLS] and [SEP], as the data collator does
    batch["labels"] = labels.to(device)
    steps = {spec: step_fn(build(family, spec), batch, device) for spec in specs}
    for _ in range(warmup):  # the first steps allocate AdamW's state
        for step in steps.values():
            step()
    samples: dict[Spec, list[float]] = {spec: [] for spec in specs}
    rng = random.Random(SEED)
    order = list(specs)
    share = CpuShare()
    for number in range(1, rounds + 1):
        rng.shuffle(order)
        gc.collect()
        for spec in order:
            start = time.perf_counter()
            steps[spec]()
            samples[spec].append(time.perf_counter() - start)
        log(f"  [{family.name} training step] round {number}/{rounds}")
    cpu = share.stop()
    del steps
    gc.collect()
    medians = {spec: statistics.median(values) for spec, values in samples.items()}
    stock = medians[Spec("stock")]
    rows = []
    for spec in specs:
        notebook = medians.get(Spec("notebook", spec.k)) if spec.kind != "stock" else None
        rows.append(
            {
                "name": spec.name(),
                "kind": spec.kind,
                "k": spec.k,
                "median_ms": 1e3 * medians[spec],
                "tokens_per_s": batch_size * SEQ_LEN / medians[spec],
                "ratio_vs_stock": medians[spec] / stock,
                "ratio_vs_notebook_same_k": medians[spec] / notebook if notebook else None,
                "samples_ms": [1e3 * s for s in samples[spec]],
            }
        )
    return {
        "family": family.name,
        "title": family.title,
        "num_layers": family.num_layers,
        "batch": batch_size,
        "rounds": rounds,
        "warmup_steps": warmup,
        "cpu_during_timing": cpu,
        "rows": rows,
    }


def table_markdown(table: dict[str, Any]) -> str:
    lines = [
        f"#### {table['title']}: training step (forward + backward + AdamW), batch {table['batch']} x {SEQ_LEN}",
        "",
        f"Median of {table['rounds']} interleaved rounds after {table['warmup_steps']} warm-up steps.",
        "",
        *contention_lines(table.get("cpu_during_timing")),
        "| model | median ms | tokens/s | vs stock head | vs notebook recipe at the same k |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in table["rows"]:
        same_k = f"{row['ratio_vs_notebook_same_k']:.3f}" if row["ratio_vs_notebook_same_k"] else "—"
        lines.append(
            f"| {row['name']} | {row['median_ms']:.0f} | {row['tokens_per_s']:,.0f} | {row['ratio_vs_stock']:.3f} | "
            f"{same_k} |"
        )
    return "\n".join(lines)
