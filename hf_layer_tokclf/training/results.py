"""What a finished run leaves in its output folder: the saved model and tokenizer (`save_model`), its scores on dev
and test (`score_splits`), the settings it ran with (`run_settings`), and ``metrics.json``, the model card and the
printed score tables (`save_results`)."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ..base.files import write_json
from ..base.manifest import CARD, CHECKPOINT, METRICS, record_outputs
from ..base.niceties import optional_step
from ..base.outputs import RUN_OUTPUTS, remove_outputs, scrub_outputs
from ..base.redaction import redact_command
from ..formats.sentence import Sentence
from ..model.tokenization import save_tokenizer
from ..running.metrics import format_scores
from ..running.sentences import evaluate_sentences, flat_scores
from ..sharing.model_card import write_model_card
from .arguments import DataArguments, ModelArguments, RunArguments, TaskSpec
from .multitask import TaskView


def score_splits(
    model: Any,
    tokenizer: Any,
    splits: dict[str, list[Sentence]],
    data_args: DataArguments,
    training_args: Any,
    max_length: int,
    run_args: RunArguments,
) -> tuple[dict[str, Any], list[list[str]] | None, list[tuple[str, dict[str, Any]]]]:
    """The trained model's ``eval_*`` and ``test_*`` scores over every gold word of the dev and test data,
    its test predictions (`None` without test data), and each split's heading and scores to print."""
    metrics: dict[str, Any] = {}
    test_predictions = None
    report = []
    for split, prefix in (("validation", "eval"), ("test", "test")):
        if split in splits:
            scores, predictions = evaluate_sentences(
                model,
                tokenizer,
                splits[split],
                batch_size=training_args.per_device_eval_batch_size,
                max_length=max_length,
                stride=data_args.stride,
                decoding=run_args.decoding,
            )
            metrics.update(flat_scores(scores, prefix))
            test_predictions = predictions if split == "test" else test_predictions
            report.append(
                (f"{split} ({len(splits[split])} sentences, {data_args.__dict__.get(split + '_file') or ''})", scores)
            )
    return metrics, test_predictions, report


def score_task_splits(
    model: Any,
    tokenizer: Any,
    task_splits: dict[str, dict[str, list[Sentence]]],
    tasks: dict[str, TaskSpec],
    data_args: DataArguments,
    training_args: Any,
    max_length: int,
    run_args: RunArguments,
) -> tuple[dict[str, Any], dict[str, list[list[str]]], list[tuple[str, dict[str, Any]]]]:
    """`score_splits` of every task of a multi-task model, by its own head (`multitask.TaskView`) on its own dev
    and test data: ``eval_NAME_f1``, ``test_NAME_Disease_f1``, ...; and ``eval_f1``, ``test_f1``, ``precision``
    and ``recall``: the means over the tasks scored. Returns them, each task's test predictions, and the report."""
    metrics: dict[str, Any] = {}
    predictions = {}
    report = []
    for name, spec in tasks.items():
        files = replace(
            data_args, train_file=spec.train_file, validation_file=spec.validation_file, test_file=spec.test_file
        )
        view = TaskView(model, name)
        scores, test_predictions, task_report = score_splits(
            view, tokenizer, task_splits[name], files, training_args, max_length, run_args
        )
        for key, value in scores.items():
            split, _, rest = key.partition("_")
            metrics[f"{split}_{name}_{rest}"] = value
        if test_predictions is not None:
            predictions[name] = test_predictions
        report += [(f"task {name}, {heading}", table) for heading, table in task_report]
    for split in ("eval", "test"):
        for stat in ("precision", "recall", "f1"):
            values = [metrics[f"{split}_{name}_{stat}"] for name in tasks if f"{split}_{name}_{stat}" in metrics]
            if values:
                metrics[f"{split}_{stat}"] = sum(values) / len(values)
    return metrics, predictions, report


def run_settings(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Any,
    run_args: RunArguments,
    model: Any,
    max_length: int,
    *,
    scheme: str | dict[str, str],
    command: str | None,
) -> dict[str, Any]:
    """The run's ``settings`` in metrics.json: the model and its layers, the data options, the Trainer's figures,
    the decoding, the label ``scheme`` (per task with several), the ``command`` with its secret values hidden,
    and for a multi-task model its ``tasks``: each one's layer, CRF, scheme and number of labels."""
    settings = _settings(model_args, data_args, training_args, model, max_length)
    settings.update(
        decoding=run_args.decoding, use_crf=bool(getattr(model.config, "use_crf", False)), label_scheme=scheme
    )
    tasks = getattr(model.config, "tasks", None)
    if tasks:  # the layer, CRF and scheme are each task's
        for key in ("layer_pooling", "use_crf"):
            del settings[key]
        settings["tasks"] = {
            name: {key: task[key] for key in ("hidden_layer", "use_crf", "scheme")} | {"labels": len(task["labels"])}
            for name, task in tasks.items()
        }
    return {**settings, "command": redact_command(command)}


def _settings(model_args, data_args, training_args, model, max_length) -> dict[str, Any]:
    config = model.config
    settings = {
        "model": model_args.model,
        "architecture": type(model).__name__,
        "hidden_layer": getattr(config, "hidden_layer", config.num_hidden_layers),
        "layer_pooling": getattr(config, "layer_pooling", None),
        "num_hidden_layers": config.num_hidden_layers,
        "num_layers_used": getattr(config, "num_layers_used", config.num_hidden_layers),
        "max_length": max_length,
        "classifier_dropout": getattr(config, "classifier_dropout", None),
        "classifier_learning_rate": model_args.classifier_learning_rate,
    }
    settings.update({k: v for k, v in asdict(data_args).items() if v is not None})
    for name in (
        "learning_rate",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "weight_decay",
        "warmup_steps",
        "warmup_ratio",
        "lr_scheduler_type",
        "seed",
        "bf16",
        "fp16",
    ):
        if hasattr(training_args, name):
            value = getattr(training_args, name)
            settings[name] = value if isinstance(value, (int, float, bool, str)) or value is None else str(value)
    return settings


def save_model(model: Any, tokenizer: Any, output_dir: Path) -> None:
    """Saves the trained model and its tokenizer in ``output_dir``, before anything else can fail."""
    model.save_pretrained(output_dir)
    save_tokenizer(tokenizer, output_dir)
    scrub_outputs(output_dir)  # secrets masked in what transformers and the Trainer wrote, checkpoints included


def save_results(
    output_dir: Path, metrics: dict[str, Any], report: list[tuple[str, dict[str, Any]]], run_args: RunArguments
) -> None:
    """Writes metrics.json next to the saved model, then what a finished run can do without.

    metrics.json's presence means the run finished: the card and the printed score tables come after it, each
    skipped with a warning if it fails (`optional_step`), never losing the run. The checkpoints are deleted
    last: a save that fails before metrics.json (a full disk) leaves a run that ``--resume`` can finish.
    """
    write_json(output_dir / METRICS, metrics)
    with optional_step(f"the model card ({output_dir / CARD})"):
        write_model_card(output_dir, metrics)
    record_outputs(output_dir, written=RUN_OUTPUTS.written, complete=True)  # what this run wrote, checkpoints too
    with optional_step("printing the scores"):
        for heading, scores in report:
            print(f"\n{heading}")
            print(format_scores(scores))
    if not run_args.keep_checkpoints:
        remove_outputs(output_dir, CHECKPOINT.match)
