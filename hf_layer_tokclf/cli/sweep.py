"""``hf-layer-tokclf sweep``: which layer? One linear probe per layer, F1 against cost."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .options import add_decoding_option, add_device_options, task_files
from .parsing import CommandParser, add_model_argument, add_progress_option


def sweep_parser() -> argparse.ArgumentParser:
    from ..base.defaults import SWEEP_DEFAULTS

    d = SWEEP_DEFAULTS
    parser = CommandParser(
        prog="hf-layer-tokclf sweep",
        description="Which layer? Runs the frozen encoder once over the data with all hidden states, trains "
        "one linear probe per layer on the cached first-subword vectors (all at once), and scores each with "
        "seqeval entity F1 on the dev data. Writes sweep.md (table), sweep.json and sweep.png (F1 and "
        "relative compute cost per layer; needs the plot extra, or --no-plot) to --output-dir, recommends the "
        "shallowest layer within "
        "--tolerance F1 of the best, and prints the `train` command that uses it. Several corpora, one per task of "
        "a multi-task model (--train-file NAME=PATH --validation-file NAME=PATH for each): the encoder reads each "
        "corpus once, each task's probes learn from its own corpus, a layer is recommended per task (a table and a "
        "plot panel per task), and the printed `train` command trains the joint model with each task at its layer.",
    )
    add_model_argument(
        parser, "Checkpoint folder or Hub id of a supported family (default: the packaged MiniLM).", required=False
    )
    _add_data_options(parser)
    parser.add_argument("--output-dir", required=True, help="Where sweep.md, sweep.json and sweep.png go.")
    parser.add_argument(
        "--layers", type=int, nargs="+", default=None, help="hidden_states indices to probe (default: all, 0..L)."
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=d["tolerance"],
        help="Recommend the shallowest layer within this many F1 points of the best (default: %(default)s).",
    )
    _add_probe_options(parser, d)
    _add_cache_options(parser, d)
    _add_finetune_options(parser, d)
    parser.add_argument(
        "--save-probe", action="store_true", help="Save the recommended layer's probe as a model in OUTPUT_DIR."
    )
    parser.add_argument(
        "--overwrite-output-dir",
        action="store_true",
        help="Replace an earlier sweep's files in a non-empty --output-dir; other files are kept.",
    )
    parser.add_argument("--seed", type=int, default=d["seed"], help="Order of the probe's training words.")
    parser.add_argument(
        "--no-plot",
        action="store_true",
        help='Write no sweep.png (it needs matplotlib: pip install "hf-layer-tokclf[plot]"); the table and JSON '
        "hold every figure.",
    )
    parser.add_argument(
        "--allow-rare-labels",
        action="store_true",
        help="Read the training labels as they are where they look like typos (as train's option).",
    )
    add_progress_option(parser, "No progress bars.")
    add_decoding_option(parser)  # of the probes' dev predictions
    add_device_options(parser)  # the encoder pass; the probes train on the CPU
    return parser


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    """--train-file and --validation-file: one corpus, or NAME=PATH once per task."""
    parser.add_argument(
        "--train-file",
        required=True,
        action="append",
        help="Training data: CoNLL, JSON lines or save_to_disk; NAME=PATH once per task for several tasks.",
    )
    parser.add_argument(
        "--validation-file",
        required=True,
        action="append",
        help="Dev data the probes are scored on; NAME=PATH for each task of a multi-task sweep.",
    )


def _add_probe_options(parser: argparse.ArgumentParser, d: dict) -> None:
    """How the probes train, how the encoder pass cuts and batches the data, and how much of it is used."""
    parser.add_argument(
        "--epochs", type=int, default=d["epochs"], help="Probe epochs (default: >= 3 epochs and 600 steps)."
    )
    parser.add_argument(
        "--learning-rate", type=float, default=d["learning_rate"], help="Probe learning rate (default: %(default)s)."
    )
    parser.add_argument(
        "--batch-size", type=int, default=d["batch_size"], help="Windows per encoder pass (default: %(default)s)."
    )
    parser.add_argument(
        "--probe-batch-size",
        type=int,
        default=d["probe_batch_size"],
        help="Words per probe step (default: %(default)s).",
    )
    parser.add_argument("--max-length", type=int, default=None, help="Window length in subwords (default: model max).")
    parser.add_argument("--stride", type=int, default=None, help="Overlap between windows, in subwords.")
    parser.add_argument("--max-train-samples", type=int, default=None, help="Use only the first N training sentences.")
    parser.add_argument("--max-eval-samples", type=int, default=None, help="Use only the first N dev sentences.")


def _add_cache_options(parser: argparse.ArgumentParser, d: dict) -> None:
    """Where the cached features live while the probes train, and in which precision."""
    parser.add_argument(
        "--cache",
        choices=["memory", "disk"],
        default=None,
        help="Where the features live while the probes train (default: memory; disk with --cache-dir).",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="Folder for the disk cache (a temporary folder in it, deleted at the end)."
    )
    parser.add_argument(
        "--cache-dtype",
        choices=["float16", "float32"],
        default=d["cache_dtype"],
        help="Precision of the cached training features (default: %(default)s).",
    )


def _add_finetune_options(parser: argparse.ArgumentParser, d: dict) -> None:
    """--finetune-top: full fine-tuning runs at the best-value layers, beside the probes."""
    parser.add_argument(
        "--finetune-top",
        type=int,
        default=0,
        help="Also fine-tune the encoder at the N best-value layers (the recommended one, then by probe F1) "
        "with `train`'s defaults and add their dev F1 to the table and plot. With several tasks (any N >= 1): one "
        "joint model, each task at its recommended layer, in OUTPUT_DIR/finetune-joint.",
    )
    parser.add_argument(
        "--finetune-epochs", type=float, default=d["finetune_epochs"], help="Epochs of each fine-tuning run."
    )
    parser.add_argument(
        "--finetune-learning-rate",
        type=float,
        default=d["finetune_learning_rate"],
        help="Learning rate of each fine-tuning run (default: %(default)s).",
    )


def sweep_command(argv: Sequence[str]) -> int:
    args = sweep_parser().parse_args(list(argv))
    tasks = _task_data(args)  # a ValueError naming the option: `main` says it, before anything is read
    from ..training.sweep import run_sweep, run_task_sweep

    common = dict(
        model=args.model,
        layers=args.layers,
        max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
        finetune_top=args.finetune_top,
        overwrite_output_dir=args.overwrite_output_dir,
        plot=not args.no_plot,
        allow_rare_labels=args.allow_rare_labels,
        progress=not args.no_progress,
        tolerance=args.tolerance,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        probe_batch_size=args.probe_batch_size,
        max_length=args.max_length,
        stride=args.stride,
        cache=args.cache or ("disk" if args.cache_dir else "memory"),
        cache_dir=args.cache_dir,
        cache_dtype=args.cache_dtype,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        decoding=args.decoding,
    )
    common.update(finetune_epochs=args.finetune_epochs, finetune_learning_rate=args.finetune_learning_rate)
    if tasks is not None:
        _print_tasks(run_task_sweep(*tasks, args.output_dir, **common), args)
        return 0
    files = (args.train_file[0], args.validation_file[0])
    result = run_sweep(*files, args.output_dir, save_probe=args.save_probe, **common)
    print(result.table())
    k = result.recommended_layer
    print(
        f"\nrecommended: layer {k} (dev F1 {100 * result.f1[k]:.2f}, relative cost {result.relative_cost[k]:.2f}); "
        f"best: layer {result.best_layer} (dev F1 {100 * result.f1[result.best_layer]:.2f})"
    )
    _print_written(args.output_dir)
    print(f"\nfine-tune at layer {k}:\n  {result.train_command}")
    return 0


def _task_data(args: argparse.Namespace) -> tuple[dict[str, str], dict[str, str]] | None:
    """Each task's training and validation file (`options.task_files`), or `None` for a single corpus."""
    train = task_files(args.train_file, "--train-file")
    validation = task_files(args.validation_file, "--validation-file")
    if train is None:
        if validation is not None or len(args.validation_file) > 1:
            raise ValueError("one bare --train-file takes one bare --validation-file; name tasks as NAME=PATH in both")
        return None
    if validation is None:
        raise ValueError(
            f"--validation-file {args.validation_file[0]!r}: name its task, as the training files are named "
            f"({', '.join(f'--validation-file {task}=PATH' for task in train)})"
        )
    if args.save_probe:
        raise ValueError("--save-probe saves one corpus's probe; it is not available with several tasks")
    return train, validation


