"""The command line: train / evaluate / predict through `main`, and every bad input it must name."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import NCBI, TEXT

from hf_layer_tokclf.cli.main import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_documents_every_option(capsys):
    """train --help: the package's and run_ner.py's options; --help-trainer: every TrainingArguments option."""
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    ours = ["--model", "--hidden-layer", "--layer-pooling", "--train-file", "--validation-file", "--test-file"]
    ours += ["--output-dir", "--max-length", "--early-stopping-patience", "--overwrite-output-dir", "--resume"]
    for option in ours:
        assert option in text, option
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help-trainer"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--num_train_epochs",
        "--max_steps",
        "--learning_rate",
        "--per_device_train_batch_size",
        "--seed",
        "--gradient_accumulation_steps",
        "--weight_decay",
        "--warmup_steps",
        "--bf16",
        "--fp16",
    ):
        assert option in text, option
    for command in ("evaluate", "predict"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--output" in capsys.readouterr().out


def test_python_dash_m_and_usage():
    proc = subprocess.run([sys.executable, "-m", "hf_layer_tokclf", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "train" in proc.stdout and "evaluate" in proc.stdout


@pytest.mark.parametrize("argv", [["--help"], ["predict", "--help"]], ids=["usage", "predict-help"])
def test_help_into_a_closed_pipe_ends_quietly(argv):
    """`hf-layer-tokclf --help | head`: the reader is gone before the first write (issue 27 item 5)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hf_layer_tokclf", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    proc.stdout.close()  # before Python has even started: the first write meets a closed pipe
    err = proc.stderr.read()
    assert proc.wait() in (0, 141), err  # 141: as a tool that SIGPIPE ended (`yes | head` under pipefail)
    assert err == ""


def test_predict_into_a_pipe_its_reader_leaves_ends_quietly(tiny_dir, tmp_path):
    """`predict ... | head -1`: the first document is read, then the reader leaves while chunks are still written."""
    source = tmp_path / "docs.txt"
    source.write_text(f"{TEXT}\n" * 200)
    argv = ["predict", str(tiny_dir), "--input", str(source), "--chunk-size", "1", "--no-progress"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hf_layer_tokclf", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert json.loads(proc.stdout.readline())["text"] == TEXT
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait() == 141, err
    assert "Broken pipe" not in err and "Traceback" not in err and "Exception ignored" not in err


def test_train_says_its_new_head_in_one_line_and_prints_the_next_commands(tmp_path, capsys, logs):
    """Not transformers' LOAD REPORT of MISSING classifier rows; then evaluate, predict and push, ready to paste."""
    from conftest import conll_slice

    data = conll_slice(tmp_path / "my data.tsv", 8)
    output_dir = tmp_path / "my run"
    argv = ["--train-file", str(data), "--test-file", str(data), "--output-dir", str(output_dir)]
    code, out, err = run(capsys, "train", *argv, "--hidden-layer", "1", "--max-steps", "1", "--disable-tqdm", "true")
    assert code == 0, err
    assert "a new classification head (3 labels) on hidden_states[1] of " in out
    assert "LOAD REPORT" not in logs.getvalue() and "MISSING" not in logs.getvalue()
    quoted, test = shlex.quote(str(output_dir)), shlex.quote(str(data))
    assert out.endswith(
        "next:\n"
        f"  hf-layer-tokclf evaluate {quoted} --data {test}\n"
        f"  hf-layer-tokclf predict {quoted} --text 'A sentence to tag.'\n"
        f"  hf-layer-tokclf push {quoted} --repo-id YOUR-NAME/MODEL-NAME\n"
    )
    code, _, err = run(capsys, *shlex.split(out.splitlines()[-3])[1:])  # the evaluate line runs as printed
    assert code == 0, err


def test_evaluate_prints_a_table_and_writes_json(trained, tmp_path, capsys):
    model_dir, metrics = trained
    data = tmp_path / "test64.tsv"
    data.write_text("\n\n".join((NCBI / "test.tsv").read_text().split("\n\n")[:64]) + "\n")
    output, predictions = tmp_path / "scores.json", tmp_path / "pred.conll"
    code, out, _ = run(
        capsys,
        "evaluate",
        str(model_dir),
        "--data",
        str(data),
        "--output",
        str(output),
        "--predictions",
        str(predictions),
    )
    assert code == 0
    assert "Disease" in out and "overall" in out
    scores = json.loads(output.read_text())
    assert scores["eval_f1"] == pytest.approx(metrics["test_f1"])  # the same 64 test sentences
    lines = [line.split("\t") for line in predictions.read_text().splitlines() if line]
    assert len(lines) == sum(1 for line in data.read_text().splitlines() if line.strip())
    assert all(len(columns) == 3 for columns in lines)
    # Never overwritten without being asked.
    code, _, err = run(capsys, "evaluate", str(model_dir), "--data", str(data), "--output", str(output))
    assert code == 2 and f"{output} already exists; pass --overwrite" in err
    assert run(capsys, "evaluate", str(model_dir), "--data", str(data), "--output", str(output), "--overwrite")[0] == 0


def test_predict_text_gives_entities_with_offsets(trained, tmp_path, capsys):
    model_dir, _ = trained
    texts = [TEXT, "", "The patient had cystic fibrosis and breast cancer."]
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(texts) + "\n")
    output = tmp_path / "entities.jsonl"
    code, _, _ = run(capsys, "predict", str(model_dir), "--input", str(source), "--output", str(output))
    assert code == 0
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["text"] for r in records] == texts
    assert records[1]["entities"] == []
    found = [e for r in records for e in r["entities"]]
    assert found, "the trained model should find at least one disease"
    for record in records:
        for entity in record["entities"]:
            assert set(entity) == {"entity_group", "score", "word", "start", "end"}
            assert record["text"][entity["start"] : entity["end"]].lower() == entity["word"].replace(" ##", "").replace(
                "##", ""
            )
            assert 0.0 <= entity["score"] <= 1.0
    code, out, _ = run(capsys, "predict", str(model_dir), "--text", TEXT)
    assert code == 0 and json.loads(out)["text"] == TEXT


