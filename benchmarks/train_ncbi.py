"""The main job, measured: fine-tune on NCBI-disease at several layers and with the stock head.

    python -m benchmarks.train_ncbi [--quick] [--layers 2 4 6] [--output-dir benchmarks/results]

Every run uses the README's main-job options (parsed by the same CLI parser), the packaged MiniLM and
the same seed; transformers' `BertForTokenClassification` is trained with the same settings in the same
process. Writes `train_ncbi.md` and `train_ncbi.json`, with whether layer 6 is within 0.5 F1 of the stock head.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, RESULTS_DIR, machine_facts, machine_line, md_table, write_results

# The main job gives no --hidden-layer: the default, -1, is layer 6 of the packaged 6-layer MiniLM.
MAIN_JOB_LAYER = 6


def main_job_argv() -> list[str]:
    """The README's main-job `train` options, read from the README itself so the two cannot drift."""
    readme = (REPO / "README.md").read_text()
    line = next(line for line in readme.splitlines() if "hf-layer-tokclf train --train-file" in line)
    argv = shlex.split(line.split("hf-layer-tokclf train", 1)[1])
    output = argv.index("--output-dir")
    return argv[:output] + argv[output + 2 :]


def run(argv: list[str], model_class: type | None = None) -> dict[str, Any]:
    from hf_layer_tokclf.cli.train import train_parser
    from hf_layer_tokclf.training.train import train

    with tempfile.TemporaryDirectory() as tmp:
        parsed = train_parser().parse_args_into_dataclasses([*argv, "--output-dir", tmp, "--disable-tqdm", "true"])
        model_args, data_args, run_args, training_args = parsed
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            metrics = train(model_args, data_args, training_args, run_args, model_class=model_class)
        wall = round(time.perf_counter() - start, 1)
    return {"wall_s": wall, "eval_f1": metrics["eval_f1"], "test_f1": metrics["test_f1"]}


def readme_time(results: dict[str, Any]) -> str:
    """The README's sentence on how long the main job takes: its run in ``train_ncbi.json``, and where it ran."""
    run = next((r for r in results["runs"] if r["layer"] == MAIN_JOB_LAYER), None)
    if run is None:
        raise ValueError(
            f"train_ncbi.json has no hidden_layer={MAIN_JOB_LAYER} run: run python -m benchmarks.train_ncbi"
        )
    machine = results["machine"]
    cores, load = machine["os_cpu_count"], machine["load_average"][0]
    where = f"{cores} CPU cores ({machine['cpu_model']})" if machine["device"] == "cpu" else machine["device"]
    # The run itself keeps torch_num_threads cores busy: a load beyond that is other work.
    busy = load > machine.get("torch_num_threads", cores) + 0.5
    shared = f" while other work shared them (load average {load:.1f})" if busy else ""
    return (
        f"It takes about {max(1, round(run['wall_s'] / 60))} minutes: {run['wall_s']:.0f} s on {where}{shared}, "
        "as `python -m benchmarks.train_ncbi`, which runs this line's options, timed it "
        f"([`train_ncbi.md`](benchmarks/results/train_ncbi.md), the `hidden_layer={MAIN_JOB_LAYER}` row)."
    )


def readme_table(results: dict[str, Any]) -> str:
    """The README's table of every run in ``train_ncbi.json``, and the machine it ran on."""
    rows = [
        {**run, "name": f"ours, `hidden_layer={run['layer']}`" if run["layer"] else "`BertForTokenClassification`"}
        for run in results["runs"]
    ]
    for row in rows:
        if row["layer"] == MAIN_JOB_LAYER:
            row["name"] += " (the main job)"
    machine = results["machine"]
    lines = md_table(
        "model | dev F1 | test F1 | wall time (s)",
        "| {name} | {eval_f1:.2fp} | {test_f1:.2fp} | {wall_s:.0f} |",
        rows,
    )
    load = f", load average {machine['load_average'][0]:.1f} at the end" if machine.get("load_average") else ""
    return "\n".join(lines) + f"\n\nOn {machine['os_cpu_count']} CPU cores ({machine['cpu_model']}){load}."


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 training sentences, 1 epoch: a smoke run.")
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 4, 6])
    parser.add_argument("--output-dir", default=str(RESULTS_DIR))
    args = parser.parse_args()
    from transformers import BertForTokenClassification

    os.chdir(REPO)  # the main-job options name data/ relative to the repository
    base = main_job_argv() + (["--max-train-samples", "500", "--num-train-epochs", "1"] if args.quick else [])
    runs = [(f"BertForLayerTokenClassification, hidden_layer={layer}", layer) for layer in args.layers]
    rows = []
    for model, layer in [*runs, ("BertForTokenClassification (stock head)", None)]:
        print(f"training {model} ...", flush=True)
        argv, model_class = (
            ([*base, "--hidden-layer", str(layer)], None) if layer else (base, BertForTokenClassification)
        )
        rows.append({"model": model, "layer": layer, **run(argv, model_class)})
        print(rows[-1], flush=True)
    stock, last = rows[-1], next((r for r in rows if r["layer"] == MAIN_JOB_LAYER), None)
    verdict = None
    if last is not None:
        gap = 100 * (stock["test_f1"] - last["test_f1"])
        verdict = {"gap_test_f1_points": round(gap, 2), "within_0.5": abs(gap) <= 0.5 or gap < 0}
    command = "python -m benchmarks.train_ncbi " + shlex.join(sys.argv[1:])
    lines = [
        "# Fine-tuning on NCBI-disease (packaged MiniLM, 6 x 384)",
        "",
        f"Command: `{command.strip()}`. Options of every run (the README's main job): `{shlex.join(base)}`.",
        "",
        *md_table(
            "model | wall time (s) | dev F1 | test F1",
            "| {model} | {wall_s:.0f} | {eval_f1:.2fp} | {test_f1:.2fp} |",
            rows,
        ),
    ]
    if verdict:
        lines += [
            "",
            f"Layer 6 vs stock head: stock - ours = {verdict['gap_test_f1_points']:+.2f} test F1 points "
            f"({'PASS' if verdict['within_0.5'] else 'FAIL'}: target within 0.5).",
        ]
    facts = machine_facts()
    lines += ["", machine_line(facts)]
    data = {"command": command, "options": base, "runs": rows, "verdict": verdict, "machine": facts}
    write_results(Path(args.output_dir), "train_ncbi", "\n".join(lines) + "\n", data)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
