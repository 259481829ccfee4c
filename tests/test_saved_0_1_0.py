"""Models saved by hf-layer-tokclf 0.1.0 (BERT only) still load, with the logits 0.1.0 computed.

``tests/fixtures/saved-0.1.0`` was written once by 0.1.0's code (``make_saved_0_1_0.py``, commit 0ff0a39):
its config.json, weights, tokenizer, code files and the logits it gave.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

import hf_layer_tokclf
from hf_layer_tokclf import AutoModelForLayerTokenClassification, BertForLayerTokenClassification
from hf_layer_tokclf.running.loading import load_model
from hf_layer_tokclf.sharing.remote_check import run_remote_check

SAVED = Path(__file__).resolve().parent / "fixtures" / "saved-0.1.0"
EXPECTED = json.loads((SAVED / "expected.json").read_text())


def logits_of(model, tokenizer) -> torch.Tensor:
    words = [sentence.split() for sentence in EXPECTED["sentences"]]
    batch = tokenizer(words, is_split_into_words=True, padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist() == EXPECTED["input_ids"]
    with torch.no_grad():
        return model.eval()(**batch).logits


@pytest.mark.parametrize("loader", ["class", "auto", "load_model"])
def test_todays_package_loads_a_0_1_0_folder_with_its_logits(loader):
    if loader == "load_model":
        model, tokenizer = load_model(SAVED)
    else:
        cls = BertForLayerTokenClassification if loader == "class" else AutoModelForLayerTokenClassification
        model, tokenizer = cls.from_pretrained(SAVED), load_model(SAVED)[1]
    assert type(model) is BertForLayerTokenClassification and len(model.encoder_layers) == 2
    torch.testing.assert_close(logits_of(model, tokenizer), torch.tensor(EXPECTED["logits"]), atol=1e-6, rtol=0)


def test_a_0_1_0_folder_still_runs_its_own_code_for_strangers(transformers4_path):
    text = EXPECTED["sentences"][0]
    for python_path in (None, transformers4_path):
        report = run_remote_check(SAVED, text, python_path=python_path)
        assert report["model_class"] == "BertForLayerTokenClassification" and report["num_layers_built"] == 2


def test_resaving_a_0_1_0_folder_gives_todays_code_and_the_same_logits(tmp_path):
    model, tokenizer = load_model(SAVED)
    model.save_pretrained(tmp_path)
    shutil.copy(SAVED / "tokenizer.json", tmp_path)
    shutil.copy(SAVED / "tokenizer_config.json", tmp_path)
    package = Path(hf_layer_tokclf.__file__).parent / "model"
    assert (tmp_path / "modeling_layer_tokclf.py").read_bytes() == (package / "modeling_layer_tokclf.py").read_bytes()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "bert-layer-tokclf" and config["hidden_layer"] == 2
    report = run_remote_check(tmp_path, EXPECTED["sentences"][0])
    assert report["model_class"] == "BertForLayerTokenClassification"
    reloaded, _ = load_model(tmp_path)
    torch.testing.assert_close(logits_of(reloaded, tokenizer), torch.tensor(EXPECTED["logits"]), atol=1e-6, rtol=0)
