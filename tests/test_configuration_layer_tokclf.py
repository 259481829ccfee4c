import json
import logging

import pytest
from conftest import LABELS, tiny_bert_kwargs
from transformers import AutoConfig, BertConfig

from hf_layer_tokclf import LayerTokenClassificationConfig


def test_defaults_read_the_last_layer():
    config = LayerTokenClassificationConfig()
    assert config.model_type == "bert-layer-tokclf" != BertConfig.model_type
    assert config.hidden_layer == config.num_hidden_layers == 12
    assert config.layers == [12] and config.num_layers_used == 12
    assert config.classifier_input_size == 768


@pytest.mark.parametrize(
    ("hidden_layer", "stored", "used"),
    [(0, 0, 0), (3, 3, 3), (-1, 12, 12), (-13, 0, 0), (-4, 9, 9), ([2, -1], [2, 12], 12), ([0, 5], [0, 5], 5)],
)
def test_hidden_layer_follows_python_indexing_over_hidden_states(hidden_layer, stored, used):
    config = LayerTokenClassificationConfig(hidden_layer=hidden_layer)
    assert config.hidden_layer == stored
    assert config.num_layers_used == used


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_layer": 13}, "hidden_layer=13 is out of range: expected ints from -13 to 12"),
        ({"hidden_layer": -14}, "hidden_layer=-14 is out of range"),
        ({"hidden_layer": 7, "num_hidden_layers": 6}, "expected ints from -7 to 6"),
        ({"hidden_layer": "3"}, "hidden_layer has '3' (str)"),
        ({"hidden_layer": 2.0}, "hidden_layer has 2.0 (float)"),
        ({"hidden_layer": True}, "hidden_layer has True (bool)"),
        ({"hidden_layer": None}, "hidden_layer has None"),
        ({"hidden_layer": []}, "hidden_layer is an empty list"),
        ({"hidden_layer": [1, 1]}, "names a layer twice"),
        ({"hidden_layer": [12, -1]}, "names a layer twice"),
        ({"hidden_layer": [1, 2], "layer_pooling": "max"}, "layer_pooling='max' is unknown"),
        ({"use_crf": "yes"}, "use_crf has 'yes' (str); expected true or false"),
    ],
)
def test_bad_values_raise_value_error_naming_the_allowed_range(kwargs, message):
    with pytest.raises(ValueError) as error:
        LayerTokenClassificationConfig(**kwargs)
    assert message in str(error.value)


def test_pooling_sets_classifier_input_size():
    assert (
        LayerTokenClassificationConfig(hidden_layer=[1, 2, 3], layer_pooling="concat").classifier_input_size == 3 * 768
    )
    assert LayerTokenClassificationConfig(hidden_layer=[1, 2, 3], layer_pooling="mean").classifier_input_size == 768
    assert LayerTokenClassificationConfig(hidden_layer=[1, 2], layer_pooling="scalar_mix").classifier_input_size == 768
    # A single layer needs no pooling, whatever the field says.
    assert LayerTokenClassificationConfig(hidden_layer=4, layer_pooling="concat").classifier_input_size == 768


def test_save_and_load_round_trip(tmp_path):
    config = LayerTokenClassificationConfig(**tiny_bert_kwargs(hidden_layer=[1, -1], layer_pooling="scalar_mix"))
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "bert-layer-tokclf"
    assert saved["hidden_layer"] == [1, 4] and saved["num_hidden_layers"] == 4
    loaded = LayerTokenClassificationConfig.from_pretrained(tmp_path)
    assert loaded.hidden_layer == [1, 4] and loaded.layer_pooling == "scalar_mix"
    assert loaded.id2label == config.id2label


