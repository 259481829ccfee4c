"""The files and habits users already have, end to end on MiniLM and NCBI-disease: CoNLL found by extension and
content, every label scheme written back as trained, JSON lines with integer labels and other field names,
run_ner.py's option spellings, documents that keep their ids, and continuing from a model with other labels."""

import json

import datasets
import pytest
from conftest import LABELS, NCBI, conll_slice

from hf_layer_tokclf.cli.main import main
from hf_layer_tokclf.cli.predict import predict_command
from hf_layer_tokclf.cli.train import train_command, train_parser
from hf_layer_tokclf.formats.conll import read_conll
from hf_layer_tokclf.formats.labels import from_iob2
from hf_layer_tokclf.formats.lines import DataError
from hf_layer_tokclf.formats.loading import load_sentences
from hf_layer_tokclf.running.loading import load_model
from hf_layer_tokclf.running.sentences import predict_sentences
from hf_layer_tokclf.running.texts import predict_texts
from hf_layer_tokclf.training.arguments import DataArguments
from hf_layer_tokclf.training.splits import head_labels, read_splits

IOBES = ["O", "B-Disease", "I-Disease", "E-Disease", "S-Disease"]


@pytest.fixture(scope="module")
def expected(trained):
    """The trained model's labels for the first 40 NCBI test sentences."""
    model, tokenizer = load_model(trained[0])
    sentences = load_sentences(str(NCBI / "test.tsv"))[:40]
    return sentences, predict_sentences(model, tokenizer, sentences)


def conll_out(path):
    return [line.split("\t") for line in path.read_text().splitlines() if line]


def test_predict_finds_conll_by_extension_and_content(trained, expected, tmp_path, capsys):
    sentences, predicted = expected
    flat = [label for row in predicted for label in row]
    gold = [label for s in sentences for label in s.labels]
    inputs = {
        "gold.tsv": conll_slice(tmp_path / "gold.tsv", 40),  # extension, with a gold column
        "tokens.txt": conll_slice(tmp_path / "tokens.txt", 40, labeled=False),  # content: one token per line
        "export.dat": conll_slice(tmp_path / "export.dat", 40),  # content: tab columns
    }
    for name, path in inputs.items():
        out = tmp_path / f"{name}.out"
        assert main(["predict", str(trained[0]), "--input", str(path), "--output", str(out), "--no-progress"]) == 0
        rows = conll_out(out)
        assert [row[-1] for row in rows] == flat, name
        assert [row[1] for row in rows] == (gold if name != "tokens.txt" else flat), name  # gold kept where given
    capsys.readouterr()
    # Text mode on a CoNLL file is refused, naming the option, before any work.
    assert main(["predict", str(trained[0]), "--input", str(inputs["tokens.txt"]), "--input-format", "text"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "tokens.txt" in error and "--input-format conll" in error


def test_predict_conll_whose_last_column_is_not_labels_has_no_gold_column(trained, expected, tmp_path):
    sentences, predicted = expected
    path = tmp_path / "pos.tsv"  # token and part of speech: predicted as unlabeled CoNLL
    path.write_text("\n\n".join("\n".join(f"{token}\tNN" for token in s.tokens) for s in sentences) + "\n")
    out = tmp_path / "out.tsv"
    assert main(["predict", str(trained[0]), "--input", str(path), "--output", str(out), "--no-progress"]) == 0
    rows = conll_out(out)
    assert {len(row) for row in rows} == {2}
    assert [row[1] for row in rows] == [label for row in predicted for label in row]


def test_predict_reads_conllu(trained, expected, tmp_path):
    sentences, predicted = expected
    lines = []
    for number, sentence in enumerate(sentences):
        lines += [f"# sent_id = {number}", f"# text = {' '.join(sentence.tokens)}"]
        for index, (token, label) in enumerate(zip(sentence.tokens, sentence.labels, strict=True), start=1):
            if index == 2:  # a multiword-token range and an empty node, as UD files have
                lines += [f"2-3\t{token}+\t_\t_\t_\t_\t_\t_\t_\t_", "1.1\tnull\t_\t_\t_\t_\t_\t_\t_\t_"]
            lines.append(f"{index}\t{token}\t_\tX\t_\t_\t0\tdep\t_\tNER={label}")
        lines.append("")
    path = tmp_path / "test.conllu"
    path.write_text("\n".join(lines) + "\n")
    assert [s.tokens for s in read_conll(path)] == [s.tokens for s in sentences]
    out = tmp_path / "out.tsv"
    assert main(["predict", str(trained[0]), "--input", str(path), "--output", str(out), "--no-progress"]) == 0
    assert [row[-1] for row in conll_out(out)] == [label for row in predicted for label in row]


def test_predict_jsonl_documents_keep_their_ids_and_fields(trained, tmp_path):
    sentences = load_sentences(str(NCBI / "test.tsv"))[:24]
    texts = [" ".join(" ".join(s.tokens) for s in sentences[i : i + 3]) for i in range(0, 24, 3)]
    records = [{"id": f"PMID{1000 + i}", "abstract": text, "year": 2000 + i} for i, text in enumerate(texts)]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "entities.jsonl"
    argv = ["predict", str(trained[0]), "--input", str(path), "--output", str(out), "--no-progress"]
    assert main([*argv, "--text-column-name", "abstract"]) == 0
    model, tokenizer = load_model(trained[0])
    entities = list(predict_texts(model, tokenizer, texts))
    assert sum(map(len, entities)) > 5
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written == [{**r, "entities": e} for r, e in zip(records, entities, strict=True)]
    # The page shows every entity of every document, titled by its id.
    page = tmp_path / "entities.html"
    assert main([*argv[:-3], "--output", str(page), "--text-column-name", "abstract", "--format", "html"]) == 0
    html = page.read_text()
    assert all(r["id"] in html for r in records)
    assert all(e["word"] in html.lower() for found in entities for e in found)
    # Without the field named, the error names the line and the option.
    with pytest.raises(DataError, match=r"docs\.jsonl, line 1: .*--text-column-name"):
        predict_command([str(trained[0]), "--input", str(path), "--output", str(tmp_path / "x.jsonl")])


def test_predict_jsonl_word_lists_get_predictions(trained, expected, tmp_path):
    sentences, predicted = expected
    path = tmp_path / "words.jsonl"
    path.write_text("".join(json.dumps({"id": i, "tokens": s.tokens}) + "\n" for i, s in enumerate(sentences)))
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(trained[0]), "--input", str(path), "--output", str(out), "--no-progress"]) == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in written] == list(range(len(sentences)))
    assert [r["predictions"] for r in written] == predicted


