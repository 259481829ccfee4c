"""ONNX export for serving: logits equal PyTorch's, dynamic shapes, only the used layers, int8, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import NCBI, TEXT, tiny_bert_kwargs

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from hf_layer_tokclf import BertForLayerTokenClassification, LayerTokenClassificationConfig  # noqa: E402
from hf_layer_tokclf.cli import main  # noqa: E402
from hf_layer_tokclf.data import load_sentences  # noqa: E402
from hf_layer_tokclf.export import export_onnx, verify_onnx  # noqa: E402
from hf_layer_tokclf.files import OutputExistsError, record_outputs  # noqa: E402
from hf_layer_tokclf.inference import evaluate_sentences, load_model, predict_texts  # noqa: E402
from hf_layer_tokclf.serving import OnnxTokenClassifier  # noqa: E402

SHORT = ["Cancer.", TEXT]
LONG = [
    " ".join(["Mutations in BRCA2 and ATM predispose to ovarian cancer and leukaemia"] * 6),
    "Ataxia-telangiectasia is rare.",
    "",
]


def matmul_nodes(path) -> int:
    graph = onnx.load(str(path)).graph
    return sum(node.op_type == "MatMul" for node in graph.node)


def check_against_pytorch(onnx_dir, model_dir, atol=1e-4):
    """Two differently shaped, padded batches: ONNX logits equal PyTorch's on every real token."""
    model, tokenizer = load_model(model_dir)
    runner = OnnxTokenClassifier(onnx_dir)
    shapes = set()
    for texts in (SHORT, LONG):
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            expected = model(**batch).logits.numpy()
        got = runner.logits(**{k: v.numpy() for k, v in batch.items()})
        assert got.shape == expected.shape
        keep = batch["attention_mask"].numpy().astype(bool)
        np.testing.assert_allclose(got[keep], expected[keep], atol=atol, rtol=0)
        shapes.add(got.shape[:2])
    assert len(shapes) == 2


