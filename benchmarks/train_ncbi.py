"""The main job, measured: fine-tune on NCBI-disease at several layers and with the stock head.

    python -m benchmarks.train_ncbi [--quick] [--layers 2 4 6] [--output-dir benchmarks/results]

Every run uses the README's main-job options (parsed by the same CLI parser), the packaged
MiniLM and the same seed; transformers' `BertForTokenClassification` is trained with exactly
those settings in the same process. Writes `train_ncbi.md` and `train_ncbi.json`: command,
wall time, dev and test F1 for each run, and whether layer 6 is within 0.5 F1 of the stock head.
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

from benchmarks.common import machine_facts, write_results

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data" / "ncbi-disease"


def main_job_argv() -> list[str]:
    """The README's main-job `train` options, read from the README itself so the two cannot drift."""
    readme = (REPO / "README.md").read_text()
    line = next(line for line in readme.splitlines() if "hf-layer-tokclf train --train-file" in line)
    argv = shlex.split(line.split("hf-layer-tokclf train", 1)[1])
    output = argv.index("--output-dir")
    return argv[:output] + argv[output + 2 :]


def run(argv: list[str], model_class=None) -> dict:
    from hf_layer_tokclf.cli import train_parser
    from hf_layer_tokclf.training import train

    with tempfile.TemporaryDirectory() as tmp:
        model_args, data_args, run_args, training_args = train_parser().parse_args_into_dataclasses(
            [*argv, "--output-dir", tmp, "--disable-tqdm", "true"]
        )
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            metrics = train(model_args, data_args, training_args, run_args, model_class=model_class)
        wall = time.perf_counter() - start
    return {"wall_s": round(wall, 1), "eval_f1": metrics["eval_f1"], "test_f1": metrics["test_f1"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 training sentences, 1 epoch: a smoke run.")
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 4, 6])
    parser.add_argument("--output-dir", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()

    from transformers import BertForTokenClassification

    os.chdir(REPO)  # the main-job options name data/ relative to the repository
    base = main_job_argv()
    if args.quick:
        base += ["--max-train-samples", "500", "--num-train-epochs", "1"]
    rows = []
    for layer in args.layers:
        print(f"training at hidden layer {layer} ...", flush=True)
        rows.append(
            {
                "model": f"BertForLayerTokenClassification, hidden_layer={layer}",
                "layer": layer,
                **run([*base, "--hidden-layer", str(layer)]),
            }
        )
        print(rows[-1], flush=True)
    print("training transformers' BertForTokenClassification ...", flush=True)
    rows.append(
        {"model": "BertForTokenClassification (stock head)", "layer": None, **run(base, BertForTokenClassification)}
    )
    print(rows[-1], flush=True)

    stock = rows[-1]
    last = next((r for r in rows if r["layer"] == 6), None)
    verdict = None
    if last is not None:
        gap = 100 * (stock["test_f1"] - last["test_f1"])
        verdict = {"gap_test_f1_points": round(gap, 2), "within_0.5": abs(gap) <= 0.5 or gap < 0}
    command = "python -m benchmarks.train_ncbi " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        "# Fine-tuning on NCBI-disease (packaged MiniLM, 6 x 384)",
        "",
        f"Command: `{command.strip()}`. Options of every run (the README's main job): `{shlex.join(base)}`.",
        "",
        "| model | wall time (s) | dev F1 | test F1 |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['model']} | {r['wall_s']:.0f} | {100 * r['eval_f1']:.2f} | {100 * r['test_f1']:.2f} |" for r in rows
    ]
    if verdict:
        lines += [
            "",
            f"Layer 6 vs stock head: stock - ours = {verdict['gap_test_f1_points']:+.2f} test F1 points "
            f"({'PASS' if verdict['within_0.5'] else 'FAIL'}: target within 0.5).",
        ]
    facts = machine_facts()
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items())]
    write_results(
        Path(args.output_dir),
        "train_ncbi",
        "\n".join(lines) + "\n",
        {"command": command, "options": base, "runs": rows, "verdict": verdict, "machine": facts},
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
