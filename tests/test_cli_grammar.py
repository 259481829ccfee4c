"""One grammar for every subcommand (#27 items 4 and 5): the model given one way everywhere, run_ner.py's
underscore spellings, --no-progress, run_ner.py's options accepted or refused with a reason, and --help
that imports neither torch nor transformers."""

import json
import os
import subprocess
import sys

import pytest
from conftest import NCBI, REPO

from hf_layer_tokclf.cli import main as cli
from hf_layer_tokclf.cli.predict import predict_parser
from hf_layer_tokclf.cli.train import train_parser

MODEL_COMMANDS = ["train", "evaluate", "predict", "push", "sweep", "export-onnx", "export-transformers"]
# The rest of a valid command line after the model, per subcommand.
REST = {
    "train": ["--train-file", "t.tsv", "--output-dir", "o"],
    "evaluate": ["--data", "d.tsv"],
    "predict": ["--text", "x"],
    "push": ["--repo-id", "me/model"],
    "sweep": ["--train-file", "t.tsv", "--validation-file", "d.tsv", "--output-dir", "o"],
    "export-onnx": ["out"],
    "export-transformers": ["out"],
}


def parse(command, argv):
    """The parsed options of ``hf-layer-tokclf COMMAND ARGV`` (train: its four dataclasses)."""
    parser = cli.PARSERS[command]()
    if command == "train":
        return parser.parse_args_into_dataclasses(argv)
    return parser.parse_args(argv)


def model_of(command, argv):
    parsed = parse(command, argv)
    return parsed[0].model if command == "train" else parsed.model


def parse_error(capsys, command, argv):
    with pytest.raises(SystemExit) as exit_info:
        parse(command, argv)
    assert exit_info.value.code == 2
    return " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("command", MODEL_COMMANDS)
@pytest.mark.parametrize("spelling", [None, "--model", "--model_name_or_path", "--model-name-or-path"])
def test_the_model_is_given_the_same_way_everywhere(command, spelling):
    given = ["runs/m"] if spelling is None else [spelling, "runs/m"]
    if command.startswith("export"):  # MODEL OUT_DIR, or --model MODEL OUT_DIR
        assert model_of(command, [*given, *REST[command]]) == "runs/m"
    else:
        assert model_of(command, [*given, *REST[command]]) == "runs/m"
        assert model_of(command, [*REST[command], *given]) == "runs/m"


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_a_model_given_twice_is_refused(capsys, command):
    rest = REST[command]
    error = parse_error(capsys, command, ["runs/a", "--model", "runs/b", *rest])
    assert "runs/a" in error and "runs/b" in error and "not both" in error, error
    error = parse_error(capsys, command, ["--model", "runs/a", "--model_name_or_path", "runs/b", *rest])
    assert "runs/a" in error and "runs/b" in error and "once" in error, error


@pytest.mark.parametrize("command", ["evaluate", "predict", "push", "export-onnx", "export-transformers"])
def test_a_missing_model_is_named(capsys, command):
    rest = REST[command] if not command.startswith("export") else []
    error = parse_error(capsys, command, rest)
    assert "MODEL" in error and "--model" in error, error


def test_train_and_sweep_default_to_the_packaged_model():
    from hf_layer_tokclf.training.arguments import default_backbone

    assert model_of("train", REST["train"]) == default_backbone()
    assert model_of("sweep", REST["sweep"]) is None  # run_sweep's default, the same packaged model


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_every_dashed_option_has_its_underscore_spelling(command):
    parser = cli.PARSERS[command]()
    parser.add_underscore_spellings()  # as every parse does first
    dashed = {name for action in parser._actions for name in action.option_strings if "-" in name[2:]}
    assert dashed, command
    for name in dashed:
        underscored = "--" + name[2:].replace("-", "_")
        assert parser._option_string_actions[underscored] is parser._option_string_actions[name], name


