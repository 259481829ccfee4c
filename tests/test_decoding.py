"""The one decode path: word scores to labels, and windows to entities through the pipeline's own code."""

import itertools
from contextlib import nullcontext
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import pipeline
from transformers.pipelines.token_classification import AggregationStrategy

from hf_layer_tokclf.model.pipeline_layer_tokclf import LinearChainCRF
from hf_layer_tokclf.running.decoding import (
    DECODINGS,
    DEFAULT_DECODING,
    STRATEGIES,
    check_decoding,
    check_strategy,
    label_decoder,
    text_entities,
    texts_entities,
    token_predictions,
    viterbi,
    word_labels,
)
from hf_layer_tokclf.running.loading import load_model
from hf_layer_tokclf.running.logits import window_logits
from hf_layer_tokclf.running.texts import predict_texts, text_windows

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
    from hf_layer_tokclf.model.pipeline_layer_tokclf import LayerTokenClassificationPipeline

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


# --- texts_entities: a chunk at once, on arrays, equal to the pipeline's postprocess of each text ---------------


def chunk_windows(tokenizer, texts, logits_of, max_length=40, stride=10):
    """Each text's windows as `texts.predict_texts` cuts them, with ``logits_of(windows)``'s logits."""
    windows = text_windows(tokenizer, texts, max_length, stride)
    for window, logits in zip(windows, logits_of(windows), strict=True):
        window["logits"] = logits
    per_text = [[] for _ in texts]
    for window in windows:
        per_text[window["overflow_to_sample_mapping"]].append(window)
    return per_text


def random_learned_crf(id2label, seed=0):
    crf = LinearChainCRF(id2label)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return crf


def assert_same_as_each_text(texts, per_text, **options):
    expected = [text_entities(text, windows, **options) for text, windows in zip(texts, per_text, strict=True)]
    found = texts_entities(texts, per_text, **options)
    assert found == expected  # spans, words, labels and scores, to the bit
    assert all(type(e["score"]) is float and type(e["start"]) is int for entities in found for e in entities)
    return found


@pytest.fixture(scope="module")
def real_chunk(tiny_dir, devel):
    """NCBI dev sentences joined into texts of 1 to 12 sentences, one with characters MiniLM does not know, an empty
    one: windows of at most 40 subwords overlapping by 10, logits of a real (tiny) model with a strong head."""
    model, tokenizer = load_model(tiny_dir)
    with torch.no_grad():
        model.classifier.weight.mul_(40.0)  # plenty of entities
    sentences = [" ".join(s.tokens) for s in devel[:40]]
    texts, at = [], 0
    for size in (1, 3, 12, 2, 5, 1, 8):
        texts.append(" ".join(sentences[at : at + size]))
        at += size
    texts += ["", "Mutations \U0001f9ec in \u2603 BRCA1 cause cancer \U0001f9ec."]
    per_text = chunk_windows(tokenizer, texts, lambda windows: window_logits(model, tokenizer, windows))
    return texts, per_text, tokenizer, model.config.id2label


def test_the_real_chunk_has_overlapping_windows_unknown_tokens_and_an_empty_text(real_chunk):
    texts, per_text, tokenizer, _ = real_chunk
    assert max(len(windows) for windows in per_text) >= 4 and per_text[texts.index("")]
    assert any(tokenizer.unk_token_id in window["input_ids"] for window in per_text[-1])


