"""`AutoModelForLayerTokenClassification`, `AutoLayerModel` and `AutoLayerConfig`: the family from config.json."""

import json
import shutil

import pytest
from transformers import RobertaConfig

from hf_layer_tokclf import AutoLayerConfig, AutoLayerModel, AutoModelForLayerTokenClassification
from hf_layer_tokclf.model.auto import FAMILIES, checkpoint_family, family_of


def test_every_family_is_transformers_own_model_type():
    from transformers import CONFIG_MAPPING

    for backbone_type, family in FAMILIES.items():
        assert CONFIG_MAPPING[backbone_type].__name__ in {c.__name__ for c in family.config_class.__mro__}
        assert family.model_type == f"{backbone_type}-layer-tokclf"
        assert family.stock_class_name.endswith("ForTokenClassification")


def test_from_config_takes_our_config_or_the_familys_own():
    small = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, vocab_size=99)
    model = AutoModelForLayerTokenClassification.from_config(RobertaConfig(**small))
    assert type(model).__name__ == "RobertaForLayerTokenClassification" and len(model.encoder_layers) == 3
    config = FAMILIES["roberta"].config_class(**small, hidden_layer=1)
    encoder = AutoLayerModel.from_config(config)
    assert type(encoder).__name__ == "RobertaLayerModel" and len(encoder.encoder_layers) == 1
    with pytest.raises(OSError, match="from_pretrained"):
        AutoModelForLayerTokenClassification()


def test_from_pretrained_reads_the_family_from_config_json(checkpoints, tmp_path):
    config = AutoLayerConfig.from_pretrained(checkpoints["electra"], hidden_layer=-2)
    assert type(config).__name__ == "ElectraLayerTokenClassificationConfig"
    assert config.hidden_layer == 3  # -2 of hidden_states[0..4]
    assert checkpoint_family(checkpoints["modernbert"]).name == "ModernBERT"
    model = AutoModelForLayerTokenClassification.from_pretrained(checkpoints["electra"], config=config)
    assert type(model).__name__ == "ElectraForLayerTokenClassification"

    folder = tmp_path / "gpt2-ish"
    shutil.copytree(checkpoints["bert"], folder)
    edited = {**json.loads((folder / "config.json").read_text()), "model_type": "gpt2"}
    (folder / "config.json").write_text(json.dumps(edited))
    with pytest.raises(ValueError, match=r"gpt2-ish: model_type 'gpt2' is not an encoder family .* 'roberta'"):
        AutoModelForLayerTokenClassification.from_pretrained(folder, hidden_layer=1)


def test_family_of_refuses_what_it_does_not_know():
    with pytest.raises(ValueError, match="model_type None"):
        family_of(None)
    assert family_of("deberta-v2") is family_of("deberta-v2-layer-tokclf") is FAMILIES["deberta-v2"]


@pytest.mark.parametrize("first", ["hf_layer_tokclf", "transformers"])
def test_a_bare_import_registers_the_auto_classes_in_either_order(first):
    """`import hf_layer_tokclf` stays light (no transformers, for --help) and still registers, whichever comes first."""
    import subprocess
    import sys

    second = "transformers" if first == "hf_layer_tokclf" else "hf_layer_tokclf"
    code = (
        f"import sys, {first}; heavy = 'transformers' in sys.modules; import {second}; "
        "from transformers import CONFIG_MAPPING; print(heavy, 'bert-layer-tokclf' in CONFIG_MAPPING)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(first == "transformers"), "True"]


@pytest.mark.parametrize("module", ["pipeline_layer_tokclf", "modeling_layer_tokclf", "configuration_layer_tokclf"])
def test_a_travelling_module_imported_first_imports_and_registers(module):
    """A travelling file imports transformers itself, in the middle of its own import: registering then would import
    it again half-built (a circular import); the registration waits until it is complete."""
    import subprocess
    import sys

    code = (
        f"import hf_layer_tokclf.model.{module}; import json; "
        "from transformers import CONFIG_MAPPING; print('bert-layer-tokclf' in CONFIG_MAPPING)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-800:]
    assert run.stdout.split() == ["True"]
