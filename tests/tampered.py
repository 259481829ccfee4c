"""Model folders someone else prepared: each ships Python code that writes a marker file when it is imported.

- `foreign_code_folder`: a working token classifier of a model type nobody installed (``auto_map`` to its
  own configuration and model code): it loads only if that code runs.
- `edited_code_folder`: a model of this package whose travelling code files were edited: the installed
  classes load it, so its code must never run, whatever the caller allows.

The marker's absence after a command is the proof that nothing from the folder ran.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import torch
from conftest import save_tiny_model, tiny_bert_kwargs

PAYLOAD = "from pathlib import Path\n\nPath({marker!r}).write_text('the folder\\'s code ran')\n"

CONFIG_CODE = """
from transformers import BertConfig


class MarkerConfig(BertConfig):
    model_type = "marker-bert"
"""
MODELING_CODE = """
from transformers import BertForTokenClassification

from .configuration_marker import MarkerConfig


class MarkerForTokenClassification(BertForTokenClassification):
    config_class = MarkerConfig
"""


def foreign_code_folder(folder: Path, tokenizer, marker: Path) -> Path:
    """A random tiny BERT token classifier saved as ``marker-bert``, whose code writes ``marker`` on import."""
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(0)
    BertForTokenClassification(BertConfig(**tiny_bert_kwargs())).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "marker-bert"
    config["auto_map"] = {
        "AutoConfig": "configuration_marker.MarkerConfig",
        "AutoModelForTokenClassification": "modeling_marker.MarkerForTokenClassification",
    }
    (folder / "config.json").write_text(json.dumps(config))
    payload = PAYLOAD.format(marker=str(marker))
    (folder / "configuration_marker.py").write_text(payload + textwrap.dedent(CONFIG_CODE))
    (folder / "modeling_marker.py").write_text(payload + MODELING_CODE)
    return folder


def edited_code_folder(folder: Path, tokenizer, marker: Path) -> Path:
    """`save_tiny_model` (a model of ours), with the marker payload added to each of its code files."""
    save_tiny_model(folder, tokenizer)
    for path in folder.glob("*_layer_tokclf.py"):  # appended: module-level code runs on import all the same
        path.write_text(path.read_text() + "\n" + PAYLOAD.format(marker=str(marker)))
    return folder
