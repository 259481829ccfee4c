"""Tests of hf_layer_tokclf.running.features: subword alignment, windows of whole words and their merge, on
NCBI-disease."""

import itertools

import pytest
from conftest import LABEL2ID, NCBI
from transformers import DataCollatorForTokenClassification

from hf_layer_tokclf.formats.conll import read_conll
from hf_layer_tokclf.formats.lines import DataError
from hf_layer_tokclf.formats.sentence import Sentence
from hf_layer_tokclf.running.features import (
    BOOKKEEPING_KEYS,
    encode,
    length_sorted_batches,
    merge_windows,
    token_budget_batches,
    word_positions,
    word_rows,
)


def gold_ids(sentences):
    return [[LABEL2ID[label] for label in s.labels] for s in sentences]


def test_alignment_labels_first_subword(tokenizer):
    words = ["Hypertrophic", "cardiomyopathy", "is", "rare"]
    sentence = Sentence(words, ["B-Disease", "I-Disease", "O", "O"], "s", 1)
    (feature,) = encode([sentence], tokenizer, LABEL2ID)
    pieces = [tokenizer.tokenize(word) for word in words]
    assert len(pieces[0]) > 1 and len(pieces[1]) > 1  # the test needs multi-subword words
    expected_word_ids = [None] + [w for w, p in enumerate(pieces) for _ in p] + [None]
    assert feature["word_ids"] == expected_word_ids
    assert feature["input_ids"] == tokenizer(words, is_split_into_words=True)["input_ids"]
    expected = [-100]
    for label, piece in zip(sentence.labels, pieces, strict=True):
        expected += [LABEL2ID[label]] + [-100] * (len(piece) - 1)
    assert feature["labels"] == [*expected, -100]
    assert (feature["sentence_index"], feature["word_offset"]) == (0, 0)
    assert set(feature) == {"input_ids", "attention_mask", "token_type_ids", "labels", *BOOKKEEPING_KEYS}


def test_alignment_label_all_subwords(tokenizer):
    words = ["Hypertrophic", "cardiomyopathy", "is", "rare"]
    sentence = Sentence(words, ["B-Disease", "I-Disease", "O", "O"], "s", 1)
    (feature,) = encode([sentence], tokenizer, LABEL2ID, label_all_subwords=True)
    pieces = [tokenizer.tokenize(word) for word in words]
    b, i, o = LABEL2ID["B-Disease"], LABEL2ID["I-Disease"], LABEL2ID["O"]
    # A B- word's later subwords are inside the entity, so they get I-.
    expected = [-100, b] + [i] * (len(pieces[0]) - 1) + [i] * len(pieces[1]) + [o] * (len(pieces[2]) + len(pieces[3]))
    assert feature["labels"] == [*expected, -100]


def test_no_labels_without_label2id_or_labels(tokenizer, devel):
    assert all("labels" not in f for f in encode(devel[:5], tokenizer))
    unlabeled = [Sentence(s.tokens, None, s.source, s.line) for s in devel[:5]]
    assert all("labels" not in f for f in encode(unlabeled, tokenizer, LABEL2ID))
    with pytest.raises(DataError, match="has no labels but others have"):
        encode([devel[0], unlabeled[1]], tokenizer, LABEL2ID)
    with_disease = next(s for s in devel if "B-Disease" in s.labels)
    with pytest.raises(DataError, match="label 'B-Disease' never appears"):
        encode([with_disease], tokenizer, {"O": 0})


def test_features_collate_without_bookkeeping(tokenizer, devel):
    features = encode(devel[:4], tokenizer, LABEL2ID)
    inputs = [{k: v for k, v in f.items() if k not in BOOKKEEPING_KEYS} for f in features]
    batch = DataCollatorForTokenClassification(tokenizer, return_tensors="pt")(inputs)
    longest = max(len(f["input_ids"]) for f in features)
    assert batch["input_ids"].shape == batch["labels"].shape == (4, longest)


def test_encode_argument_errors(tokenizer, devel):
    with pytest.raises(ValueError, match="stride=14 must be"):
        encode(devel[:1], tokenizer, max_length=16, stride=14)
    with pytest.raises(ValueError, match="leaves no room"):
        encode(devel[:1], tokenizer, max_length=2)

    class Slow:
        is_fast = False

    with pytest.raises(ValueError, match="slow tokenizer"):
        encode(devel[:1], Slow())


