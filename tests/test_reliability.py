"""Reliability: bad and adversarial input, outputs never half-written, training killed and resumed,
several processes under torchrun.

Each bad input gets a correct result or an error that names the problem (a `DataError` /
`ValueError`, one line from the CLI), never a traceback from deep inside torch.
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import LABEL2ID, LABELS, NCBI, SLOW_PREDICT, TEXT, paused, tiny_bert_kwargs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_layer_tokclf import BertForLayerTokenClassification, LayerTokenClassificationConfig
from hf_layer_tokclf.cli.main import main
from hf_layer_tokclf.formats.conll import read_conll
from hf_layer_tokclf.formats.labels import label_list, normalize_labels
from hf_layer_tokclf.formats.lines import DataError
from hf_layer_tokclf.formats.records import read_jsonl
from hf_layer_tokclf.formats.sentence import Sentence
from hf_layer_tokclf.running.features import encode, merge_windows
from hf_layer_tokclf.running.loading import load_model
from hf_layer_tokclf.running.texts import predict_texts
from hf_layer_tokclf.training.trainer import last_complete_checkpoint

# No example database in the repository; no deadline on a shared 2-core machine.
FUZZ = settings(database=None, deadline=None, suppress_health_check=list(HealthCheck), max_examples=300)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_clean_line(err: str, *needles: str) -> None:
    """The CLI's error: a last line ``hf-layer-tokclf <cmd>: error: ...`` naming the problem, no traceback."""
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert ": error: " in last, err
    for needle in needles:
        assert needle in last, (needle, last)


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory, tokenizer):
    """A random 4-layer, 32-wide plain BERT (what `train --model` starts from), with the MiniLM tokenizer."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("backbone") / "bert"
    BertModel(BertConfig(**tiny_bert_kwargs())).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# --------------------------------------------------------------------------------------------
# Malformed and adversarial CoNLL / JSONL (generated)
# --------------------------------------------------------------------------------------------

# Separators, line ends (CR, CRLF, U+2028, U+0085), a BOM, control and zero-width characters,
# non-ASCII letters, label pieces and JSON punctuation.
_PIECES = [
    *list('ab \t\r\n-BIOES\x00\x0b\x0c\x1c\x85\u2028\u00a0\u200b\ufeffé中🙂{}[]":,0'),
    "B-Disease",
    "I-Disease",
    "-DOCSTART-",
    '"tokens"',
    '"ner_tags"',
    "\r\n",
    "\n\n",
]
_CONTENT = st.lists(st.sampled_from(_PIECES), max_size=60).map("".join)


def _read_all(path):
    """Every reader on one file; each returns sentences or raises DataError."""
    outcomes = []
    for reader in (read_conll, read_jsonl, lambda p: read_conll(p, labeled=False)):
        try:
            sentences = reader(path)
        except DataError as error:
            assert str(error).startswith(str(path)), error  # the message names the file
            outcomes.append(None)
            continue
        assert sentences and all(isinstance(s, Sentence) for s in sentences)
        for sentence in sentences:
            assert sentence.labels is None or len(sentence.labels) == len(sentence.tokens)
        labeled = [s for s in sentences if s.labels is not None]
        try:
            normalized, _ = normalize_labels(labeled)
            label_list(normalized)
        except DataError as error:
            assert str(error).startswith(str(path)), error
        outcomes.append(sentences)
    return outcomes


@FUZZ
@given(content=_CONTENT | st.binary(max_size=80))
def test_any_file_gives_sentences_or_a_data_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "data.tsv"
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    _read_all(path)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 5) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["tokens", "ner_tags", "x"]), children, max_size=3)
    ),
    max_leaves=12,
)


@FUZZ
@given(records=st.lists(_JSON_VALUES, min_size=1, max_size=4))
def test_any_json_lines_give_sentences_or_a_data_error(tmp_path_factory, records):
    path = tmp_path_factory.mktemp("fuzz") / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    _read_all(path)


def test_deeply_nested_json_is_a_data_error(tmp_path):
    """json.loads raises RecursionError on deep nesting; it is still the user's data, named by line."""
    path = tmp_path / "deep.jsonl"
    path.write_text('{"tokens": ["a"], "ner_tags": ["O"]}\n{"tokens": ' + "[" * 100_000 + "\n")
    with pytest.raises(DataError, match=r"deep\.jsonl, line 2: JSON nested too deeply"):
        read_jsonl(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        # Mixed separators: tabs, runs of spaces, both, and trailing whitespace.
        ("EU\tB-ORG\nrejects    O\nGerman \t B-MISC \t\n", [["EU", "rejects", "German"]]),
        # Empty sentences (runs of blank and whitespace-only lines) are no sentences.
        ("\n \n\t\na\tO\n\n\n  \nb\tO\n\n", [["a"], ["b"]]),
        # A BOM, CRLF and a lone CR line end inside a token's line.
        ("\ufeffa\tO\r\nb\tO\r\n\r\nc\tO", [["a", "b"], ["c"]]),
        # Unicode line and paragraph separators, NEL and control characters are tokens, not line ends.
        ("\u2028\tO\n\x85\tO\n\x00\tO\n\x1c\tO\n", [["\u2028", "\x85", "\x00", "\x1c"]]),
    ],
)
def test_conll_edge_cases_read_correctly(tmp_path, content, expected):
    path = tmp_path / "data.tsv"
    path.write_bytes(content.encode("utf-8"))
    assert [s.tokens for s in read_conll(path)] == expected


