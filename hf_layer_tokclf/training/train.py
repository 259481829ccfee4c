"""Fine-tuning with the Hugging Face `Trainer`: from CoNLL/JSONL/datasets to a saved, scored model.

The arguments are dataclasses in the style of transformers' ``run_ner.py`` (model, data, run; in `arguments`,
re-exported here), next to `transformers.TrainingArguments` itself, so the CLI spells every option as the
Trainer does (``--num-train-epochs``, ``--learning-rate``, ...).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import SequentialSampler
from transformers import Trainer

from ..base.defaults import TRAINER_DEFAULTS
from ..base.files import write_json
from ..base.locations import check_model_location
from ..base.manifest import CARD, CHECKPOINT, METRICS, TEST_PREDICTIONS, record_outputs
from ..base.niceties import optional_step
from ..base.outputs import RUN_OUTPUTS, OutputClaim, claim_output_dir, remove_outputs, scrub_outputs
from ..base.redaction import redact_command, remember_secret
from ..formats.conll import check_conll_columns
from ..formats.labels import check_known_labels, check_training_labels, describe_labels, label_list, normalize_labels
from ..formats.loading import MissingSplitError, label_names_from, load_sentences
from ..formats.records import Columns
from ..formats.sentence import Sentence
from ..model.tokenization import load_tokenizer, save_tokenizer
from ..running.decoding import label_decoder, token_predictions
from ..running.features import BOOKKEEPING_KEYS, encode, merge_windows
from ..running.logits import check_max_length, default_max_length
from ..running.metrics import entity_scores, format_scores
from ..running.sentences import evaluate_sentences, flat_scores, write_conll
from ..sharing.hub import push_request, push_to_hub
from ..sharing.model_card import write_model_card
from .arguments import DataArguments, ModelArguments, RunArguments, default_backbone  # noqa: F401 - the API's names

logger = logging.getLogger(__name__)


# Defaults of `train` that differ from TrainingArguments', with batches of similar length.
TRAINING_DEFAULTS: dict[str, Any] = dict(TRAINER_DEFAULTS)


def _length_grouping() -> dict[str, Any]:
    """Batches of sentences of similar length: on NCBI it cuts padding, and so step time, about 3x."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "train_sampling_strategy" in names:  # transformers 5.x
        return {"train_sampling_strategy": "group_by_length"}
    return {"group_by_length": True}  # transformers 4.x


TRAINING_DEFAULTS.update(_length_grouping())


def _limit(sentences: list[Sentence], limit: int | None) -> list[Sentence]:
    return sentences if limit is None else sentences[:limit]


def data_columns(data_args: DataArguments) -> Columns:
    """The fields the data's words and labels are in, and the names of integer labels."""
    names = label_names_from(data_args.label_names, data_args.label_column_name) if data_args.label_names else None
    return Columns(data_args.text_column_name, data_args.label_column_name, names)


def read_splits(data_args: DataArguments) -> tuple[dict[str, list[Sentence]], str]:
    """Reads train/validation/test, converts labels to IOB2 and checks dev/test against the train labels.

    Prints the training labels with their counts (`labels.describe_labels`) and refuses what looks like a typo in
    them (`data.check_training_labels`) unless ``allow_rare_labels``.

    Returns the splits and the scheme the training labels were written in (`data.detect_scheme`),
    which predictions are written back in.
    """
    sources = {
        "train": (data_args.train_file, data_args.max_train_samples),
        "validation": (data_args.validation_file, data_args.max_eval_samples),
        "test": (data_args.test_file, data_args.max_test_samples),
    }
    if data_args.train_file is None and data_args.dataset_name is None:
        raise ValueError("No training data: give --train-file (or --dataset-name).")
    columns = data_columns(data_args)
    splits: dict[str, list[Sentence]] = {}
    for split, (path, limit) in sources.items():
        if path is None and data_args.dataset_name is None:
            continue
        source, split_name = (path, None) if path is not None else (data_args.dataset_name, split)
        try:
            sentences = load_sentences(
                source,
                split=split_name,
                columns=columns,
                config_name=data_args.dataset_config_name,
                hub=path is None,  # --dataset-name may be a Hub id; a file option is a file
            )
        except MissingSplitError:  # a dataset without a dev or test split
            if split == "train":
                raise
            continue
        normalized, scheme = normalize_labels(sentences)
        splits[split] = _limit(normalized, limit)
        if split == "train":
            train_scheme = scheme
            print(f"labels of {source} ({scheme}): {describe_labels(splits['train'])}")
            if not data_args.allow_rare_labels:
                check_training_labels(sentences, scheme, allow="--allow-rare-labels")
            label2id = {label: i for i, label in enumerate(label_list(splits["train"]))}
        else:  # as read: an unknown label is named as the file writes it
            check_known_labels(_limit(sentences, limit), label2id)
    for sentence in splits.get("test", ()):  # written to test_predictions.conll at the end: refused now
        check_conll_columns(sentence)
    return splits, train_scheme


