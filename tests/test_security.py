"""Security: what runs and what is read when someone loads a model of ours.

- The three code files that travel with every model import only torch, transformers and each
  other, open no files, reach no network and have no side effects (read from their syntax tree).
- Weights are read from ``model.safetensors``; pickled weights beside them are never read.
- Nothing a ``config.json`` names (another model, a backbone, code elsewhere) is loaded: the
  backbone's fields live in our config itself.
"""

import ast
import inspect
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import LABELS, TEXT

import hf_layer_tokclf
from hf_layer_tokclf import BertForLayerTokenClassification
from hf_layer_tokclf.base.manifest import CODE_FILES, TRAVELLING_FILES
from hf_layer_tokclf.running.loading import load_model
from hf_layer_tokclf.sharing.remote_check import run_remote_check

PACKAGE = Path(hf_layer_tokclf.__file__).parent / "model"  # the files that travel
SIBLINGS = {name.removesuffix(".py") for name in TRAVELLING_FILES}

# Names that would open files, run processes or code, reach the network or unpickle.
FORBIDDEN = {
    "open",
    "eval",
    "exec",
    "compile",
    "__import__",
    "globals",
    "input",
    "breakpoint",
    "os",
    "sys",
    "io",
    "subprocess",
    "socket",
    "requests",
    "urllib",
    "http",
    "pickle",
    "dill",
    "joblib",
    "shutil",
    "pathlib",
    "importlib",
    "builtins",
    "load",  # torch.load
    "hf_hub_download",
    "snapshot_download",
    "cached_file",
    "get_class_from_dynamic_module",
}


@pytest.mark.parametrize("name", TRAVELLING_FILES)
def test_code_that_travels_imports_only_torch_transformers_and_its_sibling(name):
    tree = ast.parse((PACKAGE / name).read_text(), filename=name)
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: only the sibling code file
                assert node.level == 1 and node.module in SIBLINGS, ast.dump(node)
            else:
                imported.append(node.module)
    assert imported
    for module in imported:
        assert module.split(".")[0] in ("torch", "transformers"), f"{name} imports {module}"


@pytest.mark.parametrize("name", TRAVELLING_FILES)
def test_code_that_travels_opens_nothing_and_runs_nothing_on_import(name):
    tree = ast.parse((PACKAGE / name).read_text(), filename=name)
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    used |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    used |= {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert not used & FORBIDDEN, f"{name} uses {sorted(used & FORBIDDEN)}"
    strings = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    assert not [s for s in strings if "://" in s or "huggingface.co" in s], "no addresses in the code"
    # Module level: a docstring, imports (try/except ImportError, where the handler imports or sets a
    # name to None), constants, classes, functions, and classes defined only if such a name is not None.
    for node in tree.body:
        if isinstance(node, ast.Try):
            assert all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in node.body)
            assert [ast.unparse(h.type) for h in node.handlers] == ["ImportError"]
            for n in (n for h in node.handlers for n in h.body):
                assert isinstance(n, (ast.Import, ast.ImportFrom)) or ast.unparse(n).endswith(" = None"), ast.unparse(n)
            continue
        if isinstance(node, ast.If):
            assert re.fullmatch(r"\w+ is not None", ast.unparse(node.test)) and not node.orelse, ast.unparse(node)
            assert all(isinstance(n, ast.ClassDef) for n in node.body), ast.unparse(node)
            continue
        allowed = (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef, ast.Assign, ast.AnnAssign)
        if isinstance(node, ast.Expr):
            assert isinstance(node.value, ast.Constant), ast.dump(node)  # the docstring
            continue
        assert isinstance(node, allowed), ast.dump(node)
        if isinstance(node, ast.Assign):  # constants, and the logger
            calls = [n for n in ast.walk(node.value) if isinstance(n, ast.Call)]
            assert all(ast.unparse(c.func) == "logging.get_logger" for c in calls), ast.unparse(node)


def logits_of(model_dir) -> torch.Tensor:
    model, tokenizer = load_model(model_dir)
    with torch.no_grad():
        return model(**tokenizer(TEXT, return_tensors="pt")).logits[0]


