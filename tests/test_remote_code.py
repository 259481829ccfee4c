"""The saved model, loaded in a fresh process where hf_layer_tokclf cannot be imported."""

import json

import pytest
import torch
from conftest import LABEL2ID, LABELS, TEXT

from hf_layer_tokclf import BertForLayerTokenClassification
from hf_layer_tokclf.sharing.remote_check import run_remote_check


@pytest.fixture(scope="module")
def saved(tmp_path_factory, minilm_path, tokenizer):
    """MiniLM at layer 3 with a head that tags every token B-Disease, saved with its tokenizer."""
    model = BertForLayerTokenClassification.from_pretrained(
        minilm_path, hidden_layer=3, num_labels=3, id2label=dict(enumerate(LABELS)), label2id=LABEL2ID
    ).eval()
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([0.0, 2.0, 0.0]))
    path = tmp_path_factory.mktemp("saved")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    encoded = tokenizer(TEXT, return_tensors="pt")
    with torch.no_grad():
        logits = model(**encoded).logits[0]
    return path, encoded["input_ids"][0].tolist(), logits


def test_saved_folder_has_auto_map_and_code(saved):
    path, _, _ = saved
    config = json.loads((path / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_layer_tokclf.LayerTokenClassificationConfig",
        "AutoModelForTokenClassification": "modeling_layer_tokclf.BertForLayerTokenClassification",
        "AutoModel": "modeling_layer_tokclf.BertLayerModel",
    }
    assert (path / "configuration_layer_tokclf.py").is_file() and (path / "modeling_layer_tokclf.py").is_file()
    assert (path / "model.safetensors").is_file()


def check_report(report, saved):
    _, input_ids, logits = saved
    assert report["config_class"] == "LayerTokenClassificationConfig"
    assert report["model_class"] == "BertForLayerTokenClassification"
    assert report["auto_model_class"] == "BertLayerModel"
    assert report["num_layers_built"] == 3
    assert report["auto_model_shape"] == [1, len(input_ids), 384]
    assert report["input_ids"] == input_ids
    torch.testing.assert_close(torch.tensor(report["logits"]), logits, atol=1e-5, rtol=0)
    entities = report["entities"]
    assert entities and {e["entity_group"] for e in entities} == {"Disease"}
    for entity in entities:
        assert TEXT[entity["start"] : entity["end"]].lower() == entity["word"].removeprefix("##")
    warnings = "\n".join(report["warnings"])
    assert "not supported" not in warnings and "model of type" not in warnings
    assert "LOAD REPORT" not in warnings and "newly initialized" not in warnings


def test_loads_through_remote_code_on_transformers_5(saved):
    report = run_remote_check(saved[0], TEXT)
    assert report["transformers_version"].startswith("5.")
    check_report(report, saved)


def test_loads_through_remote_code_on_transformers_4(saved, transformers4_path):
    report = run_remote_check(saved[0], TEXT, python_path=transformers4_path)
    assert report["transformers_version"].startswith("4.")
    check_report(report, saved)
