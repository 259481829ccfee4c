"""A sweep of several corpora, one per task of a multi-task model: `sweep_tasks`, sentences in and a
`TaskSweepResult` out, and `run_task_sweep`, files to files, which ``sweep --train-file NAME=PATH ...`` calls.

The encoder is loaded once, up to the deepest layer swept; each corpus then goes through it once (its training and
dev sentences, every swept layer's vectors kept from that one pass, `run.probe_corpus`), and its task's probes, one
per layer, learn from that corpus alone: a task's layer is recommended from its own labels, as the multi-task model
trains each head on its own corpus.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...base.extras import require
from ...base.locations import check_model_location
from ...base.outputs import claim_output_dir
from ...formats.sentence import Sentence
from .finetune import finetune_joint, joint_train_command
from .report import write_sweep
from .result import TaskSweepResult, resolve_layers
from .run import SWEEP_OUTPUTS, check_run, data_arguments, label_data, load_encoder, probe_corpus, sweep_settings
from .settings import SWEEP_DEFAULTS


def sweep_tasks(
    model_name_or_path: str,
    corpora: Mapping[str, tuple[Sequence[Sentence], Sequence[Sentence]]],
    *,
    layers: Sequence[int] | None = None,
    **kwargs: Any,
) -> TaskSweepResult:
    """Probes every layer for every task: task name -> (training sentences, dev sentences) of its corpus.

    Every corpus's labels are checked before the encoder loads (`DataError` naming the task); the encoder then
    runs once over each corpus, and each task's probes train and score on its corpus alone. ``layers`` and the
    keyword arguments are `run.sweep`'s, the same for every task.
    """
    if not corpora:
        raise ValueError("no tasks to sweep: give each task's training and dev sentences")
    settings = sweep_settings(**kwargs)
    labeled = {}
    for task, (train_sentences, dev_sentences) in corpora.items():
        try:
            labeled[task] = label_data(train_sentences, dev_sentences)
        except ValueError as error:  # DataError too: which task's corpus it is
            raise type(error)(f"task {task!r}: {error}") from error
    encoder = load_encoder(str(model_name_or_path), layers, settings)
    results = {}
    for task, (train_sentences, dev_sentences, labels) in labeled.items():
        started = time.perf_counter()
        results[task] = probe_corpus(encoder, train_sentences, dev_sentences, labels, settings, started)
    return TaskSweepResult(results)


def run_task_sweep(
    train_files: Mapping[str, str],
    validation_files: Mapping[str, str],
    output_dir: str | Path,
    *,
    model: str | None = None,
    layers: Sequence[int] | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    finetune_top: int = 0,
    finetune_epochs: float = SWEEP_DEFAULTS["finetune_epochs"],
    finetune_learning_rate: float = SWEEP_DEFAULTS["finetune_learning_rate"],
    overwrite_output_dir: bool = False,
    plot: bool = True,
    allow_rare_labels: bool = False,
    progress: bool = True,
    **sweep_kwargs: Any,
) -> TaskSweepResult:
    """Reads each task's data, sweeps them all (`sweep_tasks`), writes table, JSON and plot with a part per task.

    As `run.run_sweep` (bad data and settings fail before anything is written; ``output_dir`` as there), with
    task name -> file for the data: every task needs a validation file. The result's ``train_command`` trains the
    joint model with each task at its recommended layer; with ``finetune_top`` (any N >= 1: one model holds every
    task) the sweep fine-tunes that model (`finetune.finetune_joint`, ``finetune_epochs``, ``finetune_learning_rate``)
    into ``output_dir/finetune-joint``, and each task's dev F1 joins its table and plot panel.
    """
    from ...model.auto import AutoLayerConfig
    from ..arguments import default_backbone

    model = model or default_backbone()
    if plot:
        require("plot", "the sweep's plot (sweep.png; --no-plot skips it)")
    check_model_location(model)
    _check_tasks(train_files, validation_files)
    for task in train_files:
        check_run(validation_files[task], finetune_top, max_train_samples, max_eval_samples, sweep_kwargs)
    data_args = data_arguments(
        dict(train_files), dict(validation_files), max_train_samples, max_eval_samples, sweep_kwargs, allow_rare_labels
    )
    corpora = {task: _read_task(data_args, task) for task in train_files}  # bad data fails before anything is written
    layers = resolve_layers(layers, AutoLayerConfig.from_pretrained(model).num_hidden_layers)
    with claim_output_dir(output_dir, SWEEP_OUTPUTS, overwrite=overwrite_output_dir) as claim:
        result = sweep_tasks(model, corpora, layers=layers, progress=progress, **sweep_kwargs)
        allow = ("--allow-rare-labels",) if allow_rare_labels else ()
        result.train_command = joint_train_command(
            model, train_files, validation_files, result.recommended_layers, None, *allow
        )
        for task, task_result in result.results.items():
            task_result.settings.update(
                model=model, task=task, train_file=train_files[task], validation_file=validation_files[task]
            )
        write_sweep(result, claim.path, overwrite=True, plot=plot)
        if finetune_top:
            tuning = (finetune_epochs, finetune_learning_rate, progress, plot)
            finetune_joint(result, model, data_args, claim.path, *tuning)
        claim.finish()
    return result


def _read_task(data_args: Any, task: str) -> tuple[list[Sentence], list[Sentence]]:
    """One task's training and dev sentences, read as `train` reads them (`splits.read_splits`)."""
    from ..splits import read_splits

    one = replace(data_args, train_file=data_args.train_file[task], validation_file=data_args.validation_file[task])
    splits, _ = read_splits(one)
    return splits["train"], splits["validation"]


def _check_tasks(train_files: Mapping[str, str], validation_files: Mapping[str, str]) -> None:
    """Every task has a validation file, and every validation file a task."""
    if not train_files:
        raise ValueError("no tasks: give --train-file NAME=PATH for each task")
    missing = [task for task in train_files if task not in validation_files]
    if missing:
        raise ValueError(
            f"--validation-file is required for every task, the probes are scored on it: none for {missing} "
            f"(give --validation-file {missing[0]}=PATH)"
        )
    unknown = [task for task in validation_files if task not in train_files]
    if unknown:
        raise ValueError(
            f"--validation-file names tasks without a --train-file: {unknown} (tasks: {list(train_files)})"
        )
