"""Export of a multi-task model: one ONNX graph with an output per task (float32 and int8), equal to the PyTorch
model's logits of each task, run by this package's runner as the PyTorch model runs; export-transformers refuses it
(no stock class has several heads) before writing anything. On real MiniLM, its heads the probes of a sweep of
slices of NCBI-disease (layer 4) and BioNLP13CG (layer 6, with a CRF)."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import torch
from conftest import TEXT, lowest_python
from test_sweep_tasks import sentences, write_corpus_slices

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from hf_layer_tokclf.cli.main import main  # noqa: E402
from hf_layer_tokclf.formats.loading import load_sentences  # noqa: E402
from hf_layer_tokclf.running.export import export_onnx, verify_onnx  # noqa: E402
from hf_layer_tokclf.running.loading import load_model  # noqa: E402
from hf_layer_tokclf.running.serving import OnnxTokenClassifier, task_output_names  # noqa: E402
from hf_layer_tokclf.running.stock_export import NotExportableError, export_transformers  # noqa: E402
from hf_layer_tokclf.training.sweep import sweep_tasks  # noqa: E402

LAYERS = {"disease": 4, "cg": 6}
OUTPUTS = ["logits_disease", "logits_cg", "start_transitions_cg", "transitions_cg", "end_transitions_cg"]


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory):
    return write_corpus_slices(tmp_path_factory.mktemp("corpora"), train=60, dev=20)


@pytest.fixture(scope="module")
def multitask_dir(minilm_path, corpus_files, tmp_path_factory):
    """MiniLM with a head per task (disease at layer 4; cg at layer 6, with a CRF), each head its task's probe at
    its layer (trained on its corpus's slice): heads that separate labels, as a trained model's do."""
    from hf_layer_tokclf.model.auto import AutoModelForMultiTaskLayerTokenClassification
    from hf_layer_tokclf.model.tokenization import load_tokenizer, save_tokenizer

    corpora = {task: (sentences(train), sentences(dev)) for task, (train, dev) in corpus_files.items()}
    probes = sweep_tasks(minilm_path, corpora, layers=sorted(LAYERS.values()), epochs=20, progress=False)
    tasks = {task: {"labels": probes.results[task].labels, "hidden_layer": layer} for task, layer in LAYERS.items()}
    tasks["cg"]["use_crf"] = True
    torch.manual_seed(0)
    model = AutoModelForMultiTaskLayerTokenClassification.from_pretrained(minilm_path, tasks=tasks)
    with torch.no_grad():
        for task, layer in LAYERS.items():
            result = probes.results[task]
            model.classifiers[task].weight.copy_(result.probe_weight[result.layers.index(layer)].T)
            model.classifiers[task].bias.copy_(result.probe_bias[result.layers.index(layer)])
    path = tmp_path_factory.mktemp("multitask") / "model"
    model.save_pretrained(path)
    save_tokenizer(load_tokenizer(minilm_path), path)
    return path


@pytest.fixture(scope="module")
def exported(multitask_dir, tmp_path_factory):
    """The model exported as float32 and as int8: {"fp32": folder, "int8": folder}."""
    root = tmp_path_factory.mktemp("onnx")
    export_onnx(multitask_dir, root / "fp32")
    export_onnx(multitask_dir, root / "int8", quantize="int8")
    return {"fp32": root / "fp32", "int8": root / "int8"}


def texts(n: int, corpus_files) -> list[str]:
    """The first ``n`` dev sentences of each corpus, as text."""
    return [" ".join(s.tokens) for _, dev in corpus_files.values() for s in load_sentences(dev)[:n]]


def test_each_task_has_its_output_equal_to_the_pytorch_models_logits(multitask_dir, exported, corpus_files):
    folder = exported["fp32"]
    graph = onnx.load(str(folder / "model.onnx")).graph
    assert [o.name for o in graph.output] == OUTPUTS
    for value in (*graph.input, graph.output[0], graph.output[1]):
        assert [d.dim_param for d in value.type.tensor_type.shape.dim[:2]] == ["batch", "sequence"]
    info = json.loads((folder / "onnx_export.json").read_text())
    assert info["task_outputs"] == {"disease": "logits_disease", "cg": "logits_cg"}
    assert info["encoder_layers"] == 6 and info["fp32_max_abs_diff_vs_pytorch"] < 1e-4
    config = json.loads((folder / "config.json").read_text())
    assert list(config["tasks"]) == ["disease", "cg"] and "auto_map" not in config
    assert config["tasks"]["cg"]["hidden_layer"] == 6 and config["tasks"]["cg"]["use_crf"] is True

    model, tokenizer = load_model(multitask_dir)
    runner = OnnxTokenClassifier(folder)
    assert runner.config.task_names == ["disease", "cg"]
    for batch_texts in (["Cancer.", TEXT], texts(6, corpus_files)):  # two padded shapes
        batch = tokenizer(batch_texts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            expected = model(**batch).logits
        got = runner.logits(**{k: v.numpy() for k, v in batch.items()})
        as_model = runner(**batch).logits  # what the prediction path reads: a dict of tensors, as the model's
        keep = batch["attention_mask"].numpy().astype(bool)
        assert list(got) == list(expected) == list(as_model) == ["disease", "cg"]
        for task in LAYERS:
            assert got[task].shape == tuple(expected[task].shape) == tuple(as_model[task].shape)
            assert got[task].shape[-1] == len(config["tasks"][task]["labels"])
            np.testing.assert_allclose(got[task][keep], expected[task].numpy()[keep], atol=1e-4, rtol=0)
            assert torch.equal(as_model[task], torch.from_numpy(got[task]))
    assert verify_onnx(folder / "model.onnx", multitask_dir, [TEXT]) < 1e-4
    # The CRF travels as the graph's scores; a task without one decodes with its labels' constraints alone.
    assert set(runner.crfs) == {"cg"}
    torch.testing.assert_close(runner.task_decoder("cg").transitions, model.crfs["cg"].transitions)
    assert runner.task_decoder("disease").transitions.shape == (3, 3)
    assert isinstance(load_model(folder)[0], OnnxTokenClassifier)


def test_int8_export_agrees_with_float32_on_each_task(multitask_dir, exported, corpus_files):
    _, tokenizer = load_model(multitask_dir)
    fp32, int8 = OnnxTokenClassifier(exported["fp32"]), OnnxTokenClassifier(exported["int8"])
    info = json.loads((exported["int8"] / "onnx_export.json").read_text())
    assert info["quantize"] == "int8" and info["outputs"] == OUTPUTS
    assert (exported["int8"] / "model.onnx").stat().st_size < 0.5 * (exported["fp32"] / "model.onnx").stat().st_size
    batch = {k: v.numpy() for k, v in tokenizer(texts(16, corpus_files), padding=True, return_tensors="pt").items()}
    keep = batch["attention_mask"].astype(bool)
    full, quantized = fp32.logits(**batch), int8.logits(**batch)
    for task in LAYERS:
        agree = full[task].argmax(-1)[keep] == quantized[task].argmax(-1)[keep]
        assert np.mean(agree) > 0.95, task
    assert set(int8.crfs) == {"cg"}


def test_task_output_names_are_identifiers_and_distinct():
    assert task_output_names(["disease", "gene-2", "gene_2"]) == {
        "disease": "logits_disease",
        "gene-2": "logits_gene_2",
        "gene_2": "logits_gene_2_2",
    }


def test_cli_exports_and_says_which_output_is_which_task(multitask_dir, tmp_path, capsys):
    out = tmp_path / "serving"
    assert main(["export-onnx", str(multitask_dir), str(out), "--quantize", "int8"]) == 0
    printed = capsys.readouterr().out
    assert "one output per task: logits_disease (disease), logits_cg (cg)" in printed
    assert "no stock form, so Optimum cannot load it: it is a multi-task model" in printed
    readme = (out / "README.md").read_text()
    assert "`logits_disease` (task `disease`)" in readme and "Load it with hf-layer-tokclf (not with Optimum)" in readme


def test_export_transformers_refuses_a_multitask_model_before_writing(multitask_dir, tmp_path, capsys):
    out = tmp_path / "stock"
    assert main(["export-transformers", str(multitask_dir), str(out)]) == 2
    error = capsys.readouterr().err
    assert "multi-task model" in error and "no stock transformers class has several heads" in error
    assert "'disease' at layer 4" in error and "export-onnx" in error
    assert not out.exists()
    with pytest.raises(NotExportableError, match="several heads"):
        export_transformers(multitask_dir, out)
    assert not out.exists()


# What Optimum makes of the folder, in the lowest-versions environment where optimum-onnx is installed (a process
# that cannot import hf_layer_tokclf): ORTModelForTokenClassification, and ORTModelForCustomTasks (any graph, its
# outputs by name).
OPTIMUM_READ = """
import json, sys
sys.modules["hf_layer_tokclf"] = None
from optimum.onnxruntime import ORTModelForCustomTasks, ORTModelForTokenClassification
from transformers import AutoTokenizer
record = {}
for cls in (ORTModelForTokenClassification, ORTModelForCustomTasks):
    try:
        model = cls.from_pretrained(sys.argv[1], trust_remote_code=False)
    except Exception as error:
        record[cls.__name__] = {"error": f"{type(error).__name__}: {error}"}
        continue
    encoded = AutoTokenizer.from_pretrained(sys.argv[1])(["Cancer."], return_tensors="np")
    outputs = model(**encoded)
    record[cls.__name__] = {name: np_value.tolist() for name, np_value in outputs.items()}
    record["input_ids"] = encoded["input_ids"].tolist()
print(json.dumps(record))
"""


def test_what_optimum_reads_of_a_multitask_export(exported):
    """ORTModelForTokenClassification refuses the folder (one `logits`, a stock config); what Optimum does read is
    checked against our runner."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)
    folder = exported["fp32"]
    proc = subprocess.run(
        [lowest_python(), "-c", OPTIMUM_READ, str(folder)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "bert-multitask-layer-tokclf" in record["ORTModelForTokenClassification"]["error"]
    custom = record["ORTModelForCustomTasks"]
    if "error" not in custom:  # any graph, its outputs by name: each task's logits, as our runner gives them
        ours = OnnxTokenClassifier(folder).logits(input_ids=np.array(record["input_ids"]))
        for task, output in task_output_names(["disease", "cg"]).items():
            np.testing.assert_allclose(np.array(custom[output]), ours[task], atol=1e-5, rtol=0)
