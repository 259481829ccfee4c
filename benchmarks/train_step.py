"""Training step time (forward + backward + AdamW step) of ours at a few k, the stock head and the
notebook recipe reading the same k.

Train mode, random labels, one AdamW each, interleaved rounds; on a GPU under bfloat16 autocast.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import SEED, contention_lines, interleaved, md_table, sync
from benchmarks.models import NUM_LABELS, SEQ_LEN, Family, Spec, build, make_inputs


def step_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> Callable[[], None]:
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
    batch = make_inputs(batch_size, family, device=device)
    labels = torch.randint(0, NUM_LABELS, (batch_size, SEQ_LEN), generator=torch.Generator().manual_seed(SEED))
    labels[:, 0] = labels[:, -1] = -100  # [CLS] and [SEP], as the data collator does
    batch["labels"] = labels.to(device)
    steps = {spec: step_fn(build(family, spec), batch, device) for spec in specs}
    # the warm-up steps allocate AdamW's state
    timings, cpu = interleaved(steps, rounds, warmup=warmup, label=f"{family.name} training step", device=device)
    del steps
    gc.collect()
    rows = []
    for spec, timing in timings.items():
        notebook = timings.get(Spec("notebook", spec.k)) if spec.kind != "stock" else None
        rows.append(
            {
                **spec.describe(family),
                "median_ms": 1e3 * timing.median,
                "tokens_per_s": batch_size * SEQ_LEN / timing.median,
                "ratio_vs_stock": timing.median / timings[Spec("stock")].median,
                "ratio_vs_notebook_same_k": timing.median / notebook.median if notebook else None,
                "samples_ms": timing.spread("ms")["samples_ms"],
            }
        )
    job = {"batch": batch_size, "rounds": rounds, "warmup_steps": warmup, "cpu_during_timing": cpu}
    return {**family.describe(), **job, "rows": rows}


def table_markdown(table: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"#### {table['title']}: training step (forward + backward + AdamW), batch {table['batch']} x {SEQ_LEN}",
            "",
            f"Median of {table['rounds']} interleaved rounds after {table['warmup_steps']} warm-up steps.",
            "",
            *contention_lines(table.get("cpu_during_timing")),
            *md_table(
                "model | median ms | tokens/s | vs stock head | vs notebook recipe at the same k",
                "| {name} | {median_ms:.0f} | {tokens_per_s:,.0f} | {ratio_vs_stock:.3f} "
                "| {ratio_vs_notebook_same_k:.3f} |",
                table["rows"],
            ),
        ]
    )


# the README summary's lines: (title, key, format)
SUMMARY = (("training step ms, batch {batch}", "median_ms", "{:.0f}"),)
