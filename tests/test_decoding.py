"""The one decode path: word scores to labels, and windows to entities through the pipeline's own code."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import pipeline
from transformers.pipelines.token_classification import AggregationStrategy

from hf_layer_tokclf.decoding import (
    DECODINGS,
    DEFAULT_DECODING,
    STRATEGIES,
    check_decoding,
    check_strategy,
    label_decoder,
    text_entities,
    token_predictions,
    word_labels,
)
from hf_layer_tokclf.inference import load_model

ID2LABEL = {0: "O", 1: "B-Disease", 2: "I-Disease"}


@pytest.mark.parametrize("decoding", DECODINGS)
def test_word_labels_of_valid_rows_take_each_rows_arg_max_and_keep_empty_sentences(decoding):
    rows = [[np.array([0.1, 0.7, 0.2]), np.array([0.0, 0.1, 0.9])], [], np.array([[3.0, -1.0, 0.0]])]
    assert word_labels(rows, ID2LABEL, decoding=decoding) == [["B-Disease", "I-Disease"], [], ["O"]]


def test_check_strategy_names_the_known_ones():
    assert check_strategy("FIRST") == "first"
    assert set(STRATEGIES) == {"none", "simple", "first", "average", "max"}
    with pytest.raises(ValueError, match="aggregation_strategy='best' is unknown"):
        check_strategy("best")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_text_entities_of_one_window_with_argmax_are_the_stock_pipelines(tiny_dir, strategy):
    model, tokenizer = load_model(tiny_dir)
    text = "Germline mutations in BRCA1 cause hereditary breast and ovarian cancer."
    window = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    with torch.no_grad():
        window["logits"] = model(**tokenizer(text, return_tensors="pt")).logits[0].numpy()
    id2label = model.config.id2label
    ours = text_entities(text, [window], tokenizer=tokenizer, id2label=id2label, strategy=strategy, decoding="argmax")
    stock = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy=strategy)(text)
    assert ours == [{k: (float(v) if k == "score" else v) for k, v in e.items() if k != "index"} for e in stock]
    assert all(type(e["score"]) is float for e in ours)


def test_viterbi_turns_an_invalid_argmax_into_the_best_valid_sequence():
    # Word 2 alone says I-Disease after an O: invalid. O O (0.9 * 0.3) beats O B (0.09) and B I (0.03).
    rows = [np.log([[0.9, 0.05, 0.05], [0.3, 0.1, 0.6]])]
    assert word_labels(rows, ID2LABEL, decoding="argmax") == [["O", "I-Disease"]]
    assert word_labels(rows, ID2LABEL) == [["O", "O"]]
    # Where I- follows B-, the words keep their own labels.
    assert word_labels([np.log([[0.1, 0.8, 0.1], [0.3, 0.1, 0.6]])], ID2LABEL) == [["B-Disease", "I-Disease"]]


def test_check_decoding_names_the_known_ones():
    assert check_decoding("Viterbi") == "viterbi" and DEFAULT_DECODING in DECODINGS == ("viterbi", "argmax")
    with pytest.raises(ValueError, match="decoding='beam' is unknown"):
        check_decoding("beam")


def test_min_score_relabels_unlikely_entities_o():
    rows = [np.log([[0.05, 0.9, 0.05], [0.1, 0.1, 0.8], [0.9, 0.05, 0.05], [0.4, 0.55, 0.05]])]
    assert word_labels(rows, ID2LABEL) == [["B-Disease", "I-Disease", "O", "B-Disease"]]
    # The first entity's probability is 0.9 * 0.8 = 0.72, the second's 0.55.
    assert word_labels(rows, ID2LABEL, min_score=0.6) == [["B-Disease", "I-Disease", "O", "O"]]
    assert word_labels(rows, ID2LABEL, min_score=0.75) == [["O", "O", "O", "O"]]


def test_token_predictions_decode_the_labeled_positions_of_each_window():
    logits = torch.log(torch.tensor([[[0.4, 0.3, 0.3], [0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.3, 0.1, 0.6]]]))
    labels = torch.tensor([[-100, 0, -100, 0]])  # words at positions 1 and 3
    decoder = label_decoder(SimpleNamespace(config=SimpleNamespace(id2label=ID2LABEL)))
    predicted = token_predictions(logits, labels, decoder)
    assert predicted[0, [1, 3]].tolist() == [0, 0]  # O O, not argmax's O I-Disease
    assert predicted[0, [0, 2]].tolist() == [0, 2]  # positions without a label keep their argmax
    assert token_predictions(logits, torch.full((1, 4), -100), decoder).tolist() == logits.argmax(-1).tolist()


def test_text_entities_with_viterbi_are_valid_and_are_the_pipelines(tiny_dir):
    from hf_layer_tokclf.pipeline_layer_tokclf import LayerTokenClassificationPipeline

    model, tokenizer = load_model(tiny_dir)
    text = "Germline mutations in BRCA1 cause hereditary breast and ovarian cancer."
    window = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    n = len(window["input_ids"])
    # Token scores whose arg-max runs O I- O I- ...: invalid under IOB2 wherever an I- follows an O.
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(n, 3, generator=generator)
    logits[torch.arange(n), torch.tensor([0, 2] * n)[:n]] += 2.0
    window["logits"] = logits.numpy()
    outputs = [{"sentence": text, **{k: torch.as_tensor(v)[None] for k, v in window.items()}}]
    ner = pipeline(
        "token-classification", model=model, tokenizer=tokenizer, pipeline_class=LayerTokenClassificationPipeline
    )
    every_token = {"aggregation_strategy": AggregationStrategy.NONE, "ignore_labels": []}
    argmax = ner.postprocess(outputs, decoding="argmax", **every_token)
    viterbi = ner.postprocess(outputs, **every_token)
    assert not is_iob2([e["entity"] for e in argmax]) and is_iob2([e["entity"] for e in viterbi])
    id2label = model.config.id2label
    for strategy in ("first", "simple", "max"):
        found = text_entities(text, [window], tokenizer=tokenizer, id2label=id2label, strategy=strategy)
        expected = ner.postprocess(outputs, aggregation_strategy=AggregationStrategy(strategy))
        assert found == [{k: v for k, v in e.items() if k != "index"} for e in expected]
        assert found and all(0 < e["score"] <= 1 for e in found)
    above = text_entities(text, [window], tokenizer=tokenizer, id2label=id2label, min_score=0.3)
    assert above == [
        e for e in text_entities(text, [window], tokenizer=tokenizer, id2label=id2label) if e["score"] >= 0.3
    ]


def is_iob2(labels):
    return all(
        not label.startswith("I-") or (i > 0 and labels[i - 1] in ("B-" + label[2:], label))
        for i, label in enumerate(labels)
    )
