"""Fine-tuning after a sweep: `finetune_layers` trains the best-value layers with `train.train`;
`finetune_joint` trains one multi-task model, each task at its recommended layer; `train_command` is the command
line that trains at a layer, `joint_train_command` the one that trains a multi-task model with each task at its
layer."""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .report import write_sweep
from .result import SweepResult, TaskSweepResult, finetune_candidates
from .settings import SWEEP_DEFAULTS

# The folder of a multi-task sweep's joint fine-tuning run, in its output directory.
JOINT_FOLDER = "finetune-joint"


def train_command(
    model: str, train_file: str, validation_file: str, layer: int, output_dir: str | None = None, *extra: str
) -> str:
    """The `hf-layer-tokclf train` command line that fine-tunes at ``layer``."""
    from ..arguments import default_backbone

    argv = ["hf-layer-tokclf", "train"]
    if model != default_backbone():
        argv += ["--model", model]
    argv += ["--hidden-layer", str(layer), "--train-file", train_file, "--validation-file", validation_file]
    return shlex.join([*argv, "--output-dir", output_dir or f"runs/layer-{layer}", *extra])


def joint_train_command(
    model: str,
    train_files: Mapping[str, str],
    validation_files: Mapping[str, str],
    layers: Mapping[str, int],
    output_dir: str | None = None,
    *extra: str,
) -> str:
    """The `hf-layer-tokclf train` command line of one joint model, each task (``NAME=PATH``) at its layer."""
    from ..arguments import default_backbone

    argv = ["hf-layer-tokclf", "train"]
    if model != default_backbone():
        argv += ["--model", model]
    for task, layer in layers.items():
        argv += ["--train-file", f"{task}={train_files[task]}", "--validation-file", f"{task}={validation_files[task]}"]
        argv += ["--hidden-layer", f"{task}={layer}"]
    return shlex.join([*argv, "--output-dir", output_dir or "runs/joint", *extra])


def finetune_layers(
    result: SweepResult,
    model: str,
    data_args: Any,
    output_dir: Path,
    top: int,
    epochs: float,
    learning_rate: float,
    progress: bool,
    plot: bool = True,
) -> None:
    """Fine-tunes the encoder at the ``top`` `finetune_candidates` into ``output_dir/finetune-layer-K``; their
    dev F1 joins the result and the files (the plot too, with ``plot``), which are written again after every run."""
    from transformers import TrainingArguments

    from ..arguments import ModelArguments, RunArguments
    from ..train import train
    from ..trainer import TRAINING_DEFAULTS

    seed = result.settings.get("seed", SWEEP_DEFAULTS["seed"])
    for layer in finetune_candidates(result, top):
        run_dir = output_dir / f"finetune-layer-{layer}"
        settings = {**TRAINING_DEFAULTS, "num_train_epochs": epochs, "learning_rate": learning_rate, "seed": seed}
        training_args = TrainingArguments(output_dir=str(run_dir), disable_tqdm=not progress, **settings)
        started = time.perf_counter()
        metrics = train(
            ModelArguments(model=model, hidden_layer=[layer]),
            data_args,
            training_args,
            # The folder is new, or what an earlier sweep wrote there is gone (run_sweep clears it): keep the rest.
            RunArguments(overwrite_output_dir=True),
            command=_finetune_command(model, data_args, layer, run_dir, epochs, learning_rate, seed),
        )
        result.finetune[layer] = {"f1": metrics["eval_f1"], "output_dir": str(run_dir)}
        result.timings[f"finetune_layer_{layer}_s"] = round(time.perf_counter() - started, 2)
        write_sweep(result, output_dir, overwrite=True, plot=plot)  # after every run: partial results survive


def _finetune_command(
    model: str, data_args: Any, layer: int, run_dir: Path, epochs: float, learning_rate: float, seed: int
) -> str:
    """The `train_command` of one fine-tuning run, with the settings it ran with (for its metrics and card)."""
    options = _run_options(data_args, epochs, learning_rate, seed)
    return train_command(
        model, str(data_args.train_file), str(data_args.validation_file), layer, str(run_dir), *options
    )


def _run_options(data_args: Any, epochs: float, learning_rate: float, seed: int) -> tuple[str, ...]:
    """The `train` options a fine-tuning run of the sweep runs with: epochs, learning rate, seed, sample limits."""
    return (
        *("--num-train-epochs", f"{epochs:g}", "--learning-rate", f"{learning_rate:g}", "--seed", str(seed)),
        *(("--max-train-samples", str(data_args.max_train_samples)) if data_args.max_train_samples else ()),
        *(("--max-eval-samples", str(data_args.max_eval_samples)) if data_args.max_eval_samples else ()),
    )


def finetune_joint(
    result: TaskSweepResult,
    model: str,
    data_args: Any,
    output_dir: Path,
    epochs: float,
    learning_rate: float,
    progress: bool,
    plot: bool = True,
) -> None:
    """Fine-tunes one multi-task model, each task at its recommended layer, with `train.train` into
    ``output_dir/finetune-joint``; each task's dev F1 joins its table and plot panel at that layer, and
    ``result.finetune`` records the run. ``data_args`` holds each task's files (``train_file`` a dict)."""
    from transformers import TrainingArguments

    from ..arguments import ModelArguments, RunArguments
    from ..train import train
    from ..trainer import TRAINING_DEFAULTS

    layers = result.recommended_layers
    seed = next(iter(result.results.values())).settings.get("seed", SWEEP_DEFAULTS["seed"])
    run_dir = output_dir / JOINT_FOLDER
    settings = {**TRAINING_DEFAULTS, "num_train_epochs": epochs, "learning_rate": learning_rate, "seed": seed}
    options = _run_options(data_args, epochs, learning_rate, seed)
    files = (data_args.train_file, data_args.validation_file)
    command = joint_train_command(model, *files, layers, str(run_dir), *options)
    started = time.perf_counter()
    metrics = train(
        ModelArguments(model=model, hidden_layer=dict(layers)),
        data_args,
        TrainingArguments(output_dir=str(run_dir), disable_tqdm=not progress, **settings),
        RunArguments(overwrite_output_dir=True),  # the folder is new, or run_task_sweep cleared it
        command=command,
    )
    for task, layer in layers.items():
        result.results[task].finetune[layer] = {"f1": metrics[f"eval_{task}_f1"], "output_dir": str(run_dir)}
    seconds = round(time.perf_counter() - started, 2)
    result.finetune = {"output_dir": str(run_dir), "layers": layers, "command": command, "seconds": seconds}
    write_sweep(result, output_dir, overwrite=True, plot=plot)
