"""The multi-task sweep: several corpora (``--train-file NAME=PATH``), the encoder reading each once, a layer per task,
each task's probes learning from its own corpus alone; on real MiniLM and slices of NCBI-disease and BioNLP13CG."""

from __future__ import annotations

import json
import re

import pytest
import torch
from conftest import REPO, tiny_bert_kwargs

from hf_layer_tokclf.cli.main import main
from hf_layer_tokclf.cli.options import task_files
from hf_layer_tokclf.formats.labels import normalize_labels
from hf_layer_tokclf.formats.loading import load_sentences
from hf_layer_tokclf.model.auto import AutoLayerModel
from hf_layer_tokclf.training.sweep import sweep, sweep_tasks

SHARED = REPO.parent / "shared" / "data"
CORPORA = {"disease": "ncbi-disease", "cg": "bionlp13cg"}
TRAIN, DEV = 40, 15
LAYERS = ["0", "2", "4", "6"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def blocks(path) -> list[str]:
    return [block for block in path.read_text(encoding="utf-8").split("\n\n") if block.strip()]


def labels_of(block: str) -> set[str]:
    return {line.rsplit("\t", 1)[-1] for line in block.splitlines()}


def write_corpus_slices(folder, train: int = TRAIN, dev: int = DEV) -> dict[str, tuple[str, str]]:
    """Task -> (train, dev) files in ``folder``: each corpus's first ``train`` training sentences, and its first
    ``dev`` dev sentences whose labels the training slice has (a dev label it lacks is an error)."""
    files = {}
    for task, corpus in CORPORA.items():
        chosen = {"train": blocks(SHARED / corpus / "train.tsv")[:train]}
        known = set().union(*map(labels_of, chosen["train"]))
        chosen["dev"] = [block for block in blocks(SHARED / corpus / "devel.tsv") if labels_of(block) <= known][:dev]
        for split, sentences in chosen.items():
            (folder / f"{task}-{split}.tsv").write_text("\n\n".join(sentences) + "\n", encoding="utf-8")
        files[task] = (str(folder / f"{task}-train.tsv"), str(folder / f"{task}-dev.tsv"))
    return files


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory) -> dict[str, tuple[str, str]]:
    return write_corpus_slices(tmp_path_factory.mktemp("corpora"))


def sentences(path: str):
    return normalize_labels(load_sentences(path))[0]


class EncoderCalls:
    """Wraps `AutoLayerModel.from_pretrained`: counts the encoders loaded, and the rows (windows) and forward
    calls of each."""

    def __init__(self, original) -> None:
        self.original, self.loaded, self.rows, self.calls = original, 0, 0, 0

    def __call__(self, *args, **kwargs):
        model = self.original(*args, **kwargs)
        self.loaded += 1
        model.register_forward_hook(self.count, with_kwargs=True)
        return model

    def count(self, module, args, kwargs, output) -> None:
        self.rows += kwargs["input_ids"].shape[0]
        self.calls += 1


def test_cli_sweeps_each_task_from_one_pass_per_corpus(minilm_path, corpus_files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "sweep"
    argv = ["sweep", "--model", minilm_path, "--output-dir", str(out), "--layers", *LAYERS, "--epochs", "3"]
    for task, (train, dev) in corpus_files.items():
        argv += ["--train-file", f"{task}={train}", "--validation-file", f"{task}={dev}"]
    counter = EncoderCalls(AutoLayerModel.from_pretrained)
    monkeypatch.setattr(AutoLayerModel, "from_pretrained", counter)
    assert main([*argv, "--no-progress"]) == 0
    # One encoder; every sentence of both corpora (train and dev) went through it once, all layers from that pass.
    assert counter.loaded == 1 and counter.rows == 2 * (TRAIN + DEV) and counter.calls >= 4

    report = json.loads((out / "sweep.json").read_text())
    assert list(report["tasks"]) == ["disease", "cg"]
    layers = report["recommended_layers"]
    assert set(layers) == {"disease", "cg"} and all(k in (0, 2, 4, 6) for k in layers.values())
    disease, cg = report["tasks"]["disease"], report["tasks"]["cg"]
    assert disease["labels"] == ["O", "B-Disease", "I-Disease"]  # each task its own labels, from its corpus alone
    assert "B-Cancer" in cg["labels"] and "B-Disease" not in cg["labels"]
    for task, part in report["tasks"].items():
        assert [row["layer"] for row in part["layers"]] == [0, 2, 4, 6]
        assert part["recommended_layer"] == layers[task] and part["settings"]["train_sentences"] == TRAIN
        assert part["settings"]["train_file"] == corpus_files[task][0]
    command = report["train_command"]
    for task, (train, dev) in corpus_files.items():
        assert f"--train-file {task}={train}" in command and f"--hidden-layer {task}={layers[task]}" in command
        assert f"--validation-file {task}={dev}" in command
    assert report["finetune"] is None

    table = (out / "sweep.md").read_text()
    assert "### Task `disease`" in table and "### Task `cg`" in table and command in table
    assert (out / "sweep.png").read_bytes()[:8] == PNG_MAGIC
    printed = capsys.readouterr().out
    assert f"task disease: recommended layer {layers['disease']}" in printed
    assert "train the joint model, each task at its recommended layer" in printed and command in printed


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tokenizer):
    """A 4-layer random BERT with MiniLM's tokenizer, loadable by path."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-bert")
    BertModel(BertConfig(**tiny_bert_kwargs())).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_each_tasks_probes_learn_from_its_own_corpus_alone(tiny_dir, corpus_files):
    """A task's probes in a joint sweep are those of a sweep of its corpus alone: the other corpus changes nothing."""
    corpora = {task: (sentences(train), sentences(dev)) for task, (train, dev) in corpus_files.items()}
    joint = sweep_tasks(tiny_dir, corpora, layers=[1, 3], epochs=5, progress=False)
    for task, (train, dev) in corpora.items():
        alone = sweep(tiny_dir, train, dev, layers=[1, 3], epochs=5, progress=False)
        torch.testing.assert_close(joint.results[task].probe_weight, alone.probe_weight)
        assert joint.results[task].f1 == pytest.approx(alone.f1)
        assert joint.results[task].labels == alone.labels
    assert joint.recommended_layers == {task: joint.results[task].recommended_layer for task in corpora}