def test_predict_conll_adds_a_label_column(trained, tmp_path, capsys):
    model_dir, _ = trained
    source = tmp_path / "tokens.txt"
    source.write_text("Ataxia\ntelangiectasia\nis\nrare\n.\n\nBRCA1\nmutations\n")
    code, out, _ = run(capsys, "predict", str(model_dir), "--input", str(source), "--input-format", "conll")
    assert code == 0
    rows = [line.split("\t") for line in out.splitlines() if line]
    assert [r[0] for r in rows] == ["Ataxia", "telangiectasia", "is", "rare", ".", "BRCA1", "mutations"]
    assert all(len(r) == 2 and r[1] in {"O", "B-Disease", "I-Disease"} for r in rows)


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return str(path)


@pytest.mark.parametrize(
    ("name", "content", "flag", "message"),
    [
        ("dev.tsv", "Cancer\tB-Chemical\n", "--validation-file", "dev.tsv, line 1: label 'B-Chemical' never appears"),
        ("test.tsv", "a\tO\nCancer\tB-Neoplasm\n", "--test-file", "test.tsv, line 2: label 'B-Neoplasm'"),
        ("train.tsv", "Cancer\tB-Disease\nonecolumn\n", "--train-file", "train.tsv, line 2"),
        ("train.tsv", "", "--train-file", "train.tsv"),
        ("train.tsv", b"Cancer\tB-Disease\ncaf\xe9\tO\n", "--train-file", "train.tsv"),
        (
            "train.jsonl",
            '{"tokens": ["a"], "ner_tags": ["O"]}\n{"tokens": ["b"]\n',
            "--train-file",
            "train.jsonl, line 2",
        ),
        ("missing.tsv", None, "--train-file", "missing.tsv"),
    ],
)
def test_bad_input_stops_with_an_error_naming_file_line_and_value(tmp_path, capsys, name, content, flag, message):
    good = write(tmp_path / "good.tsv", "Cancer\tB-Disease\nrisk\tO\n\nAPC\tO\n")
    path = tmp_path / name
    if content is not None:
        write(path, content)
    files = {"--train-file": good, "--validation-file": good, "--test-file": good, flag: str(path)}
    argv = ["train", "--output-dir", str(tmp_path / "out"), "--max-steps", "1"]
    for option, value in files.items():
        argv += [option, value]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1, "one line, no traceback"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_non_utf8_error_names_the_line(tmp_path, capsys):
    path = write(tmp_path / "latin1.tsv", b"Cancer\tB-Disease\nrisk\tO\n\ncaf\xe9\tO\n")
    code, _, err = run(capsys, "evaluate", "unused", "--data", path)
    assert code == 2 and "latin1.tsv" in err and "line 4" in err and "UTF-8" in err


