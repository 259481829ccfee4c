"""Peak memory of one forward pass, and checkpoint size on disk, per contender.

Peak: resident memory (``VmHWM``, reset after a warm-up pass) of a fresh child process per contender, above a bare
interpreter with torch (on a GPU ``torch.cuda.max_memory_allocated``); checkpoint: the files saving writes.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import Cell, child_main, default_device, log, md_table, ratio, run_child, sync, verdict
from benchmarks.models import Family, NotebookRecipe, Spec, build, from_job, make_inputs, to_device, to_job

MB = 2**20
# glibc returns every freed block over 64 KiB to the kernel at once, so that resident memory follows
# the live tensors instead of what the heap kept from the warm-up pass
RELEASE_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}
TARGET_CHECKPOINT_VS_FULL = 0.45  # ours at k = 3 of 12
TARGET_PEAK_VS_NOTEBOOK = 0.5


def status_kb(key: str) -> int | None:
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="utf-8") as handle:
        return next((int(line.split()[1]) for line in handle if line.startswith(key + ":")), None)
    return None


def reset_peak() -> bool:
    """Resets VmHWM to the current VmRSS (Linux >= 4.0)."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w", encoding="utf-8") as handle:
        return handle.write("5") > 0
    return False


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """In the child: build, a warm-up pass, reset the high-water mark, one forward pass, read the mark."""
    (family, (spec,)), device = from_job(job), default_device()
    inputs = make_inputs(job["batch"], family, device=device)
    gc.collect()
    bare = status_kb("VmRSS")
    model = to_device(build(family, spec), device)
    with torch.inference_mode():
        model(**inputs)
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        loaded = torch.cuda.memory_allocated(device)
        with torch.inference_mode():
            model(**inputs)
        sync(device)
        peak = torch.cuda.max_memory_allocated(device) / MB
        return {"method": "torch.cuda.max_memory_allocated", "peak_mb": peak, "activations_mb": peak - loaded / MB}
    gc.collect()
    loaded = status_kb("VmRSS")
    if bare is None or loaded is None or not reset_peak():
        return {"method": "unavailable (needs Linux /proc/self/status and clear_refs)"}
    with torch.inference_mode():
        model(**inputs)
    peak = status_kb("VmHWM")
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    method = "VmHWM of a fresh process (MALLOC_MMAP_THRESHOLD_=65536), reset after a warm-up pass"
    return {"method": method, "peak_mb": (peak - bare) / 1024, "activations_mb": (peak - loaded) / 1024} | {
        "loaded_mb": (loaded - bare) / 1024,
        "weights_mb": weights / MB,
    }


def measure_in_child(family: Family, spec: Spec, batch: int, threads: int) -> dict[str, Any]:
    return run_child("benchmarks.memory", to_job(family, [spec], batch=batch, threads=threads), RELEASE_FREED_MEMORY)


def checkpoint_mb(model: torch.nn.Module) -> float:
    """MiB of what saving this contender writes."""
    with tempfile.TemporaryDirectory(prefix="ckpt-") as tmp:
        folder = Path(tmp)
        if isinstance(model, NotebookRecipe):
            from safetensors.torch import save_file

            model.backbone.save_pretrained(folder)
            save_file(
                {k: v.contiguous() for k, v in model.classifier.state_dict().items()}, folder / "head.safetensors"
            )
        else:
            model.save_pretrained(folder)
        return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / MB


def run(family: Family, models: dict[Spec, torch.nn.Module], batch: int, threads: int) -> dict[str, Any]:
    """Peak forward memory (children) and checkpoint size (here) of every contender."""
    rows = []
    for spec, model in models.items():
        memory, size = measure_in_child(family, spec, batch, threads), checkpoint_mb(model)
        peak = memory.get("peak_mb", float("nan"))
        log(f"  [{family.name} memory] {spec.name(family)}: peak {peak:.0f} MiB, checkpoint {size:.0f} MiB")
        rows.append({**spec.describe(family), "checkpoint_mb": size, **memory})
    stock, notebook = (next(r for r in rows if r["kind"] == kind) for kind in ("stock", "notebook"))
    for row in rows:
        row["checkpoint_vs_stock"] = ratio(row["checkpoint_mb"], stock["checkpoint_mb"])
        if "peak_mb" in row:
            row["peak_vs_notebook"] = ratio(row["peak_mb"], notebook["peak_mb"])
            row["activations_vs_notebook"] = ratio(row["activations_mb"], notebook["activations_mb"])
    return {**family.describe(), "batch": batch, "rows": rows}


COLUMNS = (
    "model | weights MiB | peak MiB (weights + activations) | vs notebook | activations MiB | vs notebook "
    "| checkpoint MiB | vs stock head",
    "| {name} | {weights_mb:.0f} | {peak_mb:.0f} | {peak_vs_notebook:.3f} | {activations_mb:.0f} "
    "| {activations_vs_notebook:.3f} | {checkpoint_mb:.1f} | {checkpoint_vs_stock:.3f} |",
)


def table_markdown(table: dict[str, Any]) -> str:
    title = f"#### {table['title']}: peak memory of one forward pass (batch {table['batch']} x 128) and checkpoint size"
    return "\n".join([title, "", *md_table(*COLUMNS, table["rows"])])


def verdicts(tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Checkpoint and peak memory of ours at k = 3 of 12."""
    found = []
    for table in tables:
        shallow = next((r for r in table["rows"] if r["kind"] == "ours" and r["k"] == 3), None)
        if table["num_layers"] != 12 or shallow is None:
            continue
        value = shallow["checkpoint_vs_stock"]
        text = f"checkpoint, k = 3 of 12 / full model = {value:.3f} (target <= {TARGET_CHECKPOINT_VS_FULL})"
        found.append(verdict(value <= TARGET_CHECKPOINT_VS_FULL, f"{text} [{table['family']}]", value=value))
        if (value := shallow.get("peak_vs_notebook")) is not None:
            text = f"peak forward memory, k = 3 of 12 / notebook recipe = {value:.3f} (target <= "
            text += f"{TARGET_PEAK_VS_NOTEBOOK}; activations alone {Cell(shallow['activations_vs_notebook']):.3f}) "
            text += f"[{table['family']}, batch {table['batch']}]"
            found.append(verdict(value <= TARGET_PEAK_VS_NOTEBOOK, text, value=value))
    return found


# the README summary's lines: (title, key, format)
SUMMARY = (
    ("peak forward memory MiB, batch {batch}", "peak_mb", "{:.0f}"),
    ("… vs notebook recipe", "peak_vs_notebook", "{:.3f}"),
    ("checkpoint MiB", "checkpoint_mb", "{:.0f}"),
    ("… vs stock head", "checkpoint_vs_stock", "{:.3f}"),
)


if __name__ == "__main__":
    sys.exit(child_main(measure))