@pytest.mark.parametrize(
    "label", ["b-Disease", "B_Disease", "B-", "Disease", "BI-Disease", "O-Disease", "0", "B -Disease", "X-Disease"]
)
def test_labels_not_in_iob_form_are_named_with_file_and_line(tmp_path, label):
    path = tmp_path / "bad.tsv"
    path.write_text(f"a\tO\nb\t{label}\n", encoding="utf-8")
    sentences = read_conll(path)
    if sentences[0].labels[1] != label:  # "B -Disease": the last column is "-Disease"
        label = sentences[0].labels[1]
    with pytest.raises(DataError) as error:
        normalize_labels(sentences)
    assert f"bad.tsv, line 2: label {label!r}" in str(error.value)


@FUZZ
@given(labels=st.lists(st.lists(st.sampled_from(["O", "B-A", "I-A", "E-A", "S-A", "B-B", "I-B", "X"]), max_size=8)))
def test_label_schemes_become_valid_iob2_or_a_data_error(labels):
    sentences = [Sentence([f"w{i}" for i in range(len(row))], row, "mem", 1, True) for row in labels]
    try:
        normalized, _ = normalize_labels(sentences)
    except DataError as error:
        assert "'X'" in str(error)
        return
    for sentence in normalized:
        previous = "O"
        for label in sentence.labels:
            assert label == "O" or label[:2] in ("B-", "I-")
            if label.startswith("I-"):  # an I- continues an entity of its type
                assert previous in (f"B-{label[2:]}", label)
            previous = label
        assert normalize_labels([sentence])[0][0].labels == sentence.labels  # IOB2 is a fixed point


# --------------------------------------------------------------------------------------------
# Windows: encode + merge_windows give every word back its label (generated)
# --------------------------------------------------------------------------------------------

# Ordinary, long, unknown, dropped ("\u200b" and control characters tokenize to nothing) and
# non-Latin words.
_WORDS = ["the", "BRCA1", "cancer", "ataxia-telangiectasia", "\u200b", "\x00", "🙂", "中文", "a" * 150, "x" * 40, ","]


@FUZZ
@given(
    rows=st.lists(
        st.lists(st.tuples(st.sampled_from(_WORDS), st.sampled_from(LABELS)), max_size=40), min_size=1, max_size=4
    ),
    max_length=st.integers(4, 48),
    stride_fraction=st.floats(0, 0.99),
    label_all_subwords=st.booleans(),
)
def test_windows_round_trip_every_gold_label(tokenizer, rows, max_length, stride_fraction, label_all_subwords):
    sentences = [Sentence([w for w, _ in row], [label for _, label in row], "mem", 1) for row in rows]
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    stride = int(stride_fraction * budget)
    features = encode(
        sentences, tokenizer, LABEL2ID, max_length=max_length, stride=stride, label_all_subwords=label_all_subwords
    )
    assert all(len(f["input_ids"]) <= max_length for f in features)
    # "Predict" the gold label at every token: merging must hand each word its own label back.
    merged = merge_windows(features, [f["labels"] for f in features], [len(s.tokens) for s in sentences])
    assert merged == [[LABEL2ID[label] for label in s.labels] for s in sentences]


