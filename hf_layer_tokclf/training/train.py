"""Fine-tuning with the Hugging Face `Trainer`: from CoNLL/JSONL/datasets to a saved, scored model.

`train` runs the steps of one job: check the options and the data and claim the output folder (`_start_run`,
`check_options`), load the backbone with a new head (`head`), train (`trainer`), then save the model, its scores,
``metrics.json`` and card (`results`) and, with ``--push-to-hub``, share it (`sharing.hub`).

The arguments are dataclasses in the style of transformers' ``run_ner.py`` (model, data, run; in `arguments`,
re-exported here), next to `transformers.TrainingArguments` itself, so the CLI spells every option as the
Trainer does (``--num-train-epochs``, ``--learning-rate``, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..base.locations import check_model_location
from ..base.manifest import TEST_PREDICTIONS, task_predictions_name
from ..base.outputs import RUN_OUTPUTS, OutputClaim, claim_output_dir
from ..base.redaction import remember_secret
from ..formats.labels import label_list
from ..formats.sentence import Sentence
from ..running.logits import check_max_length, default_max_length
from ..running.sentences import write_conll
from ..sharing.hub import push_request, push_to_hub
from .arguments import DataArguments, ModelArguments, RunArguments, TaskSpec, resolve_tasks
from .head import load_tokenizer_and_model, load_tokenizer_and_task_model
from .multitask import build_task_trainer
from .results import run_settings, save_model, save_results, score_splits, score_task_splits
from .splits import head_labels, read_splits
from .trainer import build_trainer, is_complete_checkpoint, train_or_resume


def train(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Any,
    run_args: RunArguments | None = None,
    *,
    model_class: Any = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Fine-tunes the layer classifier of the backbone's family and saves the best model, its scores and card.

    Args:
        model_args, data_args, run_args: as the dataclasses of `arguments`; per-task files (``train_file`` a dict
            task name -> path) train one model on several corpora (`train_tasks`).
        training_args: `transformers.TrainingArguments`; its ``output_dir`` receives the model (safetensors,
            config with ``auto_map``, code files), the tokenizer, ``metrics.json`` and a ``README.md`` model card.
        command: The command line that started the run, recorded in the settings and model card with the
            values of secret options (``--hub-token``, ``--token``, ...) hidden.
        model_class: Another token classification class to train with the same settings
            (e.g. transformers' `BertForTokenClassification`, as a baseline); ``hidden_layer`` and
            ``layer_pooling`` are passed only to layer classifiers. Default: the family's layer
            classifier (`AutoModelForLayerTokenClassification`), from the backbone's ``model_type``.

    Returns:
        The metrics written to ``metrics.json``: ``eval_*`` and ``test_*`` scores (fractions),
        the Trainer's ``train_*`` figures, and ``settings``.
    """
    run_args = run_args or RunArguments()
    tasks = resolve_tasks(model_args, data_args)
    if tasks is not None:
        return train_tasks(model_args, data_args, training_args, run_args, tasks, command, model_class)
    model_class = _model_class(model_args, model_class)
    splits, scheme, labels, hub_request, claim = _start_run(model_args, data_args, training_args, run_args)
    output_dir = Path(training_args.output_dir)
    tokenizer, model = load_tokenizer_and_model(model_args, training_args, labels, model_class)
    model.config.label_scheme = scheme  # saved in config.json: predictions are written back in it
    max_length = data_args.max_length or default_max_length(model, tokenizer)
    trainer = build_trainer(
        model, tokenizer, splits, labels, model_args, data_args, training_args, run_args, max_length
    )
    metrics = train_or_resume(trainer, output_dir, training_args, run_args)

    def score(model: Any) -> tuple[dict[str, Any], Any]:
        scores, test_predictions, report = score_splits(
            model, tokenizer, splits, data_args, training_args, max_length, run_args
        )
        if test_predictions is not None:  # as run_ner.py's predictions.txt: tokens, gold and predicted labels
            write_conll(output_dir / TEST_PREDICTIONS, splits["test"], test_predictions, scheme=scheme)
        return scores, report

    args = (model_args, data_args, training_args, run_args)
    settings = partial(run_settings, *args, max_length=max_length, scheme=scheme, command=command)
    return _finish_run(trainer, tokenizer, metrics, score, settings, run_args, hub_request, claim)


