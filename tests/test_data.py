"""Tests of the sentence readers and labels of hf_layer_tokclf.formats (conll, records, loading, labels) on the
shipped NCBI-disease corpus and small hand-made files."""

import re
from pathlib import Path

import datasets
import pytest
from conftest import LABEL2ID, LABELS, NCBI, REPO, ncbi_changed
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_layer_tokclf.formats.conll import read_conll
from hf_layer_tokclf.formats.labels import (
    SCHEMES,
    check_known_labels,
    check_training_labels,
    describe_labels,
    detect_scheme,
    from_iob2,
    label_list,
    normalize_labels,
    to_iob2,
)
from hf_layer_tokclf.formats.lines import DataError
from hf_layer_tokclf.formats.loading import label_names_from, load_sentences
from hf_layer_tokclf.formats.records import Columns, read_jsonl
from hf_layer_tokclf.formats.sentence import Sentence


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", newline="")
    else:
        path.write_bytes(text)
    return path


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
    assert label_list(sentences) == LABELS
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


def test_a_binary_training_file_is_refused_naming_it(tmp_path):
    image = write(tmp_path, "train.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    for read in (read_conll, read_jsonl, load_sentences):
        with pytest.raises(
            DataError, match=r"train\.png: a binary file, not text \(\d+ of its first \d+ characters are NUL"
        ):
            read(str(image))


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
    sentences = read_jsonl(write(tmp_path, "x.jsonl", text), label_names=LABELS)
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
        read_jsonl(path, label_names=LABELS)
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
    feature = datasets.ClassLabel(names=LABELS) if class_label else datasets.Value("string")
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


@pytest.fixture
def hub_calls(monkeypatch) -> list:
    """datasets.load_dataset, faked: each call's arguments are kept; ``owner/missing`` is not on the Hub."""
    calls = []

    def fake_load_dataset(name, config_name=None, split=None, **options):
        calls.append((name, config_name, split, options))
        if name == "owner/missing":
            raise FileNotFoundError("Dataset 'owner/missing' doesn't exist on the Hub")
        return make_dataset([[1, 2], [0]])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    return calls


def test_hub_ids_use_load_dataset(hub_calls):
    with pytest.raises(DataError) as error:
        load_sentences("owner/missing", split="train", hub=True)
    assert "owner/missing" in str(error.value)
    assert "FileNotFoundError: Dataset 'owner/missing' doesn't exist on the Hub" in str(error.value)
    sentences = load_sentences("ncbi_disease", split="validation", config_name="ncbi_disease", hub=True)
    assert sentences[0].labels == ["B-Disease", "I-Disease"]
    assert sentences[0].source == "ncbi_disease"
    assert [call[:3] for call in hub_calls] == [
        ("owner/missing", None, "train"),
        ("ncbi_disease", "ncbi_disease", "validation"),
    ]
    # Paths that cannot be Hub ids are missing files, and the Hub is not asked.
    for path in ("data/missing.tsv", "missing.jsonl", "/abs/path/train", "a/b/c"):
        with pytest.raises(DataError, match="no such file or directory"):
            load_sentences(path, hub=True)
    assert len(hub_calls) == 2


def test_a_file_that_is_not_there_is_never_looked_for_on_the_hub(hub_calls, tmp_path):
    # --train-file owner/name (a typo, a folder not made yet) is a missing file, not a Hub dataset to download.
    for source in ("owner/name", "ncbi_disease"):
        with pytest.raises(DataError, match=f"^{source}: no such file or directory$"):
            load_sentences(source)
    from hf_layer_tokclf.training.arguments import DataArguments
    from hf_layer_tokclf.training.splits import read_splits

    good = write(tmp_path, "good.tsv", "Cancer\tB-Disease\n")
    with pytest.raises(DataError, match=r"^owner/name: no such file or directory$"):
        read_splits(DataArguments(train_file=str(good), validation_file="owner/name"))
    assert hub_calls == []


def declared_floor(package: str) -> str:
    """The lowest version of ``package`` that pyproject.toml's dependencies declare (``"package>=X"``)."""
    dependencies = (REPO / "pyproject.toml").read_text(encoding="utf-8").split("dependencies = [", 1)[1]
    return re.search(rf'"{package}>=([^,"]+)', dependencies.split("]", 1)[0])[1]


def test_hub_datasets_never_run_a_loading_script_on_any_declared_datasets(hub_calls):
    """datasets before 3.0 runs a Hub dataset's loading script unless told not to (3.x asks; 4.0 removed
    scripts); each version from the floor on takes trust_remote_code=False (4.x and 5.x drop it silently)."""
    import inspect

    from packaging.version import Version

    load_sentences("owner/corpus", split="train", hub=True)
    if Version(declared_floor("datasets")) < Version("4.0"):
        assert hub_calls[0][3] == {"trust_remote_code": False}
    # The installed datasets takes it: as a parameter (2.16 to 3.x), or among the builder options it drops (4.0 on).
    parameters = inspect.signature(datasets.load.load_dataset).parameters  # the real one, not the fixture's
    installed = Version(datasets.__version__)
    assert "trust_remote_code" in parameters or (installed >= Version("4.0") and "config_kwargs" in parameters)


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
    assert detect_scheme([["O", "I-X", "I-X", "B-X"]]) == "IOB1"
    assert detect_scheme([["B-X", "I-X", "I-Y"]]) == "IOB1"  # I- after another type starts an entity
    assert detect_scheme([["O", "I-X", "I-X"], ["I-Y"]]) == "IO"  # no B- anywhere
    assert detect_scheme([["O", "S-X"]]) == "IOBES"
    assert detect_scheme([["B-X", "E-X"]]) == "IOBES"
    assert detect_scheme([["I-X", "E-X", "O", "E-Y"]]) == "IOE2"  # every entity ends in E-
    assert detect_scheme([["I-X", "E-X", "I-X", "O", "I-Y"]]) == "IOE1"  # E- only before the same type
    assert detect_scheme([["B-X", "L-X", "U-Y"]]) == "BILOU"


def test_to_iob2_examples():
    assert to_iob2(["I-X", "I-X", "B-X", "O", "I-Y", "I-X"], "IOB1") == ["B-X", "I-X", "B-X", "O", "B-Y", "B-X"]
    assert to_iob2(["S-X", "B-X", "I-X", "E-X", "O", "S-Y"], "IOBES") == ["B-X", "B-X", "I-X", "I-X", "O", "B-Y"]
    assert to_iob2(["B-X", "I-X"], "IOB2") == ["B-X", "I-X"]
    assert to_iob2(["U-X", "B-X", "I-X", "L-X", "O", "U-Y"], "BILOU") == ["B-X", "B-X", "I-X", "I-X", "O", "B-Y"]
    assert to_iob2(["I-X", "E-X", "E-X", "O", "I-Y"], "IOE1") == ["B-X", "I-X", "B-X", "O", "B-Y"]
    assert to_iob2(["I-X", "I-X", "O", "I-Y"], "IO") == ["B-X", "I-X", "O", "B-Y"]
    for function in (to_iob2, from_iob2):
        with pytest.raises(ValueError, match="unknown scheme 'BIO'"):
            function(["O"], "BIO")


def test_from_iob2_examples():
    labels = ["B-X", "I-X", "B-X", "O", "B-Y", "B-X"]
    assert from_iob2(labels, "IOB1") == ["I-X", "I-X", "B-X", "O", "I-Y", "I-X"]
    assert from_iob2(labels, "IOE1") == ["I-X", "E-X", "I-X", "O", "I-Y", "I-X"]
    assert from_iob2(labels, "IOE2") == ["I-X", "E-X", "E-X", "O", "E-Y", "E-X"]
    assert from_iob2(labels, "IOBES") == ["B-X", "E-X", "S-X", "O", "S-Y", "S-X"]
    assert from_iob2(labels, "BILOU") == ["B-X", "L-X", "U-X", "O", "U-Y", "U-X"]
    assert from_iob2(labels, "IO") == ["I-X", "I-X", "I-X", "O", "I-Y", "I-X"]  # IO cannot split X X


IOB2_ROWS = st.lists(st.sampled_from(["O", "B-A", "I-A", "B-B", "I-B"]), max_size=10).map(
    lambda row: to_iob2(row, "IOB2")
)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(IOB2_ROWS, min_size=1, max_size=4), scheme=st.sampled_from(SCHEMES))
def test_every_scheme_round_trips_and_is_detected(rows, scheme):
    written = [from_iob2(row, scheme) for row in rows]
    if scheme != "IO":  # IO merges adjacent entities of one type
        assert [to_iob2(row, scheme) for row in written] == rows
    detected = detect_scheme(written)
    # Data too plain to tell (no entities, or none that shows the scheme's marks) reads as a simpler
    # scheme that converts it the same.
    assert [to_iob2(row, detected) for row in written] == [to_iob2(row, scheme) for row in written]
    if any(from_iob2(row, scheme) != from_iob2(row, detected) for row in rows):
        pytest.fail(f"{scheme} data detected as {detected}: {written}")


