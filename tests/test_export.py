"""ONNX export for serving: logits equal PyTorch's, dynamic shapes, only the used layers, int8, CLI, and the
folder as Optimum reads it (its ORTModelForTokenClassification and pipeline, in the lowest-versions environment:
optimum-onnx needs transformers 4.57)."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import torch
from conftest import ID2LABEL, LABEL2ID, NCBI, TEXT, lowest_python, tiny_bert_kwargs
from families import FAMILIES

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from hf_layer_tokclf import BertForLayerTokenClassification, LayerTokenClassificationConfig  # noqa: E402
from hf_layer_tokclf.base.files import OutputExistsError  # noqa: E402
from hf_layer_tokclf.base.manifest import record_outputs  # noqa: E402
from hf_layer_tokclf.cli.main import main  # noqa: E402
from hf_layer_tokclf.formats.loading import load_sentences  # noqa: E402
from hf_layer_tokclf.running.export import export_onnx, verify_onnx  # noqa: E402
from hf_layer_tokclf.running.loading import load_model  # noqa: E402
from hf_layer_tokclf.running.onnx_runner import OnnxTokenClassifier  # noqa: E402
from hf_layer_tokclf.running.sentences import evaluate_sentences  # noqa: E402
from hf_layer_tokclf.running.texts import predict_texts  # noqa: E402

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
    from hf_layer_tokclf.running import export

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
            "README.md",
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


# Optimum as its users run it, in a process of its own (the lowest-versions environment, where optimum-onnx is
# installed) that cannot import hf_layer_tokclf: for each folder, ORTModelForTokenClassification, its logits for
# the first text (with the token ids), and the stock pipeline's entities for each aggregation strategy; or the
# error loading it raised.
OPTIMUM_PIPELINE = """
import json, sys
sys.modules["hf_layer_tokclf"] = None  # importing it raises: nothing of ours may run
from optimum.onnxruntime import ORTModelForTokenClassification
from transformers import AutoTokenizer, pipeline

texts = json.loads(open(sys.argv[1], encoding="utf-8").read())
for folder in sys.argv[2:]:
    try:
        model = ORTModelForTokenClassification.from_pretrained(folder, trust_remote_code=False)
    except Exception as error:
        print(json.dumps({"folder": folder, "error": f"{type(error).__name__}: {error}"}))
        continue
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    found = {}
    for strategy in ("first", "simple"):
        ner = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy=strategy)
        keys = ("entity_group", "start", "end", "score")
        found[strategy] = [[{k: e[k] if k != "score" else float(e[k]) for k in keys} for e in r] for r in ner(texts)]
    encoded = tokenizer(texts[:1], return_tensors="np")
    record = {"class": type(model).__name__, "config": type(model.config).__name__, "entities": found}
    record.update(input_ids=encoded["input_ids"].tolist(), logits=model(**encoded).logits.tolist())
    print(json.dumps({"folder": folder, "layers": model.config.num_hidden_layers, **record}))
"""
DOCUMENTS = 20


@pytest.fixture(scope="module")
def documents() -> list[str]:
    """The first 20 NCBI-disease test sentences, as text."""
    return [" ".join(s.tokens) for s in load_sentences(str(NCBI / "test.tsv"))[:DOCUMENTS]]


@pytest.fixture(scope="module")
def pooled_onnx(pooled_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "pooled"
    export_onnx(pooled_dir, out)
    return out


@pytest.fixture(scope="module")
def family_onnx(checkpoints, tmp_path_factory) -> dict:
    """Each family's tiny checkpoint as a layer classifier reading layer 2 of 4, exported: by family."""
    from hf_layer_tokclf.model.auto import AutoModelForLayerTokenClassification
    from hf_layer_tokclf.model.tokenization import load_tokenizer, save_tokenizer

    root, folders = tmp_path_factory.mktemp("families-onnx"), {}
    for family, checkpoint in checkpoints.items():
        torch.manual_seed(0)
        model = AutoModelForLayerTokenClassification.from_pretrained(
            checkpoint, hidden_layer=2, num_labels=3, id2label=ID2LABEL, label2id=LABEL2ID
        )
        model.save_pretrained(root / family)
        save_tokenizer(load_tokenizer(checkpoint), root / family)
        folders[family] = root / f"{family}-onnx"
        export_onnx(root / family, folders[family])
    return folders


