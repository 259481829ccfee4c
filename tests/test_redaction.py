"""No secret reaches a file: tokens on the command line are hidden in everything written or uploaded."""

import logging

import pytest
from conftest import NCBI

from hf_layer_tokclf.base.redaction import REDACTED, redact_argv, redact_command
from hf_layer_tokclf.cli.main import main
from hf_layer_tokclf.sharing.model_card import render_model_card

TOKEN = "hf_FAKEtokenNEVERwritten0123456789"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--hub-token", TOKEN], ["--hub-token", REDACTED]),
        ([f"--hub-token={TOKEN}"], [f"--hub-token={REDACTED}"]),
        (["--hub_token", TOKEN, "--seed", "1"], ["--hub_token", REDACTED, "--seed", "1"]),
        (["--token", TOKEN], ["--token", REDACTED]),
        ([f"--api-secret={TOKEN}"], [f"--api-secret={REDACTED}"]),
        (["--db-password", TOKEN], ["--db-password", REDACTED]),
        (["--HUB-TOKEN", TOKEN], ["--HUB-TOKEN", REDACTED]),
        (["--seed", "1", "--output-dir", "x"], ["--seed", "1", "--output-dir", "x"]),
        (["--hub-token", "--seed", "1"], ["--hub-token", "--seed", "1"]),  # no value: nothing to hide
        (["--max-tokens", TOKEN], ["--max-tokens", REDACTED]),  # when in doubt, hide
    ],
)
def test_redact_argv(argv, expected):
    assert redact_argv(argv) == expected


def test_redact_command_string_and_list():
    assert TOKEN not in redact_command(f"hf-layer-tokclf train --hub-token {TOKEN} --seed 1")
    assert redact_command(["train", f"--token={TOKEN}"]) == f"train --token={REDACTED}"
    assert TOKEN not in redact_command(f"train 'unbalanced --hub-token {TOKEN}")
    assert redact_command(None) is None


def test_a_card_from_an_old_metrics_json_hides_the_token(tiny_dir):
    card = render_model_card(tiny_dir, {"settings": {"command": f"hf-layer-tokclf train --hub-token {TOKEN}"}})
    assert TOKEN not in card and REDACTED in card


def test_train_with_a_token_then_stage_writes_it_nowhere(tiny_dir, tmp_path, monkeypatch, capsys, caplog):
    """train --push-to-hub --hub-token: the run folder, checkpoints, card, metrics, staged folder and logs."""
    import hf_layer_tokclf.sharing.hub as hub
    import hf_layer_tokclf.training.train as training

    staging = tmp_path / "staged"
    pushed = {}

    def dry_run_push(model_dir, repo_id, **kwargs):  # the real staging and verification, no upload
        pushed.update(kwargs)
        return hub.push_to_hub(model_dir, repo_id, dry_run=True, staging_dir=staging)

    monkeypatch.setattr(hub, "check_online", lambda: None)
    monkeypatch.setattr(training, "push_to_hub", dry_run_push)
    output = tmp_path / "run"
    caplog.set_level(logging.INFO)
    argv = ["train", "--model", str(tiny_dir), "--hidden-layer", "1", "--output-dir", str(output)]
    argv += ["--train-file", str(NCBI / "train.tsv"), "--validation-file", str(NCBI / "devel.tsv")]
    argv += ["--test-file", str(NCBI / "test.tsv"), "--max-train-samples", "16", "--max-eval-samples", "8"]
    argv += ["--max-test-samples", "8", "--max-steps", "2", "--save-steps", "1", "--save-strategy", "steps"]
    argv += ["--eval-strategy", "steps", "--eval-steps", "1", "--keep-checkpoints", "--logging-steps", "1"]
    argv += ["--push-to-hub", "--hub-model-id", "someone/tiny", "--hub-token", TOKEN]
    assert main(argv) == 0
    assert pushed["token"] == TOKEN  # the push still gets it

    files = [p for folder in (output, staging) for p in folder.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"metrics.json", "README.md", "training_args.bin", "trainer_state.json", "config.json"} <= names
    leaked = [str(p) for p in files if TOKEN.encode() in p.read_bytes()]
    assert leaked == []
    assert f"--hub-token {REDACTED}" in (output / "metrics.json").read_text()
    assert f"--hub-token {REDACTED}" in (staging / "README.md").read_text()
    out, err = capsys.readouterr()
    assert TOKEN not in out + err + caplog.text
