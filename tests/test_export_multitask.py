"""Export of a multi-task model: one ONNX graph with an output per task (float32 and int8), equal to the PyTorch
model's logits of each task, run by this package's runner as the PyTorch model runs; export-transformers refuses it
(no stock class has several heads) before writing anything. On real MiniLM, its heads the probes of a sweep of
slices of NCBI-disease (layer 4) and BioNLP13CG (layer 6, with a CRF)."""

from __future__ import annotations

import contextlib
import io
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
from hf_layer_tokclf.running.onnx_runner import OnnxTokenClassifier, task_output_names  # noqa: E402
from hf_layer_tokclf.running.stock_export import NotExportableError, export_transformers  # noqa: E402

LAYERS = {"disease": 4, "cg": 6}
# The tasks in task id order (a multi-task config's, sorted by name): each's logits, then the CRF task's scores.
OUTPUTS = ["logits_cg", "logits_disease", "start_transitions_cg", "transitions_cg", "end_transitions_cg"]


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory):
    return write_corpus_slices(tmp_path_factory.mktemp("corpora"), train=60, dev=20)


def first_subword_labels(encoded, batch, labels: list[str]) -> torch.Tensor:
    """Each word's label id on its first subword, -100 elsewhere: (sentences, tokens)."""
    label2id, rows = {label: i for i, label in enumerate(labels)}, []
    for row, sentence in enumerate(batch):
        words = encoded.word_ids(row)
        first = [w is not None and (i == 0 or words[i - 1] != w) for i, w in enumerate(words)]
        rows.append([label2id[sentence.labels[w]] if f else -100 for w, f in zip(words, first, strict=True)])
    return torch.tensor(rows)


@pytest.fixture(scope="module")
def multitask_dir(minilm_path, corpus_files, tmp_path_factory):
    """MiniLM with a head per task (disease at layer 4; cg at layer 6, with a CRF), each head trained on its
    corpus's slice (on the frozen encoder's states at its layer, one pass): heads that separate labels, as a
    trained model's do."""
    from hf_layer_tokclf.formats.labels import label_list
    from hf_layer_tokclf.model.auto import AutoModelForMultiTaskLayerTokenClassification
    from hf_layer_tokclf.model.tokenization import load_tokenizer, save_tokenizer

    corpora = {task: sentences(train) for task, (train, _) in corpus_files.items()}
    tasks = {task: {"labels": label_list(corpora[task]), "hidden_layer": layer} for task, layer in LAYERS.items()}
    tasks["cg"]["use_crf"] = True
    torch.manual_seed(0)
    model = AutoModelForMultiTaskLayerTokenClassification.from_pretrained(minilm_path, tasks=tasks).eval()
    tokenizer = load_tokenizer(minilm_path)
    for task, layer in LAYERS.items():
        words = [s.tokens for s in corpora[task]]
        encoded = tokenizer(words, is_split_into_words=True, padding=True, return_tensors="pt")
        with torch.no_grad():
            states = model(**encoded, output_hidden_states=True).hidden_states[layer]
        targets, head = first_subword_labels(encoded, corpora[task], tasks[task]["labels"]), model.classifiers[task]
        optimizer = torch.optim.AdamW(head.parameters(), lr=1e-2)
        for _ in range(100):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(head(states).flatten(0, 1), targets.flatten()).backward()
            optimizer.step()
    path = tmp_path_factory.mktemp("multitask") / "model"
    model.save_pretrained(path)
    save_tokenizer(tokenizer, path)
    return path