@pytest.fixture(scope="module")
def pooled_dir(tmp_path_factory, minilm_path):
    """A tiny 4-layer BERT reading layers 1 and 3 through a (non-uniform) scalar mix."""
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    config = LayerTokenClassificationConfig(**tiny_bert_kwargs(hidden_layer=[1, 3], layer_pooling="scalar_mix"))
    model = BertForLayerTokenClassification(config)
    with torch.no_grad():
        model.scalar_mix.weights.copy_(torch.tensor([0.3, -0.5]))
        model.scalar_mix.gamma.fill_(1.7)
    path = tmp_path_factory.mktemp("pooled") / "model"
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def trained_onnx(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "fp32"
    export_onnx(trained[0], out)
    return out


@pytest.fixture(scope="module")
def trained_int8(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "int8"
    export_onnx(trained[0], out, quantize="int8")
    return out


def test_trained_model_export_matches_pytorch(trained, trained_onnx):
    files = {p.name for p in trained_onnx.iterdir()}
    assert {"model.onnx", "config.json", "tokenizer.json", "onnx_export.json"} <= files
    assert not [name for name in files if name.endswith(".tmp")]
    check_against_pytorch(trained_onnx, trained[0])
    assert verify_onnx(trained_onnx / "model.onnx", trained[0], [TEXT, *LONG]) < 1e-4

    graph = onnx.load(str(trained_onnx / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.output] == ["logits"]
    for value in (*graph.input, *graph.output):
        dims = [d.dim_param for d in value.type.tensor_type.shape.dim[:2]]
        assert dims == ["batch", "sequence"]
    # hidden_layer=2 of MiniLM: 2 encoder layers of 8 matrix products each, plus the head; not 6 layers.
    info = json.loads((trained_onnx / "onnx_export.json").read_text())
    assert info["encoder_layers"] == 2 and info["quantize"] is None
    assert matmul_nodes(trained_onnx / "model.onnx") == 2 * 8 + 1


def test_onnx_runner_predicts_and_evaluates_like_pytorch(trained, trained_onnx):
    model, tokenizer = load_model(trained[0])
    runner, onnx_tokenizer = load_model(trained_onnx)  # a serving folder loads as an OnnxTokenClassifier
    assert isinstance(runner, OnnxTokenClassifier)
    sentences = load_sentences(str(NCBI / "test.tsv"))[:24]
    texts = [" ".join(s.tokens) for s in sentences]
    expected = list(predict_texts(model, tokenizer, texts, aggregation_strategy="first"))
    found = list(predict_texts(runner, onnx_tokenizer, texts, aggregation_strategy="first"))
    assert [[(e["entity_group"], e["start"], e["end"]) for e in r] for r in found] == [
        [(e["entity_group"], e["start"], e["end"]) for e in r] for r in expected
    ]
    scores, _ = evaluate_sentences(runner, onnx_tokenizer, sentences, progress=False)
    reference, _ = evaluate_sentences(model, tokenizer, sentences, progress=False)
    assert scores["f1"] == pytest.approx(reference["f1"])


def test_pooled_model_export_matches_pytorch_and_holds_only_used_layers(pooled_dir, tmp_path):
    path = export_onnx(pooled_dir, tmp_path / "out")
    check_against_pytorch(tmp_path / "out", pooled_dir)
    assert matmul_nodes(path) == 3 * 8 + 1  # layers 1..3 of 4, then the head


def test_int8_export_runs_and_mostly_agrees_with_fp32(trained, trained_onnx, trained_int8):
    _, tokenizer = load_model(trained[0])
    fp32, int8 = OnnxTokenClassifier(trained_onnx), OnnxTokenClassifier(trained_int8)
    assert json.loads((trained_int8 / "onnx_export.json").read_text())["quantize"] == "int8"
    assert (trained_int8 / "model.onnx").stat().st_size < 0.5 * (trained_onnx / "model.onnx").stat().st_size
    texts = [" ".join(s.tokens) for s in load_sentences(str(NCBI / "test.tsv"))[:32]]
    agree = []
    for batch_texts in (texts[:3], texts):  # two shapes
        batch = {k: v.numpy() for k, v in tokenizer(batch_texts, padding=True, return_tensors="pt").items()}
        keep = batch["attention_mask"].astype(bool)
        agree.extend(fp32.logits(**batch).argmax(-1)[keep] == int8.logits(**batch).argmax(-1)[keep])
    # A briefly trained model has many tokens near a decision boundary; a well trained one agrees more.
    assert np.mean(agree) > 0.95


def test_refuses_a_non_empty_out_dir_and_bad_options(pooled_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_onnx(pooled_dir, out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    with pytest.raises(ValueError, match="quantize"):
        export_onnx(pooled_dir, tmp_path / "other", quantize="int4")


def folder_bytes(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_crash_while_exporting_keeps_the_old_folder_whole(pooled_dir, tmp_path, monkeypatch):
    """The new folder is built beside the old one and swapped in only when complete."""
    from hf_layer_tokclf import export

    out = tmp_path / "out"
    export_onnx(pooled_dir, out)
    before = folder_bytes(out)

    def crash(*args, **kwargs):  # after model.onnx, the tokenizer and config.json are written
        raise RuntimeError("crash")

    monkeypatch.setattr(export, "write_json", crash)
    with pytest.raises(RuntimeError, match="crash"):
        export_onnx(pooled_dir, out, quantize="int8", overwrite=True)
    assert folder_bytes(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary sibling left


def test_overwrite_replaces_an_earlier_export_whole(pooled_dir, tmp_path):
    out = tmp_path / "out"
    export_onnx(pooled_dir, out)
    (out / "vocab.txt").write_text("a tokenizer file of an earlier export, which this one does not write")
    record_outputs(out, ["vocab.txt"])  # written by that export: its manifest lists it
    export_onnx(pooled_dir, out, quantize="int8", overwrite=True)
    assert not (out / "vocab.txt").exists()
    assert json.loads((out / "onnx_export.json").read_text())["quantize"] == "int8"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_overwrite_refuses_files_an_export_did_not_write(pooled_dir, tmp_path):
    out = tmp_path / "out"
    export_onnx(pooled_dir, out)
    (out / "notes.txt").write_text("mine")
    before = folder_bytes(out)
    with pytest.raises(OutputExistsError, match=r"notes\.txt"):
        export_onnx(pooled_dir, out, overwrite=True)
    assert folder_bytes(out) == before


def test_export_leaves_the_umask_alone_and_gives_normal_modes(pooled_dir, tmp_path, monkeypatch):
    import os

    old = os.umask(0o022)
    try:
        monkeypatch.setattr(os, "umask", lambda mask: pytest.fail("os.umask called: it changes the process's umask"))
        export_onnx(pooled_dir, tmp_path / "out")
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
    assert {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()} == dict.fromkeys(
        [
            ".hf_layer_tokclf.json",
            "config.json",
            "model.onnx",
            "onnx_export.json",
            "tokenizer.json",
            "tokenizer_config.json",
        ],
        0o644,
    )


def test_cli_exports_int8_and_predicts_from_the_serving_folder(pooled_dir, tmp_path, capsys):
    out = tmp_path / "serving"
    assert main(["export-onnx", str(pooled_dir), str(out), "--quantize", "int8"]) == 0
    assert "int8" in capsys.readouterr().out
    assert main(["export-onnx", str(pooled_dir), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export-onnx", str(pooled_dir), str(out), "--overwrite", "--opset", "18"]) == 0
    assert json.loads((out / "onnx_export.json").read_text())["opset"] == 18
    capsys.readouterr()
    assert main(["predict", str(out), "--text", TEXT, "--aggregation-strategy", "simple"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["text"] == TEXT and isinstance(record["entities"], list)