# --------------------------------------------------------------------------------------------
# Configuration values of the wrong type or range, label maps that disagree
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_labels": 3, "id2label": {0: "O"}}, "num_labels=3 disagrees with id2label, which names 1 label(s)"),
        ({"num_labels": 2, "id2label": dict(enumerate(LABELS))}, "num_labels=2 disagrees with id2label"),
        ({"id2label": {0: "O", 1: "B-X"}, "label2id": {"O": 0}}, "is not the inverse of id2label"),
        ({"id2label": {0: "O", 1: "B-X"}, "label2id": {"O": 1, "B-X": 0}}, "is not the inverse of id2label"),
        ({"id2label": {1: "O", 2: "B-X"}}, "id2label ids must be 0..1"),
        ({"id2label": ["O", "B-X"]}, "id2label must be a dict"),
        ({"id2label": {"zero": "O"}}, "id2label must map ids to names"),
        ({"num_labels": 0}, "num_labels has 0; expected an int >= 1"),
        ({"num_labels": "3"}, "num_labels has '3'"),
        ({"classifier_dropout": 1.5}, "classifier_dropout=1.5 is out of range"),
        ({"classifier_dropout": -0.1}, "classifier_dropout=-0.1 is out of range"),
        ({"num_hidden_layers": 0}, "num_hidden_layers has 0"),
    ],
)
def test_config_values_of_the_wrong_type_or_range_are_named(kwargs, message):
    with pytest.raises(ValueError) as error:
        LayerTokenClassificationConfig(**kwargs)
    assert message in str(error.value)


def test_wrong_types_of_backbone_fields_name_the_field():
    # transformers 5.x checks BertConfig's typed fields itself (not a ValueError, but it names the field).
    with pytest.raises(Exception, match="num_hidden_layers") as error:
        LayerTokenClassificationConfig(num_hidden_layers="6")
    assert "torch" not in type(error.value).__module__


def test_label_maps_that_agree_and_json_string_keys_are_fine(tmp_path):
    config = LayerTokenClassificationConfig(
        num_labels=3, id2label={str(i): label for i, label in enumerate(LABELS)}, label2id=LABEL2ID
    )
    assert config.id2label == dict(enumerate(LABELS)) and config.num_labels == 3
    config.save_pretrained(tmp_path)
    assert LayerTokenClassificationConfig.from_pretrained(tmp_path).id2label == dict(enumerate(LABELS))


def test_new_labels_for_a_saved_model(tiny_dir):
    """As in transformers: num_labels alone gives a new head of LABEL_i; id2label alone brings its inverse."""
    config = LayerTokenClassificationConfig.from_pretrained(tiny_dir, num_labels=5)
    assert config.num_labels == 5 and config.label2id == {f"LABEL_{i}": i for i in range(5)}
    config = LayerTokenClassificationConfig.from_pretrained(tiny_dir, id2label={0: "O", 1: "B-X", 2: "I-X"})
    assert config.label2id == {"O": 0, "B-X": 1, "I-X": 2}
    with pytest.raises(ValueError, match="num_labels=4 disagrees with id2label"):
        BertForLayerTokenClassification.from_pretrained(tiny_dir, num_labels=4, id2label={0: "O"})


def test_a_saved_config_whose_label_maps_disagree_is_refused(tiny_dir, tmp_path):
    import shutil

    shutil.copytree(tiny_dir, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["label2id"] = {"O": 0, "B-Disease": 2, "I-Disease": 1}
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="is not the inverse of id2label"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        (["--hidden-layer", "9"], ["hidden_layer=9 is out of range"]),
        (["--classifier-dropout", "1.5"], ["classifier_dropout=1.5"]),
        (["--max-length", "2"], ["max_length=2 leaves no room"]),
        (["--max-length", "16", "--stride", "20"], ["stride=20 must be >= 0 and smaller"]),
    ],
)
def test_bad_train_options_stop_with_one_line_and_no_output(backbone_dir, tmp_path, capsys, options, needles):
    data = tmp_path / "d.tsv"
    data.write_text("Cancer\tB-Disease\nrisk\tO\n")
    out = tmp_path / "out"
    argv = ["train", "--model", backbone_dir, "--train-file", data, "--output-dir", out, "--max-steps", "1"]
    code, _, err = run(capsys, *argv, *options)
    assert code == 2
    assert_one_clean_line(err, *needles)
    assert not out.exists() or not any(out.iterdir())


