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