def test_underscore_spellings_parse_in_predict_and_evaluate():
    args = parse("predict", ["m", "--text", "x", "--batch_size", "4", "--text_column_name", "body", "--no_progress"])
    assert (args.batch_size, args.text_column_name, args.no_progress) == (4, "body", True)
    args = parse("evaluate", ["m", "--data", "d", "--label_column_name", "tags", "--max_length", "64"])
    assert (args.label_column_name, args.max_length) == ("tags", 64)


def test_underscore_spellings_stay_out_of_help():
    """Each option is listed once, as --like-this; the description says the underscore spelling works."""
    text = predict_parser().format_help()
    assert "--batch-size" in text and "--batch_size" not in text and "--like_this" in text


@pytest.mark.parametrize(
    "spelling", [["--no-progress"], ["--no_progress"], ["--disable-tqdm"], ["--disable_tqdm", "true"]]
)
def test_no_progress_everywhere(spelling):
    *_, training_args = parse("train", [*REST["train"], *spelling])
    assert training_args.disable_tqdm is True
    assert parse("predict", ["m", "--text", "x", *spelling]).no_progress is True
    assert parse("sweep", [*REST["sweep"], *spelling]).no_progress is True
    assert parse("predict", ["m", "--text", "x"]).no_progress is False
    assert parse("train", REST["train"])[3].disable_tqdm is False


def test_disable_tqdm_false_keeps_progress():
    assert parse("train", [*REST["train"], "--disable-tqdm", "false"])[3].disable_tqdm is False


def test_run_ner_options_are_accepted_with_their_meaning():
    argv = [*REST["train"], "--max_predict_samples", "5", "--tokenizer_name", "tok", "--pad_to_max_length"]
    argv += ["--return_entity_level_metrics", "--token", "hf_secret_value_123"]
    model_args, data_args, run_args, _ = parse("train", argv)
    assert data_args.max_test_samples == 5
    assert model_args.tokenizer_name == "tok" and model_args.token == "hf_secret_value_123"
    assert data_args.pad_to_max_length is True and run_args.return_entity_level_metrics is True


@pytest.mark.parametrize(
    ("option", "words"),
    [
        (["--cache_dir", "c"], ["--cache-dir", "HF_HUB_CACHE"]),
        (["--model_revision", "v1"], ["--model-revision", "hf download"]),
    ],
)
def test_run_ner_options_refused_say_why(capsys, option, words):
    error = parse_error(capsys, "train", [*REST["train"], *option])
    for word in words:
        assert word in error, error


def test_return_entity_level_metrics_false_is_refused(tmp_path, capsys):
    argv = ["train", "--train-file", str(NCBI / "devel.tsv"), "--output-dir", str(tmp_path / "o")]
    code = cli.main([*argv, "--return_entity_level_metrics", "false"])
    err = capsys.readouterr().err
    assert code == 2 and "--return-entity-level-metrics false" in err and "per entity type" in err, err
    assert not (tmp_path / "o").exists()


def test_pad_to_max_length_pads_every_batch_to_max_length(tokenizer):
    from hf_layer_tokclf.training.trainer import data_collator

    features = [{"input_ids": [101, 7, 102], "attention_mask": [1, 1, 1], "labels": [-100, 0, -100]}]
    assert data_collator(tokenizer, 16, pad_to_max_length=True)(features)["input_ids"].shape == (1, 16)
    assert data_collator(tokenizer, 16, pad_to_max_length=False)(features)["input_ids"].shape == (1, 3)


