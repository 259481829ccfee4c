"""Token classifiers that read a chosen hidden layer of an encoder and build only the layers they use.

Shared machinery ([`LayerPreTrainedModel`], [`LayerTokenClassifier`], [`LayerEncoder`]) and, per encoder
family, a few lines naming the family's classes and where its checkpoints keep their layers.

This file travels next to every saved model and is executed by whoever loads it with
``trust_remote_code=True``: it imports only ``torch``, ``transformers`` and its sibling
configuration and pipeline files, works on transformers 4.x and 5.x, and has no side effects.
"""

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput, TokenClassifierOutput
from transformers.models.bert.modeling_bert import BertModel, BertPreTrainedModel
from transformers.models.deberta_v2.modeling_deberta_v2 import DebertaV2Model, DebertaV2PreTrainedModel
from transformers.models.electra.modeling_electra import ElectraModel, ElectraPreTrainedModel
from transformers.models.modernbert.modeling_modernbert import ModernBertModel, ModernBertPreTrainedModel
from transformers.models.roberta.modeling_roberta import RobertaModel, RobertaPreTrainedModel
from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaModel, XLMRobertaPreTrainedModel
from transformers.utils import logging

from .configuration_layer_tokclf import (
    DebertaV2LayerTokenClassificationConfig,
    ElectraLayerTokenClassificationConfig,
    LayerTokenClassificationConfig,
    ModernBertLayerTokenClassificationConfig,
    RobertaLayerTokenClassificationConfig,
    XLMRobertaLayerTokenClassificationConfig,
)
from .pipeline_layer_tokclf import LayerTokenClassificationPipeline, LinearChainCRF

try:  # transformers 5.x
    from transformers.models.eurobert.modeling_eurobert import EuroBertModel, EuroBertPreTrainedModel

    from .configuration_layer_tokclf import EuroBertLayerTokenClassificationConfig
except ImportError:  # transformers 4.x has no EuroBERT
    EuroBertModel = None

try:  # transformers 5.x: these skip tensors already loaded from a checkpoint
    from transformers import initialization as init
except ImportError:  # transformers 4.x only initialises what the checkpoint lacks
    from torch.nn import init

logger = logging.get_logger(__name__)

# The keyword arguments of `from_pretrained` that say where a checkpoint's files come from.
_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision", "subfolder")


class ScalarMix(nn.Module):
    """ELMo's scalar mix: ``gamma * sum_j softmax(w)_j * h_j`` over the selected layers."""

    def __init__(self, num_layers):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_layers))
        self.gamma = nn.Parameter(torch.ones(1))

    def forward(self, states):
        weights = torch.softmax(self.weights, dim=0).to(states[0].dtype)
        return self.gamma.to(states[0].dtype) * sum(w * h for w, h in zip(weights, states, strict=True))


