"""Extras announce themselves before any work (issue 27, item 2): every command checks the optional
dependencies it will need before it loads a model or reads data, and says the one pip line."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import tomllib
from conftest import conll_slice

from hf_layer_tokclf.cli import main as cli
from hf_layer_tokclf.running import loading

ROOT = Path(__file__).resolve().parents[1]
NCBI = ROOT / "data" / "ncbi-disease"


def _block(monkeypatch, *modules: str) -> None:
    """What importing ``modules`` finds when they are not installed: ImportError (a venv may have them)."""
    for name in modules:
        for loaded in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture
def no_model(monkeypatch):
    """A model load fails the test: a missing extra must be refused before it."""

    def load_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the missing extra was named")

    monkeypatch.setattr(loading, "load_model", load_model)


def _refused(capsys, argv: list[str], extra: str) -> str:
    """Runs ``hf-layer-tokclf ARGV``; asserts one line on stderr, exit 2, that names ``pip install "...[extra]"``."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert f'pip install "hf-layer-tokclf[{extra}]"' in err, err
    return err


def test_every_extra_is_declared_in_pyproject():
    from hf_layer_tokclf.base.extras import EXTRAS

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS) <= set(declared)
    assert {"plot", "onnx", "spacy", "ray"} <= set(EXTRAS)


def test_require_names_the_extra_and_the_missing_module(monkeypatch):
    from hf_layer_tokclf.base.extras import MissingExtraError, require

    _block(monkeypatch, "matplotlib")
    with pytest.raises(MissingExtraError) as caught:
        require("plot", "the sweep's plot")
    message = str(caught.value)
    assert message.startswith("the sweep's plot needs matplotlib")
    assert message.endswith('pip install "hf-layer-tokclf[plot]"')
    assert isinstance(caught.value, ImportError) and isinstance(caught.value, ValueError)
    require("spacy", "anything")  # installed here: no error


@pytest.mark.parametrize("how", [["--format", "html"], ["--output", "page.html"]])
def test_predict_html_without_spacy_is_refused_before_the_model_loads(monkeypatch, capsys, tmp_path, no_model, how):
    _block(monkeypatch, "spacy")
    monkeypatch.chdir(tmp_path)
    err = _refused(capsys, ["predict", "runs/never-read", "--text", "Cystic fibrosis.", *how], "spacy")
    assert "HTML" in err
    assert not (tmp_path / "page.html").exists()


def test_predict_engine_ray_without_ray_is_refused_first(monkeypatch, capsys, tmp_path, no_model):
    _block(monkeypatch, "ray", "pyarrow", "hf_layer_tokclf.annotation.ray_engine")
    argv = ["predict", "runs/never-read", "--engine", "ray", "--input", str(tmp_path / "in"), "--output", "out"]
    err = _refused(capsys, argv, "ray")
    assert "--engine ray" in err


def _onnx_folder(tmp_path: Path) -> Path:
    """What `is_onnx_dir` recognises, and nothing that loads: were it read, the test would fail loudly."""
    folder = tmp_path / "onnx-model"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"not a model")
    (folder / "config.json").write_text("{ not json")
    return folder


def test_evaluate_onnx_folder_without_onnx_is_refused_before_the_data_is_read(monkeypatch, capsys, tmp_path):
    _block(monkeypatch, "onnx", "onnxruntime")
    never_read = tmp_path / "data.conll"  # does not exist: reading it would be a different error
    err = _refused(capsys, ["evaluate", str(_onnx_folder(tmp_path)), "--data", str(never_read)], "onnx")
    assert "ONNX" in err


def test_predict_onnx_folder_without_onnx_is_refused_first(monkeypatch, capsys, tmp_path):
    _block(monkeypatch, "onnx", "onnxruntime")
    _refused(capsys, ["predict", str(_onnx_folder(tmp_path)), "--input", str(tmp_path / "none.txt")], "onnx")


def test_export_onnx_without_onnx_is_refused_first(monkeypatch, capsys, tmp_path, no_model):
    _block(monkeypatch, "onnx", "onnxruntime")
    _refused(capsys, ["export-onnx", "runs/never-read", str(tmp_path / "out")], "onnx")
    assert not (tmp_path / "out").exists()


def test_sweep_without_matplotlib_is_refused_before_the_data_is_read(monkeypatch, capsys, tmp_path):
    _block(monkeypatch, "matplotlib")
    never_read = str(tmp_path / "train.conll")  # does not exist
    argv = ["sweep", "--train-file", never_read, "--validation-file", never_read, "--output-dir", str(tmp_path / "o")]
    err = _refused(capsys, argv, "plot")
    assert "--no-plot" in err
    assert not (tmp_path / "o").exists()


def test_sweep_no_plot_writes_and_claims_no_plot(monkeypatch, capsys, tmp_path):
    _block(monkeypatch, "matplotlib")
    train = conll_slice(tmp_path / "train.tsv", 40)
    out = tmp_path / "sweep"
    argv = ["sweep", "--train-file", str(train), "--validation-file", str(train), "--output-dir", str(out)]
    assert cli.main([*argv, "--no-plot", "--layers", "1", "--epochs", "1", "--no-progress", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "sweep.png" not in printed and "sweep.md" in printed
    assert sorted(p.name for p in out.glob("sweep.*")) == ["sweep.json", "sweep.md"]
    assert json.loads((out / "sweep.json").read_text())["recommended_layer"] == 1


def test_rendering_and_the_spacy_component_say_the_extra(monkeypatch):
    from hf_layer_tokclf.base.extras import MissingExtraError
    from hf_layer_tokclf.formats.rendering import entities_html

    _block(monkeypatch, "spacy", "hf_layer_tokclf.running.spacy_component")
    with pytest.raises(MissingExtraError, match=re.escape('pip install "hf-layer-tokclf[spacy]"')):
        entities_html([{"text": "x", "entities": []}])
    with pytest.raises(MissingExtraError, match=re.escape('pip install "hf-layer-tokclf[spacy]"')):
        monkeypatch.delitem(sys.modules, "hf_layer_tokclf.running.spacy_component")
        import hf_layer_tokclf.running.spacy_component  # noqa: F401


def test_readme_names_the_plot_extra_where_the_sweep_is_shown():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Which layer? `sweep`", 1)[1].split("\n## ", 1)[0]
    assert 'pip install "hf-layer-tokclf[plot]"' in section
    assert "--no-plot" in section
