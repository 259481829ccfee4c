"""Every command on every encoder family: train a few steps from a Hub-style checkpoint, then predict,
evaluate, sweep, export-onnx --quantize int8 (and predict with it) and stage + verify for the Hub."""

import json

import pytest
from conftest import NCBI, TEXT, conll_slice
from families import FAMILIES

from hf_layer_tokclf.cli.main import main
from hf_layer_tokclf.model.auto import FAMILIES as SUPPORTED
from hf_layer_tokclf.sharing.staging import stage
from hf_layer_tokclf.sharing.verification import verify

pytestmark = pytest.mark.parametrize("family", FAMILIES)
LABELS = {"O", "B-Disease", "I-Disease"}


@pytest.fixture
def trained(family, checkpoints, tmp_path):
    """`train --model CHECKPOINT` for 4 steps on 32 NCBI sentences, at layer 2 of 4."""
    output_dir = tmp_path / "model"
    argv = ["train", "--model", str(checkpoints[family]), "--output-dir", str(output_dir)]
    argv += ["--train-file", str(NCBI / "train.tsv"), "--validation-file", str(NCBI / "devel.tsv")]
    argv += ["--test-file", str(NCBI / "test.tsv"), "--max-train-samples", "32", "--max-eval-samples", "16"]
    argv += ["--max-test-samples", "16", "--max-steps", "4", "--per-device-train-batch-size", "8"]
    assert main([*argv, "--hidden-layer", "2", "--learning-rate", "1e-3"]) == 0
    return output_dir


def test_every_command_takes_every_family(family, trained, tmp_path, capsys):
    config = json.loads((trained / "config.json").read_text())
    assert config["model_type"] == f"{family}-layer-tokclf" and config["hidden_layer"] == 2
    metrics = json.loads((trained / "metrics.json").read_text())
    assert 0 <= metrics["test_f1"] <= 1 and metrics["settings"]["num_layers_used"] == 2
    capsys.readouterr()

    assert main(["predict", str(trained), "--text", TEXT, "--no-progress"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["text"] == TEXT
    for entity in record["entities"]:
        assert entity["entity_group"] == "Disease" and 0 <= entity["start"] < entity["end"] <= len(TEXT)

    data = conll_slice(tmp_path / "test16.tsv", 16)
    predictions = tmp_path / "torch.conll"
    argv = ["evaluate", str(trained), "--data", str(data), "--output", str(tmp_path / "eval.json")]
    assert main([*argv, "--predictions", str(predictions)]) == 0
    scores = json.loads((tmp_path / "eval.json").read_text())
    assert scores["eval_f1"] == pytest.approx(metrics["test_f1"])  # the same 16 sentences `train` scored
    torch_rows = [line.split("\t") for line in predictions.read_text().splitlines() if line]

    onnx_dir = tmp_path / "onnx"
    assert main(["export-onnx", str(trained), str(onnx_dir), "--quantize", "int8"]) == 0
    info = json.loads((onnx_dir / "onnx_export.json").read_text())
    with_types = bool(getattr(SUPPORTED[family].config_class(), "type_vocab_size", 0))
    assert ("token_type_ids" in info["inputs"]) == with_types and info["encoder_layers"] == 2
    tokens = conll_slice(tmp_path / "tokens.txt", 16, labeled=False)
    out = tmp_path / "onnx.conll"
    argv = ["predict", str(onnx_dir), "--input", str(tokens), "--input-format", "conll", "--output", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    onnx_rows = [line.split("\t") for line in out.read_text().splitlines() if line]
    assert [r[0] for r in onnx_rows] == [r[0] for r in torch_rows] and {r[1] for r in onnx_rows} <= LABELS

    staging = tmp_path / "staging"
    stage(trained, staging)
    report = verify(staging, trained)
    assert report["model_class"] == SUPPORTED[family].classifier_class.__name__ and report["max_abs_diff"] < 1e-5
    card = (staging / "README.md").read_text()
    assert f"`{SUPPORTED[family].classifier_class.__name__}`" in card and SUPPORTED[family].name in card
    assert f"- {family}\n" in card  # the family's tag


def test_the_sweep_takes_every_family(family, checkpoints, tmp_path, capsys):
    argv = ["sweep", "--model", str(checkpoints[family]), "--output-dir", str(tmp_path / "sweep")]
    argv += ["--train-file", str(NCBI / "train.tsv"), "--validation-file", str(NCBI / "devel.tsv")]
    argv += ["--max-train-samples", "32", "--max-eval-samples", "16", "--epochs", "2", "--save-probe"]
    assert main([*argv, "--layers", "0", "2", "4", "--no-progress"]) == 0
    result = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [row["layer"] for row in result["layers"]] == [0, 2, 4]
    probe = next((tmp_path / "sweep").glob("probe-layer-*"))
    assert json.loads((probe / "config.json").read_text())["model_type"] == f"{family}-layer-tokclf"
    assert main(["predict", str(probe), "--text", TEXT, "--no-progress"]) == 0