def _model_inputs(features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in f.items() if k not in BOOKKEEPING_KEYS} for f in features]


def _dev_metrics(features: list[dict[str, Any]], sentences: list[Sentence], id2label: dict[int, str]):
    """`compute_metrics` for the Trainer: windows merged back to words, every gold word scored."""
    lengths = [len(s.tokens) for s in sentences]

    def compute_metrics(prediction: Any) -> dict[str, float]:
        words = merge_windows(features, prediction.predictions, lengths)
        predicted = [[id2label[int(i)] for i in row] for row in words]
        return flat_scores(entity_scores([s.labels for s in sentences], predicted), "")

    return compute_metrics


# Parameters of what `train` adds on top of the pretrained encoder: the linear head and the scalar mix.
HEAD_PARAMETERS = ("classifier.", "scalar_mix.", "crf.")
_HEAD_NAMES = {"classifier": "classification head", "crf": "CRF", "scalar_mix": "scalar mix"}


class _HeldRecords(logging.Filter):
    """Holds back the warnings a logger would emit, to be let through (or not) once the caller knows more."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        self.records.append(record)
        return False


def _is_load_report(record: logging.LogRecord) -> bool:
    """transformers' report of the weights a checkpoint lacked: 5.x's LOAD REPORT table, 4.x's sentence."""
    message = record.getMessage()
    return "LOAD REPORT" in message or "newly initialized:" in message


def load_with_new_head(model_class: Any, source: str | Path, *, announce: bool = True, **kwargs: Any) -> Any:
    """``model_class.from_pretrained(source, **kwargs)`` for a model whose head (`HEAD_PARAMETERS`) may be new.

    When the head's weights are all the checkpoint lacks (a backbone, the usual start of training),
    transformers' report of them (5.x's LOAD REPORT table of MISSING rows, 4.x's "newly initialized"
    warning) is replaced by one line on standard output saying so (with ``announce``; without, by
    nothing, for a caller that fills the head itself). Any other missing, unexpected or mismatched
    weight is a real problem of the checkpoint: transformers' report is then emitted whole.
    """
    loader_logger = logging.getLogger("transformers.modeling_utils")
    held = _HeldRecords()
    loader_logger.addFilter(held)
    loaded = None
    try:
        loaded = model_class.from_pretrained(str(source), output_loading_info=True, **kwargs)
    finally:  # also when loading fails: transformers' error then points at the report above it
        loader_logger.removeFilter(held)
        new = _created_head(loaded[1]) if loaded else []
        for record in held.records:  # in the order they were logged
            if not (new and _is_load_report(record)):
                loader_logger.handle(record)
    model = loaded[0]
    if new and announce:
        _say_new_head(model, source, new)
    return model


def _say_new_head(model: Any, source: str | Path, modules: list[str]) -> None:
    """The one line that replaces transformers' load report of a head that training creates."""
    print(f"a new {' and '.join(_HEAD_NAMES.get(name, name) for name in modules)} ({model.config.num_labels} labels) "
          f"on {_layers_read(model.config)} of {source}: it is trained from scratch")  # fmt: skip


