"""The multi-task model (model/modeling_multitask_layer_tokclf.py): its config, heads on their own layers, the
task-masked loss, saving with auto_map, remote code on transformers 5.x and 4.57, every family."""

import json
from pathlib import Path

import pytest
import torch
from conftest import REPO

from hf_layer_tokclf import (
    AutoModelForLayerTokenClassification,
    AutoModelForMultiTaskLayerTokenClassification,
    BertForLayerTokenClassification,
    MultiTaskLayerTokenClassificationConfig,
)
from hf_layer_tokclf.model.auto import FAMILIES, is_multitask
from hf_layer_tokclf.sharing.remote_check import run_remote_check

SHARED = REPO.parent / "shared" / "data"
TEXT = "Loss of BRCA1 in breast cancer cells of mice."


def corpus_labels(corpus: str, sentences: int = 300) -> list[str]:
    """The labels of the first ``sentences`` sentences of a shared corpus's training split, ``O`` first."""
    labels, seen = set(), 0
    with open(SHARED / corpus / "train.tsv", encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                seen += 1
                if seen == sentences:
                    break
                continue
            labels.add(line.rstrip("\n").split("\t")[1])
    return ["O", *sorted(labels - {"O"})]


@pytest.fixture(scope="module")
def tasks() -> dict:
    """NCBI-disease's labels at layer 2, BioNLP13CG's (a slice's) at layer 4 with a CRF."""
    return {
        "disease": {"labels": corpus_labels("ncbi-disease"), "hidden_layer": 2},
        "cg": {"labels": corpus_labels("bionlp13cg"), "hidden_layer": 4, "use_crf": True},
    }


@pytest.fixture(scope="module")
def model(minilm_path, tasks):
    torch.manual_seed(0)
    return AutoModelForMultiTaskLayerTokenClassification.from_pretrained(minilm_path, tasks=tasks).eval()


@pytest.fixture(scope="module")
def saved(model, tokenizer, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("multitask")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_config_sorts_tasks_and_derives_the_layers(tasks):
    config = MultiTaskLayerTokenClassificationConfig(
        tasks={**tasks, "disease": {**tasks["disease"], "hidden_layer": -3}}
    )
    assert config.task_names == ["cg", "disease"]  # sorted: config.json is written with sorted keys
    assert config.tasks["disease"]["hidden_layer"] == 10  # -3 of 12 layers, stored non-negative
    assert config.hidden_layer == [4, 10] and config.num_layers_used == 10
    assert config.tasks["cg"] == {**tasks["cg"], "scheme": "IOB2", "classifier_dropout": None}
    assert config.task_id2label("disease") == dict(enumerate(tasks["disease"]["labels"]))
    back = MultiTaskLayerTokenClassificationConfig.from_dict(json.loads(config.to_json_string()))
    assert back.tasks == config.tasks and back.hidden_layer == [4, 10]


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ({"labels": []}, "non-empty list"),
        ({"labels": ["O", "O"]}, "names a label twice"),
        ({"labels": ["O"], "hidden_layer": 13}, "hidden_layer=13 is out of range"),
        ({"labels": ["O"], "hidden_layer": [2, 3]}, "one int per task"),
        ({"labels": ["O"], "use_crf": "yes"}, "use_crf='yes'"),
        ({"labels": ["O"], "classifier_dropout": 2}, "out of range"),
        ({"labels": ["O"], "layer": 3}, "keys among"),
    ],
)
def test_config_names_the_task_and_field_it_refuses(task, message):
    with pytest.raises(ValueError, match=message):
        MultiTaskLayerTokenClassificationConfig(tasks={"disease": task})


def test_a_task_name_must_be_usable_as_an_output_name():
    with pytest.raises(ValueError, match="task name 'a b'"):
        MultiTaskLayerTokenClassificationConfig(tasks={"a b": {"labels": ["O"]}})


def test_only_the_deepest_tasks_layers_are_built_and_each_head_reads_its_own_layer(model, minilm_path, tokenizer):
    assert len(model.encoder_layers) == 4 and model.config.num_hidden_layers == 6
    encoded = tokenizer(TEXT, return_tensors="pt")
    with torch.no_grad():
        logits = model(**encoded).logits
    for name, layer in (("disease", 2), ("cg", 4)):
        single = BertForLayerTokenClassification.from_pretrained(
            minilm_path, hidden_layer=layer, num_labels=len(model.config.tasks[name]["labels"])
        ).eval()
        single.classifier.load_state_dict(model.classifiers[name].state_dict())
        with torch.no_grad():
            torch.testing.assert_close(logits[name], single(**encoded).logits, atol=1e-5, rtol=0)


def batch_of(tokenizer, texts, task_ids, label=1):
    encoded = tokenizer(texts, return_tensors="pt", padding=True)
    labels = torch.full_like(encoded["input_ids"], label).masked_fill(encoded["attention_mask"] == 0, -100)
    labels[:, 0] = -100
    return {**encoded, "labels": labels, "task_ids": torch.tensor(task_ids)}


def test_a_head_gets_no_gradient_from_another_tasks_rows(model, tokenizer):
    model.zero_grad()
    model(**batch_of(tokenizer, [TEXT, "Tumour cells."], [1, 1])).loss.backward()  # disease rows only
    assert model.classifiers["disease"].weight.grad.abs().sum() > 0
    assert model.classifiers["cg"].weight.grad is None or not model.classifiers["cg"].weight.grad.any()
    assert all(p.grad is None or not p.grad.any() for p in model.crfs["cg"].parameters())
    model.zero_grad()