def _print_written(output_dir: str) -> None:
    written = [name for name in ("sweep.md", "sweep.json", "sweep.png") if Path(output_dir, name).is_file()]
    print(f"written to {output_dir}: {', '.join(written)}")  # no plot claimed when it was skipped


def _print_tasks(result: Any, args: argparse.Namespace) -> None:
    """A multi-task sweep's report: each task's table and layer, the files, and the joint model's train command."""
    print(result.table())
    print()
    for task, task_result in result.results.items():
        k = task_result.recommended_layer
        print(
            f"task {task}: recommended layer {k} (dev F1 {100 * task_result.f1[k]:.2f}, relative cost "
            f"{task_result.relative_cost[k]:.2f}); best: layer {task_result.best_layer} "
            f"(dev F1 {100 * task_result.f1[task_result.best_layer]:.2f})"
        )
    _print_written(args.output_dir)
    if result.finetune:
        where = result.finetune["output_dir"]
        print(f"\nfine-tuned the joint model, each task at its recommended layer, into {where}:")
        scores = [(task, r.finetune[r.recommended_layer]["f1"]) for task, r in result.results.items()]
        print("  " + ", ".join(f"{task} dev F1 {100 * f1:.2f}" for task, f1 in scores))
        print(f"as\n  {result.finetune['command']}")
    else:
        print(f"\ntrain the joint model, each task at its recommended layer:\n  {result.train_command}")
