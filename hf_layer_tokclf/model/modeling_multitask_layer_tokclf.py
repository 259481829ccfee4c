"""Multi-task token classifiers: one encoder pass up to the deepest layer any task reads, a head per task on its
own layer, each head learning only from its own corpus's rows.

Corpora annotate different entity types, and a type a corpus does not annotate is ``O`` there only because
nobody marked it: a single head over the union of labels would learn those ``O`` as facts. Here each task
(a corpus and its labels) has its own dropout, linear head and optional CRF, and a batch's ``task_ids`` say
which head each row's labels are for.

This file travels next to every saved multi-task model and is executed by whoever loads it with
``trust_remote_code=True``: it imports only ``torch``, ``transformers`` and its sibling files, works on
transformers 4.x and 5.x, and has no side effects.
"""

import torch
from torch import nn
from transformers.modeling_outputs import TokenClassifierOutput

from .configuration_layer_tokclf import (
    DebertaV2MultiTaskLayerTokenClassificationConfig,
    ElectraMultiTaskLayerTokenClassificationConfig,
    ModernBertMultiTaskLayerTokenClassificationConfig,
    MultiTaskLayerTokenClassificationConfig,
    RobertaMultiTaskLayerTokenClassificationConfig,
    XLMRobertaMultiTaskLayerTokenClassificationConfig,
)
from .modeling_layer_tokclf import (
    BertLayerPreTrainedModel,
    DebertaV2LayerPreTrainedModel,
    ElectraLayerPreTrainedModel,
    ModernBertLayerPreTrainedModel,
    RobertaLayerPreTrainedModel,
    XLMRobertaLayerPreTrainedModel,
    custom_pipelines,
)
from .pipeline_layer_tokclf import LinearChainCRF, MultiTaskLayerTokenClassificationPipeline

try:  # transformers 5.x
    from .configuration_layer_tokclf import EuroBertMultiTaskLayerTokenClassificationConfig
    from .modeling_layer_tokclf import EuroBertLayerPreTrainedModel
except ImportError:  # transformers 4.x has no EuroBERT
    EuroBertLayerPreTrainedModel = None