# --------------------------------------------------------------------------------------------
# predict: empty and very long texts
# --------------------------------------------------------------------------------------------

LONG_TEXT = " ".join(f"Patient {i} had breast cancer, ataxia-telangiectasia and BRCA1 mutations." for i in range(300))


def test_predict_texts_empty_blank_control_and_very_long(tiny_dir):
    model, tokenizer = load_model(tiny_dir)
    texts = ["", "   ", "\x00\x01\u200b\ufeff", "a" * 20_000, LONG_TEXT[:20_000], TEXT]
    results = list(predict_texts(model, tokenizer, texts, aggregation_strategy="first", batch_size=4))
    assert len(results) == len(texts)
    assert results[0] == results[1] == results[2] == []
    long_entities = results[4]
    assert long_entities, "a random model tags something in 20,000 characters"
    # Entities come from all over the text, not only the model's first 128 tokens.
    assert max(e["end"] for e in long_entities) > 15_000
    for text, entities in zip(texts, results, strict=True):
        for entity in entities:
            assert 0 <= entity["start"] < entity["end"] <= len(text)


def test_predict_cli_empty_and_very_long_texts(tiny_dir, tmp_path, capsys):
    code, out, err = run(capsys, "predict", tiny_dir, "--text", "", "--text", LONG_TEXT[:20_000])
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in records] == ["", LONG_TEXT[:20_000]]
    assert records[0]["entities"] == []
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, out, _ = run(capsys, "predict", tiny_dir, "--input", empty, "--output", tmp_path / "none.jsonl")
    assert code == 0 and (tmp_path / "none.jsonl").read_text() == ""


def test_predict_conll_with_a_ten_thousand_word_sentence(tiny_dir, tmp_path, capsys):
    source = tmp_path / "long.conll"
    source.write_text("".join(f"{w}\n" for w in (["cancer", "BRCA1", "\u200b", "of"] * 2500)) + "\nshort\n")
    code, out, err = run(capsys, "predict", tiny_dir, "--input", source, "--input-format", "conll")
    assert code == 0, err
    rows = [line.split("\t") for line in out.splitlines() if line]
    assert len(rows) == 10_001 and all(len(r) == 2 and r[1] in LABELS for r in rows)


# --------------------------------------------------------------------------------------------
# Outputs are never half-written
# --------------------------------------------------------------------------------------------


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_predict_failing_midway_keeps_the_old_output(tiny_dir, tmp_path, capsys, monkeypatch):
    import hf_layer_tokclf.running.texts as texts

    output = tmp_path / "entities.jsonl"
    output.write_text("old\n")
    real, calls = texts.task_logits, []

    def fails_on_the_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the model's run of chunk 2, document "b"
            raise ValueError("the model broke on document 2")
        return real(*args, **kwargs)

    monkeypatch.setattr(texts, "task_logits", fails_on_the_second_chunk)
    argv = ["predict", tiny_dir, "--text", "a", "--text", "b", "--output", output, "--overwrite", "--chunk-size", "1"]
    code, _, err = run(capsys, *argv)
    assert code == 2 and "document 2" in err
    assert output.read_text() == "old\n"
    assert not _leftovers(tmp_path)
    # What the run did is kept to resume from: the first document's chunk, counted.
    partial = [p.name for p in tmp_path.iterdir() if p.name != output.name]
    assert sorted(partial) == ["entities.jsonl.partial", "entities.jsonl.partial.index", "entities.jsonl.progress.json"]
    assert json.loads(Path(f"{output}.progress.json").read_text())["counts"]["documents"] == 1
    monkeypatch.setattr(texts, "task_logits", real)
    assert run(capsys, *argv)[0] == 0  # the same command again: it goes on after the first chunk
    assert [json.loads(line)["text"] for line in output.read_text().splitlines()] == ["a", "b"]
    assert json.loads(Path(f"{output}.summary.json").read_text())["resumed"]