@pytest.mark.parametrize("learned", [False, True])
@pytest.mark.parametrize("decoding", DECODINGS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_texts_entities_are_the_pipelines_on_real_windows(real_chunk, strategy, decoding, learned):
    texts, per_text, tokenizer, id2label = real_chunk
    crf = random_learned_crf(id2label) if learned else None
    options = {"tokenizer": tokenizer, "id2label": id2label, "strategy": strategy, "decoding": decoding, "crf": crf}
    found = assert_same_as_each_text(texts, per_text, **options)
    assert sum(map(len, found)) > 20 and found[texts.index("")] == []
    # Overlapping windows: entities of one text come out sorted, none overlapping another.
    for entities in found:
        assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(entities))
    scores = sorted(e["score"] for entities in found for e in entities)
    threshold = scores[len(scores) // 2]
    kept = assert_same_as_each_text(texts, per_text, min_score=threshold, **options)
    assert kept == [[e for e in entities if e["score"] >= threshold] for entities in found]


IOBES = {0: "O", 1: "B-Disease", 2: "I-Disease", 3: "E-Disease", 4: "S-Disease", 5: "B-Chemical", 6: "I-Chemical"}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_texts_entities_break_ties_as_the_pipeline_on_random_logits(tokenizer, devel, strategy):
    # Logits on a coarse grid: many labels tie exactly within a row, and many subwords tie for a word's max.
    generator = np.random.default_rng(1)
    texts = [" ".join(s.tokens) for s in devel[40:52]]

    def coarse(windows):
        return [
            np.round(generator.normal(size=(len(w["input_ids"]), len(IOBES))) * 2).astype(np.float32) for w in windows
        ]

    per_text = chunk_windows(tokenizer, texts, coarse, max_length=24, stride=6)
    for decoding in DECODINGS:
        for crf in (None, random_learned_crf(IOBES, seed=3)):
            options = {"tokenizer": tokenizer, "id2label": IOBES, "strategy": strategy, "decoding": decoding}
            assert sum(map(len, assert_same_as_each_text(texts, per_text, crf=crf, **options))) > 20


@pytest.mark.parametrize("family", ["roberta", "xlm-roberta"])
def test_texts_entities_follow_the_pipelines_rule_for_tokenizers_without_word_pieces(devel, family):
    from families import TOKENIZERS, training_sentences

    tokenizer = TOKENIZERS[family](training_sentences(limit=300))
    assert not getattr(tokenizer.backend_tokenizer.model, "continuing_subword_prefix", None)
    texts = [" ".join(s.tokens) for s in devel[:6]] + ["alpha-beta,gamma (delta)epsilon"]
    generator = np.random.default_rng(2)
    per_text = chunk_windows(
        tokenizer, texts, lambda ws: [generator.normal(size=(len(w["input_ids"]), 3)).astype(np.float32) for w in ws]
    )
    for strategy in ("first", "average", "max", "simple"):
        for decoding in DECODINGS:
            options = {"tokenizer": tokenizer, "id2label": ID2LABEL, "strategy": strategy, "decoding": decoding}
            with pytest.warns(UserWarning, match="fallback heuristic") if strategy != "simple" else nullcontext():
                assert_same_as_each_text(texts, per_text, **options)


def test_a_chunk_is_decoded_in_batches_of_windows_not_window_by_window(tiny_dir, devel, monkeypatch):
    from hf_layer_tokclf.running import decoding

    model, tokenizer = load_model(tiny_dir)
    calls = []
    original = decoding.viterbi

    def counted(decoder, emissions, lengths):
        calls.append(len(emissions))
        return original(decoder, emissions, lengths)

    monkeypatch.setattr(decoding, "viterbi", counted)
    monkeypatch.setattr(LinearChainCRF, "decode", None)  # no window decoded on its own by the pipeline's code
    texts = [" ".join(s.tokens) for s in devel[:30]]
    found = list(predict_texts(model, tokenizer, texts, max_length=16, stride=4, aggregation_strategy="first"))
    assert len(found) == len(texts)
    assert len(calls) == 1 and calls[0] > len(texts)  # one decode of every window of the chunk


@pytest.mark.parametrize("num_labels", [3, 7, 33])
@pytest.mark.parametrize("learned", [False, True])
def test_the_numpy_viterbi_finds_the_paths_of_the_crfs_decode_ties_included(num_labels, learned):
    kinds = [f"T{i}" for i in range((num_labels - 1) // 2)] if num_labels != 7 else ["Disease"]
    names = ["O"] + [f"{p}-{k}" for k in kinds for p in "BI"] if num_labels != 7 else list(IOBES.values())
    crf = random_learned_crf(dict(enumerate(names)), seed=num_labels) if learned else None
    crf = crf or LinearChainCRF(dict(enumerate(names)), learned=False)
    generator = np.random.default_rng(num_labels)
    emissions = np.round(generator.normal(size=(64, 30, len(names))) * 2).astype(np.float32) / 2  # many ties
    lengths = generator.integers(1, 31, 64)
    mask = torch.arange(30)[None] < torch.as_tensor(lengths)[:, None]
    expected = crf.decode(torch.from_numpy(emissions), mask)
    assert viterbi(crf, emissions, lengths) == expected
    assert [len(path) for path in expected] == lengths.tolist()