@pytest.mark.parametrize(("convert", "scheme"), [(iob2_to_iobes, "IOBES"), (iob2_to_iob1, "IOB1")])
def test_scheme_round_trips_on_ncbi(devel, convert, scheme):
    assert all(from_iob2(s.labels, scheme) == convert(s.labels) for s in devel)
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
        check_known_labels(conll, LABEL2ID)
    assert str(error.value) == (
        f"{tmp_path / 'x.tsv'}, line 5: label 'B-Chemical' never appears in the training data "
        "(known: O, B-Disease, I-Disease)"
    )
    jsonl = read_jsonl(
        write(tmp_path, "x.jsonl", '{"tokens": ["a"]}\n{"tokens": ["b", "c"], "ner_tags": ["O", "S-X"]}')
    )
    with pytest.raises(DataError, match=r"x\.jsonl, line 2: label 'S-X' never appears"):
        check_known_labels(jsonl, LABEL2ID)
    check_known_labels(read_conll(NCBI / "test.tsv"), LABEL2ID)


# --------------------------------------------------------------------------------------------
# CoNLL-U, label columns found by content, JSON lines with other fields and integer labels
# --------------------------------------------------------------------------------------------

CONLLU = """# sent_id = 1
# text = BRCA1 mutations cause cancer.
1\tBRCA1\tBRCA1\tPROPN\t_\t_\t2\tcompound\t_\tNER=B-Gene
2-3\tmutations cause\t_\t_\t_\t_\t_\t_\t_\t_
2\tmutations\tmutation\tNOUN\t_\t_\t3\tnsubj\t_\t_
3\tcause\tcause\tVERB\t_\t_\t0\troot\t_\t_
3.1\tdo\tdo\tVERB\t_\t_\t_\t_\t0:root\t_
4\tbreast cancer\tcancer\tNOUN\t_\t_\t3\tobj\t_\tSpaceAfter=No|NER=B-Disease
5\t.\t.\tPUNCT\t_\t_\t3\tpunct\t_\t_

# sent_id = 2
1\tOK\tok\tINTJ\t_\t_\t0\troot\t_\tB-Misc
"""