def test_ctrl_c_in_predict_prints_one_line_and_exits_130(tiny_dir, tmp_path):
    output = tmp_path / "out.jsonl"
    argv = ["predict", str(tiny_dir), "--output", str(output), "--chunk-size", "1", "--no-progress"]
    argv += [arg for i in range(20) for arg in ("--text", f"Document {i}.")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    env["PAUSE_AFTER_WRITES"] = "2"
    pipes = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process = subprocess.Popen([sys.executable, "-c", SLOW_PREDICT, *argv], env=env, **pipes)
    paused(process)  # mid-run: two writes done, the third chunk not yet
    assert json.loads(Path(f"{output}.progress.json").read_text())["writes"] == 2
    process.send_signal(signal.SIGINT)
    err = process.communicate(timeout=60)[1]
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"hf-layer-tokclf predict: interrupted; the partial output {output}.partial is kept"), err


def test_evaluate_failing_while_writing_keeps_the_old_scores(tiny_dir, tmp_path, capsys, monkeypatch):
    import hf_layer_tokclf.base.files as files

    data = tmp_path / "d.tsv"
    data.write_text("Cancer\tB-Disease\nrisk\tO\n")
    output = tmp_path / "scores.json"
    output.write_text('{"old": true}\n')
    real_dump = json.dump

    def dump_half(obj, f, **kwargs):
        f.write('{"eval_f1": ')
        raise OSError("disk full")

    monkeypatch.setattr(files.json, "dump", dump_half)
    assert main(["evaluate", str(tiny_dir), "--data", str(data), "--output", str(output), "--overwrite"]) == 1
    assert capsys.readouterr().err.strip().endswith("error: disk full")
    monkeypatch.setattr(files.json, "dump", real_dump)
    assert output.read_text() == '{"old": true}\n'
    assert not _leftovers(tmp_path)


