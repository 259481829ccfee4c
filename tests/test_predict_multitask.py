"""Prediction and evaluation with a multi-task model (#30 item 3): every task's entities from one encoder pass, each
saying its task, overlaps across tasks kept, ``--tasks`` choosing; CoNLL with a label column per task; ``evaluate``
scoring each task on its own data; the same entities as the travelling pipeline."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import (
    BIONLP13CG,
    MULTITASK,
    MULTITASK_TEST,
    NCBI,
    TEXT,
    assert_same_answers,
    conll_slice,
    multitask_sentences,
    plain_entities,
    save_tiny_model,
)

from hf_layer_tokclf.cli.main import main
from hf_layer_tokclf.formats.conll import iter_conll
from hf_layer_tokclf.running.loading import load_model
from hf_layer_tokclf.running.sentences import evaluate_sentences, predict_sentences
from hf_layer_tokclf.running.tasks import model_heads, parse_tasks
from hf_layer_tokclf.running.texts import predict_texts

TASKS = sorted(MULTITASK)  # the model's order: cg, disease


@pytest.fixture(scope="module")
def multitask(multitask_dir):
    return load_model(multitask_dir)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """Sentences of both corpora as raw texts, a text longer than one window, and odd ones."""
    sentences = [*multitask_sentences(NCBI, "test", 8), *multitask_sentences(BIONLP13CG, "test", 8)]
    plain = [" ".join(s.tokens) for s in sentences]
    return [*plain, " ".join(plain * 2), "", TEXT, "Breast cancer cells (MCF-7) grew in nude mice."]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def conll_rows(path) -> list[list[list[str]]]:
    """The rows of each sentence of a CoNLL file written by predict, split at tabs."""
    blocks = path.read_text(encoding="utf-8").strip("\n").split("\n\n")
    return [[line.split("\t") for line in block.splitlines()] for block in blocks]


def test_one_encoder_pass_per_batch_gives_every_tasks_labels(multitask):
    model, tokenizer = multitask
    sentences = multitask_sentences(NCBI, "test", 20)
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        both = predict_sentences(model, tokenizer, sentences, batch_size=8, progress=False)
        passes, calls[:] = len(calls), []
        alone = predict_sentences(model, tokenizer, sentences, batch_size=8, progress=False, tasks=["disease"])
    finally:
        hook.remove()
    assert passes == len(calls) == 3, "20 sentences of one window each: 3 batches of 8, one pass each, all tasks"
    assert [list(own) for own in both] == [TASKS] * len(sentences)
    assert [own["disease"] for own in both] == [own["disease"] for own in alone]
    assert all(len(own[task]) == len(s.tokens) for own, s in zip(both, sentences, strict=True) for task in TASKS)


def single_task_model(model, name: str):
    """Task ``name``'s head alone as a single-task model: the multi-task model's encoder (to the task's layer), its
    linear head and CRF, in today's `BertForLayerTokenClassification`."""
    from hf_layer_tokclf import BertForLayerTokenClassification, LayerTokenClassificationConfig

    task = model.config.tasks[name]
    derived = {"tasks", "hidden_layer", "model_type", "id2label", "label2id", "num_labels", "use_crf", "auto_map",
               "architectures", "custom_pipelines"}  # fmt: skip
    fields = {key: value for key, value in model.config.to_dict().items() if key not in derived}
    id2label = dict(enumerate(task["labels"]))
    config = LayerTokenClassificationConfig(
        **fields, hidden_layer=task["hidden_layer"], id2label=id2label, use_crf=task["use_crf"]
    )
    single = BertForLayerTokenClassification(config)
    state = {key: value for key, value in model.state_dict().items() if not key.startswith(("classifiers.", "crfs."))}
    state.update({f"classifier.{key}": value for key, value in model.classifiers[name].state_dict().items()})
    if task["use_crf"]:
        state.update({f"crf.{key}": value for key, value in model.crfs[name].state_dict().items()})
    missing, unexpected = single.load_state_dict(state, strict=False)
    assert not missing and all(".layer." in key for key in unexpected), (missing, unexpected)  # deeper layers only
    return single.eval()


@pytest.mark.parametrize("task", TASKS)
def test_each_task_is_scored_and_decoded_as_a_single_task_model_of_its_head(multitask, task):
    model, tokenizer = multitask
    corpus = MULTITASK[task][0]
    sentences = multitask_sentences(corpus, "test", MULTITASK_TEST)
    scores, predicted = evaluate_sentences(model, tokenizer, sentences, task=task, progress=False)
    alone, alone_predicted = evaluate_sentences(single_task_model(model, task), tokenizer, sentences, progress=False)
    assert predicted == alone_predicted
    assert scores == alone
    assert scores["f1"] > 0, "the briefly trained head finds some of its entities"


def test_predict_conll_writes_a_label_column_per_task_in_the_models_or_the_tasks_order(
    multitask, multitask_dir, tmp_path, capsys
):
    model, tokenizer = multitask
    source = conll_slice(tmp_path / "in.conll", 16)
    sentences = list(iter_conll(source, labeled=True))
    expected = predict_sentences(model, tokenizer, sentences, progress=False)
    for tasks, order in ((None, TASKS), ("disease,cg", ["disease", "cg"]), ("cg", ["cg"])):
        out = tmp_path / f"out-{tasks}.conll"
        code, _, err = run(capsys, "predict", multitask_dir, "--input", source, "--output", out,
                           *(["--tasks", tasks] if tasks else []))  # fmt: skip
        assert code == 0, err
        rows = conll_rows(out)
        assert len(rows) == len(sentences)
        for sentence, own, written in zip(sentences, expected, rows, strict=True):
            assert [row[:2] for row in written] == [
                list(pair) for pair in zip(sentence.tokens, sentence.labels, strict=True)
            ]
            columns = [[row[2 + i] for row in written] for i in range(len(order))]
            assert columns == [own[task] for task in order], tasks
            assert all(len(row) == 2 + len(order) for row in written)


def test_predict_jsonl_entities_say_their_task_and_tasks_chooses(multitask, multitask_dir, texts, tmp_path, capsys):
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(t for t in texts if t) + "\n", encoding="utf-8")
    found = {}
    for tasks in (None, "cg"):
        out = tmp_path / f"out-{tasks}.jsonl"
        code, _, err = run(capsys, "predict", multitask_dir, "--input", source, "--output", out,
                           *(["--tasks", tasks] if tasks else []))  # fmt: skip
        assert code == 0, err
        found[tasks] = [json.loads(line)["entities"] for line in out.read_text(encoding="utf-8").splitlines()]
    every = [e for document in found[None] for e in document]
    assert {e["task"] for e in every} == set(TASKS), "the trained heads find entities of both tasks"
    for document in found[None]:
        assert [e["start"] for e in document] == sorted(e["start"] for e in document)
    assert found["cg"] == [[e for e in document if e["task"] == "cg"] for document in found[None]]
    # Another order of the tasks: the same entities, the tasks' order only breaking ties of start.
    model, tokenizer = multitask
    other = predict_texts(model, tokenizer, [t for t in texts if t], tasks=["disease", "cg"])
    assert [sorted(d, key=json.dumps) for d in other] == [sorted(d, key=json.dumps) for d in found[None]]


