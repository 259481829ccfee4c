"""What running a model up to layer k costs, relative to the whole model, counted once.

The FLOPs come from `torch.utils.flop_counter` on the family's own modules: a model of the
family with one encoder layer (random weights, nothing downloaded) runs on a sequence of
``mean_tokens`` tokens, and the counter reports what its layer did. Only matrix products count,
so the embeddings (lookups and a layer norm) cost 0: layer 0 costs about 0 and layer k of L
about k/L, a bit more for the head. The sweep, the model card and the benchmarks all take their
figures from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .configuration_layer_tokclf import FOREIGN_FIELDS

__all__ = ["DEFAULT_MEAN_TOKENS", "backbone_config", "layer_flops", "parameter_counts", "relative_costs"]

# Config fields with one entry per layer (ModernBERT's attention types in transformers 5.x).
PER_LAYER_FIELDS = ("layer_types",)
# A typical window of biomedical sentences; attention's share of a layer's cost grows with it.
DEFAULT_MEAN_TOKENS = 128


def layer_flops(config: Any, mean_tokens: float = DEFAULT_MEAN_TOKENS) -> float:
    """FLOPs per token of one encoder layer of ``config``'s family (an object or a dict), ``mean_tokens`` long."""
    from transformers import AutoModel

    tokens = max(1, round(mean_tokens))
    # A small vocabulary (special token ids inside it): the embeddings count for nothing, so a real (CPU)
    # model of one layer stays small.
    # Position embeddings are lookups too: enough of them for the sequence (RoBERTa's start after the padding id).
    values = _values(config)
    ids = {key: 0 for key, value in values.items() if key.endswith("_token_id") and value is not None}
    positions = max(values.get("max_position_embeddings") or 0, tokens + 2)
    one_layer = backbone_config(config, num_hidden_layers=1, vocab_size=8, max_position_embeddings=positions, **ids)
    # No parameter requires grad: the counter's module tracker hooks the backward of every input that does, and
    # a view taken under no_grad of a parameter (DeBERTa-v2's raw relative position embeddings, norm_rel_ebd
    # "none") still requires grad but has no gradient function, which its hook refuses ("Expected gradient
    # function to be set"). no_grad alone does not prevent that; inference_mode fails the same way.
    model = AutoModel.from_config(one_layer, attn_implementation="eager").eval().requires_grad_(False)
    inputs = {"input_ids": torch.zeros(1, tokens, dtype=torch.long), "attention_mask": torch.ones(1, tokens)}
    # The first entry of the first ModuleList is the encoder's first layer, whatever the family calls it.
    name = next(name for name, module in model.named_modules() if isinstance(module, torch.nn.ModuleList))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(**inputs)
    return sum(counter.get_flop_counts()[f"{type(model).__name__}.{name}.0"].values()) / tokens


def relative_costs(
    config: Any, layers: Sequence[int], num_labels: int, mean_tokens: float = DEFAULT_MEAN_TOKENS
) -> dict[int, float]:
    """Compute of running up to each of ``layers`` and a linear head, relative to the whole model and its head.

    ``config`` is a config object or a ``config.json``'s content; ``layers`` are ``hidden_states``
    indices (0 = embeddings, ``num_hidden_layers`` = last).
    """
    values = _values(config)
    per_layer = layer_flops(config, mean_tokens)
    head = 2 * values["hidden_size"] * num_labels  # a Linear's FLOPs per token, as the counter counts them
    full = values["num_hidden_layers"] * per_layer + head
    return {layer: (layer * per_layer + head) / full for layer in layers}


def backbone_config(config: Any, **overrides: Any) -> Any:
    """The family's own (transformers') config for ``config`` (an object or a dict), plus ``overrides``.

    The layer choice, ``auto_map`` and fields naming other models are dropped: what is built from it
    is transformers' own model of the family, with nothing resolved elsewhere.
    """
    from transformers import CONFIG_MAPPING

    from .auto import family_of

    values = _values(config)
    family = family_of(values.get("model_type", "bert"))
    dropped = {"model_type", "auto_map", "architectures", "hidden_layer", "layer_pooling", *FOREIGN_FIELDS}
    values = {key: value for key, value in values.items() if key not in dropped}
    depth = overrides.get("num_hidden_layers")
    for name in PER_LAYER_FIELDS:  # transformers 5.x requires one entry per layer built
        if depth is not None and isinstance(values.get(name), list):
            values[name] = values[name][:depth]
    return CONFIG_MAPPING[family.backbone_type](**{**values, **overrides})


def parameter_counts(config: Any) -> tuple[int, int]:
    """Parameters of the layer classifier ``config`` describes, and of the family's full ``*ForTokenClassification``.

    Counted on models built on the meta device: no memory, no weights.
    """
    from transformers import AutoModelForTokenClassification

    from .auto import family_of

    values = _values(config)
    family = family_of(values.get("model_type", "bert"))
    if isinstance(config, family.config_class):
        layer_config = config
    else:
        layer_config = family.config_class.from_dict({k: v for k, v in values.items() if k != "model_type"})
    with torch.device("meta"):
        used = family.classifier_class(layer_config)
        full = AutoModelForTokenClassification.from_config(backbone_config(values), attn_implementation="eager")
    return sum(p.numel() for p in used.parameters()), sum(p.numel() for p in full.parameters())


def _values(config: Any) -> dict[str, Any]:
    return dict(config) if isinstance(config, Mapping) else config.to_dict()
