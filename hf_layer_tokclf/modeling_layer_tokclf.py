"""A BERT token classifier that reads a chosen hidden layer and builds only the layers it uses.

This file travels next to every saved model and is executed by whoever loads it with
``trust_remote_code=True``: it imports only ``torch``, ``transformers`` and its sibling
configuration file, works on transformers 4.x and 5.x, and has no side effects.
"""

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput, TokenClassifierOutput
from transformers.models.bert.modeling_bert import BertModel, BertPreTrainedModel
from transformers.utils import logging

from .configuration_layer_tokclf import LayerTokenClassificationConfig

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


class LayerPreTrainedModel(BertPreTrainedModel):
    """Builds the truncated encoder and turns its hidden states into one feature vector per token."""

    config_class = LayerTokenClassificationConfig

    def _build_encoder(self, config):
        layers = config.layers
        # Regexes for checkpoint keys this model has no place for: deeper layers, the pooler
        # and pretraining heads. Skipping them is the point, so they stay out of the load report.
        deeper = "|".join(str(i) for i in range(config.num_layers_used, config.num_hidden_layers))
        self._keys_to_ignore_on_load_unexpected = [r"(^|\.)pooler\.", r"^cls\."]
        if deeper:
            self._keys_to_ignore_on_load_unexpected.append(rf"(^|\.)encoder\.layer\.({deeper})\.")
        # BertModel builds `num_hidden_layers` layers; keep the backbone's depth in the shared
        # config (negative indices and costs refer to it) and build only the used ones.
        full_depth = config.num_hidden_layers
        config.num_hidden_layers = config.num_layers_used
        try:
            self.bert = BertModel(config, add_pooling_layer=False)
        finally:
            config.num_hidden_layers = full_depth
        self.layers = layers
        use_mix = len(layers) > 1 and config.layer_pooling == "scalar_mix"
        self.scalar_mix = ScalarMix(len(layers)) if use_mix else None

    def _init_weights(self, module):
        if module is getattr(self, "classifier", None):
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

    def _encode(self, output_attentions, output_hidden_states, **inputs):
        """Runs the truncated encoder; ``last_hidden_state`` holds the features the head reads."""
        need_all = len(self.layers) > 1
        # Only pass flags that were given: 4.x and 5.x fill in the config defaults differently.
        flags = {"output_attentions": output_attentions, "output_hidden_states": output_hidden_states or need_all}
        flags = {k: v for k, v in flags.items() if v is not None}
        outputs = self.bert(**inputs, **flags, return_dict=True)
        if not need_all:  # the encoder ends at the selected layer
            features = outputs.last_hidden_state
        else:
            states = [outputs.hidden_states[i] for i in self.layers]
            if self.scalar_mix is not None:
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

        A plain BERT checkpoint stores all its layers; one saved by this class stores only the
        layers its ``hidden_layer`` used, so asking it for a deeper layer is an error rather
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
        missing = {
            key.split("encoder.layer.")[1].split(".")[0] for key in info["missing_keys"] if "encoder.layer." in key
        }
        if missing:
            names = ", ".join(f"encoder.layer.{i}" for i in sorted(missing, key=int))
            raise ValueError(
                f"hidden_layer={model.config.hidden_layer} needs {model.config.num_layers_used} encoder layers, but "
                f"the weights at {pretrained_model_name_or_path} lack {names}: they would be random. Its config.json "
                "does not match its weights; choose a shallower hidden_layer, or start again from the full backbone."
            )
        result = (model, info) if want_info else model
        used = model.config.num_layers_used
        if used < stored:
            logger.warning(
                f"{cls.__name__} reads hidden_layer={model.config.hidden_layer}: it builds {used} of the "
                f"{stored} encoder layers in {pretrained_model_name_or_path} and skips the weights of the "
                f"other {stored - used} and of the pooler."
            )
        return result

    @staticmethod
    def _check_depth(config, stored, source):
        if config.num_layers_used > stored:
            raise ValueError(
                f"hidden_layer={config.hidden_layer} needs {config.num_layers_used} encoder layers, but the "
                f"checkpoint at {source} stores only {stored}. Choose hidden_layer <= {stored}, or start again "
                "from the full backbone checkpoint."
            )


class BertForLayerTokenClassification(LayerPreTrainedModel):
    r"""
    BERT with a token classification head (dropout + linear) on a chosen hidden layer, or on a
    pooled set of layers. Only the encoder layers up to the deepest selected one are built,
    run and saved, so ``hidden_layer=k`` of ``L`` costs about ``k / L`` of the full model.

    With ``hidden_layer=-1`` it computes exactly what [`BertForTokenClassification`] computes.
    """

    # The loss is a mean over the batch's labeled tokens, not a sum over `num_items_in_batch`: the
    # Trainer then divides it by the gradient accumulation steps, and passes no `num_items_in_batch`
    # to forward (4.x's BertModel.forward would reject it).
    accepts_loss_kwargs = False

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self._build_encoder(config)
        dropout = config.classifier_dropout
        self.dropout = nn.Dropout(config.hidden_dropout_prob if dropout is None else dropout)
        self.classifier = nn.Linear(config.classifier_input_size, config.num_labels)
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
            (special tokens, padding, non-first subwords).
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
            loss = nn.functional.cross_entropy(
                logits.view(-1, self.num_labels), labels.reshape(-1).to(logits.device), ignore_index=-100
            )

        output = TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=encoded.hidden_states, attentions=encoded.attentions
        )
        return self._return(output, return_dict)

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self._auto_class is not None:
            # AutoModel gives the encoder part, as it does for BERT; saving keeps this auto_map entry.
            module = type(self).__module__.rsplit(".", 1)[-1]
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            self.config.auto_map = {**auto_map, "AutoModel": f"{module}.BertLayerModel"}
        return super().save_pretrained(save_directory, *args, **kwargs)


class BertLayerModel(LayerPreTrainedModel):
    r"""
    The encoder part of [`BertForLayerTokenClassification`], what ``AutoModel`` returns: the
    truncated BERT and the layer pooling, without the classification head. ``last_hidden_state``
    holds the features the head would read (the chosen layer, or the pooled layers).
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


__all__ = ["BertForLayerTokenClassification", "BertLayerModel", "LayerPreTrainedModel"]