def test_saved_folder_has_safetensors_and_the_packages_code(tiny_dir):
    names = {p.name for p in tiny_dir.iterdir()}
    assert "model.safetensors" in names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt", ".h5", ".msgpack"))]
    for name in CODE_FILES:  # what was checked above is what travels
        assert (tiny_dir / name).read_bytes() == (PACKAGE / name).read_bytes()
    model = BertForLayerTokenClassification.from_pretrained(tiny_dir, use_safetensors=True)
    assert len(model.bert.encoder.layer) == 2


def test_pickled_weights_beside_the_safetensors_are_never_read(tiny_dir, tmp_path, monkeypatch):
    folder = tmp_path / "model"
    shutil.copytree(tiny_dir, folder)
    expected = logits_of(tiny_dir)
    # Not even a valid pickle: reading it at all would fail.
    for name in ("pytorch_model.bin", "model.pt", "training_args.bin"):
        (folder / name).write_bytes(b"\x80\x04 not weights, and reading this file fails")

    def refuse(*args, **kwargs):
        raise AssertionError(f"torch.load was called: {args[:1]}")

    monkeypatch.setattr(torch, "load", refuse)
    torch.testing.assert_close(logits_of(folder), expected, atol=0, rtol=0)
    monkeypatch.undo()
    report = run_remote_check(folder, TEXT)  # a stranger, through remote code
    torch.testing.assert_close(torch.tensor(report["logits"]), expected, atol=1e-5, rtol=0)


EDITS = {
    "_name_or_path": "someone/else",
    "base_model": "evil/model",
    "backbone": "x/y",
    "pretrained_model_name_or_path": "evil/backbone",
    "architectures": ["EvilForTokenClassification"],
}


def test_a_config_naming_other_models_loads_nothing_else(tiny_dir, tmp_path, no_other_source):
    folder = tmp_path / "edited"
    shutil.copytree(tiny_dir, folder)
    expected = logits_of(tiny_dir)
    no_other_source.clear()
    config = json.loads((folder / "config.json").read_text())
    config.update(EDITS)
    # Code from another repository: ignored here, where the package's own classes are registered.
    config["auto_map"] = {
        "AutoConfig": "evil/model--configuration_evil.EvilConfig",
        "AutoModel": "evil/model--modeling_evil.EvilModel",
        "AutoModelForTokenClassification": "evil/model--modeling_evil.EvilForTokenClassification",
    }
    (folder / "config.json").write_text(json.dumps(config))
    model, _ = load_model(folder)
    assert type(model) is BertForLayerTokenClassification
    assert inspect.getmodule(type(model)).__name__ == "hf_layer_tokclf.model.modeling_layer_tokclf"
    torch.testing.assert_close(logits_of(folder), expected, atol=0, rtol=0)
    assert no_other_source and {Path(s).resolve() for s in no_other_source} == {folder.resolve()}


def test_a_config_naming_other_models_loads_nothing_else_through_remote_code(tiny_dir, tmp_path):
    """A stranger, offline: any attempt to fetch what the config names would fail the load."""
    folder = tmp_path / "edited"
    shutil.copytree(tiny_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **EDITS}))
    report = run_remote_check(folder, TEXT)
    assert report["model_class"] == "BertForLayerTokenClassification"
    torch.testing.assert_close(torch.tensor(report["logits"]), logits_of(tiny_dir), atol=1e-5, rtol=0)


def test_the_backbone_lives_in_our_config(tiny_dir):
    """Every field the encoder is built from is in config.json itself: no backbone id to resolve."""
    config = json.loads((tiny_dir / "config.json").read_text())
    for field in (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
        "type_vocab_size",
        "hidden_act",
        "layer_norm_eps",
    ):
        assert field in config, field
    assert config["id2label"] == {str(i): label for i, label in enumerate(LABELS)}
    assert not {key for key in config if "backbone" in key or key in ("base_model", "pretrained_model_name_or_path")}