class MultiTaskLayerTokenClassifier:
    r"""
    A head per task (dropout + linear, + CRF where the task has ``use_crf``) on the task's own hidden layer, over
    one encoder built and run up to the deepest of them. Mixed in before a family's [`LayerPreTrainedModel`].
    """

    accepts_loss_kwargs = False  # as `LayerTokenClassifier`: the loss is a mean over the labeled tokens

    def __init__(self, config):
        super().__init__(config)
        if not config.tasks:
            raise ValueError(f"{type(self).__name__} needs at least one task in config.tasks.")
        self._build_encoder(config)
        tasks = config.tasks
        self.dropouts = nn.ModuleDict({name: nn.Dropout(config.task_dropout(name)) for name in tasks})
        self.classifiers = nn.ModuleDict(
            {name: nn.Linear(config.hidden_size, len(task["labels"])) for name, task in tasks.items()}
        )
        self.crfs = nn.ModuleDict(
            {name: LinearChainCRF(config.task_id2label(name)) for name, task in tasks.items() if task["use_crf"]}
        )
        self.post_init()

    def _is_new_head(self, module):
        return any(module is head for head in self.classifiers.values())

    def task_decoder(self, name):
        """Task ``name``'s CRF, or (without one) the constraints of its labels alone: what decodes its logits."""
        return self.crfs[name] if name in self.crfs else LinearChainCRF(self.config.task_id2label(name), learned=False)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        task_ids=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Each row's label ids in its own task's labels (`config.tasks[name]["labels"]`); `-100` marks tokens
            the loss ignores.
        task_ids (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Each row's task, an index into `config.task_names`; needed with `labels` when there are several tasks.
            A head learns only from its own task's rows.

        Returns a `TokenClassifierOutput` whose ``logits`` is a dict: task name -> its head's scores
        `(batch_size, sequence_length, len(task labels))`, for every row (with a CRF, its emission scores); the
        ``loss`` is the mean over the labeled tokens of each row's loss under its own task's head.
        """
        outputs, states = self._layer_states(
            output_attentions,
            output_hidden_states,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        logits = {
            name: self.classifiers[name](self.dropouts[name](states[task["hidden_layer"]]))
            for name, task in self.config.tasks.items()
        }
        loss = None if labels is None else self.task_loss(logits, labels, task_ids)
        output = TokenClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states if output_hidden_states else None,
            attentions=outputs.attentions,
        )
        return self._return(output, return_dict)

    def task_loss(self, logits, labels, task_ids):
        """The mean over labeled tokens of each row's loss under its own task's head (`forward`'s ``loss``)."""
        names = self.config.task_names
        shape = next(iter(logits.values())).shape[:2]
        if labels.shape != shape:
            raise ValueError(f"labels have shape {tuple(labels.shape)}, but the inputs give {tuple(shape)}.")
        if task_ids is None and len(names) > 1:
            raise ValueError(f"labels need task_ids (one per row, an index into the tasks {names}).")
        labels = labels.to(next(iter(logits.values())).device)
        task_ids = torch.zeros(len(labels), dtype=torch.long) if task_ids is None else task_ids
        task_ids = task_ids.to(labels.device).view(-1)
        if len(task_ids) != len(labels) or ((task_ids < 0) | (task_ids >= len(names))).any():
            raise ValueError(f"task_ids {task_ids.tolist()} must give each of the {len(labels)} rows a task id "
                             f"in 0..{len(names) - 1} ({names}).")  # fmt: skip
        total, count = None, 0
        for index, name in enumerate(names):
            rows = task_ids == index
            task_labels, scores = labels[rows], logits[name][rows]
            labeled = int((task_labels != -100).sum())
            if not labeled:
                continue
            if int(task_labels.max()) >= scores.shape[-1]:
                raise ValueError(f"a row of task {name!r} has label id {int(task_labels.max())}; "
                                 f"its labels are ids 0..{scores.shape[-1] - 1}.")  # fmt: skip
            if name in self.crfs:
                loss = self.crfs[name].word_loss(scores, task_labels)
            else:
                loss = nn.functional.cross_entropy(scores.reshape(-1, scores.shape[-1]), task_labels.reshape(-1))
            total = loss * labeled if total is None else total + loss * labeled
            count += labeled
        if total is None:  # nothing labeled: a zero that still has a graph
            return sum(scores.sum() for scores in logits.values()) * 0.0
        return total / count

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self._auto_class is not None:
            # pipeline("token-classification", model=path, trust_remote_code=True) gives every task's entities.
            self.config.custom_pipelines = custom_pipelines(MultiTaskLayerTokenClassificationPipeline)
        return super().save_pretrained(save_directory, *args, **kwargs)


# The families: the single-task model's machinery with the multi-task config and heads.


class BertForMultiTaskLayerTokenClassification(MultiTaskLayerTokenClassifier, BertLayerPreTrainedModel):
    """BERT (PubMedBERT, BioBERT, MiniLM, ...) with a token classification head per task, each on its own layer."""

    config_class = MultiTaskLayerTokenClassificationConfig


class RobertaForMultiTaskLayerTokenClassification(MultiTaskLayerTokenClassifier, RobertaLayerPreTrainedModel):
    """RoBERTa with a token classification head per task, each on its own layer."""

    config_class = RobertaMultiTaskLayerTokenClassificationConfig


class XLMRobertaForMultiTaskLayerTokenClassification(MultiTaskLayerTokenClassifier, XLMRobertaLayerPreTrainedModel):
    """XLM-RoBERTa with a token classification head per task, each on its own layer."""

    config_class = XLMRobertaMultiTaskLayerTokenClassificationConfig


class ElectraForMultiTaskLayerTokenClassification(MultiTaskLayerTokenClassifier, ElectraLayerPreTrainedModel):
    """An ELECTRA discriminator with a token classification head per task, each on its own layer."""

    config_class = ElectraMultiTaskLayerTokenClassificationConfig


class DebertaV2ForMultiTaskLayerTokenClassification(MultiTaskLayerTokenClassifier, DebertaV2LayerPreTrainedModel):
    """DeBERTa-v2 or -v3 with a token classification head per task, each on its own layer."""

    config_class = DebertaV2MultiTaskLayerTokenClassificationConfig


class ModernBertForMultiTaskLayerTokenClassification(MultiTaskLayerTokenClassifier, ModernBertLayerPreTrainedModel):
    """ModernBERT with a token classification head per task, each on its own layer."""

    config_class = ModernBertMultiTaskLayerTokenClassificationConfig


if EuroBertLayerPreTrainedModel is not None:

    class EuroBertForMultiTaskLayerTokenClassification(MultiTaskLayerTokenClassifier, EuroBertLayerPreTrainedModel):
        """EuroBERT (transformers 5.x) with a token classification head per task, each on its own layer."""

        config_class = EuroBertMultiTaskLayerTokenClassificationConfig


__all__ = [
    "BertForMultiTaskLayerTokenClassification",
    "DebertaV2ForMultiTaskLayerTokenClassification",
    "ElectraForMultiTaskLayerTokenClassification",
    "ModernBertForMultiTaskLayerTokenClassification",
    "MultiTaskLayerTokenClassifier",
    "RobertaForMultiTaskLayerTokenClassification",
    "XLMRobertaForMultiTaskLayerTokenClassification",
] + (["EuroBertForMultiTaskLayerTokenClassification"] if EuroBertLayerPreTrainedModel is not None else [])