class LayerPreTrainedModel:
    """Builds the truncated encoder and turns its hidden states into one feature vector per token.

    Mixed in before a family's ``*PreTrainedModel``; a family says, in class attributes, what differs.
    """

    backbone_class = None  # the family's base model, e.g. `BertModel`; stored under `base_model_prefix`
    backbone_has_pooler = False  # its constructor takes add_pooling_layer (False here: no pooler)
    layers_name = "encoder.layer"  # the backbone's list of layers
    final_norm_name = None  # a norm the backbone applies after its last layer only (ModernBERT, EuroBERT)
    min_layers_built = 0  # 1 where the encoder cannot run without a layer (DeBERTa-v2): layer 0 is hidden_states[0]
    # Regexes for checkpoint keys this model never has a place for: poolers and pretraining heads.
    unused_weights = ()

    def _build_encoder(self, config):
        built, depth = max(config.num_layers_used, self.min_layers_built), config.num_hidden_layers
        deeper = "|".join(str(i) for i in range(built, depth))
        # Skipping these checkpoint keys is the point, so they stay out of the load report.
        ignored = list(self.unused_weights)
        if deeper:
            layers = self.layers_name.replace(".", r"\.")
            ignored.append(rf"(^|\.){layers}\.({deeper})\.")
        if deeper and self.final_norm_name:
            ignored.append(rf"(^|\.){self.final_norm_name}\.")
        self._keys_to_ignore_on_load_unexpected = ignored
        # The backbone builds `num_hidden_layers` layers; keep its depth in the shared config (negative
        # indices and costs refer to it) and build only the used ones. Per-layer lists (ModernBERT's
        # `layer_types`) keep their length: layer i is built from entry i.
        config.num_hidden_layers = built
        try:
            pooler = {"add_pooling_layer": False} if self.backbone_has_pooler else {}
            backbone = self.backbone_class(config, **pooler)
        finally:
            config.num_hidden_layers = depth
        if deeper and self.final_norm_name:
            # Layer k < L is the raw output of layer k, as in the full model's hidden_states[k].
            setattr(backbone, self.final_norm_name, nn.Identity())
        setattr(self, self.base_model_prefix, backbone)
        self.layers = config.layers
        use_mix = len(self.layers) > 1 and config.layer_pooling == "scalar_mix"
        self.scalar_mix = ScalarMix(len(self.layers)) if use_mix else None

    @property
    def encoder_layers(self):
        """The encoder layers this model built: ``config.num_layers_used`` (at least ``min_layers_built``)."""
        return self.base_model.get_submodule(self.layers_name)

    def _init_weights(self, module):
        if self._is_new_head(module):
            # A new head starts as a bare `nn.Linear` does (PyTorch's init, bias included), not with BERT's
            # normal(0, 0.02) and zero bias: from a few hundred sentences that head learns entities within
            # the first epoch, where BERT's init still predicts only O (benchmarks/few_data.py).
            init.kaiming_uniform_(module.weight, a=5**0.5)
            bound = module.in_features**-0.5
            init.uniform_(module.bias, -bound, bound)
            return
        super()._init_weights(module)
        if isinstance(module, ScalarMix):
            init.zeros_(module.weights)
            init.ones_(module.gamma)
        if isinstance(module, LinearChainCRF):
            for transitions in (module.start_transitions, module.transitions, module.end_transitions):
                init.zeros_(transitions)

    def _is_new_head(self, module):
        """Whether ``module`` is a classification head (initialised as a bare `nn.Linear`, see `_init_weights`)."""
        return module is getattr(self, "classifier", None)

    def _layer_states(self, output_attentions, output_hidden_states, **inputs):
        """Runs the truncated encoder: its outputs, and ``{layer: hidden state}`` of each selected layer."""
        built = len(self.encoder_layers)
        need_states = self.layers != [built]  # else the encoder ends at the selected layer
        # Only pass what was given: 4.x and 5.x fill in the config defaults differently, and some
        # families take no token_type_ids (ModernBERT, EuroBERT) or ignore them (DeBERTa-v3).
        flags = {"output_attentions": output_attentions, "output_hidden_states": output_hidden_states or need_states}
        inputs = {k: v for k, v in {**inputs, **flags}.items() if v is not None}
        if not getattr(self.config, "type_vocab_size", 0):
            inputs.pop("token_type_ids", None)
        outputs = self.base_model(**inputs, return_dict=True)
        # The deepest layer built is `last_hidden_state` (the full model's, with its final norm, at k = L).
        return outputs, {i: outputs.last_hidden_state if i == built else outputs.hidden_states[i] for i in self.layers}

    def _encode(self, output_attentions, output_hidden_states, **inputs):
        """Runs the truncated encoder; ``last_hidden_state`` holds the features the head reads."""
        outputs, by_layer = self._layer_states(output_attentions, output_hidden_states, **inputs)
        states = [by_layer[i] for i in self.layers]
        if len(states) == 1:
            features = states[0]
        elif self.scalar_mix is not None:
            features = self.scalar_mix(states)
        elif self.config.layer_pooling == "concat":
            features = torch.cat(states, dim=-1)
        else:
            features = torch.stack(states).mean(dim=0)
        return BaseModelOutput(
            last_hidden_state=features,
            hidden_states=outputs.hidden_states if output_hidden_states else None,
            attentions=outputs.attentions,
        )

    def _return(self, output, return_dict):
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, plus a check that the checkpoint stores every layer used.

        A plain checkpoint of the family stores all its layers; one saved by this class stores only
        the layers its ``hidden_layer`` used, so asking it for a deeper layer is an error rather
        than a silently random layer.
        """
        hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
        config_dict, _ = cls.config_class.get_config_dict(pretrained_model_name_or_path, **hub_kwargs)
        stored = cls.config_class.layers_in_checkpoint(config_dict)
        config = kwargs.get("config")
        if isinstance(config, cls.config_class):
            cls._check_depth(config, stored, pretrained_model_name_or_path)
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
        )
        cls._check_depth(model.config, stored, pretrained_model_name_or_path)
        # A config.json that claims more layers than the weights hold (edited, or from another save).
        missing = {_layer_index(key, cls.layers_name) for key in info["missing_keys"]} - {None}
        if missing:
            names = ", ".join(f"{cls.layers_name}.{i}" for i in sorted(missing))
            raise ValueError(
                f"hidden_layer={model.config.hidden_layer} needs {model.config.num_layers_used} encoder layers, but "
                f"the weights at {pretrained_model_name_or_path} lack {names}: they would be random. Its config.json "
                "does not match its weights; choose a shallower hidden_layer, or start again from the full backbone."
            )
        used = len(model.encoder_layers)
        if used < stored:
            logger.warning(
                f"{cls.__name__} reads hidden_layer={model.config.hidden_layer}: it builds {used} of the "
                f"{stored} encoder layers in {pretrained_model_name_or_path} and skips the weights of the "
                f"other {stored - used} and of any pooler or pretraining head."
            )
        return (model, info) if want_info else model

    @staticmethod
    def _check_depth(config, stored, source):
        if config.num_layers_used > stored:
            raise ValueError(
                f"hidden_layer={config.hidden_layer} needs {config.num_layers_used} encoder layers, but the "
                f"checkpoint at {source} stores only {stored}. Choose hidden_layer <= {stored}, or start again "
                "from the full backbone checkpoint."
            )


def _layer_index(key, layers_name):
    """N in a checkpoint key such as ``bert.encoder.layer.N.output.dense.weight``; `None` in other keys."""
    head, found, rest = key.partition(f"{layers_name}.")
    index = rest.split(".", 1)[0]
    return int(index) if found and (not head or head.endswith(".")) and index.isdigit() else None


class LayerTokenClassifier:
    r"""
    A token classification head (dropout + linear) on a chosen hidden layer, or on a pooled set of
    layers, of a family's encoder. Only the encoder layers up to the deepest selected one are built,
    run and saved, so ``hidden_layer=k`` of ``L`` costs about ``k / L`` of the full model. Mixed in
    before a family's [`LayerPreTrainedModel`] subclass.
    """

    # The loss is a mean over the batch's labeled tokens, not a sum over `num_items_in_batch`: the
    # Trainer then divides it by the gradient accumulation steps, and passes no `num_items_in_batch`
    # to forward (4.x's encoders would reject it).
    accepts_loss_kwargs = False

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self._build_encoder(config)
        self.dropout = nn.Dropout(config.head_dropout)
        self.classifier = nn.Linear(config.classifier_input_size, config.num_labels)
        self.crf = LinearChainCRF(config.id2label) if getattr(config, "use_crf", False) else None
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Label ids in `[0, num_labels - 1]` for each token; `-100` marks tokens the loss ignores
            (special tokens, padding, non-first subwords). With a CRF (``use_crf``) the loss is its
            negative log-likelihood per labeled word, and ``logits`` are its emission scores: decode
            them with ``self.crf.decode``.
        """
        encoded = self._encode(
            output_attentions,
            output_hidden_states,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        logits = self.classifier(self.dropout(encoded.last_hidden_state))

        loss = None
        if labels is not None:
            if labels.shape != logits.shape[:2]:
                raise ValueError(
                    f"labels have shape {tuple(labels.shape)}, but the inputs give "
                    f"{tuple(logits.shape[:2])} (batch, sequence): one label id (or -100) per token."
                )
            labels = labels.to(logits.device)
            if self.crf is not None:
                loss = self.crf.word_loss(logits, labels)
            else:
                loss = nn.functional.cross_entropy(
                    logits.view(-1, self.num_labels), labels.reshape(-1), ignore_index=-100
                )

        output = TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=encoded.hidden_states, attentions=encoded.attentions
        )
        return self._return(output, return_dict)

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self._auto_class is not None:
            # AutoModel gives the encoder part (`<Family>LayerModel`), as it does for the family's own
            # classifiers; saving keeps this auto_map entry.
            module = type(self).__module__.rsplit(".", 1)[-1]
            encoder = type(self).__name__.replace("ForLayerTokenClassification", "LayerModel")
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            self.config.auto_map = {**auto_map, "AutoModel": f"{module}.{encoder}"}
            # pipeline("token-classification", model=path, trust_remote_code=True) then decodes valid
            # sequences; the pipeline file is saved with this one, which imports it.
            self.config.custom_pipelines = custom_pipelines(LayerTokenClassificationPipeline)
        return super().save_pretrained(save_directory, *args, **kwargs)