@pytest.fixture(scope="module")
def iobes_data(tmp_path_factory):
    """NCBI slices in IOBES, as `datasets` writes them: a save_to_disk folder with a ClassLabel, and to_json files
    with integer ids under other column names (words / tags)."""
    root = tmp_path_factory.mktemp("iobes")
    features = datasets.Features(
        {
            "words": datasets.Sequence(datasets.Value("string")),
            "tags": datasets.Sequence(datasets.ClassLabel(names=IOBES)),
        }
    )
    splits = {}
    for split, file, count in (("train", "train.tsv", 96), ("validation", "devel.tsv", 32), ("test", "test.tsv", 32)):
        sentences = read_conll(NCBI / file)[:count]
        rows = {"words": [s.tokens for s in sentences], "tags": [from_iob2(s.labels, "IOBES") for s in sentences]}
        splits[split] = datasets.Dataset.from_dict(rows, features=features)
        splits[split].to_json(str(root / f"{split}.jsonl"))
    datasets.DatasetDict(splits).save_to_disk(str(root / "dataset"))
    return root


def test_train_with_run_ner_spellings_on_iobes_ids_writes_iobes(iobes_data, minilm_path, tmp_path, capsys):
    out = tmp_path / "model"
    argv = ["train", "--model_name_or_path", minilm_path, "--output_dir", str(out)]
    argv += [
        f"--{split}_file={iobes_data / f'{name}.jsonl'}"
        for split, name in (("train", "train"), ("validation", "validation"), ("test", "test"))
    ]
    argv += ["--text_column_name", "words", "--label_column_name", "tags", "--label_names", str(iobes_data / "dataset")]
    argv += ["--max_seq_length", "64", "--label_all_tokens", "--hidden_layer", "2", "--num_train_epochs", "4"]
    argv += ["--per_device_train_batch_size", "8", "--learning_rate", "3e-4", "--disable_tqdm", "true"]
    assert main(argv) == 0
    assert "label scheme: IOBES" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["label_scheme"] == "IOBES" and list(config["id2label"].values()) == LABELS
    settings = json.loads((out / "metrics.json").read_text())["settings"]
    assert settings["label_scheme"] == "IOBES" and settings["max_length"] == 64 and settings["label_all_subwords"]
    # run_ner.py's predictions file: tokens, gold and predicted labels, in the data's scheme.
    rows = conll_out(out / "test_predictions.conll")
    test = datasets.load_from_disk(str(iobes_data / "dataset"))["test"]
    assert [row[0] for row in rows] == [w for words in test["words"] for w in words]
    assert [row[1] for row in rows] == [IOBES[t] for tags in test["tags"] for t in tags]
    assert {row[2] for row in rows} <= set(IOBES) and any(row[2][:2] in ("E-", "S-") for row in rows)
    # predict on CoNLL writes the model's scheme too, and evaluate --predictions as well.
    data = conll_slice(tmp_path / "test.tsv", 32)
    predicted = tmp_path / "predicted.tsv"
    assert main(["predict", str(out), "--input", str(data), "--output", str(predicted), "--no-progress"]) == 0
    model, tokenizer = load_model(out)
    iob2 = predict_sentences(model, tokenizer, load_sentences(str(data)))
    assert [row[-1] for row in conll_out(predicted)] == [label for row in iob2 for label in from_iob2(row, "IOBES")]
    evaluated = tmp_path / "evaluated.tsv"
    argv = ["evaluate", str(out), "--data", str(data), "--output", str(tmp_path / "e.json"), "--max-length", "64"]
    assert main([*argv, "--predictions", str(evaluated)]) == 0
    assert conll_out(evaluated) == rows
    # evaluate reads the same test sentences from the integer JSON lines, named as train read them.
    scores = tmp_path / "jsonl.json"
    argv = ["evaluate", str(out), "--data", str(iobes_data / "test.jsonl"), "--output", str(scores)]
    argv += [
        "--text-column-name",
        "words",
        "--label-column-name",
        "tags",
        "--label-names",
        *IOBES,
        "--max-length",
        "64",
    ]
    assert main(argv) == 0
    assert json.loads(scores.read_text())["eval_f1"] == json.loads((tmp_path / "e.json").read_text())["eval_f1"]


