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


def test_load_model_refuses_custom_code_and_runs_none_of_it(custom_code_dir):
    folder, marker = custom_code_dir
    with pytest.raises(RemoteCodeError, match="--trust-remote-code"):
        load_model(folder)
    assert not marker.exists()


# `python -c COMMANDS MARKER ARGVS_JSON`: each command in turn, in one fresh process (a fresh dynamic-module cache, so
# nothing imported earlier counts); after each, a JSON line of its exit status and whether MARKER exists, and
# END_OF_COMMAND on stderr, which splits stderr by command.
END_OF_COMMAND = "----- end of command -----"
COMMANDS = f"""
import json, os, sys
from hf_layer_tokclf.cli.main import main
marker, argvs = sys.argv[1], json.loads(sys.argv[2])
for argv in argvs:
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    print(json.dumps({{"code": code, "marker": os.path.exists(marker)}}), flush=True)
    print({END_OF_COMMAND!r}, file=sys.stderr, flush=True)
"""


@pytest.fixture(scope="module")
def commands(tmp_path_factory, tokenizer):
    """The commands without the flag, then predict with it, on a folder of foreign code, in one fresh process:
    by command, its exit status, whether the marker existed after it, its stderr, and the folder."""
    tmp_path = tmp_path_factory.mktemp("commands")
    marker = tmp_path / "marker.txt"
    folder = foreign_code_folder(tmp_path / "custom", tokenizer, marker)
    argvs = {
        "predict": ["predict", folder, "--text", TEXT],
        "evaluate": ["evaluate", folder, "--data", NCBI / "devel.tsv", "--output", tmp_path / "scores.json"],
        "export-onnx": ["export-onnx", folder, tmp_path / "onnx"],
        "trusted predict": ["predict", folder, "--text", TEXT, "--trust-remote-code", "--no-progress"],
    }
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    argv_json = json.dumps([[str(arg) for arg in argv] for argv in argvs.values()])
    proc = subprocess.run([sys.executable, "-c", COMMANDS, str(marker), argv_json], capture_output=True, text=True,
                          env=env, timeout=600)  # fmt: skip
    ran = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"code"')]
    assert proc.returncode == 0 and len(ran) == len(argvs), proc.stderr[-3000:]
    errs = proc.stderr.split(END_OF_COMMAND + "\n")
    results = {name: {**run, "stderr": err} for name, run, err in zip(argvs, ran, errs, strict=False)}
    return results, tmp_path, proc.stdout


def test_the_commands_refuse_custom_code_without_the_flag(commands):
    results, tmp_path, _ = commands
    for name in ("predict", "evaluate", "export-onnx"):
        result = results[name]
        assert result["code"] == 2, (name, result["stderr"][-2000:])
        assert "--trust-remote-code" in result["stderr"] and "nothing was run" in result["stderr"]
        assert "Traceback" not in result["stderr"]
        assert not result["marker"], name
    assert not (tmp_path / "scores.json").exists() and not (tmp_path / "onnx").exists()


def test_with_the_flag_the_code_runs_and_predicts(commands):
    results, _, stdout = commands
    result = results["trusted predict"]
    assert result["code"] == 0, result["stderr"][-2000:]
    assert result["marker"]
    record = json.loads([line for line in stdout.splitlines() if line.startswith('{"text"')][-1])
    assert record["text"] == TEXT and isinstance(record["entities"], list)


def test_our_models_load_with_the_installed_classes_and_no_flag(tiny_dir):
    config = json.loads((tiny_dir / "config.json").read_text())
    assert "auto_map" in config  # the folder could run its own copy of the code; it must not need to
    model, _ = load_model(tiny_dir)
    assert type(model).__module__ == "hf_layer_tokclf.model.modeling_layer_tokclf"
