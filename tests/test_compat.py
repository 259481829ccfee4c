"""Two transformers majors: a model saved on the last 4.x loads on 5.x, and back, with equal logits.

(A model saved here, on 5.x, loading through remote code on 5.x and 4.x is in test_remote_code.py.)
The 4.x side runs in a child process with the last 4.x release first on ``PYTHONPATH``, where
this package imports and works as it does on 5.x.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import LABEL2ID, LABELS, TEXT

from hf_layer_tokclf import BertForLayerTokenClassification
from hf_layer_tokclf.running.loading import load_model
from hf_layer_tokclf.sharing.remote_check import run_remote_check

SAVE_ON_4X = textwrap.dedent(
    """
    import json, sys
    import torch
    import transformers
    from transformers import AutoTokenizer
    from hf_layer_tokclf import BertForLayerTokenClassification

    minilm, out, text, labels = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    model = BertForLayerTokenClassification.from_pretrained(
        minilm, hidden_layer=3, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    ).eval()
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([0.0, 2.0, 0.0]))
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    encoded = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**encoded).logits[0]
    print(json.dumps({"version": transformers.__version__, "input_ids": encoded["input_ids"][0].tolist(),
                      "logits": logits.tolist()}))
    """
)


def run_on_4x(transformers4_path, script, *args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (transformers4_path, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def saved_on_4x(tmp_path_factory, minilm_path, transformers4_path):
    path = tmp_path_factory.mktemp("saved4x") / "model"
    report = run_on_4x(transformers4_path, SAVE_ON_4X, minilm_path, path, TEXT, json.dumps(LABELS))
    assert report["version"].startswith("4.")
    return path, report


def test_a_4x_save_holds_safetensors_and_our_code(saved_on_4x):
    path, _ = saved_on_4x
    names = {p.name for p in path.iterdir()}
    assert {"model.safetensors", "config.json", "configuration_layer_tokclf.py", "modeling_layer_tokclf.py"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    config = json.loads((path / "config.json").read_text())
    assert config["transformers_version"].startswith("4.")
    assert config["hidden_layer"] == 3 and config["id2label"] == {str(i): label for i, label in enumerate(LABELS)}
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModelForTokenClassification", "AutoModel"}


def test_a_4x_save_loads_on_5x_through_remote_code(saved_on_4x):
    path, saved = saved_on_4x
    report = run_remote_check(path, TEXT)
    assert report["transformers_version"].startswith("5.")
    assert report["model_class"] == "BertForLayerTokenClassification" and report["num_layers_built"] == 3
    assert report["input_ids"] == saved["input_ids"]
    torch.testing.assert_close(torch.tensor(report["logits"]), torch.tensor(saved["logits"]), atol=1e-5, rtol=0)
    warnings = "\n".join(report["warnings"])
    assert "newly initialized" not in warnings and "LOAD REPORT" not in warnings


def test_a_4x_save_loads_on_5x_with_this_package_and_saves_back_for_4x(saved_on_4x, tmp_path, transformers4_path):
    path, saved = saved_on_4x
    model, tokenizer = load_model(path)
    assert type(model) is BertForLayerTokenClassification
    assert model.config.id2label == dict(enumerate(LABELS)) and model.config.label2id == LABEL2ID
    with torch.no_grad():
        logits = model(**tokenizer(TEXT, return_tensors="pt")).logits[0]
    torch.testing.assert_close(logits, torch.tensor(saved["logits"]), atol=1e-5, rtol=0)
    # ... saved again on 5.x, it goes back to 4.x unchanged.
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    report = run_remote_check(tmp_path, TEXT, python_path=transformers4_path)
    assert report["transformers_version"].startswith("4.")
    torch.testing.assert_close(torch.tensor(report["logits"]), torch.tensor(saved["logits"]), atol=1e-5, rtol=0)


DEEPER_ON_4X = textwrap.dedent(
    """
    import json, sys
    sys.modules["hf_layer_tokclf"] = None  # a stranger, through remote code
    from transformers import AutoModelForTokenClassification
    errors = {}
    for name, kwargs in (("override", {"hidden_layer": 5}), ("edited", {})):
        path = sys.argv[1] if name == "override" else sys.argv[2]
        try:
            AutoModelForTokenClassification.from_pretrained(path, trust_remote_code=True, **kwargs)
            errors[name] = None
        except ValueError as error:
            errors[name] = str(error)
    print(json.dumps(errors))
    """
)


def test_deeper_than_stored_fails_clearly_on_4x_too(saved_on_4x, tmp_path, transformers4_path):
    """A kwarg asking for layer 5, or a config.json edited to say 5, of a checkpoint storing 3."""
    import shutil

    path, _ = saved_on_4x
    edited = tmp_path / "edited"
    shutil.copytree(path, edited)
    config = json.loads((edited / "config.json").read_text())
    config["hidden_layer"] = 5
    (edited / "config.json").write_text(json.dumps(config))
    errors = run_on_4x(transformers4_path, DEEPER_ON_4X, path, edited)
    assert "needs 5 encoder layers, but the checkpoint at" in errors["override"]
    assert "stores only 3" in errors["override"]
    assert "lack encoder.layer.3, encoder.layer.4: they would be random" in errors["edited"]
    with pytest.raises(ValueError, match=r"lack encoder\.layer\.3, encoder\.layer\.4"):
        load_model(edited)  # and on 5.x