def _created_head(info: dict[str, Any]) -> list[str]:
    """The head modules (``classifier``, ``crf``, ...) a load created, when they are all the checkpoint lacked;
    else (other weights missing, unexpected or mismatched: the checkpoint's own problems) none."""
    missing = list(info["missing_keys"])
    if not missing or info["unexpected_keys"] or info["mismatched_keys"]:
        return []
    if not all(key.startswith(HEAD_PARAMETERS) for key in missing):
        return []
    return sorted({key.split(".")[0] for key in missing})


def _layers_read(config: Any) -> str:
    """``hidden_states[4]``, ``hidden_states[1, 2] (mean)``, or the last layer for a stock classifier."""
    layer = getattr(config, "hidden_layer", None)
    if layer is None:
        return "the last layer"
    if isinstance(layer, int):
        return f"hidden_states[{layer}]"
    return f"hidden_states[{', '.join(map(str, layer))}] ({config.layer_pooling})"


class NerTrainer(Trainer):
    """The Trainer, with evaluation batches kept in dataset order, and the head's own learning rate.

    `compute_metrics` merges windows back into sentences by position; length grouping, which
    speeds up training, would otherwise shuffle the evaluation batches too (transformers 4.x and
    5.x group both). Distributed evaluation keeps this order when it gathers.

    Args:
        classifier_learning_rate: The learning rate of the `HEAD_PARAMETERS`; ``None`` keeps the
            Trainer's single learning rate for every parameter.
    """

    def __init__(self, *args: Any, classifier_learning_rate: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.classifier_learning_rate = classifier_learning_rate

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        return SequentialSampler(eval_dataset)

    def create_optimizer(self, *args: Any, **kwargs: Any) -> Any:
        """The Trainer's optimizer (``--optim``, its betas and epsilon, no weight decay on biases and
        LayerNorms), with the head's parameters in groups of their own at ``classifier_learning_rate``.
        The scheduler scales every group's rate alike, so the head decays and warms up with the rest."""
        if self.optimizer is None and self.classifier_learning_rate is not None:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
            if {"params", "model", "optimizer_dict"} & optimizer_kwargs.keys():
                raise ValueError(
                    f"--classifier-learning-rate cannot be combined with --optim "
                    f"{getattr(self.args.optim, 'value', self.args.optim)}: that optimizer "
                    "builds its own parameter groups."
                )
            self.optimizer = optimizer_cls(self._parameter_groups(), **optimizer_kwargs)
        return super().create_optimizer(*args, **kwargs)

    def _parameter_groups(self) -> list[dict[str, Any]]:
        decay = set(self.get_decay_parameter_names(self.model))
        groups = []
        for head in (False, True):
            for decayed in (True, False):
                params = [
                    p
                    for n, p in self.model.named_parameters()
                    if p.requires_grad and (n in decay) == decayed and n.startswith(HEAD_PARAMETERS) == head
                ]
                group = {"params": params, "weight_decay": self.args.weight_decay if decayed else 0.0}
                if head:
                    group["lr"] = self.classifier_learning_rate
                if params:
                    groups.append(group)
        return groups


def _metrics_predictions(model: Any, decoding: str) -> Any:
    """``preprocess_logits_for_metrics``: one label id per token (memory: an id, not a logit vector), decoded."""
    if decoding == "argmax":
        return lambda logits, labels: logits.argmax(dim=-1)
    decoder = label_decoder(model)  # the model's own CRF, as it learns
    return lambda logits, labels: token_predictions(logits, labels, decoder)


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
        model_args, data_args, run_args: as the dataclasses above.
        training_args: `transformers.TrainingArguments`; its ``output_dir`` receives the model
            (safetensors, config with ``auto_map``, code files), the tokenizer, ``metrics.json``
            and a ``README.md`` model card.
        command: The command line that started the run, recorded in the settings and model card with
            the values of secret options (``--hub-token``, ``--token``, ...) hidden.
        model_class: Another token classification class to train with the same settings
            (e.g. transformers' `BertForTokenClassification`, as a baseline); ``hidden_layer`` and
            ``layer_pooling`` are passed only to layer classifiers. Default: the family's layer
            classifier (`AutoModelForLayerTokenClassification`), from the backbone's ``model_type``.

    Returns:
        The metrics written to ``metrics.json``: ``eval_*`` and ``test_*`` scores (fractions),
        the Trainer's ``train_*`` figures, and ``settings``.
    """
    from ..model.auto import AutoModelForLayerTokenClassification
    from ..model.modeling_layer_tokclf import LayerTokenClassifier

    run_args = run_args or RunArguments()
    check_model_location(model_args.model)  # a mistyped folder is not a Hub error
    # An unsupported backbone fails here, before anything is written.
    model_class = model_class or AutoModelForLayerTokenClassification.family_class(model_args.model)
    if model_args.crf and not issubclass(model_class, LayerTokenClassifier):
        raise ValueError(f"--crf needs a layer classifier; {model_class.__name__} has no CRF head.")
    splits, scheme, labels, hub_request, claim = _start_run(model_args, data_args, training_args, run_args)
    output_dir = Path(training_args.output_dir)
    tokenizer, model = _load_tokenizer_and_model(model_args, training_args, labels, model_class)
    model.config.label_scheme = scheme  # saved in config.json: predictions are written back in it
    max_length = data_args.max_length or default_max_length(model, tokenizer)
    trainer = _build_trainer(
        model, tokenizer, splits, labels, model_args, data_args, training_args, run_args, max_length
    )
    metrics = _train_or_resume(trainer, output_dir, training_args, run_args)
    if trainer.is_world_process_zero():
        model = trainer.model.eval()
        _save_model(model, tokenizer, output_dir)  # first: whatever fails later, the trained model is kept
        scores, test_predictions, report = _score_splits(
            model, tokenizer, splits, data_args, training_args, max_length, run_args
        )
        metrics.update(scores)
        settings = _settings(model_args, data_args, training_args, model, max_length)
        settings.update(
            decoding=run_args.decoding, use_crf=bool(getattr(model.config, "use_crf", False)), label_scheme=scheme
        )
        metrics["settings"] = {**settings, "command": redact_command(command)}
        if test_predictions is not None:  # as run_ner.py's predictions.txt: tokens, gold and predicted labels
            write_conll(output_dir / TEST_PREDICTIONS, splits["test"], test_predictions, scheme=scheme)
        _save_results(output_dir, metrics, report, run_args)
        if hub_request:
            push_to_hub(output_dir, **hub_request)
    trainer.accelerator.wait_for_everyone()
    claim.release()
    return metrics


def _start_run(
    model_args: ModelArguments, data_args: DataArguments, training_args: Any, run_args: RunArguments
) -> tuple[dict[str, list[Sentence]], str, list[str], dict[str, Any] | None, OutputClaim]:
    """Checks the options and the data, then claims the output folder: nothing is written before all pass.

    Returns the data splits, the training data's label scheme, the model's labels (`head_labels`),
    `push_request`'s arguments for ``--push-to-hub`` (or None) and the folder's `files.OutputClaim`
    (its lock, held until the run ends).
    """
    if not torch.cuda.is_available():
        training_args.dataloader_pin_memory = False  # pinning needs an accelerator; spare the warning
    if not training_args.output_dir:
        raise ValueError("--output-dir is required.")
    hub_request = push_request(training_args)  # --push-to-hub: checked now, pushed (verified) after saving
    # The Trainer pickles its arguments into every checkpoint (training_args.bin); the push keeps its own copy,
    # and the value is masked in whatever else the run writes (redaction).
    remember_secret(training_args.hub_token)
    training_args.hub_token = None
    splits, scheme = read_splits(data_args)  # bad data fails before anything is written
    print(f"label scheme: {scheme} (trained as IOB2; CoNLL predictions are written in {scheme})")
    labels = head_labels(model_args.model, label_list(splits["train"]), model_args.ignore_mismatched_sizes)
    check_options(model_args, data_args, training_args, run_args, has_dev="validation" in splits)
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
    return splits, scheme, labels, hub_request, claim


def _trained_labels(model: str) -> list[str] | None:
    """The labels of a trained token classifier's head, in id order; `None` for a backbone (no head)."""
    from transformers import PretrainedConfig

    config, _ = PretrainedConfig.get_config_dict(model)
    if not any(name.endswith("TokenClassification") for name in config.get("architectures") or ()):
        return None
    id2label = config.get("id2label") or {}
    return [id2label[key] for key in sorted(id2label, key=int)]


def head_labels(model: str, labels: list[str], ignore_mismatched_sizes: bool = False) -> list[str]:
    """The labels of the model to train, in id order.

    Continuing from a trained NER model: its own order where the data has the same labels (its head is
    kept); the data's labels and a new head with ``ignore_mismatched_sizes``; else a ValueError, before
    anything is written, naming both label sets.
    """
    trained = _trained_labels(model)
    if trained is None or trained == labels:
        return labels
    if sorted(trained) == sorted(labels):
        return trained
    if not ignore_mismatched_sizes:
        raise ValueError(
            f"{model} was trained with the labels {', '.join(trained)}; the data has {', '.join(labels)}. Give "
            "--ignore-mismatched-sizes to keep its encoder and train a new head."
        )
    return labels


def _load_tokenizer_and_model(
    model_args: ModelArguments, training_args: Any, labels: list[str], model_class: Any
) -> tuple[Any, Any]:
    """The backbone's tokenizer, and the model with a new head for ``labels`` (seeded first)."""
    from transformers import set_seed

    from ..model.modeling_layer_tokclf import LayerTokenClassifier

    tokenizer = load_tokenizer(model_args.tokenizer_name or model_args.model)
    layers = model_args.hidden_layer or [-1]  # not given: the last
    layer = layers[0] if len(layers) == 1 else list(layers)
    id2label, label2id = dict(enumerate(labels)), {label: i for i, label in enumerate(labels)}
    head_kwargs = dict(num_labels=len(labels), id2label=id2label, label2id=label2id)
    if model_args.classifier_dropout is not None:
        head_kwargs["classifier_dropout"] = model_args.classifier_dropout
    if issubclass(model_class, LayerTokenClassifier):
        head_kwargs.update(hidden_layer=layer, layer_pooling=model_args.layer_pooling, use_crf=model_args.crf)
    # Seed before the head is initialised, as run_ner.py does: runs with the same seed start
    # from the same head and see the same batches.
    set_seed(training_args.seed)
    model = load_with_new_head(
        model_class, model_args.model, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes, **head_kwargs
    )
    trained = _trained_labels(model_args.model)
    if trained is not None and sorted(trained) != sorted(labels):
        _new_head(model)  # other labels of the same number load without a size mismatch: replace them too
        _say_new_head(model, model_args.model, ["classifier", "crf"] if getattr(model, "crf", None) else ["classifier"])
    if model_args.hidden_layer is None and issubclass(model_class, LayerTokenClassifier):
        print(default_layer_note(model.config))
    return tokenizer, model


def default_layer_note(config: Any) -> str:
    """What `train` says when no ``--hidden-layer`` is given: the layer the model reads, and how to choose another."""
    return (
        f"reading hidden_states[{config.hidden_layer}], the last of {config.num_hidden_layers} layers (give "
        "--hidden-layer to choose; `hf-layer-tokclf sweep` compares them)"
    )


def _new_head(model: Any) -> None:
    """Replaces the head (the linear classifier, and the CRF where there is one) by a newly initialised one.

    New modules, because transformers 5.x's initialisers skip the tensors that `from_pretrained` loaded.
    """
    from ..model.pipeline_layer_tokclf import LinearChainCRF

    linear = model.classifier
    model.classifier = torch.nn.Linear(linear.in_features, len(model.config.id2label), device=linear.weight.device)
    model._init_weights(model.classifier)
    if getattr(model, "crf", None) is not None:
        model.crf = LinearChainCRF(model.config.id2label).to(linear.weight.device)
        model._init_weights(model.crf)


def _build_trainer(
    model: Any,
    tokenizer: Any,
    splits: dict[str, list[Sentence]],
    labels: list[str],
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Any,
    run_args: RunArguments,
    max_length: int,
) -> NerTrainer:
    """The `NerTrainer` over the encoded train (and dev) windows, scoring dev F1 by word."""
    from transformers import EarlyStoppingCallback

    label2id = {label: i for i, label in enumerate(labels)}

    def features(split: str) -> list[dict[str, Any]]:
        return encode(
            splits[split],
            tokenizer,
            label2id,
            max_length=max_length,
            stride=data_args.stride,
            label_all_subwords=data_args.label_all_subwords,
        )

    has_dev = "validation" in splits
    if not has_dev:  # nothing to pick a best model by
        training_args.eval_strategy = "no"
        training_args.load_best_model_at_end = False
    dev_features = features("validation") if has_dev else None
    callbacks = []
    if run_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=run_args.early_stopping_patience))
    return NerTrainer(
        model=model,
        args=training_args,
        train_dataset=_model_inputs(features("train")),
        eval_dataset=_model_inputs(dev_features) if has_dev else None,
        data_collator=data_collator(tokenizer, max_length, data_args.pad_to_max_length),
        processing_class=tokenizer,
        compute_metrics=_dev_metrics(dev_features, splits["validation"], dict(enumerate(labels))) if has_dev else None,
        preprocess_logits_for_metrics=_metrics_predictions(model, run_args.decoding),
        callbacks=callbacks,
        classifier_learning_rate=model_args.classifier_learning_rate,
    )


