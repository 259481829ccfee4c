"""Code shipped in a model folder runs only when the user asks: --trust-remote-code, off by default.

Our own models load with the installed classes, no flag needed. A folder whose ``auto_map`` points
at code transformers does not have is refused with an error naming the flag, and that code never
runs: here it writes a marker file on import, and the marker must not appear.
"""

import json
import os
import subprocess
import sys

import pytest
from conftest import NCBI, TEXT
from tampered import foreign_code_folder

from hf_layer_tokclf.base.code_consent import RemoteCodeError
from hf_layer_tokclf.running.loading import load_model


@pytest.fixture
def custom_code_dir(tmp_path, tokenizer):
    """A working token classifier that needs its own code to load; the code leaves a marker file."""
    marker = tmp_path / "marker.txt"
    return foreign_code_folder(tmp_path / "custom", tokenizer, marker), marker


def cli(tmp_path, *argv):
    """The command in a fresh process (a fresh dynamic-module cache, so nothing imported earlier counts)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    command = [sys.executable, "-m", "hf_layer_tokclf", *map(str, argv)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_load_model_refuses_custom_code_and_runs_none_of_it(custom_code_dir):
    folder, marker = custom_code_dir
    with pytest.raises(RemoteCodeError, match="--trust-remote-code"):
        load_model(folder)
    assert not marker.exists()


def test_the_commands_refuse_custom_code_without_the_flag(custom_code_dir, tmp_path):
    folder, marker = custom_code_dir
    data = NCBI / "devel.tsv"
    for argv in (
        ["predict", folder, "--text", TEXT],
        ["evaluate", folder, "--data", data, "--output", tmp_path / "scores.json"],
        ["export-onnx", folder, tmp_path / "onnx"],
    ):
        proc = cli(tmp_path, *argv)
        assert proc.returncode == 2, (argv, proc.stderr[-2000:])
        assert "--trust-remote-code" in proc.stderr and "nothing was run" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert not marker.exists(), argv
    assert not (tmp_path / "scores.json").exists() and not (tmp_path / "onnx").exists()


def test_with_the_flag_the_code_runs_and_predicts(custom_code_dir, tmp_path):
    folder, marker = custom_code_dir
    proc = cli(tmp_path, "predict", folder, "--text", TEXT, "--trust-remote-code", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert marker.exists()
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["text"] == TEXT and isinstance(record["entities"], list)


def test_our_models_load_with_the_installed_classes_and_no_flag(tiny_dir):
    config = json.loads((tiny_dir / "config.json").read_text())
    assert "auto_map" in config  # the folder could run its own copy of the code; it must not need to
    model, _ = load_model(tiny_dir)
    assert type(model).__module__ == "hf_layer_tokclf.model.modeling_layer_tokclf"