def test_predict_word_lists_gives_each_tasks_labels(multitask, multitask_dir, tmp_path, capsys):
    model, tokenizer = multitask
    sentences = multitask_sentences(BIONLP13CG, "test", 6)
    source, out = tmp_path / "words.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"id": i, "tokens": s.tokens}) + "\n" for i, s in enumerate(sentences)))
    code, _, err = run(capsys, "predict", multitask_dir, "--input", source, "--output", out, "--tasks", "disease,cg")
    assert code == 0, err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    expected = predict_sentences(model, tokenizer, sentences, progress=False, tasks=["disease", "cg"])
    assert [r["predictions"] for r in records] == expected
    assert [list(r["predictions"]) for r in records] == [["disease", "cg"]] * len(sentences)


def test_an_unknown_task_is_refused_naming_the_models_tasks_before_any_output(multitask_dir, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    code, _, err = run(capsys, "predict", multitask_dir, "--text", TEXT, "--output", out, "--tasks", "disease,gene")
    assert code == 2
    assert "'gene' is not a task of this model; its tasks are cg, disease" in err
    assert not out.exists()


def test_a_single_task_model_gives_no_task_key_and_refuses_tasks(tokenizer, tmp_path, capsys):
    folder = save_tiny_model(tmp_path / "tiny", tokenizer, head_scale=30)  # a random head that tags plenty
    model, tokenizer = load_model(folder)
    entities = [e for own in predict_texts(model, tokenizer, [TEXT, "Familial cancer of the breast."]) for e in own]
    assert entities and all("task" not in e for e in entities)
    code, _, err = run(capsys, "predict", folder, "--text", TEXT, "--tasks", "disease")
    assert code == 2 and "single-task model" in err, err


def overlapping_heads(model) -> None:
    """Heads that tag regardless of the text: ``disease`` every word a Disease of its own (B- everywhere), ``cg``
    the whole text one entity of its first type (B- then I-: its CRF and constraints allow no other path)."""
    with torch.no_grad():
        for name in TASKS:
            head = model.classifiers[name]
            head.weight.zero_()
            head.bias.zero_()
            labels = model.config.tasks[name]["labels"]
            if name == "disease":
                head.bias[labels.index("B-Disease")] = 20.0
            else:
                head.bias[1], head.bias[2] = 10.0, 20.0  # B- and I- of the first type
                if name in model.crfs:
                    for scores in (model.crfs[name].start_transitions, model.crfs[name].end_transitions):
                        scores.zero_()
                    model.crfs[name].transitions.clamp_(min=-0.1, max=0.1)


def test_overlapping_entities_of_two_tasks_are_both_kept(multitask_dir):
    model, tokenizer = load_model(multitask_dir)
    overlapping_heads(model)
    text = "Breast cancer cells grew in mice."
    (found,) = predict_texts(model, tokenizer, [text])
    cg = [e for e in found if e["task"] == "cg"]
    disease = [e for e in found if e["task"] == "disease"]
    assert [(e["start"], e["end"]) for e in cg] == [(0, len(text))]
    assert [text[e["start"] : e["end"]] for e in disease] == ["Breast", "cancer", "cells", "grew", "in", "mice", "."]
    assert found[0]["task"] == "cg", "at the same start, the model's first task comes first"


def pipeline_entities(ner, texts, **options):
    results = [ner(text, **options) if text.strip() else [] for text in texts]
    return plain_entities(results)


@pytest.fixture
def one_thread():
    """torch on one thread: the pipeline decodes window by window, a few small operators at a time, which a pool of
    threads only slows on a busy machine (`decoding.viterbi`'s note): here 6 times."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("strategy", ["first", "simple"])
def test_every_tasks_entities_equal_the_travelling_pipelines(multitask, multitask_dir, texts, strategy, one_thread):
    from transformers import pipeline

    model, tokenizer = multitask
    texts = [*texts[:4], *texts[8:12], *texts[16:]]  # the pipeline decodes window by window: fewer texts
    ner = pipeline("token-classification", model=str(multitask_dir), trust_remote_code=True)
    assert type(ner).__name__ == "MultiTaskLayerTokenClassificationPipeline"
    max_length = ner.tokenizer.model_max_length
    options = {"aggregation_strategy": strategy, "stride": max_length // 4}
    expected = pipeline_entities(ner, texts, **options)
    found = list(predict_texts(model, tokenizer, texts, max_length=max_length, **options))
    assert_same_answers(expected, found)
    assert {e["task"] for own in found for e in own} == set(TASKS)
    chosen = pipeline_entities(ner, texts, tasks=["disease"], **options)
    assert_same_answers(chosen, list(predict_texts(model, tokenizer, texts, tasks=["disease"], max_length=max_length,
                                                    **options)))  # fmt: skip


def test_evaluate_scores_each_task_on_its_own_data(multitask, multitask_dir, tmp_path, capsys):
    model, tokenizer = multitask
    data = {
        "disease": conll_slice(tmp_path / "ncbi.conll", MULTITASK_TEST),
        "cg": tmp_path / "cg.conll",
    }
    cg = multitask_sentences(BIONLP13CG, "test", MULTITASK_TEST)
    lines = ["".join(f"{token}\t{label}\n" for token, label in zip(s.tokens, s.labels, strict=True)) for s in cg]
    data["cg"].write_text("\n".join(lines), encoding="utf-8")
    out, predictions = tmp_path / "scores.json", tmp_path / "cg-predictions.conll"
    named = ["--data", f"disease={data['disease']}", "--data", f"cg={data['cg']}", "--predictions", f"cg={predictions}"]
    code, printed, err = run(capsys, "evaluate", multitask_dir, *named, "--output", out)
    assert code == 0, err
    written = json.loads(out.read_text())
    assert written["data"] == {"disease": str(data["disease"]), "cg": str(data["cg"])}
    predicted = {}
    for task in TASKS:
        sentences = list(iter_conll(data[task], labeled=True))
        scores, predicted[task] = evaluate_sentences(model, tokenizer, sentences, task=task, progress=False)
        assert written[f"eval_{task}_f1"] == pytest.approx(scores["f1"])
        assert written[f"eval_{task}_precision"] == pytest.approx(scores["precision"])
        for kind, values in scores["per_type"].items():
            assert written[f"eval_{task}_{kind}_f1"] == pytest.approx(values["f1"])
        assert f"task {task}:" in printed
    assert written["eval_disease_Disease_support"] > 0 and written["eval_cg_Cancer_support"] > 0
    assert "eval_disease_Cancer_f1" not in written, "a task is scored on its own data with its own labels"
    assert [[row[2] for row in rows] for rows in conll_rows(predictions)] == predicted["cg"]


def test_evaluate_refuses_a_bare_path_for_a_model_of_several_tasks(multitask_dir, tmp_path, capsys):
    data = conll_slice(tmp_path / "ncbi.conll", 4)
    code, _, err = run(capsys, "evaluate", multitask_dir, "--data", data, "--output", tmp_path / "x.json")
    assert code == 2
    assert "this model has 2 tasks (cg, disease): say which task the data is for" in err
    code, _, err = run(capsys, "evaluate", multitask_dir, "--data", f"gene={data}", "--output", tmp_path / "x.json")
    assert code == 2 and "'gene' is not a task of this model; its tasks are cg, disease" in err
    assert not (tmp_path / "x.json").exists()


def test_parse_tasks():
    assert parse_tasks("disease, cg") == ["disease", "cg"]
    with pytest.raises(ValueError, match="expected task names separated by commas"):
        parse_tasks("disease,,cg")


def test_tasks_named_twice_are_refused(multitask):
    with pytest.raises(ValueError, match="cg named more than once"):
        model_heads(multitask[0], ["cg", "disease", "cg"])