# --------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("max_length", "stride"), [(16, None), (16, 0), (24, 13)])
def test_windows_round_trip_on_ncbi(tokenizer, devel, max_length, stride):
    features = encode(devel, tokenizer, LABEL2ID, max_length=max_length, stride=stride)
    assert len(features) > 2 * len(devel)  # most sentences were split
    assert max(len(f["input_ids"]) for f in features) == max_length
    by_sentence = {}
    for feature in features:
        assert len(feature["input_ids"]) == len(feature["attention_mask"]) == len(feature["labels"])
        assert feature["word_ids"][0] is None and feature["word_ids"][-1] is None
        assert feature["word_ids"][1] == feature["word_offset"]
        by_sentence.setdefault(feature["sentence_index"], []).append(feature)
    for windows in by_sentence.values():
        for before, after in itertools.pairwise(windows):
            last_word = before["word_ids"][-2]
            # Consecutive windows advance and leave no gap (overlap only when stride allows it).
            assert before["word_offset"] < after["word_offset"] <= last_word + 1
            overlap = sum(1 for w in before["word_ids"] if w is not None and w >= after["word_offset"])
            assert overlap <= (max_length // 4 if stride is None else stride)
    # Gold labels as predictions must give back every word's gold label: no word was lost.
    merged = merge_windows(features, [f["labels"] for f in features], len(devel))
    assert merged == gold_ids(devel)
    assert merge_windows(features, [f["labels"] for f in features], [len(s.tokens) for s in devel]) == merged


def test_merge_prefers_the_window_with_most_context(tokenizer):
    words = ["word"] * 12
    assert len(tokenizer.tokenize("word")) == 1
    features = encode([Sentence(words, None, "s", 1)], tokenizer, max_length=10, stride=4)
    # 8 words fit next to [CLS] and [SEP]; the second window starts 4 words (the stride) back.
    assert [f["word_offset"] for f in features] == [0, 4]
    # Predict the window's number everywhere to see which window each word's prediction came from.
    predictions = [[number] * len(f["input_ids"]) for number, f in enumerate(features)]
    # Words 4-7 are in both windows; each takes the window where it is farther from the cut.
    assert merge_windows(features, predictions, 1) == [[0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]]


def test_ten_thousand_word_sentence(tokenizer):
    corpus = read_conll(NCBI / "test.tsv")
    tokens = [t for s in corpus for t in s.tokens][:10_000]
    labels = [label for s in corpus for label in s.labels][:10_000]
    sentence = Sentence(tokens, labels, "long", 1)
    features = encode([sentence], tokenizer, LABEL2ID, max_length=128)
    assert all(len(f["input_ids"]) <= 128 for f in features)
    assert merge_windows(features, [f["labels"] for f in features], 1) == gold_ids([sentence])


def test_word_longer_than_the_window_keeps_its_prediction(tokenizer):
    long_word = "-".join("abcdefghijklmnop")  # punctuation splits it into 31 subwords
    assert len(tokenizer.tokenize(long_word)) > 16
    words = ["Acute", long_word, "syndrome", "x", long_word]
    sentence = Sentence(words, ["B-Disease", "I-Disease", "I-Disease", "O", "B-Disease"], "s", 1)
    features = encode([sentence], tokenizer, LABEL2ID, max_length=16)
    assert all(len(f["input_ids"]) <= 16 for f in features)
    alone = [f for f in features if set(f["word_ids"]) == {None, 1}]
    assert len(alone) == 1 and len(alone[0]["input_ids"]) == 16  # truncated, in a window of its own
    assert merge_windows(features, [f["labels"] for f in features], [5]) == gold_ids([sentence])


def test_words_the_tokenizer_drops_still_get_a_prediction(tokenizer):
    words = ["Fever", "\u200b", "and", "\x00", "\u00ad", "rash"]
    assert [w for w in words if not tokenizer.tokenize(w)] == ["\u200b", "\x00", "\u00ad"]
    sentence = Sentence(words, ["B-Disease", "O", "O", "O", "O", "B-Disease"], "s", 1)
    (feature,) = encode([sentence], tokenizer, LABEL2ID)
    unk = tokenizer.unk_token_id
    assert [i for i, w in zip(feature["input_ids"], feature["word_ids"], strict=True) if w in (1, 3, 4)] == [unk] * 3
    assert merge_windows([feature], [feature["labels"]], 1) == gold_ids([sentence])


def test_a_tokenizer_without_unk_token_still_encodes_every_word(checkpoints):
    """Byte-level tokenizers such as EuroBERT's have no unk_token, and need none: every byte has a token."""
    from hf_layer_tokclf.model.tokenization import load_tokenizer

    if "eurobert" not in checkpoints:
        pytest.skip("this transformers has no EuroBERT")
    tokenizer = load_tokenizer(checkpoints["eurobert"])
    assert tokenizer.unk_token is None
    words = ["Fever", "\u200b", "and", "\x00", "\u00ad", "rash"]
    sentence = Sentence(words, ["B-Disease", "O", "O", "O", "O", "B-Disease"], "s", 1)
    (feature,) = encode([sentence], tokenizer, LABEL2ID)
    assert {w for w in feature["word_ids"] if w is not None} == set(range(len(words)))
    assert merge_windows([feature], [feature["labels"]], 1) == gold_ids([sentence])


def test_empty_sentence_and_merge_errors(tokenizer, devel):
    sentences = [Sentence([], [], "s", 1), devel[0]]
    features = encode(sentences, tokenizer, LABEL2ID)
    assert [f["sentence_index"] for f in features] == [1]
    assert merge_windows(features, [f["labels"] for f in features], 2) == [[], gold_ids(devel[:1])[0]]
    assert encode([Sentence([], None, "s", 1)], tokenizer) == []
    with pytest.raises(ValueError, match="sentence 1: no feature predicts word 0"):
        merge_windows([], [], [0, 3])
    with pytest.raises(ValueError, match="predictions for"):
        merge_windows(features, [[0]], 2)
    with pytest.raises(ValueError, match="there are 1 sentences"):
        merge_windows(features, [f["labels"] for f in features], 1)


def test_word_rows_pick_the_same_window_as_merge_windows(tokenizer, devel):
    features = encode(devel[:40], tokenizer, LABEL2ID, max_length=16, stride=4)
    lengths = [len(s.tokens) for s in devel[:40]]
    # A row per token that names its own feature and position: word_rows must hand back where each word is read.
    rows = [[(number, position) for position in range(len(f["input_ids"]))] for number, f in enumerate(features)]
    assert word_rows(features, rows, lengths) == word_positions(features, lengths)
    labels = [f["labels"] for f in features]
    assert merge_windows(features, labels, lengths) == [
        [labels[feature][position] for feature, position in words] for words in word_positions(features, lengths)
    ]
    with pytest.raises(ValueError, match="rows of predictions for"):
        word_rows(features, rows[:-1], lengths)


def test_length_sorted_batches_cover_every_index_once_shortest_first():
    lengths = [5, 1, 9, 3, 3, 7, 2]
    batches = length_sorted_batches(lengths, 3)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths)
    assert length_sorted_batches([], 4) == []