def test_unknown_command(capsys):
    assert main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err


@pytest.mark.parametrize("name, content", [("empty.txt", ""), ("blank.jsonl", "\n\n"), ("empty", "")])
def test_predict_on_an_empty_input_warns_and_writes_the_usual_empty_output(tiny_dir, tmp_path, capsys, name, content):
    """No document at all is most likely the wrong file: said on stderr, naming it; the output is still written."""
    import xml.etree.ElementTree as ElementTree

    source = write(tmp_path / name, content)
    code, out, err = run(capsys, "predict", str(tiny_dir), "--input", source, "--no-progress")
    assert code == 0, err
    assert out == "" and f"warning: found no document in {source}" in err
    output = tmp_path / f"{name}.bioc.xml"
    code, _, err = run(capsys, "predict", str(tiny_dir), "--input", source, "--output", str(output), "--no-progress")
    assert code == 0, err
    assert f"warning: found no document in {source}" in err
    assert ElementTree.parse(output).getroot().tag == "collection" and not ElementTree.parse(output).findall(
        ".//document"
    )


def test_predict_on_an_empty_standard_input_warns(tiny_dir, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    code, out, err = run(capsys, "predict", str(tiny_dir), "--no-progress")
    assert code == 0, err
    assert out == "" and "warning: found no document in standard input" in err


def test_evaluate_an_unfinished_output_dir(tmp_path, capsys):
    (tmp_path / "checkpoint-10").mkdir()
    data = write(tmp_path / "d.tsv", "Cancer\tB-Disease\n")
    code, _, err = run(capsys, "evaluate", str(tmp_path), "--data", data, "--output", str(tmp_path / "s.json"))
    assert code == 2 and "no model here" in err and "checkpoint-10" in err


def test_evaluate_a_hub_id_writes_its_scores_in_the_working_directory(tiny_dir, tmp_path, capsys, monkeypatch):
    """Not into ./owner/name/, a folder that `owner/name` would then load instead of the Hub's model."""
    from hf_layer_tokclf.running import loading

    loaded = loading.load_model(tiny_dir)
    monkeypatch.setattr(loading, "load_model", lambda name, **kwargs: loaded)  # the Hub is out of reach
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "test.tsv", "Cancer\tB-Disease\nrisk\tO\n")
    code, out, err = run(capsys, "evaluate", "owner/name", "--data", "test.tsv")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval_owner--name_test.json", "test.tsv"]
    assert json.loads((tmp_path / "eval_owner--name_test.json").read_text())["model"] == "owner/name"
    assert "eval_owner--name_test.json" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "MODEL", "--text", TEXT],
        ["evaluate", "MODEL", "--data", "d.tsv"],
        ["export-onnx", "MODEL", "out"],
        ["export-transformers", "MODEL", "out"],
        ["push", "MODEL", "--repo-id", "someone/model", "--dry-run"],
        ["sweep", "--model", "MODEL", "--train-file", "d.tsv", "--validation-file", "d.tsv", "--output-dir", "out"],
        ["train", "--model", "MODEL", "--train-file", "d.tsv", "--output-dir", "out"],
    ],
    ids=lambda argv: argv[0],
)
def test_a_mistyped_model_folder_is_no_such_folder_not_a_hub_error(tmp_path, capsys, monkeypatch, argv):
    """The README's placeholder runs/my-model, mistyped: runs/ exists, so it is a path, never a Hub id (issue 27)."""
    (tmp_path / "runs" / "my-model").mkdir(parents=True)
    (tmp_path / "runs" / "my-model" / "config.json").write_text("{}")
    write(tmp_path / "d.tsv", "Cancer\tB-Disease\nrisk\tO\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *[("runs/my-modle" if word == "MODEL" else word) for word in argv])
    assert code == 2, err
    assert err.startswith(f"hf-layer-tokclf {argv[0]}: error: no such folder: runs/my-modle")
    assert "did you mean runs/my-model?" in err and "huggingface.co" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.tsv", "runs"]  # nothing written


# --------------------------------------------------------------------------------------------
# Bad input gets a clear error, and the run goes on where it can
# --------------------------------------------------------------------------------------------


def test_a_text_line_that_is_not_utf8_is_named_and_skipped(tiny_dir, tmp_path, capsys):
    source = write(tmp_path / "abstracts.txt", b"First.\n" + "Caf\xe9 au lait.\n".encode("latin-1") + b"Third.\n")
    argv = ["predict", str(tiny_dir), "--input", str(source), "--input-format", "text", "--no-progress"]
    code, _, err = run(capsys, *argv, "--on-error", "stop")
    assert code == 2
    assert last_line(err) == (
        f"hf-layer-tokclf predict: error: {source}, line 2: not valid UTF-8 (byte 0xe9 at byte 4 of the line)"
    )
    output = tmp_path / "entities.jsonl"
    code, _, err = run(capsys, *argv, "--output", str(output))  # --on-error skip, the default
    assert code == 0, err
    assert [json.loads(line)["text"] for line in output.read_text().splitlines()] == ["First.", "Third."]
    summary = json.loads((tmp_path / "entities.jsonl.summary.json").read_text())
    assert (summary["records"], summary["documents"], summary["errors"]) == (3, 2, 1)
    assert summary["error_samples"] == [f"{source}, line 2: not valid UTF-8 (byte 0xe9 at byte 4 of the line)"]


def test_a_binary_input_is_refused_before_the_model_loads(tmp_path, capsys):
    image = write(tmp_path / "figure.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    for input_format in ("auto", "text", "pubmed"):
        code, _, err = run(capsys, "predict", "no-such-model", "--input", str(image), "--input-format", input_format)
        assert code == 2 and err.count("\n") == 1, err
        assert f"{image}: a binary file, not text" in err and "no-such-model" not in err


def test_a_record_the_writer_cannot_write_is_a_record_error(tiny_dir, tmp_path, capsys):
    # PubTator's PMID cannot hold a "|": that record is skipped and counted, the others written whole.
    source = tmp_path / "records.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": TEXT}) + "\n" for i in ("1", "12|3", "4")))
    output = tmp_path / "out.pubtator"
    argv = ["predict", str(tiny_dir), "--input", str(source), "--format", "pubtator", "--no-progress"]
    code, _, err = run(capsys, *argv, "--output", str(output), "--chunk-size", "1")
    assert code == 0, err
    problem = f"{source}, record 2: id '12|3' cannot be a PubTator PMID (|, tab, newline)"
    assert f"warning: skipped {problem}" in err
    assert [line.split("|")[0] for line in output.read_text().splitlines() if "|t|" in line] == ["1", "4"]
    summary = json.loads((tmp_path / "out.pubtator.summary.json").read_text())
    assert (summary["records"], summary["documents"], summary["errors"]) == (3, 2, 1)
    assert summary["error_samples"] == [problem]
    # --on-error stop: a clear error naming the record; what was written before it stays whole.
    stopped = tmp_path / "stopped.pubtator"
    code, _, err = run(capsys, *argv, "--output", str(stopped), "--chunk-size", "1", "--on-error", "stop")
    assert code == 2 and last_line(err) == f"hf-layer-tokclf predict: error: {problem}"
    assert Path(f"{stopped}.partial").read_text() == output.read_text().split("\n\n")[0] + "\n\n"