@pytest.fixture(scope="module")
def exported(multitask_dir, tmp_path_factory):
    """The model exported as float32 (`export_onnx`) and as int8 (the command, its output kept):
    {"fp32": folder, "int8": folder, "printed": the command's output}."""
    root, printed = tmp_path_factory.mktemp("onnx"), io.StringIO()
    export_onnx(multitask_dir, root / "fp32")
    with contextlib.redirect_stdout(printed):
        assert main(["export-onnx", str(multitask_dir), str(root / "int8"), "--quantize", "int8"]) == 0
    return {"fp32": root / "fp32", "int8": root / "int8", "printed": printed.getvalue()}


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
    assert info["task_outputs"] == {"cg": "logits_cg", "disease": "logits_disease"}
    assert info["encoder_layers"] == 6 and info["fp32_max_abs_diff_vs_pytorch"] < 1e-4
    config = json.loads((folder / "config.json").read_text())
    assert list(config["tasks"]) == ["cg", "disease"] and "auto_map" not in config
    assert config["tasks"]["cg"]["hidden_layer"] == 6 and config["tasks"]["cg"]["use_crf"] is True

    model, tokenizer = load_model(multitask_dir)
    runner = OnnxTokenClassifier(folder)
    assert runner.config.task_names == ["cg", "disease"]
    for batch_texts in (["Cancer.", TEXT], texts(6, corpus_files)):  # two padded shapes
        batch = tokenizer(batch_texts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            expected = model(**batch).logits
        got = runner.logits(**{k: v.numpy() for k, v in batch.items()})
        as_model = runner(**batch).logits  # what the prediction path reads: a dict of tensors, as the model's
        keep = batch["attention_mask"].numpy().astype(bool)
        assert list(got) == list(expected) == list(as_model) == ["cg", "disease"]
        for task in LAYERS:
            assert got[task].shape == tuple(expected[task].shape) == tuple(as_model[task].shape)
            assert got[task].shape[-1] == len(config["tasks"][task]["labels"])
            np.testing.assert_allclose(got[task][keep], expected[task].numpy()[keep], atol=1e-4, rtol=0)
            assert torch.equal(as_model[task], torch.from_numpy(got[task]))
    assert verify_onnx(folder / "model.onnx", multitask_dir, [TEXT]) < 1e-4
    # The CRF travels as the graph's scores; a task without one decodes with its labels' constraints alone.
    assert set(runner.crfs) == {"cg"}
    for ours, theirs in zip(runner.task_decoder("cg").scores(), model.task_decoder("cg").scores(), strict=True):
        torch.testing.assert_close(ours, theirs)
    assert runner.task_decoder("disease").transitions.shape == (3, 3)  # its labels' constraints, as the model's
    for ours, theirs in zip(
        runner.task_decoder("disease").scores(), model.task_decoder("disease").scores(), strict=True
    ):
        torch.testing.assert_close(ours, theirs)
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


def test_the_command_says_which_output_is_which_task(exported):
    printed = exported["printed"]
    assert "one output per task: logits_cg (cg), logits_disease (disease)" in printed
    assert "no stock form, so Optimum cannot load it: it is a multi-task model" in printed
    readme = (exported["int8"] / "README.md").read_text()
    assert "`logits_disease` (task `disease`)" in readme and "Load it with hf-layer-tokclf (not with Optimum)" in readme


def test_export_transformers_refuses_a_multitask_model_before_writing(multitask_dir, tmp_path, capsys):
    out = tmp_path / "stock"
    assert main(["export-transformers", str(multitask_dir), str(out)]) == 2
    error = capsys.readouterr().err
    assert "multi-task model" in error and "no stock transformers class has several heads" in error
    assert "'cg' at layer 6, 'disease' at layer 4" in error and "export-onnx" in error
    assert not out.exists()
    with pytest.raises(NotExportableError, match="several heads"):
        export_transformers(multitask_dir, out)
    assert not out.exists()


# What Optimum makes of the folder, in the lowest-versions environment where optimum-onnx is installed (a process
# that cannot import hf_layer_tokclf): ORTModelForTokenClassification and ORTModelForCustomTasks (any graph, its
# outputs by name) as they load a folder, and ORTModelForCustomTasks given the config as a plain PretrainedConfig.
OPTIMUM_READ = """
import json, sys
sys.modules["hf_layer_tokclf"] = None
from optimum.onnxruntime import ORTModelForCustomTasks, ORTModelForTokenClassification
from transformers import AutoTokenizer, PretrainedConfig
folder, record = sys.argv[1], {}
plain = PretrainedConfig.from_json_file(folder + "/config.json")
tries = {"token_classification": (ORTModelForTokenClassification, {}), "custom_tasks": (ORTModelForCustomTasks, {}),
         "custom_tasks_plain_config": (ORTModelForCustomTasks, {"config": plain})}
for name, (cls, kwargs) in tries.items():
    try:
        model = cls.from_pretrained(folder, trust_remote_code=False, **kwargs)
    except Exception as error:
        record[name] = {"error": f"{type(error).__name__}: {error}"}
        continue
    encoded = AutoTokenizer.from_pretrained(folder)(["Cancer in BRCA1 carriers."], return_tensors="np")
    record[name] = {key: value.tolist() for key, value in model(**encoded).items()}
    record["input_ids"] = encoded["input_ids"].tolist()
print(json.dumps(record))
"""


def test_what_optimum_reads_of_a_multitask_export(exported):
    """Optimum's loaders refuse the folder as it is (they need transformers to know its model type, and its
    ORTModelForTokenClassification reads one ``logits``); its ORTModelForCustomTasks, given the config as a plain
    PretrainedConfig, runs the graph and gives each task's output by name, equal to our runner's."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)
    folder = exported["fp32"]
    proc = subprocess.run(
        [lowest_python(), "-c", OPTIMUM_READ, str(folder)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    for refused in ("token_classification", "custom_tasks"):
        assert "model type `bert-multitask-layer-tokclf`" in record[refused]["error"], record[refused]
    read = record["custom_tasks_plain_config"]
    assert sorted(read) == sorted(OUTPUTS), read.get("error")
    ours = OnnxTokenClassifier(folder).logits(input_ids=np.array(record["input_ids"]))
    for task, output in task_output_names(["cg", "disease"]).items():
        np.testing.assert_allclose(np.array(read[output]), ours[task], atol=1e-5, rtol=0)


def test_predict_on_the_export_gives_the_models_entities_of_every_task(multitask_dir, exported, corpus_files, tmp_path):
    """The prediction path (every task's entities, each with its task) runs on the ONNX folder as on the model."""
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(texts(10, corpus_files)) + "\n", encoding="utf-8")
    found = {}
    for name, folder in (("model", multitask_dir), ("fp32", exported["fp32"])):
        out = tmp_path / f"{name}.jsonl"
        assert main(["predict", str(folder), "--input", str(source), "--output", str(out)]) == 0
        documents = [json.loads(line)["entities"] for line in out.read_text(encoding="utf-8").splitlines()]
        found[name] = [[(e["task"], e["entity_group"], e["start"], e["end"]) for e in d] for d in documents]
    assert found["fp32"] == found["model"]
    assert {entity[0] for document in found["model"] for entity in document} == set(LAYERS)
