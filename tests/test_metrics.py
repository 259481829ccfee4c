"""Tests of hf_layer_tokclf.running.metrics on examples small enough to check by hand."""

import pytest

from hf_layer_tokclf.running.metrics import entity_scores, format_scores

TRUE = [
    ["B-Disease", "I-Disease", "O", "B-Chemical", "O"],
    ["O", "B-Disease", "O", "B-Disease", "I-Disease"],
]


def test_perfect_predictions():
    scores = entity_scores(TRUE, TRUE)
    assert (scores["precision"], scores["recall"], scores["f1"], scores["accuracy"]) == (1.0, 1.0, 1.0, 1.0)
    assert scores["per_type"] == {
        "Chemical": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
        "Disease": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3},
    }


def test_one_missed_entity():
    pred = [list(TRUE[0]), ["O", "B-Disease", "O", "O", "O"]]  # misses the last Disease
    scores = entity_scores(TRUE, pred)
    # 3 predicted entities, all right; 4 true entities, 3 found; 8 of 10 tokens right.
    assert scores["precision"] == 1.0
    assert scores["recall"] == pytest.approx(3 / 4)
    assert scores["f1"] == pytest.approx(2 * 1.0 * 0.75 / 1.75)
    assert scores["accuracy"] == pytest.approx(8 / 10)
    assert scores["per_type"]["Disease"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert scores["per_type"]["Chemical"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}


def test_boundaries_and_types_must_match_exactly():
    # A truncated span and a wrong type are both wrong entities (conlleval rules).
    pred = [["B-Disease", "O", "O", "B-Disease", "O"], list(TRUE[1])]
    scores = entity_scores(TRUE, pred)
    assert scores["precision"] == pytest.approx(2 / 4)
    assert scores["recall"] == pytest.approx(2 / 4)
    assert scores["per_type"]["Chemical"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert scores["per_type"]["Disease"]["precision"] == pytest.approx(2 / 4)
    assert scores["per_type"]["Disease"]["recall"] == pytest.approx(2 / 3)


def test_conlleval_mode_reads_a_leading_i_as_an_entity():
    # Default (non-strict) seqeval mode, as run_ner.py uses: I-Disease after O starts an entity.
    scores = entity_scores([["O", "B-Disease", "I-Disease"]], [["O", "I-Disease", "I-Disease"]])
    assert scores["f1"] == 1.0


def test_types_are_python_floats_and_ints():
    scores = entity_scores(TRUE, [["O"] * 5, ["O"] * 5])
    values = [scores["precision"], scores["recall"], scores["f1"], scores["accuracy"]]
    values += [v for row in scores["per_type"].values() for k, v in row.items() if k != "support"]
    assert all(type(v) is float for v in values)
    assert all(type(row["support"]) is int for row in scores["per_type"].values())
    assert scores["precision"] == scores["recall"] == scores["f1"] == 0.0


def test_no_entities_anywhere():
    scores = entity_scores([["O", "O"]], [["O", "O"]])
    assert (scores["f1"], scores["accuracy"], scores["per_type"]) == (0.0, 1.0, {})


def test_shape_mismatches_name_the_sentence():
    with pytest.raises(ValueError, match="2 true sentences but 1 predicted"):
        entity_scores(TRUE, TRUE[:1])
    with pytest.raises(ValueError, match="sentence 1: 5 true labels but 4 predicted"):
        entity_scores(TRUE, [TRUE[0], TRUE[1][:4]])


def test_format_scores_table():
    pred = [list(TRUE[0]), ["O", "B-Disease", "O", "O", "O"]]
    table = format_scores(entity_scores(TRUE, pred))
    lines = table.splitlines()
    assert lines[0].split() == ["type", "precision", "recall", "F1", "support"]
    rows = {
        line.split()[0]: line.split()[1:] for line in lines if line.split()[0] in ("Chemical", "Disease", "overall")
    }
    assert rows == {
        "Chemical": ["100.00", "100.00", "100.00", "1"],
        "Disease": ["100.00", "66.67", "80.00", "3"],
        "overall": ["100.00", "75.00", "85.71", "4"],
    }
    assert lines[-1] == "token accuracy: 80.00"
    # Fixed width: every table row is as wide as the header.
    assert {len(line) for line in lines[:-1]} == {len(lines[0])}
