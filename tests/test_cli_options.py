"""Every `train` option either does what it says or stops the run with one line naming it, before any work."""

import json

import pytest
from conftest import NCBI

from hf_layer_tokclf.cli.main import main


def train_argv(model_dir, output_dir, *extra, dev=True, test=True):
    argv = ["train", "--model", str(model_dir), "--hidden-layer", "1", "--output-dir", str(output_dir)]
    argv += ["--train-file", str(NCBI / "train.tsv"), "--max-train-samples", "16", "--max-steps", "2"]
    if dev:
        argv += ["--validation-file", str(NCBI / "devel.tsv"), "--max-eval-samples", "8"]
    if test:
        argv += ["--test-file", str(NCBI / "test.tsv"), "--max-test-samples", "8"]
    return [*argv, "--per-device-train-batch-size", "4", "--disable-tqdm", "true", *extra]


def refused(capsys, argv, *words):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if "error" in line.lower()]  # progress bars aside
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "dev", "words"),
    [
        (["--early-stopping-patience", "2"], False, ["--early-stopping-patience", "--validation-file"]),
        (["--max-length", "1000"], True, ["--max-length 1000", "max_position_embeddings=128"]),
        (["--resume-from-checkpoint", "nowhere/checkpoint-9"], True, ["--resume-from-checkpoint", "nowhere"]),
        (["--do-eval"], False, ["--do-eval", "--validation-file"]),
        (["--do-train", "false"], True, ["--do-train false"]),
        (["--do_eval=false"], True, ["--do-eval false"]),
    ],
)
def test_options_that_cannot_work_stop_before_any_work(tiny_dir, tmp_path, capsys, extra, dev, words):
    output = tmp_path / "run"
    refused(capsys, train_argv(tiny_dir, output, *extra, dev=dev, test=False), *words)
    assert not output.exists()


def test_do_predict_needs_test_data(tiny_dir, tmp_path, capsys):
    refused(capsys, train_argv(tiny_dir, tmp_path / "run", "--do-predict", test=False), "--do-predict", "--test-file")


def test_resume_from_checkpoint_continues_from_that_checkpoint(tiny_dir, tmp_path, capsys):
    """run_ner.py's switches are accepted when they agree; --resume-from-checkpoint PATH is honoured."""
    keep = ["--save-strategy", "steps", "--save-steps", "1", "--eval-strategy", "steps", "--eval-steps", "1"]
    keep += ["--keep-checkpoints", "--save-total-limit", "10", "--do-train", "--do-eval", "--do_predict"]
    first = tmp_path / "first"
    assert main(train_argv(tiny_dir, first, *keep)) == 0
    assert (first / "checkpoint-1").is_dir() and (first / "checkpoint-2").is_dir()

    second = tmp_path / "second"
    argv = train_argv(tiny_dir, second, *keep, "--resume-from-checkpoint", str(first / "checkpoint-1"))
    assert main(argv) == 0
    assert (second / "checkpoint-2").is_dir()
    assert not (second / "checkpoint-1").exists(), "step 1 came from the checkpoint, not from training again"
    state = json.loads((second / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    capsys.readouterr()


def test_evaluate_refuses_a_max_length_the_model_cannot_read(tiny_dir, tmp_path, capsys):
    output = tmp_path / "scores.json"
    argv = ["evaluate", str(tiny_dir), "--data", str(NCBI / "devel.tsv"), "--output", str(output)]
    refused(capsys, [*argv, "--max-length", "1000"], "--max-length 1000", "max_position_embeddings=128")
    assert not output.exists()