def test_ctrl_c_in_predict_says_what_was_kept_and_the_command_that_resumes(tiny_dir, tmp_path, capsys, monkeypatch):
    import hf_layer_tokclf.running.texts as texts

    real, calls = texts.task_logits, []

    def interrupted_on_the_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the model's run of chunk 2, document "b"
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(texts, "task_logits", interrupted_on_the_second_chunk)
    output = tmp_path / "out.jsonl"
    argv = ["predict", str(tiny_dir), "--text", "a", "--text", "b", "--output", str(output), "--chunk-size", "1"]
    code, _, err = interrupted(capsys, *argv)
    assert code == 130
    assert last_line(err).startswith(f"hf-layer-tokclf predict: interrupted; the partial output {output}.partial")
    assert last_line(err).endswith(f"the same command resumes it: {shlex.join(['hf-layer-tokclf', *argv])}")
    monkeypatch.setattr(texts, "task_logits", real)
    assert run(capsys, *argv)[0] == 0  # the command it printed goes on after the first chunk
    assert [json.loads(line)["text"] for line in output.read_text().splitlines()] == ["a", "b"]


def test_ctrl_c_in_train_says_resume_continues_from_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    import hf_layer_tokclf.training.train as training

    def train_until_interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", train_until_interrupted)
    data = write(tmp_path / "train.tsv", "Cancer\tB-Disease\n")
    argv = ["train", "--train-file", data, "--output-dir", str(tmp_path / "out")]
    code, _, err = interrupted(capsys, *argv)
    assert code == 130
    again = shlex.join(["hf-layer-tokclf", *argv, "--resume"])
    assert last_line(err).endswith(f"no checkpoint was saved in {tmp_path / 'out'} yet; this starts again: {again}")
    checkpoint = tmp_path / "out" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    code, _, err = interrupted(capsys, *argv)
    assert code == 130
    assert f"checkpoint {tmp_path / 'out' / 'checkpoint-4'} is kept" in last_line(err)
    assert last_line(err).endswith(f"--resume continues from it: {shlex.join(['hf-layer-tokclf', *argv, '--resume'])}")