def test_train_without_output_dir_refuses(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--train-file", str(NCBI / "train.tsv"), "--max-steps", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--output-dir" in err, err
    assert list(tmp_path.iterdir()) == []  # no ./trainer_output


def test_train_says_which_layer_and_keeps_the_token_out_of_files(minilm_path, tmp_path, capsys, monkeypatch):
    """No --hidden-layer: train names the layer it reads. --token (run_ner.py's Hub token) is written nowhere."""
    secret = "hf_notARealTokenButLongEnough42"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    output = tmp_path / "run"
    argv = ["train", minilm_path, "--output_dir", str(output), "--train_file", str(NCBI / "train.tsv")]
    argv += ["--max_train_samples", "8", "--max_steps", "1", "--no-progress", "--keep-checkpoints"]
    argv += ["--token", secret]  # the one step is an epoch: its checkpoint holds training_args.bin
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "reading hidden_states[6], the last of 6 layers" in out and "--hidden-layer" in out, out
    assert "HF_TOKEN" not in os.environ  # the token was the run's only
    files = [path for path in output.rglob("*") if path.is_file()]
    assert any(path.name == "training_args.bin" for path in files)
    assert all(secret.encode() not in path.read_bytes() for path in files)
    assert "--token REDACTED" in json.loads((output / "metrics.json").read_text())["settings"]["command"]
    assert "--token REDACTED" in (output / "README.md").read_text()


HELP_CHECK = """
import sys
sys.argv = {argv!r}
try:
    import runpy
    runpy.run_module("hf_layer_tokclf", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
heavy = sorted(name for name in ("torch", "transformers", "numpy", "datasets") if name in sys.modules)
print("HEAVY:", ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize("command", [[], *([name] for name in cli.COMMANDS)])
def test_help_imports_neither_torch_nor_transformers(command):
    """--help of every subcommand, and of the command itself, in a fresh process: no torch, no transformers."""
    argv = ["hf_layer_tokclf", *command, "--help"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", HELP_CHECK.format(argv=argv)], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert "usage" in done.stdout.lower() or "hf-layer-tokclf <command>" in done.stdout, done.stderr
    assert "HEAVY: \n" in done.stderr or done.stderr.rstrip().endswith("HEAVY:"), done.stderr[-2000:]


def test_train_help_names_the_trainer_options_and_lists_them_on_request(capsys):
    text = train_parser().format_help()
    assert "--help-trainer" in text and "TrainingArguments" in text and "--hidden-layer" in text
    with pytest.raises(SystemExit):
        parse("train", ["--help-trainer"])
    assert "--gradient_accumulation_steps" in capsys.readouterr().out


def test_readme_lists_every_option_of_every_subcommand():
    from hf_layer_tokclf.cli.reference import current_block, option_block

    readme = (REPO / "README.md").read_text()
    assert current_block(readme) == option_block(), "run `python -m hf_layer_tokclf.cli.reference`"
    for command in MODEL_COMMANDS:
        for action in cli.PARSERS[command]()._actions:
            for name in action.option_strings:
                if "_" not in name and name not in ("-h",):
                    assert f"`{name}" in option_block(), (command, name)


def test_light_defaults_match_the_modules_that_define_them():
    """`defaults` repeats two tuples that live where --help cannot import them: they must stay equal."""
    from transformers.pipelines.token_classification import AggregationStrategy

    from hf_layer_tokclf.base import defaults
    from hf_layer_tokclf.model import pipeline_layer_tokclf

    assert tuple(strategy.value for strategy in AggregationStrategy) == defaults.STRATEGIES
    assert defaults.DECODINGS == pipeline_layer_tokclf.DECODINGS


@pytest.mark.parametrize(
    "command, typo, meant",
    [
        ("predict", "--ouptut", "--output"),
        ("evaluate", "--predictons", "--predictions"),
        ("sweep", "--toleranse", "--tolerance"),
        ("train", "--hiden-layer", "--hidden-layer"),
        ("train", "--learnig-rate", "--learning-rate"),  # a TrainingArguments option
        ("train", "--learnig_rate", "--learning_rate"),  # run_ner.py's spelling, answered in kind
    ],
)
def test_a_mistyped_option_is_named_with_the_one_meant_in_two_lines(capsys, command, typo, meant):
    with pytest.raises(SystemExit) as exit_info:
        parse(command, [*REST[command], typo, "3"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert f"{typo}" in err and f"did you mean {meant}?" in err, err
    assert len(err.strip().splitlines()) == 2, err  # the error and a one-line usage, not train's 30-line synopsis
    assert f"usage: hf-layer-tokclf {command} [options]" in err and "--help lists every option" in err