def test_finetune_top_trains_one_joint_model_each_task_at_its_layer(tiny_dir, corpus_files, tmp_path, capsys):
    out, joint = tmp_path / "sweep", tmp_path / "sweep" / "finetune-joint"
    argv = ["sweep", "--model", tiny_dir, "--output-dir", str(out), "--epochs", "3", "--no-progress", "--no-plot"]
    argv += ["--finetune-top", "1", "--finetune-epochs", "1", "--max-eval-samples", "10"]
    for task, (train, dev) in corpus_files.items():
        argv += ["--train-file", f"{task}={train}", "--validation-file", f"{task}={dev}"]
    assert main(argv) == 0
    report = json.loads((out / "sweep.json").read_text())
    layers = report["recommended_layers"]
    config = json.loads((joint / "config.json").read_text())
    assert config["model_type"] == "bert-multitask-layer-tokclf"
    assert {task: spec["hidden_layer"] for task, spec in config["tasks"].items()} == layers
    metrics = json.loads((joint / "metrics.json").read_text())
    for task, part in report["tasks"].items():
        row = next(row for row in part["layers"] if row["layer"] == layers[task])
        assert row["finetune_f1"] == metrics[f"eval_{task}_f1"] and row["finetune_output_dir"] == str(joint)
        assert f"--hidden-layer {task}={layers[task]}" in report["finetune"]["command"]
    assert report["finetune"]["output_dir"] == str(joint) and "--max-eval-samples 10" in report["finetune"]["command"]
    assert "dev F1 (fine-tuned)" in (out / "sweep.md").read_text()
    printed = capsys.readouterr().out
    assert f"fine-tuned the joint model, each task at its recommended layer, into {joint}" in printed


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--validation-file", "cg=DEV"], "--validation-file is required for every task.*--validation-file disease="),
        (["--validation-file", "disease=DEV", "--validation-file", "DEV"], "has no task name: with several tasks"),
        (["--validation-file", "disease=DEV", "--validation-file", "cg=DEV", "--save-probe"], "--save-probe"),
        (["--validation-file", "DEV"], "name its task"),
    ],
)
def test_bad_task_options_are_named_and_nothing_is_written(tiny_dir, corpus_files, tmp_path, capsys, extra, message):
    (disease_train, disease_dev), (cg_train, _) = corpus_files["disease"], corpus_files["cg"]
    extra = [value.replace("DEV", disease_dev) for value in extra]
    argv = ["sweep", "--model", tiny_dir, "--output-dir", str(tmp_path / "out"), "--no-progress"]
    argv += ["--train-file", f"disease={disease_train}", "--train-file", f"cg={cg_train}", *extra]
    assert main(argv) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_task_files_reads_name_path_pairs_and_keeps_a_bare_path(tmp_path):
    odd = tmp_path / "a=b.tsv"
    odd.write_text("x\tO\n")
    assert task_files(["train.tsv"], "--train-file") is None
    assert task_files([str(odd)], "--train-file") is None  # an existing file's '=' is part of its name
    assert task_files(["disease=d.tsv", "cg-2=c=x.tsv"], "--train-file") == {"disease": "d.tsv", "cg-2": "c=x.tsv"}
    with pytest.raises(ValueError, match="task 'disease' is given twice"):
        task_files(["disease=a.tsv", "disease=b.tsv"], "--train-file")
    with pytest.raises(ValueError, match=r"--train-file is given 2 times \(a\.tsv, b\.tsv\)"):
        task_files(["a.tsv", "b.tsv"], "--train-file")
    with pytest.raises(ValueError, match=r"--train-file b\.tsv has no task name"):
        task_files(["disease=a.tsv", "b.tsv"], "--train-file")