def test_a_mixed_batchs_loss_is_each_rows_loss_under_its_own_head(model, tokenizer):
    texts = [TEXT, "Tumour cells of mice.", "BRCA1 carriers."]
    mixed = model(**batch_of(tokenizer, texts, [1, 0, 1])).loss
    count = {}
    total = 0.0
    for ids, rows in (([0], [1]), ([1], [0, 2])):
        batch = batch_of(tokenizer, [texts[i] for i in rows], ids * len(rows))
        labeled = int((batch["labels"] != -100).sum())
        total += model(**batch).loss * labeled
        count[ids[0]] = labeled
    # Padding to the batch's longest row changes nothing: the loss is a mean over labeled tokens.
    torch.testing.assert_close(mixed, total / sum(count.values()), atol=1e-5, rtol=1e-5)


def test_the_loss_needs_task_ids_and_labels_of_the_rows_task(model, tokenizer):
    batch = batch_of(tokenizer, [TEXT], [1])
    with pytest.raises(ValueError, match=r"labels need task_ids .*\['cg', 'disease'\]"):
        model(**{**batch, "task_ids": None})
    with pytest.raises(ValueError, match=r"task id in 0\.\.1"):
        model(**{**batch, "task_ids": torch.tensor([2])})
    with pytest.raises(ValueError, match=r"task 'disease' has label id 5; its labels are ids 0\.\.2"):
        model(**batch_of(tokenizer, [TEXT], [1], label=5))


def test_a_crf_task_decodes_with_its_crf_and_a_plain_task_with_its_labels_constraints(model):
    assert model.task_decoder("cg") is model.crfs["cg"]
    plain = model.task_decoder("disease")
    assert not plain.learned and plain.allowed[0] == [True, True, False]  # I-Disease cannot start


def test_saved_with_auto_map_and_the_code_it_needs(model, saved):
    config = json.loads((saved / "config.json").read_text())
    assert config["model_type"] == "bert-multitask-layer-tokclf"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_layer_tokclf.MultiTaskLayerTokenClassificationConfig",
        "AutoModelForTokenClassification": "modeling_multitask_layer_tokclf.BertForMultiTaskLayerTokenClassification",
    }
    assert config["custom_pipelines"]["token-classification"]["impl"] == (
        "pipeline_layer_tokclf.MultiTaskLayerTokenClassificationPipeline"
    )
    code = sorted(p.name for p in saved.glob("*.py"))
    assert code == [
        "configuration_layer_tokclf.py",
        "modeling_layer_tokclf.py",
        "modeling_multitask_layer_tokclf.py",
        "pipeline_layer_tokclf.py",
    ]
    loaded = AutoModelForLayerTokenClassification.from_pretrained(saved)
    assert type(loaded) is type(model) and is_multitask(loaded.config)
    assert loaded.config.tasks == model.config.tasks
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor)


def check_stranger_report(report, model, tokenizer):
    assert report["model_class"] == "BertForMultiTaskLayerTokenClassification"
    assert report["pipeline_class"] == "MultiTaskLayerTokenClassificationPipeline"
    assert report["auto_model_class"] is None and report["num_layers_built"] == 4
    with torch.no_grad():
        logits = model(**tokenizer(TEXT, return_tensors="pt")).logits
    assert set(report["logits"]) == {"cg", "disease"}
    for name, expected in logits.items():
        torch.testing.assert_close(torch.tensor(report["logits"][name]), expected[0], atol=1e-5, rtol=0)
    assert report["entities"] and {e["task"] for e in report["entities"]} <= {"cg", "disease"}
    for entity in report["entities"]:
        assert TEXT[entity["start"] : entity["end"]].lower() == entity["word"].removeprefix("##")
    assert "LOAD REPORT" not in "\n".join(report["warnings"])


def test_loads_through_remote_code_on_transformers_5(saved, model, tokenizer):
    report = run_remote_check(saved, TEXT)
    assert report["transformers_version"].startswith("5.")
    check_stranger_report(report, model, tokenizer)


def test_loads_through_remote_code_on_transformers_4(saved, model, tokenizer, transformers4_path):
    report = run_remote_check(saved, TEXT, python_path=transformers4_path)
    assert report["transformers_version"].startswith("4.")
    check_stranger_report(report, model, tokenizer)


def test_the_pipeline_gives_every_tasks_entities_and_chooses_some(saved, model, tokenizer):
    from transformers import pipeline

    ner = pipeline("token-classification", model=str(saved), trust_remote_code=True, aggregation_strategy="first")
    both = ner(TEXT)
    assert [e["start"] for e in both] == sorted(e["start"] for e in both)
    single = ner(TEXT, tasks=["disease"])
    assert single == [e for e in both if e["task"] == "disease"]
    with pytest.raises(ValueError, match=r"tasks \['genes'\] are not the model's; it has \['cg', 'disease'\]"):
        ner(TEXT, tasks=["genes"])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_has_a_multitask_class_saved_and_loaded_through_the_auto_classes(family, checkpoints, tmp_path):
    from transformers import AutoModelForTokenClassification

    tasks = {"a": {"labels": ["O", "B-X", "I-X"], "hidden_layer": 1}, "b": {"labels": ["O", "B-Y"], "use_crf": True}}
    model = AutoModelForMultiTaskLayerTokenClassification.from_pretrained(checkpoints[family], tasks=tasks).eval()
    assert type(model) is FAMILIES[family].multitask_class
    model.save_pretrained(tmp_path)
    loaded = AutoModelForTokenClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    inputs = {"input_ids": torch.tensor([[1, 5, 6, 7, 2]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    with torch.no_grad():
        expected, got = model(**inputs).logits, loaded(**inputs).logits
    assert {k: v.shape[-1] for k, v in got.items()} == {"a": 3, "b": 2}
    for name in expected:
        torch.testing.assert_close(got[name], expected[name])