def test_run_ner_spellings_parse_to_ours():
    argv = ["--model_name_or_path", "m", "--output_dir", "o", "--train_file", "t", "--max_seq_length", "128"]
    argv += ["--label_all_tokens", "--dataset_name", "d", "--dataset_config_name", "c", "--ignore_mismatched_sizes"]
    argv += ["--text_column_name", "words", "--label_column_name", "tags", "--label_names", "O", "B-X", "I-X"]
    model_args, data_args, _, training_args = train_parser().parse_args_into_dataclasses(argv)
    assert model_args.model == "m" and model_args.ignore_mismatched_sizes
    assert (data_args.max_length, data_args.label_all_subwords) == (128, True)
    assert (data_args.dataset_name, data_args.dataset_config_name) == ("d", "c")
    assert (data_args.text_column_name, data_args.label_column_name) == ("words", "tags")
    assert data_args.label_names == ["O", "B-X", "I-X"] and training_args.label_names is None  # ours, not the Trainer's
    assert "ClassLabel" in train_parser().format_help()  # --label-names' help is ours


def test_a_dataset_name_run_passes_its_config_name(monkeypatch):
    calls = []

    def fake_load_dataset(name, config_name=None, split=None, **options):
        calls.append((name, config_name, split))
        rows = {"tokens": [["BRCA1", "cancer"]], "ner_tags": [["O", "S-Disease"]]}
        return datasets.Dataset.from_dict(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    splits, scheme = read_splits(DataArguments(dataset_name="owner/corpus", dataset_config_name="bigbio_kb"))
    assert calls == [("owner/corpus", "bigbio_kb", split) for split in ("train", "validation", "test")]
    assert scheme == "IOBES" and splits["train"][0].labels == ["O", "B-Disease"]


def test_continuing_from_a_model_with_other_labels_needs_ignore_mismatched_sizes(trained, minilm_path, tmp_path):
    relabeled = tmp_path / "train.tsv"
    sentences = read_conll(NCBI / "train.tsv")[:48]
    relabeled.write_text(
        "\n\n".join(
            "\n".join(f"{t}\t{lab.replace('Disease', 'Dis')}" for t, lab in zip(s.tokens, s.labels, strict=True))
            for s in sentences
        )
        + "\n"
    )
    out = tmp_path / "continued"
    argv = ["train", "--model", str(trained[0]), "--train-file", str(relabeled), "--output-dir", str(out)]
    argv += ["--hidden-layer", "2", "--max-steps", "4", "--per-device-train-batch-size", "8", "--disable-tqdm", "true"]
    with pytest.raises(
        ValueError,
        match=r"trained with the labels O, B-Disease, I-Disease; the data has O, B-Dis, I-Dis\. Give --ignore-mismatch",
    ):
        train_command(argv[1:])
    assert not out.exists()  # refused before anything was written
    assert main([*argv, "--ignore-mismatched-sizes"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert list(config["id2label"].values()) == ["O", "B-Dis", "I-Dis"]
    # Same labels in another order keep the trained head's order (its weights stay meaningful).
    assert head_labels(str(trained[0]), ["O", "I-Disease", "B-Disease"]) == LABELS
    assert head_labels(minilm_path, ["O", "I-Disease", "B-Disease"]) == ["O", "I-Disease", "B-Disease"]  # no head
