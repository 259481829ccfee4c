"""The layer sweep's promise, measured: probing all 7 layers costs about as much as probing one.

    python -m benchmarks.sweep [--quick] [--rounds N] [--threads N] [--output-dir benchmarks/results]

On NCBI-disease (train -> dev) with the packaged MiniLM (6 layers x 384), in this one process:

* **all layers**: `sweep(layers=0..6)`, one encoder pass with all hidden states, 7 probes;
* **one layer**: `sweep(layers=[6])`, which still runs the encoder up to layer 6, 1 probe.

Each is timed end to end (tokenizing, extraction, probe training, dev scoring) after a warm-up
sweep, in alternating order over ``--rounds`` rounds; the ratio of the medians is checked against
the issue's target (all <= 1.5 x one). Writes ``sweep.md`` / ``sweep.json`` (timings, the F1 of
every layer, machine facts) and ``sweep.png`` (the plot `write_sweep` makes) to the output
directory. Timings are reported, not asserted: the verdict line prints PASS or FAIL.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import machine_facts, write_results

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data" / "ncbi-disease"
TARGET = 1.5


def timed(function, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1000 training and 300 dev sentences.")
    parser.add_argument("--rounds", type=int, default=1, help="Timed rounds, alternating the order (default: 1).")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice).")
    parser.add_argument("--output-dir", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()

    from hf_layer_tokclf.sweep import SWEEP_DEFAULTS, sweep, write_sweep
    from hf_layer_tokclf.training import DataArguments, default_backbone, read_splits

    rounds = args.rounds
    if args.threads:
        torch.set_num_threads(args.threads)
    limits = {"max_train_samples": 1000, "max_eval_samples": 300} if args.quick else {}
    splits = read_splits(
        DataArguments(train_file=str(DATA / "train.tsv"), validation_file=str(DATA / "devel.tsv"), **limits)
    )
    train, dev = splits["train"], splits["validation"]
    model = default_backbone()
    all_layers, one_layer = list(range(7)), [6]
    load_start = os.getloadavg()
    started = time.perf_counter()

    print("warm-up sweep (50 sentences) ...", flush=True)
    sweep(model, train[:50], dev[:20], layers=[6], progress=False)

    times: dict[str, list[tuple[float, float]]] = {"all": [], "one": []}
    phases: dict[str, list[dict[str, float]]] = {"all": [], "one": []}
    results = {}
    for round_number in range(rounds):
        order = [("all", all_layers), ("one", one_layer)]
        if round_number % 2:
            order.reverse()
        for name, layers in order:
            print(f"round {round_number + 1}/{rounds}: sweeping layers {layers} ...", flush=True)
            result, wall, cpu = timed(sweep, model, train, dev, layers=layers, progress=False)
            times[name].append((wall, cpu))
            phases[name].append(result.timings)
            results.setdefault(name, result)
            print(f"  {wall:.1f} s wall, {cpu:.1f} s CPU; {result.timings}", flush=True)
    load_end = os.getloadavg()
    total = time.perf_counter() - started

    wall = {name: statistics.median(w for w, _ in runs) for name, runs in times.items()}
    cpu = {name: statistics.median(c for _, c in runs) for name, runs in times.items()}
    ratio, cpu_ratio = wall["all"] / wall["one"], cpu["all"] / cpu["one"]
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    full, single = results["all"], results["one"]

    output_dir = Path(args.output_dir)
    with tempfile.TemporaryDirectory() as tmp:
        full.train_command = f"hf-layer-tokclf train --hidden-layer {full.recommended_layer} ..."
        paths = write_sweep(full, tmp, overwrite=True)
        output_dir.mkdir(parents=True, exist_ok=True)
        if "plot" in paths:
            shutil.copyfile(paths["plot"], output_dir / "sweep.png")

    command = "python -m benchmarks.sweep " + shlex.join(sys.argv[1:])
    facts = machine_facts()
    data_note = (
        f"{len(train)} training sentences ({full.settings['train_words']} words), "
        f"{len(dev)} dev sentences ({full.settings['dev_words']} words)"
    )
    lines = [
        "# Layer sweep: all layers vs one layer (packaged MiniLM, 6 x 384, NCBI-disease)",
        "",
        f"- command: `{command.strip()}`; total wall time {total:.0f} s",
        f"- data: {data_note}" + (" (--quick subset)" if args.quick else " (all of train and devel)"),
        f"- probes: {full.settings['epochs']} epochs (automatic), learning rate {SWEEP_DEFAULTS['learning_rate']}, "
        f"{SWEEP_DEFAULTS['probe_batch_size']} words per step, float16 feature cache in memory",
        f"- timing: a warm-up sweep, then {rounds} round(s) in alternating order; medians over rounds of the "
        "whole `sweep()` call (tokenizing, encoder pass, probe training, dev scoring; wall and process CPU "
        "time) and of its encoder pass (train + dev feature extraction) and probe training; "
        f"{torch.get_num_threads()} torch thread(s)",
        f"- load average (1, 5, 15 min) at start {[round(x, 2) for x in load_start]}, "
        f"at end {[round(x, 2) for x in load_end]} (2 cores, shared)",
        "",
        "| sweep | layers | wall s | CPU s | encoder pass s | probe training s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, key, result in (("all layers", "all", full), ("one layer", "one", single)):
        extract = statistics.median(t["extract_s"] for t in phases[key])
        probes = statistics.median(t["probe_train_s"] for t in phases[key])
        lines.append(
            f"| {name} | {', '.join(map(str, result.layers))} | {wall[key]:.1f} | {cpu[key]:.1f} | "
            f"{extract:.1f} | {probes:.1f} |"
        )
    lines += [
        "",
        f"**all / one = {ratio:.2f} (wall), {cpu_ratio:.2f} (CPU): {verdict}** (target <= {TARGET}).",
        "",
        "Dev F1 of the probe at every layer (the all-layers sweep):",
        "",
        full.table(),
        "",
        f"The one-layer sweep's probe at layer 6: dev F1 {100 * single.f1[6]:.2f} "
        f"(all-layers sweep: {100 * full.f1[6]:.2f}; the probes train independently).",
        "",
        "Plot: `sweep.png`.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()),
    ]
    markdown = "\n".join(lines) + "\n"
    data = {
        "command": command.strip(),
        "data": {"train_sentences": len(train), "dev_sentences": len(dev), "quick": args.quick},
        "rounds": rounds,
        "times": {
            name: [{"wall_s": round(w, 2), "cpu_s": round(c, 2)} for w, c in runs] for name, runs in times.items()
        },
        "phases": phases,
        "median_wall_s": {k: round(v, 2) for k, v in wall.items()},
        "median_cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "ratio_wall": round(ratio, 3),
        "ratio_cpu": round(cpu_ratio, 3),
        "target": TARGET,
        "verdict": verdict,
        "sweep": full.to_json(),
        "one_layer_f1": single.f1[6],
        "load_average_start": list(load_start),
        "load_average_end": list(load_end),
        "total_wall_s": round(total, 1),
        "machine": facts,
    }
    write_results(output_dir, "sweep", markdown, data)
    print(markdown)


if __name__ == "__main__":
    main()