def test_token_budget_batches_hold_more_short_windows_than_long_ones():
    lengths = [10, 100, 12, 90, 11, 300, 9, 95]
    batches = token_budget_batches(lengths, 2, max_batch_tokens=200)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert [lengths[i] for batch in batches for i in batch] == sorted(lengths)
    assert batches[0] == [6, 0, 4, 2]  # four short windows: 4 x 12 padded tokens
    assert batches[1:] == [[3, 7], [1], [5]]  # 2 x 95 fit in 200 tokens; 95 and 100 would not
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 200
    assert batches[-1] == [5]  # longer than the budget: alone
    assert token_budget_batches(lengths, 3) == length_sorted_batches(lengths, 3)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        token_budget_batches(lengths, 3, max_batch_tokens=0)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("with_types", [True, False])
def test_pad_windows_pads_as_the_tokenizer_does(tokenizer, devel, side, with_types):
    """The same arrays as ``tokenizer.pad``, read from the tokenizer without running it (see `pad_windows`)."""
    import copy

    from hf_layer_tokclf.running.features import model_inputs, pad_windows

    own = copy.deepcopy(tokenizer)
    own.padding_side = side
    windows = [model_inputs(f) for f in encode(devel[:12], own, max_length=40)]
    if not with_types:
        windows = [{k: v for k, v in w.items() if k != "token_type_ids"} for w in windows]
    expected = own.pad(windows, return_tensors="np")
    padded = pad_windows(windows, own)
    assert sorted(padded) == sorted(expected.keys())
    for name, values in expected.items():
        assert padded[name].dtype.kind == "i" and (padded[name] == values).all(), name