def test_ctrl_c_in_a_command_that_keeps_nothing_says_so(tmp_path, capsys, monkeypatch):
    import hf_layer_tokclf.cli.main as cli

    def evaluate_until_interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "evaluate", evaluate_until_interrupted)
    code, _, err = interrupted(capsys, "evaluate", "model", "--data", "d.tsv")
    assert (code, err) == (130, "hf-layer-tokclf evaluate: interrupted; nothing was kept to resume from\n")


def last_line(err: str) -> str:
    """The CLI's one line about what went wrong (after progress bars, if any), with no traceback before it."""
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def interrupted(capsys, *argv):
    """`run`, where a KeyboardInterrupt that escapes `main` (a traceback for the user) fails the test."""
    try:
        return run(capsys, *argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped main as a KeyboardInterrupt (a traceback)")


def test_evaluate_names_an_unknown_label_as_the_file_writes_it_with_its_line(tiny_dir, tmp_path, capsys):
    from conftest import ncbi_changed

    data = ncbi_changed(tmp_path / "devel.tsv", "devel", 341, "I-Diseas")  # after B-Disease: B-Diseas in IOB2
    code, _, err = run(capsys, "evaluate", str(tiny_dir), "--data", str(data), "--output", str(tmp_path / "s.json"))
    assert code == 2
    assert f"{data}, line 341: label 'I-Diseas' never appears in the labels of {tiny_dir}" in err, err
    assert "Traceback" not in err and len([line for line in err.splitlines() if "hf-layer-tokclf" in line]) == 1


def test_max_batch_tokens_reaches_the_model_in_predict_and_evaluate(tiny_dir, tmp_path, capsys, monkeypatch):
    import hf_layer_tokclf.running.sentences as sentences
    import hf_layer_tokclf.running.texts as texts

    budgets = []
    task_logits = texts.task_logits

    def spy(*args, max_batch_tokens=None, **kwargs):
        budgets.append(max_batch_tokens)
        return task_logits(*args, max_batch_tokens=max_batch_tokens, **kwargs)

    monkeypatch.setattr(texts, "task_logits", spy)
    monkeypatch.setattr(sentences, "task_logits", spy)
    output = tmp_path / "out.jsonl"
    assert main(["predict", str(tiny_dir), "--text", TEXT, "--max-batch-tokens", "64", "--output", str(output)]) == 0
    assert budgets == [64] and json.loads(Path(f"{output}.summary.json").read_text())["max_batch_tokens"] == 64
    conll = tmp_path / "s.conll"
    conll.write_text("BRCA1\ncancer\n\nAtaxia\n\n", encoding="utf-8")
    assert main(["predict", str(tiny_dir), "--input", str(conll), "--max-batch-tokens", "96", "--no-progress"]) == 0
    data = ["--data", str(NCBI / "test.tsv"), "--output", str(tmp_path / "eval.json")]
    assert main(["evaluate", str(tiny_dir), *data, "--max-batch-tokens", "128"]) == 0
    assert budgets[1:] == [96, 128]
    capsys.readouterr()
    for bad in ("0", "-5", "many"):
        with pytest.raises(SystemExit):
            main(["predict", str(tiny_dir), "--text", TEXT, "--max-batch-tokens", bad])
        assert (
            f"error: argument --max-batch-tokens: {bad} is not a whole number of at least 1" in capsys.readouterr().err
        )