def test_conllu_skips_comments_ranges_and_empty_nodes(tmp_path):
    path = write(tmp_path, "ud.conllu", CONLLU)
    sentences = read_conll(path)
    assert [s.tokens for s in sentences] == [["BRCA1", "mutations", "cause", "breast cancer", "."], ["OK"]]
    assert [s.labels for s in sentences] == [["B-Gene", "O", "O", "B-Disease", "O"], ["B-Misc"]]
    assert sentences[0].where(3) == f"{path}, line 3"  # skipped lines: reported at the sentence's first token
    assert [s.tokens for s in read_conll(path, labeled=False)] == [s.tokens for s in sentences]


def test_a_label_column_is_found_by_content(tmp_path):
    labeled = write(tmp_path, "gold.tsv", "BRCA1\tO\ncancer\tB-Disease\n\nok\tO\n")
    assert [s.labels for s in read_conll(labeled, labeled=None)] == [["O", "B-Disease"], ["O"]]
    tokens = write(tmp_path, "tokens.txt", "BRCA1\ncancer\n\nok\n")
    assert [s.labels for s in read_conll(tokens, labeled=None)] == [None, None]
    assert [s.tokens for s in load_sentences(str(tokens), labeled=None)] == [["BRCA1", "cancer"], ["ok"]]


def test_jsonl_columns_and_label_names(tmp_path):
    path = write(tmp_path, "to_json.jsonl", '{"id": "7", "words": ["a", "b"], "tags": [1, 2]}\n')
    with pytest.raises(DataError, match=r"line 1: the record has no 'tokens' .*--text-column-name"):
        load_sentences(str(path))
    columns = Columns(tokens="words", labels="tags")
    with pytest.raises(DataError, match=r"line 1: 'tags' holds integer id 1 .*--label-names"):
        load_sentences(str(path), columns=columns)
    named = Columns(tokens="words", labels="tags", label_names=tuple(LABELS))
    assert load_sentences(str(path), columns=named)[0].labels == ["B-Disease", "I-Disease"]
    assert load_sentences(str(path), columns=named, labeled=False)[0].labels is None


