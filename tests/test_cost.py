"""Relative compute cost of layer k, counted by torch's FLOP counter on the family's own modules."""

import json

import pytest
from transformers import BertConfig

from hf_layer_tokclf import LayerTokenClassificationConfig
from hf_layer_tokclf.cost import layer_flops, relative_costs


def test_layer_k_of_l_costs_about_k_over_l():
    costs = relative_costs(BertConfig(), range(13), 3, mean_tokens=128)
    assert costs[0] < 1e-3 and costs[6] == pytest.approx(0.5, abs=1e-3) and costs[12] == 1.0
    assert list(costs.values()) == sorted(costs.values())


@pytest.mark.parametrize(("hidden", "inner", "tokens"), [(768, 3072, 128), (384, 1536, 57), (32, 64, 7)])
def test_the_counted_flops_are_a_bert_layers_matrix_products(hidden, inner, tokens):
    # Q, K, V and output projections, the feed-forward pair, attention scores and mixing: 2 FLOPs a multiply-add.
    config = BertConfig(hidden_size=hidden, intermediate_size=inner, num_attention_heads=4)
    assert layer_flops(config, tokens) == 2 * (4 * hidden * hidden + 2 * hidden * inner + 2 * tokens * hidden)


def test_our_config_and_a_config_json_cost_the_same_as_the_bert_they_wrap(tmp_path):
    ours = LayerTokenClassificationConfig(hidden_layer=3, num_hidden_layers=6, hidden_size=384, intermediate_size=1536)
    ours.save_pretrained(tmp_path)
    from_file = json.loads((tmp_path / "config.json").read_text())
    bert = BertConfig(num_hidden_layers=6, hidden_size=384, intermediate_size=1536)
    expected = relative_costs(bert, [0, 3, 6], 2)
    assert relative_costs(ours, [0, 3, 6], 2) == expected == relative_costs(from_file, [0, 3, 6], 2)


@pytest.mark.parametrize("family", ["bert", "roberta", "electra", "deberta-v2", "modernbert"])
def test_parameter_counts_are_the_built_models(family, checkpoints):
    from transformers import AutoModelForTokenClassification

    from hf_layer_tokclf import AutoModelForLayerTokenClassification
    from hf_layer_tokclf.cost import parameter_counts

    ours = AutoModelForLayerTokenClassification.from_pretrained(checkpoints[family], hidden_layer=2, num_labels=3)
    stock = AutoModelForTokenClassification.from_pretrained(checkpoints[family], num_labels=3)
    used, full = parameter_counts(ours.config.to_dict())
    assert used == sum(p.numel() for p in ours.parameters()) < full == sum(p.numel() for p in stock.parameters())


def test_the_one_layer_model_of_a_family_with_per_layer_fields(checkpoints):
    """ModernBERT's config lists an attention type per layer (5.x): a one-layer model gets the first entry."""
    from hf_layer_tokclf.cost import backbone_config

    config = json.loads((checkpoints["modernbert"] / "config.json").read_text())
    one = backbone_config(config, num_hidden_layers=1)
    assert type(one).__name__ == "ModernBertConfig" and one.num_hidden_layers == 1
    if "layer_types" in config:
        assert one.layer_types == config["layer_types"][:1]
    costs = relative_costs(config, [0, 2, 4], 3)
    assert costs[0] < 0.01 and costs[2] == pytest.approx(0.5, abs=0.01) and costs[4] == 1.0
