"""Relative compute cost of layer k, counted by torch's FLOP counter on the family's own modules."""

import json
import math

import pytest
from families import FAMILIES
from transformers import AutoConfig, BertConfig

from hf_layer_tokclf import LayerTokenClassificationConfig
from hf_layer_tokclf.model.cost import layer_flops, relative_costs


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
    from hf_layer_tokclf.model.cost import parameter_counts

    ours = AutoModelForLayerTokenClassification.from_pretrained(checkpoints[family], hidden_layer=2, num_labels=3)
    stock = AutoModelForTokenClassification.from_pretrained(checkpoints[family], num_labels=3)
    used, full = parameter_counts(ours.config.to_dict())
    assert used == sum(p.numel() for p in ours.parameters()) < full == sum(p.numel() for p in stock.parameters())


def test_the_one_layer_model_of_a_family_with_per_layer_fields(checkpoints):
    """ModernBERT's config lists an attention type per layer (5.x): a one-layer model gets the first entry."""
    from hf_layer_tokclf.model.cost import backbone_config

    config = json.loads((checkpoints["modernbert"] / "config.json").read_text())
    one = backbone_config(config, num_hidden_layers=1)
    assert type(one).__name__ == "ModernBertConfig" and one.num_hidden_layers == 1
    if "layer_types" in config:
        assert one.layer_types == config["layer_types"][:1]
    costs = relative_costs(config, [0, 2, 4], 3)
    assert costs[0] < 0.01 and costs[2] == pytest.approx(0.5, abs=0.01) and costs[4] == 1.0


# --- every family, with the config variants that change what its layers run ----------------------------------------
# Tiny sizes: the counter runs a one-layer model of each. DeBERTa-v2's relative attention comes in many layouts
# (shared or separate position projections, which of c2p / p2c, normalised position embeddings or the raw weight).
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
DEBERTA_RELATIVE = [
    {
        "relative_attention": True,
        "share_att_key": share,
        "position_biased_input": biased,
        "pos_att_type": types,
        "norm_rel_ebd": norm,
    }
    for share in (True, False)
    for biased in (True, False)
    for types in (["p2c", "c2p"], ["c2p"], ["p2c"], "p2c|c2p", None)
    for norm in ("layer_norm", "none")
]
VARIANTS: dict[str, list[dict]] = {
    "bert": [{}, {"chunk_size_feed_forward": 4}, {"type_vocab_size": 1}],
    "roberta": [{}, {"chunk_size_feed_forward": 4}, {"type_vocab_size": 1}],
    "xlm-roberta": [{}, {"type_vocab_size": 1}],
    "electra": [{"embedding_size": 32}, {"embedding_size": 16}],
    "deberta-v2": [
        *DEBERTA_RELATIVE,
        {"relative_attention": False, "position_biased_input": True},
        {"relative_attention": False, "position_biased_input": False},
        {"relative_attention": True, "pos_att_type": ["p2c", "c2p"], "position_buckets": 8, "share_att_key": False},
        {"relative_attention": True, "pos_att_type": ["c2p"], "max_relative_positions": 16, "share_att_key": False},
        {"relative_attention": True, "pos_att_type": ["p2c", "c2p"], "conv_kernel_size": 3, "norm_rel_ebd": "none"},
        {"relative_attention": True, "pos_att_type": ["p2c", "c2p"], "embedding_size": 16, "share_att_key": False},
    ],
    "modernbert": [
        {},
        {"layer_types": ["sliding_attention", "full_attention"], "local_attention": 8},
        {"attention_bias": True, "mlp_bias": True, "norm_bias": True},
    ],
    "eurobert": [
        {},
        {"num_key_value_heads": 2},
        {"head_dim": 16, "attention_bias": True, "mlp_bias": True},
        {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}},
    ],
}
# transformers 4.x's BERT-likes have relative position embeddings too (5.x dropped the option).
for _family in ("bert", "roberta", "xlm-roberta", "electra"):
    if _family in FAMILIES and hasattr(AutoConfig.for_model(_family), "position_embedding_type"):
        VARIANTS[_family] += [{"position_embedding_type": kind} for kind in ("relative_key", "relative_key_query")]


def _variant_id(variant: dict) -> str:
    return ",".join(f"{key}={value}" for key, value in variant.items()) or "default"


@pytest.mark.parametrize(
    ("family", "variant"),
    [
        pytest.param(family, variant, id=f"{family}-{_variant_id(variant)}")
        for family in FAMILIES
        for variant in VARIANTS[family]
    ],
)
def test_every_family_and_config_variant_is_counted(family, variant):
    """The counter runs the family's own modules, whatever the config; DeBERTa-v2 with separate position
    projections (share_att_key=False) and raw position embeddings used to fail inside it (a parameter's view
    reaching a module under no_grad), after a whole training run, when the model card asked for its cost."""
    config = AutoConfig.for_model(family, **TINY, **variant)
    flops = layer_flops(config, 16)
    assert math.isfinite(flops) and flops > 0
    costs = relative_costs(config, [0, 1, 2], 3, mean_tokens=16)
    assert costs[0] < costs[1] < costs[2] == 1.0


@pytest.mark.parametrize("types", [["p2c", "c2p"], "p2c|c2p"])
@pytest.mark.parametrize("norm", ["layer_norm", "none"])
def test_deberta_counts_its_position_projections_shared_or_not(types, norm):
    """With both c2p and p2c, separate position projections are as big as the shared ones: the same FLOPs."""
    shared, separate = (
        AutoConfig.for_model(
            "deberta-v2", **TINY, relative_attention=True, pos_att_type=types, norm_rel_ebd=norm, share_att_key=share
        )
        for share in (True, False)
    )
    assert layer_flops(separate, 16) == layer_flops(shared, 16)
