"""Trust by construction: every entry point goes through the same three mechanisms.

- Code: `code_consent.may_run_code` decides for every loader. A folder's code never runs without the
  consent of the person loading (``--trust-remote-code``, ``trust_remote_code=True``, a
  ``spacy.load(..., config=...)`` override, or ``HF_LAYER_TOKCLF_TRUST_REMOTE_CODE=1``), and never at
  all for a model type with installed classes. Walked here with folders whose code writes a marker.
- Secrets: no parser accepts an abbreviated option, and every secret the run knows is masked by its
  value in whatever is written (`redaction`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEXT, conll_slice
from tampered import edited_code_folder, foreign_code_folder

from hf_layer_tokclf.base.code_consent import TRUST_ENV, RemoteCodeError, may_run_code
from hf_layer_tokclf.base.redaction import REDACTED, remember_secret, scrub_file, secret_values
from hf_layer_tokclf.cli import main as cli
from hf_layer_tokclf.running.loading import load_model

SECRET = "hf_FAKEsecretVALUEnever0123456789"
ENV_SECRET = "hf_ENVsecretVALUEnever9876543210"


@pytest.fixture
def foreign(tmp_path, tokenizer):
    """A folder that loads only by running its own code; the code writes ``marker``."""
    marker = tmp_path / "marker.txt"
    return foreign_code_folder(tmp_path / f"foreign-{tmp_path.name}", tokenizer, marker), marker


@pytest.fixture
def edited(tmp_path, tokenizer):
    """A model of ours whose code files were edited to write ``marker``."""
    marker = tmp_path / "marker.txt"
    return edited_code_folder(tmp_path / f"edited-{tmp_path.name}", tokenizer, marker), marker


@pytest.fixture(autouse=True)
def no_consent_from_the_environment(monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)


def fresh_process(tmp_path: Path, *args: str, env: dict | None = None, code: str | None = None):
    """The CLI (or ``code``) in a new interpreter with its own dynamic-module cache: nothing imported here counts."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), **(env or {})}
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "hf_layer_tokclf", *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)


# --- the decision ------------------------------------------------------------------------------------


def test_the_decision(foreign, edited, monkeypatch):
    (folder, _), (ours, _) = foreign, edited
    assert may_run_code(folder) is False
    assert may_run_code(folder, True) is True
    assert may_run_code(ours, True) is False  # installed classes: the folder's code is never needed
    assert may_run_code("someone/model", True) is True  # a Hub id: transformers reads its config, with consent
    monkeypatch.setenv(TRUST_ENV, "1")
    assert may_run_code(folder) is True
    assert may_run_code(folder, False) is False  # the caller's explicit no wins over the environment
    assert may_run_code(ours) is False


# --- every entry point with a foreign folder and no consent ----------------------------------------------


def command_lines(folder: Path, tmp_path: Path) -> dict[str, list[str]]:
    """One command line per subcommand that reads a model, pointed at ``folder``."""
    data = conll_slice(tmp_path / "slice.tsv", 8)
    both = ["--train-file", data, "--validation-file", data]
    return {
        "train": [
            "train",
            "--model",
            folder,
            "--output-dir",
            tmp_path / "train",
            *both,
            "--max-steps",
            "1",
            "--hidden-layer",
            "1",
        ],
        "evaluate": ["evaluate", folder, "--data", data, "--output", tmp_path / "scores.json"],
        "predict": ["predict", folder, "--text", TEXT, "--output", tmp_path / "out.jsonl"],
        "push": ["push", folder, "--repo-id", "someone/model", "--dry-run", "--staging-dir", tmp_path / "staged"],
        "sweep": [
            "sweep",
            "--model",
            folder,
            *both,
            "--output-dir",
            tmp_path / "sweep",
            "--layers",
            "1",
            "2",
            "--epochs",
            "1",
        ],
        "export-onnx": ["export-onnx", folder, tmp_path / "onnx"],
        "export-transformers": ["export-transformers", folder, tmp_path / "stock"],
        "serve": ["serve", folder, "--port", "0"],  # refused before the port is bound; a served model never starts
    }