def train_tasks(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Any,
    run_args: RunArguments,
    tasks: dict[str, TaskSpec],
    command: str | None = None,
    model_class: Any = None,
) -> dict[str, Any]:
    """`train` on several corpora (`arguments.resolve_tasks`): one multi-task model, a head per task on its own
    layer, batches of one task each (`multitask.TaskBatchSampler`), each task scored by its own head on its own
    dev and test data.

    ``metrics.json`` holds ``eval_NAME_*`` and ``test_NAME_*`` per task (overall and per entity type) and
    ``eval_f1`` / ``test_f1``, the tasks' mean; the test predictions are ``test_predictions.NAME.conll``.
    """
    if model_class is not None:
        raise ValueError(f"model_class={model_class.__name__}: tasks train the family's multi-task model only.")
    task_splits, config_tasks, hub_request, claim = _start_tasks(model_args, data_args, training_args, run_args, tasks)
    schemes = {name: task["scheme"] for name, task in config_tasks.items()}
    output_dir = Path(training_args.output_dir)
    tokenizer, model = load_tokenizer_and_task_model(model_args, training_args, config_tasks)
    max_length = data_args.max_length or default_max_length(model, tokenizer)
    trainer = build_task_trainer(
        model, tokenizer, task_splits, model_args, data_args, training_args, run_args, max_length
    )
    metrics = train_or_resume(trainer, output_dir, training_args, run_args)

    def score(model: Any) -> tuple[dict[str, Any], Any]:
        scores, predictions, report = score_task_splits(
            model, tokenizer, task_splits, tasks, data_args, training_args, max_length, run_args
        )
        for name, test_predictions in predictions.items():
            path = output_dir / task_predictions_name(name)
            write_conll(path, task_splits[name]["test"], test_predictions, scheme=schemes[name])
        return scores, report

    args = (model_args, data_args, training_args, run_args)
    settings = partial(run_settings, *args, max_length=max_length, scheme=schemes, command=command)
    return _finish_run(trainer, tokenizer, metrics, score, settings, run_args, hub_request, claim)


def _finish_run(
    trainer: Any,
    tokenizer: Any,
    metrics: dict[str, Any],
    score: Callable[[Any], tuple[dict[str, Any], Any]],
    settings: Callable[[Any], dict[str, Any]],
    run_args: RunArguments,
    hub_request: dict[str, Any] | None,
    claim: OutputClaim,
) -> dict[str, Any]:
    """The end of every run, one task or several: on the main process the best model saved first (whatever fails
    later, it is kept), ``score(model)`` (its scores and report; it writes the test predictions), the settings
    (``settings(model)``), the results and card, the push; then every process waits and the output is released."""
    if trainer.is_world_process_zero():
        model = trainer.model.eval()
        output_dir = Path(trainer.args.output_dir)
        save_model(model, tokenizer, output_dir)
        scores, report = score(model)
        metrics.update(scores)
        metrics["settings"] = settings(model)
        save_results(output_dir, metrics, report, run_args)
        if hub_request:
            push_to_hub(output_dir, **hub_request)
    trainer.accelerator.wait_for_everyone()
    claim.release()
    return metrics


def _start_tasks(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Any,
    run_args: RunArguments,
    tasks: dict[str, TaskSpec],
) -> tuple[dict[str, dict[str, list[Sentence]]], dict[str, dict[str, Any]], dict[str, Any] | None, OutputClaim]:
    """`_start_run` of several tasks: each task's data read as a single-task run's (`splits.read_splits`), its
    labels those of its own training data. Returns the splits, the model's ``config.tasks``, the push request
    and the output folder's claim."""
    check_model_location(model_args.model)
    hub_request = _prepare_run(training_args)
    task_splits, config_tasks = {}, {}
    for name, spec in tasks.items():
        print(f"task {name}:")
        files = replace(
            data_args, train_file=spec.train_file, validation_file=spec.validation_file, test_file=spec.test_file
        )
        task_splits[name], scheme = read_splits(files)
        config_tasks[name] = {
            "labels": label_list(task_splits[name]["train"]),
            "hidden_layer": spec.hidden_layer,
            "scheme": scheme,
            "use_crf": spec.crf,
            "classifier_dropout": model_args.classifier_dropout,
        }
    has_dev = any("validation" in splits for splits in task_splits.values())
    check_options(model_args, data_args, training_args, run_args, has_dev=has_dev)
    return task_splits, config_tasks, hub_request, _claim_output_dir(training_args, run_args)