def custom_pipelines(pipeline):
    """The config's ``custom_pipelines``: ``pipeline("token-classification", trust_remote_code=True)`` runs
    ``pipeline``, a class of the travelling pipeline file."""
    return {
        "token-classification": {
            "impl": f"{pipeline.__module__.rsplit('.', 1)[-1]}.{pipeline.__name__}",
            "pt": ["AutoModelForTokenClassification"],
            "tf": [],
            "type": "text",
        }
    }


class LayerEncoder:
    r"""
    The encoder part of a layer classifier, what ``AutoModel`` returns: the truncated encoder and the
    layer pooling, without the classification head. ``last_hidden_state`` holds the features the head
    would read (the chosen layer, or the pooled layers).
    """

    def __init__(self, config):
        super().__init__(config)
        self._build_encoder(config)
        self._keys_to_ignore_on_load_unexpected.append(r"^classifier\.")
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        encoded = self._encode(
            output_attentions,
            output_hidden_states,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        return self._return(encoded, return_dict)


# The families: for each, what its checkpoints look like, a classifier and an encoder. With
# hidden_layer=-1 a classifier computes what the family's `*ForTokenClassification` computes where that
# is dropout + linear on the last hidden state (BERT, RoBERTa, XLM-R, ELECTRA, DeBERTa-v2, EuroBERT).


class BertLayerPreTrainedModel(LayerPreTrainedModel, BertPreTrainedModel):
    config_class = LayerTokenClassificationConfig
    backbone_class = BertModel
    backbone_has_pooler = True
    unused_weights = (r"(^|\.)pooler\.", r"^cls\.")


class BertForLayerTokenClassification(LayerTokenClassifier, BertLayerPreTrainedModel):
    """BERT (PubMedBERT, BioBERT, MiniLM, ...) with a token classification head on a chosen hidden layer."""


class BertLayerModel(LayerEncoder, BertLayerPreTrainedModel):
    """The encoder part of [`BertForLayerTokenClassification`]."""


class RobertaLayerPreTrainedModel(LayerPreTrainedModel, RobertaPreTrainedModel):
    config_class = RobertaLayerTokenClassificationConfig
    backbone_class = RobertaModel
    backbone_has_pooler = True
    unused_weights = (r"(^|\.)pooler\.", r"^lm_head\.")


class RobertaForLayerTokenClassification(LayerTokenClassifier, RobertaLayerPreTrainedModel):
    """RoBERTa (BiomedRoBERTa, RoBERTa-base-PM-M3-Voc, ...) with a token classification head on a chosen layer."""


class RobertaLayerModel(LayerEncoder, RobertaLayerPreTrainedModel):
    """The encoder part of [`RobertaForLayerTokenClassification`]."""


class XLMRobertaLayerPreTrainedModel(LayerPreTrainedModel, XLMRobertaPreTrainedModel):
    config_class = XLMRobertaLayerTokenClassificationConfig
    backbone_class = XLMRobertaModel
    backbone_has_pooler = True
    unused_weights = (r"(^|\.)pooler\.", r"^lm_head\.")


class XLMRobertaForLayerTokenClassification(LayerTokenClassifier, XLMRobertaLayerPreTrainedModel):
    """XLM-RoBERTa with a token classification head on a chosen hidden layer."""


class XLMRobertaLayerModel(LayerEncoder, XLMRobertaLayerPreTrainedModel):
    """The encoder part of [`XLMRobertaForLayerTokenClassification`]."""


class ElectraLayerPreTrainedModel(LayerPreTrainedModel, ElectraPreTrainedModel):
    config_class = ElectraLayerTokenClassificationConfig
    backbone_class = ElectraModel
    unused_weights = (r"^discriminator_predictions\.", r"^generator_(predictions|lm_head)\.")


class ElectraForLayerTokenClassification(LayerTokenClassifier, ElectraLayerPreTrainedModel):
    """An ELECTRA discriminator (BioM-ELECTRA, ...) with a token classification head on a chosen hidden layer."""


class ElectraLayerModel(LayerEncoder, ElectraLayerPreTrainedModel):
    """The encoder part of [`ElectraForLayerTokenClassification`]."""


class DebertaV2LayerPreTrainedModel(LayerPreTrainedModel, DebertaV2PreTrainedModel):
    config_class = DebertaV2LayerTokenClassificationConfig
    backbone_class = DebertaV2Model
    min_layers_built = 1
    unused_weights = (r"(^|\.)pooler\.", r"^(lm_predictions|mask_predictions|cls)\.")


class DebertaV2ForLayerTokenClassification(LayerTokenClassifier, DebertaV2LayerPreTrainedModel):
    """DeBERTa-v2 or -v3 with a token classification head on a chosen hidden layer."""


class DebertaV2LayerModel(LayerEncoder, DebertaV2LayerPreTrainedModel):
    """The encoder part of [`DebertaV2ForLayerTokenClassification`]."""


class ModernBertLayerPreTrainedModel(LayerPreTrainedModel, ModernBertPreTrainedModel):
    config_class = ModernBertLayerTokenClassificationConfig
    backbone_class = ModernBertModel
    layers_name = "layers"
    final_norm_name = "final_norm"
    unused_weights = (r"^head\.", r"^decoder\.")


class ModernBertForLayerTokenClassification(LayerTokenClassifier, ModernBertLayerPreTrainedModel):
    """ModernBERT with dropout + linear on a chosen hidden layer (the stock class adds a dense head first)."""


class ModernBertLayerModel(LayerEncoder, ModernBertLayerPreTrainedModel):
    """The encoder part of [`ModernBertForLayerTokenClassification`]."""


if EuroBertModel is not None:

    class EuroBertLayerPreTrainedModel(LayerPreTrainedModel, EuroBertPreTrainedModel):
        config_class = EuroBertLayerTokenClassificationConfig
        backbone_class = EuroBertModel
        layers_name = "layers"
        final_norm_name = "norm"
        unused_weights = (r"^lm_head\.",)

    class EuroBertForLayerTokenClassification(LayerTokenClassifier, EuroBertLayerPreTrainedModel):
        """EuroBERT (transformers 5.x) with a token classification head on a chosen hidden layer."""

    class EuroBertLayerModel(LayerEncoder, EuroBertLayerPreTrainedModel):
        """The encoder part of [`EuroBertForLayerTokenClassification`]."""


__all__ = [
    "BertForLayerTokenClassification",
    "BertLayerModel",
    "DebertaV2ForLayerTokenClassification",
    "DebertaV2LayerModel",
    "ElectraForLayerTokenClassification",
    "ElectraLayerModel",
    "LayerEncoder",
    "LayerPreTrainedModel",
    "LayerTokenClassifier",
    "ModernBertForLayerTokenClassification",
    "ModernBertLayerModel",
    "RobertaForLayerTokenClassification",
    "RobertaLayerModel",
    "XLMRobertaForLayerTokenClassification",
    "XLMRobertaLayerModel",
] + (["EuroBertForLayerTokenClassification", "EuroBertLayerModel"] if EuroBertModel is not None else [])
