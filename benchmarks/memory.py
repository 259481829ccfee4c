"""Peak memory of one forward pass, and checkpoint size on disk, per contender.

Peak memory is measured in a fresh child process per contender, so that no other model, cache
or earlier peak is counted: the child imports torch, builds the model, runs one warm-up pass
(one-time costs), then resets the kernel's high-water mark of its resident memory
(``/proc/self/clear_refs``), runs one forward pass under ``torch.inference_mode()`` and reads the
mark back (``VmHWM``). glibc is told to hand every freed block over 64 KiB back to the kernel
(``MALLOC_MMAP_THRESHOLD_``), so that resident memory follows the live tensors. It reports

* ``peak_mb``: the resident memory the pass needed above a bare interpreter with torch imported
  (weights + activations: what a serving process pays);
* ``activations_mb``: the part above the loaded, warmed-up model (what the pass itself allocates).

On a GPU the child reads ``torch.cuda.max_memory_allocated`` instead.

Checkpoint size: the files ``save_pretrained`` writes (the notebook recipe: its `AutoModel`'s
``save_pretrained`` plus the linear layer in ``head.safetensors``), summed.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import default_device, log, ratio_cell, sync
from benchmarks.models import Family, NotebookRecipe, Spec, build, make_inputs, to_device

MB = 2**20


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as handle:
            handle.write("5")  # resets VmHWM to the current VmRSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def measure_here(family: Family, spec: Spec, batch: int) -> dict[str, Any]:
    """Run in the child: build, one warm-up pass, reset the high-water mark, one forward pass, read
    the mark. The warm-up pays the one-time costs (kernel libraries' buffers, lazy imports) that
    would otherwise be charged to the model's activations."""
    device = default_device()
    inputs = {key: value.to(device) for key, value in make_inputs(batch, family.vocab_size).items()}
    gc.collect()
    if device.type == "cuda":
        model = to_device(build(family, spec), device)
        with torch.inference_mode():
            model(**inputs)
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        loaded = torch.cuda.memory_allocated(device)
        with torch.inference_mode():
            model(**inputs)
        sync(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {
            "method": "torch.cuda.max_memory_allocated",
            "peak_mb": peak / MB,
            "activations_mb": (peak - loaded) / MB,
        }
    bare = _status_kb("VmRSS")
    model = build(family, spec)
    with torch.inference_mode():
        model(**inputs)
    gc.collect()
    loaded = _status_kb("VmRSS")
    if bare is None or loaded is None or not _reset_peak():
        return {"method": "unavailable (needs Linux /proc/self/status and clear_refs)"}
    with torch.inference_mode():
        model(**inputs)
    peak = _status_kb("VmHWM")
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    return {
        "method": "VmHWM of a fresh process (MALLOC_MMAP_THRESHOLD_=65536), reset after a warm-up pass",
        "peak_mb": (peak - bare) / 1024,
        "activations_mb": (peak - loaded) / 1024,
        "loaded_mb": (loaded - bare) / 1024,
        "weights_mb": weights / MB,
    }


def measure_in_child(family: Family, spec: Spec, batch: int, threads: int) -> dict[str, Any]:
    """Runs `measure_here` in a fresh interpreter and returns what it printed."""
    job = {"family": family.__dict__, "spec": spec.__dict__, "batch": batch, "threads": threads}
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
    # glibc then returns every freed block over 64 KiB to the kernel at once, so that resident
    # memory follows the live tensors instead of what the heap kept from the warm-up pass.
    env["MALLOC_MMAP_THRESHOLD_"] = str(64 * 1024)
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory child for {spec.name()} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


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


def _ratio(value: float, baseline: float) -> float | None:
    """None where the baseline is not above zero: a tiny model's activations can fit in pages the
    process already had, so its resident-memory growth reads 0 and no ratio exists."""
    return value / baseline if baseline > 0 else None


def run(family: Family, models: dict[Spec, torch.nn.Module], batch: int, threads: int) -> dict[str, Any]:
    """Peak forward memory (children) and checkpoint size (here) of every contender."""
    rows = []
    for spec, model in models.items():
        memory = measure_in_child(family, spec, batch, threads)
        size = checkpoint_mb(model)
        log(
            f"  [{family.name} memory] {spec.name()}: peak {memory.get('peak_mb', float('nan')):.0f} MiB, "
            f"checkpoint {size:.0f} MiB"
        )
        rows.append({"name": spec.name(), "kind": spec.kind, "k": spec.k, "checkpoint_mb": size, **memory})
    by_kind = {row["kind"]: row for row in rows if row["kind"] != "ours"}
    for row in rows:
        row["checkpoint_vs_stock"] = _ratio(row["checkpoint_mb"], by_kind["stock"]["checkpoint_mb"])
        if "peak_mb" in row:
            row["peak_vs_notebook"] = _ratio(row["peak_mb"], by_kind["notebook"]["peak_mb"])
            row["activations_vs_notebook"] = _ratio(row["activations_mb"], by_kind["notebook"]["activations_mb"])
    return {"family": family.name, "title": family.title, "num_layers": family.num_layers, "batch": batch, "rows": rows}


def table_markdown(table: dict[str, Any]) -> str:
    lines = [
        f"#### {table['title']}: peak memory of one forward pass (batch {table['batch']} x 128) and checkpoint size",
        "",
        "| model | weights MiB | peak MiB (weights + activations) | vs notebook | activations MiB | vs notebook "
        "| checkpoint MiB | vs stock head |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table["rows"]:
        if "peak_mb" in row:
            memory = (
                f"{row.get('weights_mb', float('nan')):.0f} | {row['peak_mb']:.0f} | "
                f"{ratio_cell(row['peak_vs_notebook'])} | {row['activations_mb']:.0f} | "
                f"{ratio_cell(row['activations_vs_notebook'])}"
            )
        else:
            memory = "— | — | — | — | —"
        lines.append(
            f"| {row['name']} | {memory} | {row['checkpoint_mb']:.1f} | {ratio_cell(row['checkpoint_vs_stock'])} |"
        )
    return "\n".join(lines)


def _child(argv: list[str]) -> int:
    job = json.loads(argv[0])
    torch.set_num_threads(job["threads"])
    result = measure_here(Family(**job["family"]), Spec(**job["spec"]), job["batch"])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
