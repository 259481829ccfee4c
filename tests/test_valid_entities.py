"""Valid entities end to end, on the packaged MiniLM and NCBI-disease: constrained decoding of a softmax model,
a CRF head trained, reloaded and decoded in PyTorch, ONNX and remote code, and the CLI options."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from conftest import LABEL2ID, NCBI, TEXT, conll_slice, save_tiny_model, slice_args, tiny_bert_kwargs

from hf_layer_tokclf.cli.main import main
from hf_layer_tokclf.formats.loading import load_sentences
from hf_layer_tokclf.model.pipeline_layer_tokclf import label_constraints
from hf_layer_tokclf.running.decoding import DEFAULT_STRATEGY
from hf_layer_tokclf.running.loading import load_model
from hf_layer_tokclf.running.sentences import predict_sentences
from hf_layer_tokclf.running.texts import predict_texts
from hf_layer_tokclf.sharing.remote_check import run_remote_check


def invalid(labels: list[str], id2label: dict[int, str]) -> bool:
    """Whether a label sequence breaks its scheme (by the constraints the decoder uses)."""
    label2id = {label: i for i, label in id2label.items()}
    start, transitions, end = label_constraints(id2label)
    ids = [label2id[label] for label in labels]
    return bool(ids) and (
        not start[ids[0]] or not end[ids[-1]] or any(not transitions[a][b] for a, b in itertools.pairwise(ids))
    )


@pytest.fixture(scope="module")
def test_sentences():
    return load_sentences(str(NCBI / "test.tsv"))[:300]


@pytest.fixture(scope="module")
def documents(test_sentences):
    """NCBI test sentences as a few raw-text documents (several mention a disease)."""
    texts = [" ".join(s.tokens) for s in test_sentences[:40]]
    return [" ".join(texts[i : i + 4]) for i in range(0, 40, 4)]


@pytest.fixture(scope="module")
def crf_trained(tmp_path_factory):
    """MiniLM at hidden layer 2 with a CRF head, trained as the `trained` fixture is (256 sentences, 2 epochs)."""
    from hf_layer_tokclf.training.arguments import ModelArguments, RunArguments
    from hf_layer_tokclf.training.train import train

    output_dir = tmp_path_factory.mktemp("crf") / "model"
    data, args = slice_args(output_dir)
    metrics = train(ModelArguments(hidden_layer=[2], crf=True), data, args, RunArguments(), command="train --crf")
    return output_dir, metrics


def test_argmax_breaks_the_scheme_on_ncbi_and_viterbi_never_does(trained, test_sentences):
    model, tokenizer = load_model(trained[0])
    id2label = model.config.id2label
    argmax = predict_sentences(model, tokenizer, test_sentences, decoding="argmax", progress=False)
    viterbi = predict_sentences(model, tokenizer, test_sentences, progress=False)
    assert not any(invalid(labels, id2label) for labels in viterbi)
    broken = [i for i, labels in enumerate(argmax) if invalid(labels, id2label)]
    assert broken, "a briefly trained softmax head emits some invalid sequences"
    # Where argmax is already valid, constrained decoding gives it unchanged.
    assert all(v == a for i, (v, a) in enumerate(zip(viterbi, argmax, strict=True)) if i not in broken)


def labeled_batch(tokenizer, sentences):
    from transformers import DataCollatorForTokenClassification

    from hf_layer_tokclf.running.features import encode

    features = encode(sentences, tokenizer, LABEL2ID, max_length=128)
    rows = [{k: f[k] for k in ("input_ids", "token_type_ids", "labels") if k in f} for f in features]
    return DataCollatorForTokenClassification(tokenizer)(rows)


def test_a_crf_head_learns_on_ncbi_and_its_loss_falls(crf_trained, minilm_path):
    from transformers import set_seed

    from hf_layer_tokclf import BertForLayerTokenClassification

    output_dir, metrics = crf_trained
    model, tokenizer = load_model(output_dir)
    assert model.config.use_crf and metrics["settings"]["use_crf"] and metrics["settings"]["decoding"] == "viterbi"
    set_seed(42)  # the untrained model train started from
    labels = {"num_labels": 3, "id2label": dict(enumerate(LABEL2ID)), "label2id": LABEL2ID}
    start = BertForLayerTokenClassification.from_pretrained(minilm_path, hidden_layer=2, use_crf=True, **labels)
    assert not start.crf.transitions.any(), "transitions start at zero"
    batch = labeled_batch(tokenizer, load_sentences(str(NCBI / "train.tsv"))[:64])
    with torch.no_grad():
        before, after = start.eval()(**batch).loss, model(**batch).loss
    assert after < 0.5 * before
    _, transitions, _ = model.crf.scores()
    assert transitions[LABEL2ID["B-Disease"], LABEL2ID["I-Disease"]] > transitions[LABEL2ID["O"], LABEL2ID["B-Disease"]]
    assert metrics["test_f1"] > 0.3


def test_a_crf_model_reloads_with_equal_logits_and_transitions(crf_trained, tmp_path):
    model, tokenizer = load_model(crf_trained[0])
    names = {p.name for p in crf_trained[0].iterdir()}
    assert {"model.safetensors", "pipeline_layer_tokclf.py"} <= names
    config = json.loads((crf_trained[0] / "config.json").read_text())
    assert config["use_crf"] is True
    assert config["custom_pipelines"]["token-classification"]["impl"] == (
        "pipeline_layer_tokclf.LayerTokenClassificationPipeline"
    )
    model.save_pretrained(tmp_path / "again")
    tokenizer.save_pretrained(tmp_path / "again")
    again, _ = load_model(tmp_path / "again")
    batch = tokenizer(["Ataxia-telangiectasia is rare.", "BRCA1 mutations cause breast cancer."], padding=True)
    batch = tokenizer.pad(batch, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, again(**batch).logits)
    for name in ("start_transitions", "transitions", "end_transitions"):
        assert torch.equal(getattr(model.crf, name), getattr(again.crf, name))


def test_a_crf_model_decodes_the_same_in_pytorch_and_onnx(crf_trained, tmp_path, test_sentences, documents):
    from hf_layer_tokclf.running.export import export_onnx
    from hf_layer_tokclf.running.onnx_runner import CRF_OUTPUTS

    export_onnx(crf_trained[0], tmp_path / "onnx")
    info = json.loads((tmp_path / "onnx" / "onnx_export.json").read_text())
    assert info["outputs"] == ["logits", *CRF_OUTPUTS]
    model, tokenizer = load_model(crf_trained[0])
    runner, runner_tokenizer = load_model(tmp_path / "onnx")
    for ours, exported in zip(model.crf.scores(), runner.crf.scores(), strict=True):
        assert torch.allclose(ours, exported, atol=1e-6)
    sentences = test_sentences[:100]
    expected = predict_sentences(model, tokenizer, sentences, progress=False)
    assert predict_sentences(runner, runner_tokenizer, sentences, progress=False) == expected
    found = list(predict_texts(runner, runner_tokenizer, documents))
    want = list(predict_texts(model, tokenizer, documents))
    assert [[{k: v for k, v in e.items() if k != "score"} for e in d] for d in found] == [
        [{k: v for k, v in e.items() if k != "score"} for e in d] for d in want
    ]
    assert [e["score"] for d in found for e in d] == pytest.approx([e["score"] for d in want for e in d], abs=1e-4)
    assert sum(map(len, want)) > 0
    # int8 quantizes the matrix products; the CRF's scores stay as they were.
    export_onnx(crf_trained[0], tmp_path / "int8", quantize="int8")
    int8, _ = load_model(tmp_path / "int8")
    for ours, exported in zip(model.crf.scores(), int8.crf.scores(), strict=True):
        assert torch.allclose(ours, exported, atol=1e-6)


def entities_of(model_dir, text):
    model, tokenizer = load_model(model_dir)
    (found,) = predict_texts(model, tokenizer, [text], aggregation_strategy=DEFAULT_STRATEGY)
    return found


def assert_same(found, expected):
    assert [{k: v for k, v in e.items() if k != "score"} for e in found] == [
        {k: v for k, v in e.items() if k != "score"} for e in expected
    ]
    assert [e["score"] for e in found] == pytest.approx([e["score"] for e in expected], abs=1e-4)


@pytest.mark.parametrize("transformers_release", ["installed", "4.x"])
def test_the_pipeline_a_crf_model_ships_decodes_as_predict_in_a_fresh_process(
    crf_trained, documents, transformers_release, request
):
    # The CRF model: its pipeline decodes with the learned transitions. A softmax model's shipped pipeline is
    # checked the same way by the Hub verification (test_hub) and, per family, on 4.x (test_encoder_families).
    python_path = request.getfixturevalue("transformers4_path") if transformers_release == "4.x" else None
    model_dir = crf_trained[0]
    model, tokenizer = load_model(model_dir)
    found = list(predict_texts(model, tokenizer, documents, aggregation_strategy=DEFAULT_STRATEGY))
    most = max(range(len(documents)), key=lambda i: len(found[i]))
    assert found[most], "a document has entities"
    report = run_remote_check(model_dir, documents[most], python_path=python_path)
    assert report["pipeline_class"] == "LayerTokenClassificationPipeline"
    assert report["transformers_version"].startswith("4.") == (transformers_release == "4.x")
    assert_same(report["entities"], found[most])
    with torch.no_grad():
        logits = model(**tokenizer(documents[most], return_tensors="pt")).logits[0]
    assert torch.allclose(torch.tensor(report["logits"]), logits, atol=1e-5)


def test_the_shipped_pipeline_is_not_the_stock_one_where_argmax_breaks_the_scheme(tokenizer, tmp_path):
    from hf_layer_tokclf import BertForLayerTokenClassification

    random = BertForLayerTokenClassification.from_pretrained(save_tiny_model(tmp_path / "random", tokenizer, 30))
    with torch.no_grad():  # a head that never says B-: its I-Disease after an O is invalid
        random.classifier.bias[LABEL2ID["B-Disease"]] = -100.0
    model_dir = tmp_path / "model"
    random.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    model, tokenizer = load_model(model_dir)
    text = TEXT
    viterbi = entities_of(model_dir, text)
    (argmax,) = predict_texts(model, tokenizer, [text], decoding="argmax")
    assert viterbi != argmax
    assert_same(run_remote_check(model_dir, text)["entities"], viterbi)


def test_predict_decoding_and_min_score_options(trained, tmp_path, documents):
    (tmp_path / "docs.txt").write_text("\n".join(documents) + "\n")

    def predict(*options):
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        main(["predict", str(trained[0]), "--input", str(tmp_path / "docs.txt"), "--output", str(out), *options])
        return [json.loads(line)["entities"] for line in out.read_text().splitlines()]

    every = predict()
    assert every == predict("--decoding", "viterbi")
    scores = sorted(e["score"] for d in every for e in d)
    threshold = scores[len(scores) // 2]
    kept = predict("--min-score", str(threshold))
    assert kept == [[e for e in d if e["score"] >= threshold] for d in every]
    assert 0 < sum(map(len, kept)) < sum(map(len, every))
    model, tokenizer = load_model(trained[0])
    assert predict("--decoding", "argmax") == list(predict_texts(model, tokenizer, documents, decoding="argmax"))


def test_predict_conll_min_score_labels_dropped_entities_o(trained, tmp_path):
    data = conll_slice(tmp_path / "test.tsv", 60, labeled=False)

    def predict(*options):
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}.tsv"
        main(
            [
                "predict",
                str(trained[0]),
                "--input",
                str(data),
                "--input-format",
                "conll",
                "--output",
                str(out),
                *options,
            ]
        )
        return [line.split("\t")[-1] for line in out.read_text().splitlines() if line]

    every, kept = predict(), predict("--min-score", "0.9")
    assert len(every) == len(kept)
    assert all(k == e or k == "O" for e, k in zip(every, kept, strict=True))
    assert kept.count("B-Disease") < every.count("B-Disease")
    with pytest.raises(SystemExit):
        main(["predict", str(trained[0]), "--text", "x", "--min-score", "1.5"])


def test_evaluate_records_its_decoding(trained, tmp_path):
    data = str(conll_slice(tmp_path / "test.tsv", 60))
    for decoding in ("argmax", "viterbi"):
        out = tmp_path / f"{decoding}.json"
        main(["evaluate", str(trained[0]), "--data", data, "--output", str(out), "--decoding", decoding])
        assert json.loads(out.read_text())["decoding"] == decoding


def test_train_takes_crf_and_decoding_options():
    from hf_layer_tokclf.cli.train import train_parser

    parsed = train_parser().parse_args_into_dataclasses(
        ["--train-file", "x", "--output-dir", "y", "--crf", "--decoding", "argmax"]
    )
    model_args, _, run_args, _ = parsed
    assert model_args.crf is True and run_args.decoding == "argmax"
    model_args, _, run_args, _ = train_parser().parse_args_into_dataclasses(["--train-file", "x", "--output-dir", "y"])
    assert model_args.crf is False and run_args.decoding == "viterbi"


def test_a_stock_classifier_with_iobes_labels_decodes_valid_sequences(tokenizer, tmp_path, test_sentences):
    from transformers import BertConfig, BertForTokenClassification

    labels = ["O", "B-Disease", "I-Disease", "E-Disease", "S-Disease"]
    id2label = dict(enumerate(labels))
    torch.manual_seed(0)
    config = BertConfig(
        **tiny_bert_kwargs(num_labels=5, id2label=id2label, label2id={v: k for k, v in id2label.items()})
    )
    stock = BertForTokenClassification(config)
    with torch.no_grad():
        stock.classifier.weight.mul_(30)  # confident and random: its argmax breaks IOBES
    stock.save_pretrained(tmp_path / "stock")
    tokenizer.save_pretrained(tmp_path / "stock")
    model, tokenizer = load_model(tmp_path / "stock")
    sentences = test_sentences[:50]
    argmax = predict_sentences(model, tokenizer, sentences, decoding="argmax", progress=False)
    viterbi = predict_sentences(model, tokenizer, sentences, progress=False)
    assert any(invalid(labels, id2label) for labels in argmax)
    assert not any(invalid(labels, id2label) for labels in viterbi)
    assert {label[:2] for labels in viterbi for label in labels} > {"O"}, "entities survive decoding"


def test_crf_with_a_class_that_has_none_fails_before_anything_is_written(tmp_path):
    from transformers import BertForTokenClassification

    from hf_layer_tokclf.training.arguments import ModelArguments
    from hf_layer_tokclf.training.train import train

    data, args = slice_args(tmp_path / "out")
    with pytest.raises(ValueError, match="--crf needs a layer classifier; BertForTokenClassification"):
        train(ModelArguments(crf=True), data, args, model_class=BertForTokenClassification)
    assert not (tmp_path / "out").exists()
