"""The family checkpoints of tests/families.py load as their Hub counterparts do, on transformers 5.x and 4.57.

Also pins what families.py's docstring says about ``add_prefix_space`` and pre-split words: the package's
byte-level BPE handling rests on it, and a transformers release that changes it should fail here first.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
import transformers
from families import (
    CONFIGS,
    FAMILIES,
    PRETRAINING_CLASS,
    STOCK_TOKEN_CLASSIFIER,
    TOKEN_IDS,
    make_checkpoint,
)
from safetensors.torch import load_file
from tokenizers import normalizers
from transformers import AutoConfig, AutoModel, AutoTokenizer
from versions import LOWEST_PYTHON_ENV, lowest_venv_dir, venv_python

WORDS = ["Germline", "mutations", "in", "BRCA1"]
BYTE_LEVEL = ("roberta", "modernbert", "eurobert")  # the families whose pre-split words need a prefix space
POOLER = {"pooler.dense.weight", "pooler.dense.bias"}  # masked-LM checkpoints have none


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Every family this transformers has, built once (about 3 s in all)."""
    root = tmp_path_factory.mktemp("families")
    return {family: make_checkpoint(family, root / family) for family in FAMILIES}


def pieces(tokenizer, words: list[str]) -> list[str]:
    return tokenizer.convert_ids_to_tokens(tokenizer([words], is_split_into_words=True)["input_ids"][0])


def running_text_pieces(tokenizer, words: list[str]) -> list[str]:
    """The pieces of the words inside a sentence (a space before each word, the first included)."""
    return tokenizer.convert_ids_to_tokens(tokenizer(" " + " ".join(words))["input_ids"])


def test_families_are_those_of_the_installed_transformers():
    assert FAMILIES[:6] == ("bert", "roberta", "xlm-roberta", "electra", "deberta-v2", "modernbert")
    assert ("eurobert" in FAMILIES) == hasattr(transformers, "EuroBertConfig")
    for family in FAMILIES:
        assert hasattr(transformers, STOCK_TOKEN_CLASSIFIER[family]), family


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_loads_as_the_hub_one(checkpoints, family):
    path = checkpoints[family]
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == family
    assert config.architectures == [PRETRAINING_CLASS[family]]
    for key, value in CONFIGS[family].items():
        if not isinstance(value, dict):
            assert getattr(config, key) == value, key

    model, info = getattr(transformers, PRETRAINING_CLASS[family]).from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    _, info = AutoModel.from_pretrained(path, output_loading_info=True)
    assert set(info["missing_keys"]) <= POOLER, info["missing_keys"]

    tokenizer = AutoTokenizer.from_pretrained(path, add_prefix_space=True)
    assert 400 <= len(tokenizer) <= 1000
    assert config.vocab_size == len(tokenizer)
    assert tokenizer.model_max_length == 128
    for field, token in TOKEN_IDS[family].items():
        assert getattr(config, field) == tokenizer.convert_tokens_to_ids(token), field
    saved = json.loads((path / "tokenizer_config.json").read_text())
    if family in ("modernbert", "eurobert"):
        assert saved["tokenizer_class"] == "PreTrainedTokenizerFast"  # as on the Hub, and loadable by 4.x
        assert saved["model_input_names"] == ["input_ids", "attention_mask"]

    encoding = tokenizer([WORDS], is_split_into_words=True, return_tensors="pt")
    assert {i for i in encoding.word_ids(0) if i is not None} == {0, 1, 2, 3}
    assert ("token_type_ids" in encoding) == (family in ("bert", "electra", "deberta-v2"))
    with torch.no_grad():
        model(**encoding)


def test_family_features(checkpoints):
    """What sets each family apart survives saving: the position offset, ELECTRA's projection, mixed attention."""
    config = {family: AutoConfig.from_pretrained(path) for family, path in checkpoints.items()}
    for family in ("roberta", "xlm-roberta"):
        assert (config[family].pad_token_id, config[family].max_position_embeddings) == (1, 130)
    assert config["electra"].embedding_size < config["electra"].hidden_size
    assert hasattr(AutoModel.from_config(config["electra"]).embeddings_project, "weight")
    assert set(config["modernbert"].layer_types) == {"full_attention", "sliding_attention"}
    if "eurobert" in config:
        assert config["eurobert"].pad_token_id == config["eurobert"].eos_token_id


def test_add_prefix_space(checkpoints):
    """RoBERTa honours ``add_prefix_space=True``; PreTrainedTokenizerFast (TokenizersBackend) on 5.x ignores it."""
    roberta = AutoTokenizer.from_pretrained(checkpoints["roberta"], add_prefix_space=True)
    assert pieces(roberta, WORDS) == running_text_pieces(AutoTokenizer.from_pretrained(checkpoints["roberta"]), WORDS)
    assert pieces(roberta, WORDS)[1:3] == ["ĠG", "erm"]

    for family in ("modernbert", "eurobert"):
        if family not in checkpoints:
            continue
        plain = AutoTokenizer.from_pretrained(checkpoints[family])
        expected = running_text_pieces(plain, WORDS)
        asked = AutoTokenizer.from_pretrained(checkpoints[family], add_prefix_space=True)
        if int(transformers.__version__.split(".")[0]) >= 5:  # 4.57 is checked in its own process below
            assert pieces(asked, WORDS) == pieces(plain, WORDS) != expected, (
                f"{family}: transformers {transformers.__version__} honours add_prefix_space=True now: "
                "update the docstring of families.py"
            )

        # the recipe that works for every byte-level style, on 4.57 too: a normalizer that prepends the space
        plain.backend_tokenizer.normalizer = normalizers.Prepend(" ")
        assert pieces(plain, WORDS) == expected


