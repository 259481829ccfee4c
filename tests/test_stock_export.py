"""The stock form: a one-layer model as its family's own ``*ForTokenClassification``, loaded with no custom code.

On the MiniLM fine-tuned on NCBI (`trained`, hidden_layer=2 of 6): the export is a 2-layer
``BertForTokenClassification`` that plain transformers 5.x and 4.57 load in a fresh, isolated process
where ``hf_layer_tokclf`` cannot be imported, with the source's logits and the stock pipeline's
entities. Pooled and CRF models are refused with the reason; every family is exported exactly or refused
with its reason; the output folder is handled as export-onnx handles it.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from conftest import ID2LABEL, LABEL2ID, LABELS, TEXT, lowest_python, save_tiny_model, tiny_bert_kwargs
from families import FAMILIES
from safetensors import safe_open
from transformers import AutoModelForTokenClassification, BertConfig, BertForTokenClassification

from hf_layer_tokclf import BertForLayerTokenClassification, LayerTokenClassificationConfig
from hf_layer_tokclf.base.files import OutputExistsError
from hf_layer_tokclf.cli.main import main
from hf_layer_tokclf.model.auto import FAMILIES as SUPPORTED
from hf_layer_tokclf.model.auto import AutoModelForLayerTokenClassification
from hf_layer_tokclf.model.tokenization import load_tokenizer, save_tokenizer
from hf_layer_tokclf.running import stock_export
from hf_layer_tokclf.running.loading import load_model
from hf_layer_tokclf.running.stock_export import (
    EXPORT_INFO,
    ExportMismatchError,
    NotExportableError,
    export_transformers,
)
from hf_layer_tokclf.running.texts import predict_texts
from hf_layer_tokclf.sharing.plain_check import run_plain_check
from hf_layer_tokclf.sharing.verification import BAD_WARNING

HEAD = dict(num_labels=len(LABELS), id2label=ID2LABEL, label2id=LABEL2ID)
OURS_ONLY = ("auto_map", "custom_pipelines", "hidden_layer", "layer_pooling", "use_crf")


def layer_indices(weights) -> set[int]:
    with safe_open(str(weights), "pt") as f:
        keys = f.keys()
    return {int(key.split("encoder.layer.")[1].split(".")[0]) for key in keys if "encoder.layer." in key}


@pytest.fixture(scope="module")
def stock(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("stock") / "out"
    assert export_transformers(trained[0], out) == out
    return out


@pytest.fixture(scope="module")
def source(trained):
    """The trained model through this package: logits for TEXT, and the entities the stock pipeline finds (argmax)."""
    model, tokenizer = load_model(trained[0])
    encoded = tokenizer(TEXT, return_tensors="pt")
    with torch.no_grad():
        logits = model(**encoded).logits[0]
    entities = next(predict_texts(model, tokenizer, [TEXT], decoding="argmax"))
    return {"input_ids": encoded["input_ids"][0].tolist(), "logits": logits, "entities": entities}


def test_the_export_is_the_stock_class_with_the_layers_used_only(trained, stock):
    names = {p.name for p in stock.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer_config.json", EXPORT_INFO} <= names
    assert not [name for name in names if name.endswith((".py", ".tmp", ".bin"))]
    config = json.loads((stock / "config.json").read_text())
    ours = json.loads((trained[0] / "config.json").read_text())
    assert not [key for key in OURS_ONLY if key in config]
    assert config["model_type"] == "bert" and config["architectures"] == ["BertForTokenClassification"]
    assert config["num_hidden_layers"] == 2 and ours["num_hidden_layers"] == 6
    assert config["id2label"] == ours["id2label"] and config["label2id"] == ours["label2id"]
    assert "classifier_dropout" in config
    # Two of MiniLM's six layers on disk, as in the source folder: the same tensors, under the same names.
    weights, source_weights = stock / "model.safetensors", trained[0] / "model.safetensors"
    assert layer_indices(weights) == {0, 1}
    with safe_open(str(weights), "pt") as a, safe_open(str(source_weights), "pt") as b:
        keys = a.keys()
        assert set(keys) == set(b.keys())
        assert all(torch.equal(a.get_tensor(key), b.get_tensor(key)) for key in keys)
    assert abs(weights.stat().st_size - source_weights.stat().st_size) < 0.01 * source_weights.stat().st_size
    record = json.loads((stock / EXPORT_INFO).read_text())
    assert record["class"] == "BertForTokenClassification" and record["source"] == str(trained[0])
    assert record["hidden_layer"] == 2 and record["backbone_num_hidden_layers"] == 6
    assert record["max_abs_diff_vs_source"] <= 1e-5


@pytest.mark.parametrize("version", ["5", "4"])
def test_plain_transformers_loads_it_in_a_fresh_process(stock, source, version):
    python = sys.executable if version == "5" else lowest_python()
    report = run_plain_check(stock, TEXT, python=python)
    assert report["transformers_version"].startswith(f"{version}.")
    assert report["imported_ours"] == []  # and importing it would have failed: the child blocks it
    assert report["model_class"] == "BertForTokenClassification"
    assert report["model_module"] == "transformers.models.bert.modeling_bert"
    assert report["pipeline_class"] == "TokenClassificationPipeline" and report["num_hidden_layers"] == 2
    assert report["input_ids"] == source["input_ids"]
    torch.testing.assert_close(torch.tensor(report["logits"]), source["logits"], atol=1e-5, rtol=0)
    key = ("entity_group", "start", "end", "word")
    assert report["entities"], "the trained model finds diseases in TEXT"
    assert [tuple(e[k] for k in key) for e in report["entities"]] == [
        tuple(e[k] for k in key) for e in source["entities"]
    ]
    assert all(abs(a["score"] - b["score"]) < 1e-4 for a, b in zip(report["entities"], source["entities"], strict=True))
    assert not [warning for warning in report["warnings"] if BAD_WARNING.search(warning)]


def tiny_model(path, tokenizer, **overrides):
    torch.manual_seed(0)
    model = BertForLayerTokenClassification(LayerTokenClassificationConfig(**tiny_bert_kwargs(**overrides)))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"hidden_layer": [1, 3], "layer_pooling": "mean"},
            r"combines hidden_layer=\[1, 3\] by layer_pooling='mean', and the stock BertForTokenClassification "
            r"reads one layer",
        ),
        (
            {"hidden_layer": 2, "use_crf": True},
            "it has a CRF head.*the model's learned label transitions would be lost",
        ),
    ],
    ids=["pooled", "crf"],
)
def test_models_without_a_stock_form_are_refused(tmp_path, tokenizer, capsys, overrides, message):
    model_dir = tiny_model(tmp_path / "model", tokenizer, **overrides)
    out = tmp_path / "out"
    with pytest.raises(NotExportableError, match=message):
        export_transformers(model_dir, out)
    assert main(["export-transformers", str(model_dir), str(out)]) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # after the progress bars of saving the model above
    assert err.startswith("hf-layer-tokclf export-transformers: error: ") and "share it with its code instead" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no OUT_DIR, no temporary sibling


def test_a_stock_model_is_refused_as_already_stock(tmp_path, tokenizer):
    BertForTokenClassification(BertConfig(**tiny_bert_kwargs())).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    with pytest.raises(NotExportableError, match=r"already transformers' own Bert model.*use it as it is"):
        export_transformers(tmp_path / "model", tmp_path / "out")


# Each family at hidden_layer=k of 4: None where the export is exact, else what the refusal says.
CASES = {
    **{(family, 2): None for family in FAMILIES},
    ("modernbert", 2): "runs the final norm and a prediction head",
    ("modernbert", 4): "runs the final norm and a prediction head",
    ("eurobert", 2): r"applies its final norm after its last layer.*only hidden_layer=4",
    ("eurobert", 4): None,
    ("deberta-v2", 0): "encoder cannot run without a layer",
    ("bert", 0): None,
}


@pytest.mark.parametrize(("family", "layer"), [case for case in CASES if case[0] in FAMILIES], ids=str)
def test_each_family_is_exported_exactly_or_refused_with_its_reason(family, layer, checkpoints, tmp_path):
    model = AutoModelForLayerTokenClassification.from_pretrained(checkpoints[family], hidden_layer=layer, **HEAD)
    model_dir, out = tmp_path / "model", tmp_path / "out"
    model.save_pretrained(model_dir)
    save_tokenizer(load_tokenizer(checkpoints[family]), model_dir)
    reason = CASES[(family, layer)]
    if reason is not None:
        with pytest.raises(NotExportableError, match=reason):
            export_transformers(model_dir, out)
        assert not out.exists()
        return
    export_transformers(model_dir, out)
    stock_class = SUPPORTED[family].stock_class_name
    record = json.loads((out / EXPORT_INFO).read_text())
    assert record["class"] == stock_class and record["max_abs_diff_vs_source"] <= 1e-5
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == family and config["num_hidden_layers"] == layer
    assert not [key for key in OURS_ONLY if key in config]
    assert type(AutoModelForTokenClassification.from_pretrained(out)).__name__ == stock_class


def test_the_output_folder_is_refused_when_not_empty_and_files_of_yours_are_kept(tmp_path, tokenizer, capsys):
    model_dir = save_tiny_model(tmp_path / "model", tokenizer)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not empty; pass --overwrite"):
        export_transformers(model_dir, out)
    with pytest.raises(OutputExistsError, match=r"holds files this command did not write \(notes\.txt\)"):
        export_transformers(model_dir, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"

    (out / "notes.txt").unlink()
    assert main(["export-transformers", str(model_dir), str(out)]) == 0  # an empty folder is fine
    assert "wrote" in capsys.readouterr().out
    assert main(["export-transformers", str(model_dir), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export-transformers", str(model_dir), str(out), "--overwrite"]) == 0
    printed = capsys.readouterr().out
    assert "BertForTokenClassification with 2 layers (hidden_layer=2 of 4)" in printed and "config.json" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "out"]


def test_a_stock_form_with_other_logits_is_never_written(tmp_path, tokenizer, monkeypatch):
    model_dir = save_tiny_model(tmp_path / "model", tokenizer)
    real = stock_export.stock_model

    def off_by_a_bit(model):
        stock = real(model)
        with torch.no_grad():
            stock.classifier.bias.add_(1e-3)
        return stock

    monkeypatch.setattr(stock_export, "stock_model", off_by_a_bit)
    with pytest.raises(ExportMismatchError, match=r"logits differ from the source model's by 0\.001"):
        export_transformers(model_dir, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