@pytest.fixture(scope="module")
def optimum_read(trained_onnx, trained_int8, pooled_onnx, family_onnx, documents, tmp_path_factory) -> dict:
    """What Optimum makes of each folder (`OPTIMUM_PIPELINE`), by folder."""
    texts = tmp_path_factory.mktemp("optimum") / "texts.json"
    texts.write_text(json.dumps(documents), encoding="utf-8")
    folders = [str(f) for f in (trained_onnx, trained_int8, pooled_onnx, *family_onnx.values())]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [lowest_python(), "-c", OPTIMUM_PIPELINE, str(texts), *folders],
        env=env,
        cwd=texts.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"folder"')]
    assert [r["folder"] for r in records] == folders, proc.stderr[-6000:]
    return {r["folder"]: r for r in records}


def predicted(model_dir, documents, tmp_path, strategy, *options: str) -> list[list[dict]]:
    """`predict MODEL_DIR --decoding argmax --aggregation-strategy STRATEGY OPTIONS` on the documents, one a line."""
    (tmp_path / "docs.txt").write_text("\n".join(documents) + "\n", encoding="utf-8")
    out = tmp_path / f"{model_dir.name}-{strategy}.jsonl"
    argv = ["predict", str(model_dir), "--input", str(tmp_path / "docs.txt"), "--output", str(out)]
    assert main([*argv, "--decoding", "argmax", "--aggregation-strategy", strategy, "--no-progress", *options]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in records] == documents
    return [r["entities"] for r in records]


def assert_same_entities(found, expected, atol):
    """The same entities (label, offsets), in order, with scores within ``atol``."""
    assert [[(e["entity_group"], e["start"], e["end"]) for e in r] for r in found] == [
        [(e["entity_group"], e["start"], e["end"]) for e in r] for r in expected
    ]
    got = [e["score"] for entities in found for e in entities]
    np.testing.assert_allclose(got, [e["score"] for entities in expected for e in entities], atol=atol, rtol=0)