def test_make_checkpoint_is_deterministic(checkpoints, tmp_path):
    for family, path in checkpoints.items():
        again = make_checkpoint(family, tmp_path / family)
        assert (again / "tokenizer.json").read_bytes() == (path / "tokenizer.json").read_bytes(), family
        first, second = load_file(path / "model.safetensors"), load_file(again / "model.safetensors")
        assert first.keys() == second.keys(), family
        assert all(torch.equal(first[name], second[name]) for name in first), family
    name = "bert.embeddings.word_embeddings.weight"
    other = load_file(make_checkpoint("bert", tmp_path / "seed1", seed=1) / "model.safetensors")
    assert not torch.equal(other[name], load_file(checkpoints["bert"] / "model.safetensors")[name])


def test_make_checkpoint_arguments(tmp_path):
    (tmp_path / "empty").mkdir()
    path = make_checkpoint("bert", tmp_path / "empty", num_hidden_layers=2, hidden_size=64)
    config = AutoConfig.from_pretrained(path)
    assert (config.num_hidden_layers, config.hidden_size) == (2, 64)
    with pytest.raises(FileExistsError):
        make_checkpoint("bert", path)
    with pytest.raises(ValueError, match="gpt2"):
        make_checkpoint("gpt2", tmp_path / "gpt2")


# --- transformers 4.57 -------------------------------------------------------------------------------------------

_LOWEST_SCRIPT = r"""
import json, sys
import torch, transformers
from tokenizers import normalizers
from transformers import AutoConfig, AutoModel, AutoTokenizer

transformers.logging.set_verbosity_error()
words = ["Germline", "mutations", "in", "BRCA1"]
results = {"version": transformers.__version__}
for family, path in json.loads(sys.argv[1]).items():
    config = AutoConfig.from_pretrained(path)
    model, info = getattr(transformers, config.architectures[0]).from_pretrained(path, output_loading_info=True)
    base_info = AutoModel.from_pretrained(path, output_loading_info=True)[1]
    tokenizer = AutoTokenizer.from_pretrained(path, add_prefix_space=True)
    encoding = tokenizer([words], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        model(**encoding)
    plain = AutoTokenizer.from_pretrained(path)
    prepended = AutoTokenizer.from_pretrained(path)
    prepended.backend_tokenizer.normalizer = normalizers.Prepend(" ")
    results[family] = {
        "model_type": config.model_type,
        "missing": info["missing_keys"],
        "unexpected": info["unexpected_keys"],
        "base_missing": base_info["missing_keys"],
        "tokenizer_class": type(tokenizer).__name__,
        "word_ids": encoding.word_ids(0),
        "pieces": tokenizer.convert_ids_to_tokens(encoding["input_ids"][0]),
        # (RobertaTokenizerFast refuses pre-split words without add_prefix_space=True, whatever the normalizer)
        "prepend_pieces": None if family == "roberta" else prepended.convert_ids_to_tokens(
            prepended([words], is_split_into_words=True)["input_ids"][0]
        ),
        "running_text": plain.convert_ids_to_tokens(plain(" " + " ".join(words))["input_ids"]),
        "keys": sorted(encoding.keys()),
    }
print(json.dumps(results))
"""


def _lowest_python() -> str:
    """The lowest-versions interpreter: CI names it; otherwise the one test_lowest_versions built, if any."""
    named = os.environ.get(LOWEST_PYTHON_ENV)
    if named:
        if not Path(named).is_file():
            pytest.fail(f"{LOWEST_PYTHON_ENV}={named} does not exist")
        return named
    built = venv_python(lowest_venv_dir())
    if not built.is_file():
        pytest.skip(f"no lowest-versions interpreter (set {LOWEST_PYTHON_ENV})")
    return str(built)


def test_checkpoints_load_on_the_lowest_transformers(checkpoints, tmp_path):
    """One child process on transformers 4.57 loads every family it has (all but EuroBERT)."""
    python = _lowest_python()
    paths = {family: str(path) for family, path in checkpoints.items() if family != "eurobert"}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [python, "-c", _LOWEST_SCRIPT, json.dumps(paths)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results.pop("version").startswith("4.")
    assert results.keys() == paths.keys()
    for family, result in results.items():
        assert result["model_type"] == family
        assert not result["missing"] and not result["unexpected"], (family, result)
        assert set(result["base_missing"]) <= POOLER, (family, result["base_missing"])
        assert {i for i in result["word_ids"] if i is not None} == {0, 1, 2, 3}, family
        assert ("token_type_ids" in result["keys"]) == (family in ("bert", "electra", "deberta-v2")), family
        if family in BYTE_LEVEL:  # on 4.57 add_prefix_space=True works for ModernBERT too
            assert result["pieces"] == result["running_text"], (family, result)
    assert results["modernbert"]["prepend_pieces"] == results["modernbert"]["running_text"]
    assert results["modernbert"]["tokenizer_class"] == "PreTrainedTokenizerFast"