def test_every_subcommand_is_walked(tmp_path):
    assert set(command_lines(tmp_path, tmp_path).keys()) == set(cli.COMMANDS)


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_no_subcommand_runs_a_folders_code_without_consent(command, foreign, tmp_path, capsys):
    folder, marker = foreign
    argv = [str(word) for word in command_lines(folder, tmp_path)[command]]
    assert cli.main(argv) != 0
    assert not marker.exists(), command
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert folder.name in err or "marker-bert" in err, err


@pytest.mark.parametrize("command", ["predict", "evaluate", "export-onnx", "export-transformers"])
def test_consent_does_not_run_the_edited_code_of_our_own_model(command, edited, tmp_path, capsys):
    folder, marker = edited
    argv = [str(word) for word in command_lines(folder, tmp_path)[command]]
    assert cli.main([*argv, "--trust-remote-code"]) == 0, capsys.readouterr().err
    assert not marker.exists()


def test_push_refuses_edited_code_before_running_anything(edited, tmp_path, capsys):
    folder, marker = edited
    argv = [str(word) for word in command_lines(folder, tmp_path)["push"]]
    assert cli.main(argv) == 2
    assert "_layer_tokclf.py in" in capsys.readouterr().err  # the edited code file, named
    assert not marker.exists()


def test_the_python_loaders_refuse_without_consent(foreign, tmp_path):
    from hf_layer_tokclf import AutoModelForLayerTokenClassification
    from hf_layer_tokclf.model.tokenization import load_tokenizer

    folder, marker = foreign
    with pytest.raises(RemoteCodeError, match="nothing was run"):
        load_model(folder)
    with pytest.raises(ValueError):
        AutoModelForLayerTokenClassification.from_pretrained(str(folder))
    load_tokenizer(folder)  # a plain tokenizer: nothing of the folder's is needed, nothing runs
    assert not marker.exists()