def _model_class(model_args: ModelArguments, model_class: Any) -> Any:
    """The class to train: ``model_class``, else the backbone's family's layer classifier; a mistyped folder, an
    unsupported backbone or ``--crf`` without a layer classifier fail here, before anything is written."""
    from ..model.auto import AutoModelForLayerTokenClassification
    from ..model.modeling_layer_tokclf import LayerTokenClassifier

    check_model_location(model_args.model)  # a mistyped folder is not a Hub error
    model_class = model_class or AutoModelForLayerTokenClassification.family_class(model_args.model)
    if model_args.crf and not issubclass(model_class, LayerTokenClassifier):
        raise ValueError(f"--crf needs a layer classifier; {model_class.__name__} has no CRF head.")
    return model_class


def _start_run(
    model_args: ModelArguments, data_args: DataArguments, training_args: Any, run_args: RunArguments
) -> tuple[dict[str, list[Sentence]], str, list[str], dict[str, Any] | None, OutputClaim]:
    """Checks the options and the data, then claims the output folder: nothing is written before all pass.

    Returns the data splits, the training data's label scheme, the model's labels (`head_labels`),
    `push_request`'s arguments for ``--push-to-hub`` (or None) and the folder's `outputs.OutputClaim`
    (its lock, held until the run ends).
    """
    hub_request = _prepare_run(training_args)
    splits, scheme = read_splits(data_args)  # bad data fails before anything is written
    print(f"label scheme: {scheme} (trained as IOB2; CoNLL predictions are written in {scheme})")
    labels = head_labels(model_args.model, label_list(splits["train"]), model_args.ignore_mismatched_sizes)
    check_options(model_args, data_args, training_args, run_args, has_dev="validation" in splits)
    return splits, scheme, labels, hub_request, _claim_output_dir(training_args, run_args)


def _prepare_run(training_args: Any) -> dict[str, Any] | None:
    """The Trainer's options a run fixes first, and `push_request`'s arguments for ``--push-to-hub`` (or None)."""
    if not torch.cuda.is_available():
        training_args.dataloader_pin_memory = False  # pinning needs an accelerator; spare the warning
    if not training_args.output_dir:
        raise ValueError("--output-dir is required.")
    hub_request = push_request(training_args)  # --push-to-hub: checked now, pushed (verified) after saving
    # The Trainer pickles its arguments into every checkpoint (training_args.bin); the push keeps its own copy,
    # and the value is masked in whatever else the run writes (redaction).
    remember_secret(training_args.hub_token)
    training_args.hub_token = None
    return hub_request


def _claim_output_dir(training_args: Any, run_args: RunArguments) -> OutputClaim:
    """Claims the output folder (`outputs.OutputClaim`: its lock, held until the run ends), once all checks pass."""
    resuming = run_args.resume or training_args.resume_from_checkpoint is not None
    with training_args.main_process_first(local=False, desc="preparing the output directory"):
        # Process 0 claims the folder (lock, manifest) and deletes what an earlier run wrote (--overwrite-output-dir),
        # or refuses it, while the others wait; then they check the same, deleting nothing, so under torchrun every
        # process stops, or none does.
        claim = claim_output_dir(
            training_args.output_dir,
            RUN_OUTPUTS,
            overwrite=run_args.overwrite_output_dir,
            resume=resuming,
            primary=training_args.process_index == 0,
        )
    return claim


def check_options(
    model_args: ModelArguments, data_args: DataArguments, training_args: Any, run_args: RunArguments, *, has_dev: bool
) -> None:
    """Options that cannot work together fail here, with one line naming them, before any work is done."""
    if not run_args.return_entity_level_metrics:
        raise ValueError(
            "--return-entity-level-metrics false is not supported: metrics.json always holds the scores per entity "
            "type (test_Disease_f1, ...) beside the overall ones; read the overall ones (test_f1) alone."
        )
    if run_args.early_stopping_patience is not None and not has_dev:
        raise ValueError(
            "--early-stopping-patience needs dev data to watch: give --validation-file (or a --dataset-name "
            "with a validation split)."
        )
    if data_args.max_length is not None:
        from transformers import PretrainedConfig

        config, _ = PretrainedConfig.get_config_dict(model_args.model)
        check_max_length(data_args.max_length, config.get("max_position_embeddings"), model_args.model)
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint is not None and not is_complete_checkpoint(checkpoint):
        raise ValueError(
            f"--resume-from-checkpoint {checkpoint}: not a complete checkpoint folder (no trainer_state.json); "
            "give a checkpoint-N folder a run wrote, or --resume to take the last complete one in --output-dir."
        )
