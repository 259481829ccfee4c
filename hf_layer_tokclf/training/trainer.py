"""The Trainer of a run: `NerTrainer` (dev batches in order, the head's own learning rate), `build_trainer` over the
encoded windows with its metrics and callbacks, `train_or_resume`, and the checkpoints a run can resume from."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch.utils.data import SequentialSampler
from transformers import Trainer

from ..base.defaults import TRAINER_DEFAULTS
from ..formats.sentence import Sentence
from ..running.decoding import label_decoder, token_predictions
from ..running.features import BOOKKEEPING_KEYS, encode, merge_windows
from ..running.metrics import entity_scores
from ..running.sentences import flat_scores
from .arguments import DataArguments, ModelArguments, RunArguments
from .head import HEAD_PARAMETERS

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


def model_input_rows(features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`features.encode`'s windows without their bookkeeping: what the Trainer's collator takes."""
    return [{k: v for k, v in f.items() if k not in BOOKKEEPING_KEYS} for f in features]


def dev_metrics(features: list[dict[str, Any]], sentences: list[Sentence], id2label: dict[int, str]):
    """`compute_metrics` for the Trainer: windows merged back to words, every gold word scored."""
    lengths = [len(s.tokens) for s in sentences]

    def compute_metrics(prediction: Any) -> dict[str, float]:
        words = merge_windows(features, prediction.predictions, lengths)
        predicted = [[id2label[int(i)] for i in row] for row in words]
        return flat_scores(entity_scores([s.labels for s in sentences], predicted), "")

    return compute_metrics


class NerTrainer(Trainer):
    """The Trainer, with evaluation batches kept in dataset order, and the head's own learning rate.

    `compute_metrics` merges windows back into sentences by position; length grouping, which
    speeds up training, would otherwise shuffle the evaluation batches too (transformers 4.x and
    5.x group both). Distributed evaluation keeps this order when it gathers.

    Args:
        classifier_learning_rate: The learning rate of the `HEAD_PARAMETERS`; ``None`` keeps the
            Trainer's single learning rate for every parameter.
        train_batch_sampler: The training batches, as a ``batch_sampler`` (`multitask.TaskBatchSampler`: each
            batch of one task); None: the Trainer's own sampler.
    """

    def __init__(
        self,
        *args: Any,
        classifier_learning_rate: float | None = None,
        train_batch_sampler: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.classifier_learning_rate = classifier_learning_rate
        self.train_batch_sampler = train_batch_sampler

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        return SequentialSampler(eval_dataset)

    def get_train_dataloader(self) -> Any:
        """The Trainer's, or with ``train_batch_sampler`` a loader of its batches (prepared by accelerate, which
        passes the epoch on to the sampler's ``set_epoch`` and shards the batches under torchrun)."""
        if self.train_batch_sampler is None:
            return super().get_train_dataloader()
        from torch.utils.data import DataLoader

        loader = DataLoader(
            self.train_dataset,
            batch_sampler=self.train_batch_sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        return self.accelerator.prepare(loader)

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


def build_trainer(
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
    dev_features = features("validation") if has_dev else None
    return ner_trainer(
        model,
        tokenizer,
        (model_args, data_args, training_args, run_args),
        max_length,
        train_dataset=model_input_rows(features("train")),
        eval_dataset=model_input_rows(dev_features) if has_dev else None,
        compute_metrics=dev_metrics(dev_features, splits["validation"], dict(enumerate(labels))) if has_dev else None,
        preprocess_logits_for_metrics=_metrics_predictions(model, run_args.decoding),
    )


def ner_trainer(
    model: Any,
    tokenizer: Any,
    arguments: tuple[ModelArguments, DataArguments, Any, RunArguments],
    max_length: int,
    *,
    train_dataset: list[dict[str, Any]],
    eval_dataset: list[dict[str, Any]] | None,
    wrap_collator: Any = None,
    **kwargs: Any,
) -> NerTrainer:
    """The `NerTrainer` of a run (``arguments``: model, data, Trainer and run options) over its encoded windows,
    with the run's collator (wrapped by ``wrap_collator``), early stopping and head learning rate; without dev
    data, nothing to evaluate or pick a best model by. ``kwargs`` go to `NerTrainer`."""
    from transformers import EarlyStoppingCallback

    model_args, data_args, training_args, run_args = arguments
    if eval_dataset is None:  # nothing to pick a best model by
        training_args.eval_strategy = "no"
        training_args.load_best_model_at_end = False
    callbacks = []
    if run_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=run_args.early_stopping_patience))
    collator = data_collator(tokenizer, max_length, data_args.pad_to_max_length)
    return NerTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=wrap_collator(collator) if wrap_collator else collator,
        processing_class=tokenizer,
        callbacks=callbacks,
        classifier_learning_rate=model_args.classifier_learning_rate,
        **kwargs,
    )


def data_collator(tokenizer: Any, max_length: int, pad_to_max_length: bool = False) -> Any:
    """Pads each batch to its longest window, or (``--pad-to-max-length``, run_ner.py's option) to ``max_length``."""
    from transformers import DataCollatorForTokenClassification

    if pad_to_max_length:
        return DataCollatorForTokenClassification(tokenizer, padding="max_length", max_length=max_length)
    return DataCollatorForTokenClassification(tokenizer)


def train_or_resume(trainer: NerTrainer, output_dir: Path, training_args: Any, run_args: RunArguments) -> dict:
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