def test_validation_when_loaded_with_overrides(tmp_path):
    LayerTokenClassificationConfig(**tiny_bert_kwargs()).save_pretrained(tmp_path)
    assert LayerTokenClassificationConfig.from_pretrained(tmp_path, hidden_layer=-2).hidden_layer == 3
    with pytest.raises(ValueError, match="expected ints from -5 to 4"):
        LayerTokenClassificationConfig.from_pretrained(tmp_path, hidden_layer=9)
    with pytest.raises(ValueError, match="expected ints from -5 to 4"):
        AutoConfig.from_pretrained(tmp_path, hidden_layer=9)  # the registered Auto path goes through from_dict
    data = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**data, "hidden_layer": 40}))
    with pytest.raises(ValueError, match="hidden_layer=40 is out of range"):
        AutoConfig.from_pretrained(tmp_path)


def test_plain_bert_config_converts_without_a_model_type_warning(tmp_path, minilm_path, caplog):
    with caplog.at_level(logging.WARNING):
        config = LayerTokenClassificationConfig.from_pretrained(minilm_path, hidden_layer=3)
    assert "model of type" not in caplog.text
    assert isinstance(config, LayerTokenClassificationConfig)
    assert config.num_hidden_layers == 6 and config.hidden_size == 384 and config.hidden_layer == 3


def test_a_backbones_custom_pipeline_is_dropped_and_ours_is_named_on_save(tmp_path, minilm_path):
    import json
    import shutil

    from hf_layer_tokclf import BertForLayerTokenClassification

    backbone = tmp_path / "backbone"
    shutil.copytree(minilm_path, backbone)
    config = json.loads((backbone / "config.json").read_text())
    theirs = {"token-classification": {"impl": "evil.Pipeline", "pt": ["AutoModelForTokenClassification"]}}
    (backbone / "config.json").write_text(json.dumps({**config, "custom_pipelines": theirs}))
    assert not hasattr(LayerTokenClassificationConfig.from_pretrained(backbone), "custom_pipelines")
    model = BertForLayerTokenClassification.from_pretrained(backbone, hidden_layer=1, num_labels=3)
    model.save_pretrained(tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())["custom_pipelines"]
    assert saved["token-classification"]["impl"] == "pipeline_layer_tokclf.LayerTokenClassificationPipeline"
    assert LayerTokenClassificationConfig.from_pretrained(tmp_path / "ours").custom_pipelines == saved


def test_registered_with_auto_config_and_import_is_idempotent():
    import importlib

    import hf_layer_tokclf

    importlib.reload(hf_layer_tokclf)  # registering twice must not raise
    config = AutoConfig.for_model("bert-layer-tokclf", hidden_layer=2)
    assert type(config).__name__ == "LayerTokenClassificationConfig" and config.hidden_layer == 2


def test_layers_in_checkpoint():
    assert LayerTokenClassificationConfig.layers_in_checkpoint({"model_type": "bert", "num_hidden_layers": 6}) == 6
    saved = LayerTokenClassificationConfig(hidden_layer=[2, 5]).to_dict()
    assert LayerTokenClassificationConfig.layers_in_checkpoint(saved) == 5


def test_the_same_label_count_keeps_the_stored_names(tiny_dir):
    """As transformers does: num_labels equal to the stored count keeps id2label; another count replaces it."""
    from transformers import AutoModelForTokenClassification

    from hf_layer_tokclf import BertForLayerTokenClassification

    stored = dict(enumerate(LABELS))
    assert LayerTokenClassificationConfig.from_pretrained(tiny_dir, num_labels=3).id2label == stored
    assert AutoConfig.from_pretrained(tiny_dir, num_labels=3).id2label == stored
    model = BertForLayerTokenClassification.from_pretrained(tiny_dir, num_labels=3)
    assert model.config.id2label == stored and model.config.label2id == {v: k for k, v in stored.items()}
    assert AutoModelForTokenClassification.from_pretrained(tiny_dir, num_labels=3).config.id2label == stored
    five = LayerTokenClassificationConfig.from_pretrained(tiny_dir, num_labels=5)
    assert five.id2label == {i: f"LABEL_{i}" for i in range(5)}
    renamed = {0: "O", 1: "B-Chemical", 2: "I-Chemical"}
    assert LayerTokenClassificationConfig.from_pretrained(tiny_dir, num_labels=3, id2label=renamed).id2label == renamed