def test_an_incomplete_final_model_is_not_misread(tiny_dir, tmp_path, capsys):
    """Killed while `train` saved the final model: weights cut short, checkpoints left, no metrics.json."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_dir, run_dir)
    shutil.copytree(tiny_dir, run_dir / "checkpoint-8")
    weights = (run_dir / "model.safetensors").read_bytes()
    (run_dir / "model.safetensors").write_bytes(weights[: len(weights) // 3])
    data = tmp_path / "d.tsv"
    data.write_text("Cancer\tB-Disease\n")
    code, _, err = run(capsys, "evaluate", run_dir, "--data", data, "--output", tmp_path / "s.json")
    assert code == 2
    assert_one_clean_line(err, "incomplete", "checkpoint-8", "training did not finish", "--resume")
    assert not (tmp_path / "s.json").exists()


def test_resume_skips_a_checkpoint_left_half_written(tmp_path):
    for step, complete in ((4, True), (8, True), (12, False), (100, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"partial")
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-8")
    assert last_complete_checkpoint(tmp_path / "checkpoint-x") is None


# --------------------------------------------------------------------------------------------
# A run writes only what it wrote, and continues only the same run
# --------------------------------------------------------------------------------------------


def test_predict_never_writes_into_a_partial_file_it_did_not_write(tiny_dir, tmp_path, capsys):
    host = tmp_path / "host.txt"
    host.write_text("a file elsewhere on the machine\n")
    output = tmp_path / "out.jsonl"
    partial = Path(f"{output}.partial")
    partial.symlink_to(host)
    for extra in ([], ["--overwrite"]):
        code, _, err = run(capsys, "predict", tiny_dir, "--text", "a", "--output", output, *extra)
        assert code == 2
        assert_one_clean_line(err, "out.jsonl.partial is a symlink")
    assert host.read_text() == "a file elsewhere on the machine\n" and partial.is_symlink()
    partial.unlink()
    partial.write_text("the user's file\n")
    for extra in ([], ["--overwrite"]):
        code, _, err = run(capsys, "predict", tiny_dir, "--text", "a", "--output", output, *extra)
        assert code == 2
        assert_one_clean_line(err, "out.jsonl.partial exists", "no ", "progress.json")
    assert partial.read_text() == "the user's file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["host.txt", "out.jsonl.partial"]


def test_an_output_that_is_a_folder_is_refused_before_the_model_loads(tiny_dir, tmp_path, capsys, monkeypatch):
    import hf_layer_tokclf.running.loading as loading

    monkeypatch.setattr(loading, "load_model", lambda *args, **kwargs: pytest.fail("the model was loaded"))
    folder = tmp_path / "out"
    folder.mkdir()
    data = tmp_path / "d.tsv"
    data.write_text("Cancer\tB-Disease\nrisk\tO\n")
    for argv in (
        ["predict", tiny_dir, "--text", "a", "--output", folder, "--overwrite"],
        ["predict", tiny_dir, "--input", data, "--output", folder, "--overwrite"],
        ["predict", tiny_dir, "--text", "a", "--format", "pubtator", "--output", folder],
        ["evaluate", tiny_dir, "--data", data, "--output", folder, "--overwrite"],
        ["evaluate", tiny_dir, "--data", data, "--output", tmp_path / "s.json", "--predictions", folder, "--overwrite"],
    ):
        code, _, err = run(capsys, *argv)
        assert code == 2, argv
        assert_one_clean_line(err, f"{folder} is a folder")
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["d.tsv", "out"]


def killed_after(patch, writes: int) -> None:
    """The next predict is killed before its write number ``writes + 1`` (the header is write 1)."""
    import hf_layer_tokclf.annotation.resumable as resumable

    real, done = resumable.ResumableOutput.write, []

    def write(self, *args, **kwargs):
        if len(done) == writes:
            raise KeyboardInterrupt
        done.append(1)
        real(self, *args, **kwargs)

    patch.setattr(resumable.ResumableOutput, "write", write)


def interrupted(capsys, *argv) -> None:
    """Runs a command that `killed_after` stops: main turns the KeyboardInterrupt into exit status 130."""
    assert run(capsys, *argv)[0] == 130


def texts(words: list[str]) -> list[str]:
    return [option for word in words for option in ("--text", f"{word} cancer .")]


def test_a_resumed_predict_refuses_another_input(tiny_dir, tmp_path, capsys, monkeypatch):
    """Killed after 2 of 6 documents: --text or standard input of other content is refused, not continued."""
    import io

    output = tmp_path / "out.jsonl"
    first, other = ["Breast", "Colon", "Lung", "Skin", "Bone", "Blood"], ["Ovarian", *["Colon"] * 5]
    argv = ["predict", tiny_dir, "--output", output, "--chunk-size", "1", "--no-progress"]
    with monkeypatch.context() as patch:
        killed_after(patch, 3)
        interrupted(capsys, *argv, *texts(first))
    partial = Path(f"{output}.partial").read_bytes()
    assert len(partial.splitlines()) == 2
    for other_input in (texts(other), texts(first[:1])):  # other documents; fewer than were done
        code, _, err = run(capsys, *argv, *other_input)
        assert code == 2
        assert_one_clean_line(err, "changed: the input")
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"{word} cancer .\n" for word in other)))
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert_one_clean_line(err, "changed: the input")
    assert Path(f"{output}.partial").read_bytes() == partial and not output.exists()
    assert run(capsys, *argv, *texts(first))[0] == 0  # the same input: continued
    assert [json.loads(line)["text"] for line in output.read_text().splitlines()] == texts(first)[1::2]
    assert json.loads(Path(f"{output}.summary.json").read_text())["resumed"]


def test_a_resumed_predict_refuses_a_changed_model(tokenizer, tmp_path, capsys, monkeypatch):
    from conftest import save_tiny_model
    from safetensors.torch import load_file, save_file

    model = save_tiny_model(tmp_path / "model", tokenizer)
    output = tmp_path / "out.jsonl"
    argv = ["predict", model, "--output", output, "--chunk-size", "1", "--no-progress", *texts(["Breast", "Colon"])]
    with monkeypatch.context() as patch:
        killed_after(patch, 2)
        interrupted(capsys, *argv)
    config, weights = (model / "config.json").read_bytes(), (model / "model.safetensors").read_bytes()
    (model / "config.json").write_text(config.decode().replace('"B-Disease"', '"B-Chemical"'))  # other labels
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert_one_clean_line(err, "changed: the model (config))")
    (model / "config.json").write_bytes(config)
    tensors = load_file(model / "model.safetensors")
    tensors["classifier.weight"] *= 3  # other weights
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert_one_clean_line(err, "changed: the model (weights))")
    (model / "model.safetensors").write_bytes(weights)
    assert run(capsys, *argv)[0] == 0  # the same model again (its files rewritten): continued
    assert len(output.read_text().splitlines()) == 2


# --------------------------------------------------------------------------------------------
# Interrupted training: SIGKILL after the first checkpoint, then --resume
# --------------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def _train_argv(backbone_dir, output_dir, *extra) -> list[str]:
    return [
        "train",
        "--model",
        str(backbone_dir),
        "--hidden-layer",
        "2",
        "--train-file",
        str(NCBI / "train.tsv"),
        "--max-train-samples",
        "64",
        "--output-dir",
        str(output_dir),
        "--per-device-train-batch-size",
        "8",
        "--learning-rate",
        "1e-3",
        "--seed",
        "7",
        "--dataloader-num-workers",
        "0",
        "--disable-tqdm",
        "true",
        "--report-to",
        "none",
        *extra,
    ]


def _logits(model_dir) -> torch.Tensor:
    model, tokenizer = load_model(model_dir)
    with torch.no_grad():
        return model(**tokenizer(TEXT, return_tensors="pt")).logits[0]


MAX_STEPS, SAVE_STEPS = 12, 4


def test_killed_training_resumes_to_the_same_weights(backbone_dir, tmp_path, capsys):
    # Dropout on (the tiny BERT's 0.1), a shuffled, length-grouped sampler, a decaying learning rate:
    # resuming must restore the model, optimizer, scheduler, data order and RNG exactly.
    options = [
        "--max-steps",
        str(MAX_STEPS),
        "--save-strategy",
        "steps",
        "--save-steps",
        str(SAVE_STEPS),
        "--eval-strategy",
        "no",
        "--load-best-model-at-end",
        "false",
        "--keep-checkpoints",
    ]
    command = [sys.executable, "-m", "hf_layer_tokclf"]
    full_dir, killed_dir = tmp_path / "full", tmp_path / "killed"
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("full", "killed")}
    full = subprocess.Popen(
        [*command, *_train_argv(backbone_dir, full_dir, *options)],
        stdout=logs["full"],
        stderr=subprocess.STDOUT,
        env=_env(),
    )
    killed = subprocess.Popen(
        [*command, *_train_argv(backbone_dir, killed_dir, *options)],
        stdout=logs["killed"],
        stderr=subprocess.STDOUT,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 600
        while not list(killed_dir.glob("checkpoint-*/trainer_state.json")):
            assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.02)
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(timeout=60) == -signal.SIGKILL
    finally:
        if killed.poll() is None:
            killed.kill()
    checkpoint = last_complete_checkpoint(killed_dir)
    step = int(Path(checkpoint).name.split("-")[1])
    assert step < MAX_STEPS, "the run finished before it was killed"

    # What a kill leaves is never misread as a model.
    assert not (killed_dir / "config.json").exists() and not (killed_dir / "metrics.json").exists()
    data = tmp_path / "d.tsv"
    data.write_text("Cancer\tB-Disease\nrisk\tO\n")
    code, _, err = run(capsys, "evaluate", killed_dir, "--data", data, "--output", tmp_path / "s.json")
    assert code == 2
    assert_one_clean_line(err, "no model here", "training did not finish")
    with pytest.raises(ValueError, match="training did not finish"):
        load_model(killed_dir)
    checkpoint_logits = _logits(checkpoint)

    # A kill while writing the next checkpoint leaves it half-written: --resume must skip it.
    partial = killed_dir / f"checkpoint-{step + SAVE_STEPS}"
    if not partial.exists():
        partial.mkdir()
        (partial / "model.safetensors").write_bytes(b"\0" * 100)

    resumed = subprocess.run(
        [*command, *_train_argv(backbone_dir, killed_dir, *options, "--resume")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert full.wait(timeout=600) == 0, (tmp_path / "full.log").read_text()[-3000:]
    for log in logs.values():
        log.close()

    final = _logits(killed_dir)
    torch.testing.assert_close(final, _logits(full_dir), atol=1e-5, rtol=0)
    assert (final - checkpoint_logits).abs().max() > 1e-3, "the resumed run trained past the checkpoint"
    state = json.loads((killed_dir / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == MAX_STEPS
    assert json.loads((killed_dir / "metrics.json").read_text())["settings"]["seed"] == 7
    code, _, err = run(capsys, "evaluate", killed_dir, "--data", data, "--output", tmp_path / "s.json")
    assert code == 0, err


# --------------------------------------------------------------------------------------------
# Several processes: torchrun, gloo on CPU
# --------------------------------------------------------------------------------------------


def _torchrun_available() -> bool:
    return (
        importlib.util.find_spec("torch.distributed.run") is not None
        and torch.distributed.is_available()
        and torch.distributed.is_gloo_available()
    )


needs_torchrun = pytest.mark.skipif(
    not _torchrun_available(), reason="torch.distributed with gloo (torchrun) is unavailable"
)


def _torchrun(*argv, timeout=600):
    # `python -m torch.distributed.run` is the `torchrun` script, run by this interpreter.
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    command += ["-m", "hf_layer_tokclf", *map(str, argv)]
    return subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=timeout)


@needs_torchrun
def test_torchrun_two_processes_train_a_model_that_loads_and_scores(backbone_dir, tmp_path, capsys):
    from hf_layer_tokclf.base.outputs import RUN_OUTPUTS, claim_output_dir

    output_dir = tmp_path / "ddp"
    with claim_output_dir(output_dir, RUN_OUTPUTS) as claim:  # an older run's files, listed in its manifest
        (output_dir / "model-00001-of-00002.safetensors").write_text("from an older run")
        (output_dir / "checkpoint-99").mkdir()
        claim.finish()
    (output_dir / "notes.txt").write_text("mine")
    argv = _train_argv(
        backbone_dir,
        output_dir,
        "--validation-file",
        NCBI / "devel.tsv",
        "--max-eval-samples",
        "16",
        "--per-device-train-batch-size",
        "4",
        "--num-train-epochs",
        "1",
        "--keep-checkpoints",
        "--overwrite-output-dir",
        "--ddp-backend",
        "gloo",
        "--use-cpu",
    )
    proc = _torchrun(*argv)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # Rank 0 deleted the older run's files before anyone wrote, and nothing else; the other rank deleted nothing.
    assert not (output_dir / "model-00001-of-00002.safetensors").exists()
    assert (output_dir / "notes.txt").read_text() == "mine"
    # 64 sentences, 4 per process, 2 processes: 8 steps in the epoch (one process would take 16).
    assert [p.name for p in output_dir.glob("checkpoint-*")] == ["checkpoint-8"]
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["eval_f1"] <= 1.0
    model, _ = load_model(output_dir)
    assert type(model).__name__ == "BertForLayerTokenClassification" and len(model.bert.encoder.layer) == 2
    data = tmp_path / "d.tsv"
    data.write_text("\n\n".join((NCBI / "test.tsv").read_text().split("\n\n")[:16]) + "\n")
    code, out, err = run(capsys, "evaluate", output_dir, "--data", data, "--output", tmp_path / "s.json")
    assert code == 0, err
    assert "overall" in out and 0.0 <= json.loads((tmp_path / "s.json").read_text())["eval_f1"] <= 1.0


@needs_torchrun
def test_torchrun_refuses_a_non_empty_output_dir_on_every_process(backbone_dir, tmp_path):
    output_dir = tmp_path / "busy"
    output_dir.mkdir()
    (output_dir / "notes.txt").write_text("mine")
    proc = _torchrun(*_train_argv(backbone_dir, output_dir, "--max-steps", "1", "--use-cpu"), timeout=300)
    assert proc.returncode != 0
    assert "is not empty; pass --overwrite-output-dir" in proc.stderr  # and no process hangs
    assert [p.name for p in output_dir.iterdir()] == ["notes.txt"]


def test_atomic_writes_get_the_mode_a_plain_open_would_give(tmp_path):
    """Not mkstemp's private 0600: the umask's mode for a new file, the old file's mode when replacing."""
    from hf_layer_tokclf.base.files import atomic_writer

    old_umask = os.umask(0o022)
    try:
        with atomic_writer(tmp_path / "new.json") as f:
            f.write("{}")
        assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o644
        (tmp_path / "shared.json").write_text("old")
        os.chmod(tmp_path / "shared.json", 0o664)
        with atomic_writer(tmp_path / "shared.json") as f:
            f.write("new")
        assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o664
        assert (tmp_path / "shared.json").read_text() == "new"
    finally:
        os.umask(old_umask)
