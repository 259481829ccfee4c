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

from .configuration_layer_tokclf import LayerTokenClassificationConfig

__all__ = ["DEFAULT_MEAN_TOKENS", "layer_flops", "relative_costs"]

# A typical window of biomedical sentences; attention's share of a layer's cost grows with it.
DEFAULT_MEAN_TOKENS = 128


def layer_flops(config: Any, mean_tokens: float = DEFAULT_MEAN_TOKENS) -> float:
    """FLOPs per token of one encoder layer of ``config``'s family (an object or a dict), ``mean_tokens`` long."""
    from transformers import CONFIG_MAPPING, AutoConfig, AutoModel

    tokens = max(1, round(mean_tokens))
    # A small vocabulary: the embeddings count for nothing, so a real (CPU) model of one layer stays small.
    values = {**_values(config), "num_hidden_layers": 1, "vocab_size": 8}
    model_type = values.pop("model_type", None)
    if model_type == LayerTokenClassificationConfig.model_type or model_type not in CONFIG_MAPPING:
        model_type = "bert"  # our config is a BERT's, with the layer choice on top
    one_layer = AutoConfig.for_model(model_type, **values)
    model = AutoModel.from_config(one_layer, attn_implementation="eager").eval()
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


def _values(config: Any) -> dict[str, Any]:
    return dict(config) if isinstance(config, Mapping) else config.to_dict()