def data_collator(tokenizer: Any, max_length: int, pad_to_max_length: bool = False) -> Any:
    """Pads each batch to its longest window, or (``--pad-to-max-length``, run_ner.py's option) to ``max_length``."""
    from transformers import DataCollatorForTokenClassification

    if pad_to_max_length:
        return DataCollatorForTokenClassification(tokenizer, padding="max_length", max_length=max_length)
    return DataCollatorForTokenClassification(tokenizer)


def _train_or_resume(trainer: NerTrainer, output_dir: Path, training_args: Any, run_args: RunArguments) -> dict:
    """Trains, from ``--resume-from-checkpoint`` or (``--resume``) the last complete checkpoint if there is one.

    Returns the Trainer's ``train_*`` figures, and ``best_eval_f1``: its own dev F1 of the kept model.
    """
    checkpoint = training_args.resume_from_checkpoint  # checked by check_options
    if checkpoint is None and run_args.resume and output_dir.is_dir():
        checkpoint = last_complete_checkpoint(output_dir)
    if run_args.resume and checkpoint is None:
        logger.warning("--resume: no checkpoint in %s, starting from the beginning.", output_dir)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics: dict[str, Any] = dict(result.metrics)
    if trainer.state.best_metric is not None:
        metrics["best_eval_f1"] = trainer.state.best_metric  # the Trainer's own dev F1 of the kept model
    return metrics


def _score_splits(
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


def is_complete_checkpoint(path: str | Path) -> bool:
    """Whether a checkpoint folder was completely written: the Trainer writes ``trainer_state.json`` last."""
    return (Path(path) / "trainer_state.json").is_file()


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` in ``output_dir`` that was completely written, or `None`.

    The Trainer writes ``trainer_state.json`` last, so a folder without it is a checkpoint that a
    killed run left half-written: `get_last_checkpoint` would pick it and resuming would fail.
    """
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    steps = {}
    for path in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = path.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-")
        if path.is_dir() and step.isdigit():
            steps[int(step)] = path
    for step in sorted(steps, reverse=True):
        if is_complete_checkpoint(steps[step]):
            return str(steps[step])
        logger.warning("--resume: %s was not completely written (no trainer_state.json); skipping it.", steps[step])
    return None


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


def _save_model(model: Any, tokenizer: Any, output_dir: Path) -> None:
    """Saves the trained model and its tokenizer in ``output_dir``, before anything else can fail."""
    model.save_pretrained(output_dir)
    save_tokenizer(tokenizer, output_dir)
    scrub_outputs(output_dir)  # secrets masked in what transformers and the Trainer wrote, checkpoints included


def _save_results(
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