def test_a_one_layer_export_has_the_stock_config(trained, trained_onnx):
    """config.json is BertConfig with num_hidden_layers = the graph's layers, labels and label scheme kept; our own
    record (layer, source type) goes to onnx_export.json; transformers reads it without our classes."""
    from transformers import AutoConfig, BertConfig

    config = json.loads((trained_onnx / "config.json").read_text())
    source = json.loads((trained[0] / "config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == ["BertForTokenClassification"]
    assert config["num_hidden_layers"] == 2 and source["num_hidden_layers"] == 6
    assert not {"auto_map", "custom_pipelines", "hidden_layer", "layer_pooling", "use_crf"} & set(config)
    assert config["id2label"] == source["id2label"] and config["label_scheme"] == source["label_scheme"] == "IOB2"
    loaded = AutoConfig.from_pretrained(str(trained_onnx), trust_remote_code=False)
    assert type(loaded) is BertConfig and loaded.num_hidden_layers == 2
    info = json.loads((trained_onnx / "onnx_export.json").read_text())
    assert info["config"] == "stock" and info["no_stock_form"] is None
    assert info["source_model_type"] == "bert-layer-tokclf" and info["hidden_layer"] == 2
    readme = (trained_onnx / "README.md").read_text()
    assert "ORTModelForTokenClassification.from_pretrained" in readme and "num_hidden_layers" in readme


@pytest.mark.parametrize("strategy", ["first", "simple"])
def test_optimum_loads_the_export_and_its_pipeline_equals_predict_argmax(
    trained, trained_onnx, trained_int8, optimum_read, documents, strategy, tmp_path
):
    """Optimum's ORTModelForTokenClassification loads the folder as it is (no trust_remote_code, nothing of ours),
    and transformers' pipeline over it finds `predict --decoding argmax`'s entities on 20 NCBI documents: those of
    the PyTorch model for the float32 graph, those of our ONNX runner for the int8 one, one text per forward pass
    as the pipeline runs them (int8 activations are quantized with each pass's own range: padding and neighbours
    in a batch move them)."""
    fp32, int8 = optimum_read[str(trained_onnx)], optimum_read[str(trained_int8)]
    for record in (fp32, int8):
        assert "error" not in record, record.get("error")
        assert (record["class"], record["config"], record["layers"]) == (
            "ORTModelForTokenClassification",
            "BertConfig",
            2,
        )
    expected = predicted(trained[0], documents, tmp_path, strategy)
    assert sum(map(len, expected)) >= DOCUMENTS  # a trained model: entities to compare
    assert_same_entities(fp32["entities"][strategy], expected, atol=1e-4)
    int8_expected = predicted(trained_int8, documents, tmp_path, strategy, "--batch-size", "1")
    assert_same_entities(int8["entities"][strategy], int8_expected, atol=1e-4)


def test_an_export_without_stock_form_says_so_and_still_serves(pooled_dir, pooled_onnx, optimum_read, tmp_path, capsys):
    """Layer pooling has no stock form: the folder keeps our config (no auto_map: it holds no code), its README and
    the command say why and how to load it, Optimum refuses it, and our loaders run it."""
    out = tmp_path / "serving"
    assert main(["export-onnx", str(pooled_dir), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "no stock form, so Optimum cannot load it" in printed and "layer_pooling='scalar_mix'" in printed
    assert str(out / "README.md") in printed
    for folder in (out, pooled_onnx):
        config = json.loads((folder / "config.json").read_text())
        assert config["model_type"] == "bert-layer-tokclf" and config["hidden_layer"] == [1, 3]
        assert "auto_map" not in config and "custom_pipelines" not in config
        readme = (folder / "README.md").read_text()
        assert "Load it with hf-layer-tokclf (not with Optimum)" in readme and "layer_pooling='scalar_mix'" in readme
        assert "OnnxTokenClassifier.load" in readme
        info = json.loads((folder / "onnx_export.json").read_text())
        assert info["config"] == "hf-layer-tokclf" and "scalar_mix" in info["no_stock_form"]
    assert "bert-layer-tokclf" in optimum_read[str(pooled_onnx)]["error"]
    assert isinstance(load_model(out)[0], OnnxTokenClassifier)
    check_against_pytorch(out, pooled_dir)


# At layer 2 of 4, ModernBERT and EuroBERT have no stock form (`stock_export.stock_form_reason`); the others do.
NO_STOCK_FORM_AT_2 = {"modernbert": "final norm and a prediction head", "eurobert": "final norm after its last layer"}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_with_a_stock_form_loads_in_optimum(family, family_onnx, optimum_read):
    """Every family with a stock form at the layer read loads in Optimum with its own config class, and the
    graph Optimum runs gives our runner's logits on Optimum's own token ids; the others are refused by Optimum and
    say why in their README."""
    from hf_layer_tokclf.model.auto import FAMILIES as SUPPORTED

    folder = family_onnx[family]
    record, info = optimum_read[str(folder)], json.loads((folder / "onnx_export.json").read_text())
    if family in NO_STOCK_FORM_AT_2:
        assert NO_STOCK_FORM_AT_2[family] in info["no_stock_form"] and f"{family}-layer-tokclf" in record["error"]
        assert NO_STOCK_FORM_AT_2[family] in (folder / "README.md").read_text()
        return
    assert "error" not in record, record.get("error")
    stock_config = SUPPORTED[family].stock_class_name.replace("ForTokenClassification", "Config")
    assert (record["class"], record["config"], record["layers"]) == ("ORTModelForTokenClassification", stock_config, 2)
    ids = np.array(record["input_ids"])
    ours = OnnxTokenClassifier(folder).logits(ids, np.ones_like(ids))
    np.testing.assert_allclose(np.array(record["logits"]), ours, atol=1e-5, rtol=0)


def test_serving_config_keeps_a_stock_config_and_drops_code_it_does_not_hold():
    """transformers' own classifier is stock as it is; a model of someone's code keeps its type without auto_map."""
    from transformers import BertConfig, PretrainedConfig

    from hf_layer_tokclf.running.export import serving_config

    stock = BertConfig(**tiny_bert_kwargs())
    assert serving_config(stock) == (stock, None)
    foreign = PretrainedConfig(auto_map={"AutoConfig": "configuration_x.XConfig"}, custom_pipelines={"x": {}})
    written, reason = serving_config(foreign)
    assert "defined by its own code" in reason and foreign.auto_map  # the model's own config is left as it is
    assert not hasattr(written, "auto_map") and not hasattr(written, "custom_pipelines")


def test_an_older_exports_folder_is_replaced_but_a_readme_someone_put_there_is_refused(pooled_dir, tmp_path):
    """Versions before the README wrote none: in such a folder (no manifest) a README.md is somebody's own."""
    from hf_layer_tokclf.base.manifest import MANIFEST

    out = tmp_path / "out"
    export_onnx(pooled_dir, out)
    (out / MANIFEST).unlink()
    (out / "README.md").unlink()  # now as an older version left it
    export_onnx(pooled_dir, out, overwrite=True)
    assert (out / "README.md").is_file() and (out / MANIFEST).is_file()
    (out / MANIFEST).unlink()
    (out / "README.md").write_text("my notes")
    with pytest.raises(OutputExistsError, match=r"README\.md"):
        export_onnx(pooled_dir, out, overwrite=True)
    assert (out / "README.md").read_text() == "my notes"