def test_label_names_from_a_list_or_a_datasets_folder(tmp_path):
    assert label_names_from(["O", "B-Disease", "I-Disease"]) == tuple(LABELS)
    assert label_names_from(["O,B-Disease,I-Disease"]) == tuple(LABELS)
    with pytest.raises(DataError, match="--label-names: label 'Disease' is neither"):
        label_names_from(["O", "Disease"])
    features = datasets.Features(
        {
            "words": datasets.Sequence(datasets.Value("string")),
            "tags": datasets.Sequence(datasets.ClassLabel(names=LABELS)),
        }
    )
    dataset = datasets.Dataset.from_dict({"words": [["a", "b"]], "tags": [[1, 2]]}, features=features)
    datasets.DatasetDict({"train": dataset}).save_to_disk(str(tmp_path / "ds"))
    assert label_names_from([str(tmp_path / "ds")], "tags") == tuple(LABELS)
    with pytest.raises(DataError, match="its 'ner_tags' column is not a sequence of ClassLabel"):
        label_names_from([str(tmp_path / "ds")])
    # The folder's own rows, through other column names: ClassLabel ids become names.
    sentences = load_sentences(str(tmp_path / "ds"), split="train", columns=Columns(tokens="words", labels="tags"))
    assert sentences[0].tokens == ["a", "b"] and sentences[0].labels == ["B-Disease", "I-Disease"]
    # Dataset.to_json writes the ids: read back with the folder's names.
    dataset.to_json(str(tmp_path / "rows.jsonl"))
    names = label_names_from([str(tmp_path / "ds")], "tags")
    rows = load_sentences(str(tmp_path / "rows.jsonl"), columns=Columns("words", "tags", names))
    assert rows[0].labels == ["B-Disease", "I-Disease"]


# --------------------------------------------------------------------------------------------
# A typo'd label in training data (issue 27, item 3): NCBI-disease's train.tsv, line 2266 is "Wilms\tB-Disease"
# --------------------------------------------------------------------------------------------


def test_a_rare_type_a_typo_away_from_another_is_refused_at_its_first_line(tmp_path):
    path = ncbi_changed(tmp_path / "train.tsv", "train", 2266, "B-Disaese")
    sentences = read_conll(path)
    with pytest.raises(DataError) as error:
        check_training_labels(sentences, normalize_labels(sentences)[1], allow="--allow-rare-labels")
    message = str(error.value)
    assert message.startswith(f"{path}, line 2266: label 'B-Disaese'"), message
    assert "'Disease'" in message and "--allow-rare-labels" in message
    check_training_labels(read_conll(NCBI / "train.tsv"), "IOB2", allow="--allow-rare-labels")  # the real data


def test_a_type_of_its_own_is_not_a_typo(tmp_path):
    # Rare, but far from Disease: a type of its own. Frequent and near: no typo either (DNA beside RNA).
    sentences = read_conll(ncbi_changed(tmp_path / "train.tsv", "train", 2266, "B-Chemical"))
    check_training_labels(sentences, "IOB2", allow="--allow-rare-labels")
    near = [Sentence(["a", "b"], ["B-DNA", "B-RNA"], "s", 1)] * 10
    check_training_labels(near, "IOB2", allow="--allow-rare-labels")


def test_a_few_inside_tags_that_start_entities_may_not_flip_the_scheme(tmp_path):
    path = ncbi_changed(tmp_path / "train.tsv", "train", 2266, "I-Disease")
    sentences = read_conll(path)
    scheme = normalize_labels(sentences)[1]
    assert scheme == "IOB1"  # what one tag does to the detection
    with pytest.raises(DataError) as error:
        check_training_labels(sentences, scheme, allow="--allow-rare-labels")
    message = str(error.value)
    assert message.startswith(f"{path}, line 2266: "), message
    assert "'I-Disease'" in message and "IOB1" in message and "IOB2" in message and "--allow-rare-labels" in message
    iob1 = [Sentence(["a", "b", "c"], ["I-X", "O", "I-Y"], "s", 1), Sentence(["a", "b"], ["I-X", "B-X"], "s", 2)]
    check_training_labels(iob1, detect_scheme(s.labels for s in iob1), allow="--allow-rare-labels")  # real IOB1


def test_an_unknown_dev_label_is_named_as_written(tmp_path):
    path = ncbi_changed(tmp_path / "devel.tsv", "devel", 341, "I-Diseas")
    with pytest.raises(DataError) as error:
        check_known_labels(read_conll(path), LABEL2ID)
    assert str(error.value).startswith(f"{path}, line 341: label 'I-Diseas' never appears in the training data")


def test_label_counts_are_those_the_model_learns():
    sentences = [Sentence(["a", "b", "c"], ["I-X", "I-X", "O"], "s", 1), Sentence(["d"], ["B-Y"], "s", 2)]
    assert describe_labels(sentences) == "O 1, B-X 1, I-X 1, B-Y 1 (2 entities: X 1, Y 1)"