def test_consent_from_the_flag_or_the_environment_runs_it(foreign, tmp_path):
    folder, marker = foreign
    proc = fresh_process(tmp_path, "predict", str(folder), "--text", TEXT, "--no-progress")
    assert proc.returncode == 2 and not marker.exists(), proc.stderr[-2000:]
    proc = fresh_process(tmp_path, "predict", str(folder), "--text", TEXT, "--no-progress", env={TRUST_ENV: "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert marker.exists()


def test_ray_refuses_before_it_starts_and_its_actors_get_the_drivers_answer(foreign, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import hf_layer_tokclf.annotation.ray_engine as ray_engine

    folder, marker = foreign
    (tmp_path / "docs.txt").write_text(TEXT + "\n")
    monkeypatch.setattr(ray_engine, "connect", lambda address: pytest.fail("Ray started"))
    with pytest.raises(RemoteCodeError):
        ray_engine.predict_with_ray(str(tmp_path / "docs.txt"), "text", str(tmp_path / "out"), model_dir=folder)
    assert not marker.exists()
    # With consent from the environment, each actor is told True: it never reads its own node's environment.
    monkeypatch.setenv(TRUST_ENV, "1")
    seen = {}

    class Dataset:
        def map_batches(self, fn, **kwargs):
            seen.update(constructor=kwargs["fn_constructor_args"])
            return self

    ray_engine.annotate_dataset(Dataset(), folder)
    assert seen["constructor"][4] is True


# --- spaCy: the folder's config.cfg cannot consent ---------------------------------------------------------

SPACY_LOAD = """
import json, sys, spacy
nlp = spacy.load(sys.argv[1], config=json.loads(sys.argv[2]))
print(json.dumps([(e.text, e.label_) for e in nlp("{text}").ents]))
""".replace("{text}", TEXT)


@pytest.fixture
def tampered_pipeline(tmp_path, tiny_dir, foreign):
    """A saved spaCy pipeline whose model is the foreign folder, and whose config.cfg says to trust it."""
    import shutil

    spacy = pytest.importorskip("spacy")
    folder, marker = foreign
    nlp = spacy.blank("en")
    nlp.add_pipe("layer_tokclf", config={"model": str(tiny_dir)})
    pipeline = tmp_path / "pipeline"
    nlp.to_disk(pipeline)
    shutil.rmtree(pipeline / "layer_tokclf" / "model")
    shutil.copytree(folder, pipeline / "layer_tokclf" / "model")
    config = re.sub(r"trust_remote_code = \S+", "trust_remote_code = null", (pipeline / "config.cfg").read_text())
    (pipeline / "config.cfg").write_text(config)
    return pipeline, config, marker


def test_spacy_load_ignores_the_folders_own_consent(tampered_pipeline, tmp_path):
    import spacy

    pipeline, config, marker = tampered_pipeline
    (pipeline / "config.cfg").write_text(config.replace("trust_remote_code = null", "trust_remote_code = true"))
    with pytest.raises(ValueError, match="nothing was run"):
        spacy.load(pipeline)
    assert not marker.exists()
    # The person loading can still allow it, through the environment.
    proc = fresh_process(
        tmp_path, code=f"import sys; sys.argv[1:] = [{str(pipeline)!r}, '{{}}']\n{SPACY_LOAD}", env={TRUST_ENV: "1"}
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert marker.exists()


def test_spacy_load_takes_the_callers_override(tampered_pipeline, tmp_path):
    pipeline, _, marker = tampered_pipeline
    override = json.dumps({"components": {"layer_tokclf": {"trust_remote_code": True}}})
    code = f"import sys; sys.argv[1:] = [{str(pipeline)!r}, {override!r}]\n{SPACY_LOAD}"
    assert not marker.exists()
    proc = fresh_process(tmp_path, code=code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert marker.exists()


def test_spacy_add_pipe_with_a_foreign_model_needs_consent(foreign):
    spacy = pytest.importorskip("spacy")
    folder, marker = foreign
    nlp = spacy.blank("en")
    nlp.add_pipe("layer_tokclf", config={"model": str(folder)})
    with pytest.raises(ValueError, match="nothing was run"):
        nlp(TEXT)
    assert not marker.exists()


# --- secrets -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_no_parser_accepts_an_abbreviation(command):
    parser = getattr(cli, command.replace("-", "_") + "_parser")()
    assert parser.allow_abbrev is False


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--hub-tok", SECRET],
        ["train", f"--hub_tok={SECRET}"],
        ["train", "--hub-t", SECRET],
        ["push", "m", "--repo-id", "a/b", "--tok", SECRET],
    ],
)
def test_an_abbreviated_secret_option_is_refused_and_nothing_is_written(argv, tmp_path, capsys):
    output = tmp_path / "run"
    data = conll_slice(tmp_path / "slice.tsv", 8)  # small: were the option taken, the run would be short
    extra = ["--output-dir", str(output), "--train-file", str(data), "--max-steps", "1"] if argv[0] == "train" else []
    try:
        code = cli.main([*argv, *extra])
    except SystemExit as error:  # argparse's own exit for an unknown option
        code = error.code
    assert code == 2
    assert not output.exists()
    assert SECRET not in capsys.readouterr().out


def test_secrets_are_masked_by_value_in_every_file_a_run_writes(tiny_dir, tmp_path, monkeypatch, capsys):
    """The token in the environment and one under a full option name, each also given where no option name
    could say it is secret (a run name): neither appears in any file of the run."""
    monkeypatch.setenv("HF_TOKEN", ENV_SECRET)
    output = tmp_path / "run"
    data = conll_slice(tmp_path / "slice.tsv", 16)
    argv = ["train", "--model", str(tiny_dir), "--hidden-layer", "1", "--output-dir", str(output)]
    argv += ["--train-file", str(data), "--validation-file", str(data), "--test-file", str(data)]
    argv += ["--max-steps", "2", "--save-steps", "1", "--save-strategy", "steps", "--keep-checkpoints"]
    argv += ["--eval-strategy", "steps", "--eval-steps", "1", "--disable-tqdm", "true"]
    argv += [f"--hub_token={SECRET}", "--run-name", f"{ENV_SECRET}-{SECRET}"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    files = [p for p in output.rglob("*") if p.is_file()]
    assert {"metrics.json", "README.md", "training_args.bin", "config.json"} <= {p.name for p in files}
    leaked = [str(p) for p in files for s in (SECRET, ENV_SECRET) if s.encode() in p.read_bytes()]
    assert leaked == []
    assert REDACTED in (output / "metrics.json").read_text()


def test_scrub_file_masks_across_chunks_and_keeps_the_length(tmp_path, monkeypatch):
    import hf_layer_tokclf.base.redaction as redaction

    monkeypatch.setattr(redaction, "CHUNK_BYTES", 7)  # every secret crosses a chunk boundary somewhere
    path = tmp_path / "blob.bin"
    content = b"\x00\x01" + SECRET.encode() + b"--" + SECRET.encode() + b"\xff"
    path.write_bytes(content)
    assert scrub_file(path, [SECRET]) == 2
    assert path.read_bytes() == b"\x00\x01" + b"*" * len(SECRET) + b"--" + b"*" * len(SECRET) + b"\xff"
    before = path.stat().st_mtime_ns
    assert scrub_file(path, [SECRET]) == 0 and path.stat().st_mtime_ns == before  # nothing found: not rewritten


def test_short_values_are_not_secrets(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "abc")
    remember_secret("x")
    assert "abc" not in secret_values() and "x" not in secret_values()


def test_what_the_cli_prints_masks_the_secrets_too(tmp_path, capsys, monkeypatch):
    """Ctrl-C's resume line and error messages: printed, often pasted into issues, never holding a token."""
    import hf_layer_tokclf.training.train as training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    monkeypatch.setenv("HF_TOKEN", ENV_SECRET)
    data = conll_slice(tmp_path / "slice.tsv", 4)
    argv = ["train", "--train-file", str(data), "--output-dir", str(tmp_path / "out"), "--hub-token", SECRET]
    assert cli.main(argv) == 130
    assert cli.main(["evaluate", str(tmp_path / ENV_SECRET), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"--hub-token {REDACTED}" in err and f"no such folder: {tmp_path / REDACTED}" in err
    assert SECRET not in err and ENV_SECRET not in err


# --- files: a run writes and deletes only what it wrote ------------------------------------------------------

# Where each subcommand writes, the option that allows replacing it, and whether that is a folder.
OUTPUTS = {
    "train": ("--output-dir", "--overwrite-output-dir", True),
    "evaluate": ("--output", "--overwrite", False),
    "predict": ("--output", "--overwrite", False),
    "push": ("--staging-dir", "--overwrite-staging-dir", True),
    "sweep": ("--output-dir", "--overwrite-output-dir", True),
    "export-onnx": (None, "--overwrite", True),  # the positional OUT_DIR
    "export-transformers": (None, "--overwrite", True),
}
# What writes no file at all: checked by running it (`test_serve_writes_nothing`), not walked.
WRITES_NOTHING = {"serve"}
WRITERS = sorted(OUTPUTS)
USER_FILES = {"README.md": "my notes", "config.json": '{"mine": 1}', "vocab.txt": "my words", "notes.txt": "keep"}


def pointed_at(argv: list[str], command: str, target: Path) -> list[str]:
    """``argv`` with the command's output replaced by ``target``."""
    option = OUTPUTS[command][0]
    argv = list(argv)
    if option is None:
        argv[2] = str(target)
    elif option in argv:
        argv[argv.index(option) + 1] = str(target)
    else:
        argv += [option, str(target)]
    return argv


def test_every_subcommand_has_its_output_walked():
    assert set(OUTPUTS) | WRITES_NOTHING == set(cli.COMMANDS) and not set(OUTPUTS) & WRITES_NOTHING


def test_serve_writes_nothing(tiny_dir, tmp_path, monkeypatch):
    """A server answering requests leaves no file where it runs, and its model folder as it was."""
    from starlette.testclient import TestClient

    from hf_layer_tokclf.server.app import build_app
    from hf_layer_tokclf.server.settings import ServerSettings

    before = {p: p.read_bytes() for p in tiny_dir.rglob("*") if p.is_file()}
    monkeypatch.chdir(tmp_path)
    with TestClient(build_app(ServerSettings(model=str(tiny_dir)))) as client:
        while client.get("/health").json()["status"] == "loading":
            pass
        assert client.post("/", json={"inputs": [TEXT, TEXT]}).status_code == 200
        assert client.get("/metrics").status_code == 200
    assert list(tmp_path.iterdir()) == []
    assert {p: p.read_bytes() for p in tiny_dir.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("command", WRITERS)
def test_the_walked_command_lines_work_on_a_new_output(command, tiny_dir, tmp_path, capsys):
    """The control for the tests below: each command line does its work where its output is free, so a refusal
    there is the output's doing."""
    argv = pointed_at([str(w) for w in command_lines(tiny_dir, tmp_path)[command]], command, tmp_path / "new")
    assert cli.main(argv) == 0, capsys.readouterr().err


@pytest.mark.parametrize("command", WRITERS)
def test_no_subcommand_replaces_a_folder_of_user_files(command, tiny_dir, tmp_path, capsys):
    """An output that is a folder of somebody's files is refused, even when asked to overwrite, and kept whole."""
    folder = tmp_path / "mine"
    folder.mkdir()
    for name, content in USER_FILES.items():
        (folder / name).write_text(content)
    (folder / "checkpoint-best").mkdir()
    argv = pointed_at([str(w) for w in command_lines(tiny_dir, tmp_path)[command]], command, folder)
    for extra in ([], [OUTPUTS[command][1]], ["--resume"] if command == "train" else []):
        assert cli.main([*argv, *extra]) == 2, (command, extra)
        err = capsys.readouterr().err
        assert "Traceback" not in err and str(folder) in err, err  # refused for the folder, naming it
    assert {p.name: p.read_text() for p in folder.iterdir() if p.is_file()} == USER_FILES
    assert sorted(p.name for p in folder.iterdir()) == sorted([*USER_FILES, "checkpoint-best"])


@pytest.mark.parametrize("command", WRITERS)
def test_no_subcommand_writes_through_a_symlink(command, tiny_dir, tmp_path, capsys):
    """A symlink where a run would write (its output, or a file of its output folder) never changes the file it
    points at, overwrite or not."""
    host = tmp_path / "host.txt"
    host.write_text("a file elsewhere on the machine")
    output = tmp_path / "out"
    if OUTPUTS[command][2]:  # a folder: the symlink is an entry with a name the run writes
        output.mkdir()
        name = {"sweep": "sweep.json", "export-onnx": "model.onnx"}.get(command, "vocab.txt")
        (output / name).symlink_to(host)
    else:  # a file: the output itself, and predict's partial file beside it
        output = tmp_path / "out.jsonl"
        output.symlink_to(host)
        Path(f"{output}.partial").symlink_to(host)
    argv = pointed_at([str(w) for w in command_lines(tiny_dir, tmp_path)[command]], command, output)
    for extra in ([], [OUTPUTS[command][1]]):
        cli.main([*argv, *extra])
    assert host.read_text() == "a file elsewhere on the machine"
    assert "Traceback" not in capsys.readouterr().err


def test_push_never_stages_a_symlink(tiny_dir, tmp_path, capsys):
    import shutil

    host = tmp_path / "host.txt"
    host.write_text("a secret file of the machine")
    folder = tmp_path / "model"
    shutil.copytree(tiny_dir, folder)
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.json").symlink_to(host)
    staging = tmp_path / "staged"
    argv = ["push", str(folder), "--repo-id", "someone/model", "--dry-run", "--staging-dir", str(staging)]
    assert cli.main(argv) == 2
    assert "tokenizer.json" in capsys.readouterr().err
    staged = [p for p in staging.rglob("*") if p.is_file()] if staging.exists() else []
    assert not any(b"a secret file" in p.read_bytes() for p in staged)
