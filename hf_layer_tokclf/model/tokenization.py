"""Tokenizers that split pre-tokenized words the same way in every encoder family, saved so 4.x loads them.

Byte-level BPE tokenizers (RoBERTa, ModernBERT, EuroBERT) mark a word that follows a space with ``Ġ``.
Given pre-split words (``is_split_into_words=True``, how CoNLL data is encoded) they would encode every
word as if it started the text ("mutations" as ``m ut ations``, not ``Ġmutations``) unless told to add
a prefix space; 4.x's RoBERTa tokenizer refuses such input outright. `load_tokenizer` passes
``add_prefix_space=True``; where the backend still would not add the space (transformers 5.x stores the
flag of a generic fast tokenizer without applying it; EuroBERT's pre-tokenizer is a sequence the flag
cannot fix), it puts a ``Prepend(" ")`` normaliser in front, which works on 4.x and 5.x alike and is
saved in ``tokenizer.json``. The facts behind this are pinned down in tests/families.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..base.code_consent import may_run_code
from ..base.files import write_json

TOKENIZER_CONFIG = "tokenizer_config.json"
# transformers 5.x saves a generic fast tokenizer under a class name 4.x does not have.
_CLASS_NAMES_FOR_4X = {"TokenizersBackend": "PreTrainedTokenizerFast"}


def load_tokenizer(name_or_path: str | Path, *, trust_remote_code: bool | None = None, **kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained``, with ``add_prefix_space=True`` where the tokenizer is byte-level.

    Whether code shipped with the tokenizer may run is `code_consent.may_run_code`'s decision (the
    caller's ``trust_remote_code``, else the environment), passed to transformers as an explicit bool:
    it would otherwise ask on a terminal.
    """
    from transformers import AutoTokenizer

    from .auto import register_auto_classes

    register_auto_classes()  # AutoTokenizer reads config.json's model_type, which may be one of ours
    kwargs = {**kwargs, "trust_remote_code": may_run_code(name_or_path, trust_remote_code)}
    tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), **kwargs)
    if needs_prefix_space(tokenizer):
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), add_prefix_space=True, **kwargs)
        _add_prefix_space_to_backend(tokenizer)
    return tokenizer


def _byte_level(tokenizer: Any) -> bool:
    """Whether a fast tokenizer's backend pre-tokenizes byte-level (a ByteLevel step, alone or in a sequence)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)  # None: a slow tokenizer, which handles the flag
    state = json.loads(backend.to_str()).get("pre_tokenizer") if backend is not None else None
    steps = [state] if state else []
    steps = [s for step in steps for s in (step.get("pretokenizers") or [step])]
    return any(step.get("type") == "ByteLevel" for step in steps)


def _prefixes_words(backend: Any) -> bool:
    """Whether the backend turns a lone word into ``Ġword``, as it does a word after a space."""
    text = backend.normalizer.normalize_str("word") if backend.normalizer is not None else "word"
    return backend.pre_tokenizer.pre_tokenize_str(text)[0][0].startswith("Ġ")


def needs_prefix_space(tokenizer: Any) -> bool:
    """Whether the tokenizer is byte-level and would encode a pre-split word without its leading space."""
    if not _byte_level(tokenizer):
        return False
    return not _prefixes_words(tokenizer.backend_tokenizer) or getattr(tokenizer, "add_prefix_space", None) is False


def _add_prefix_space_to_backend(tokenizer: Any) -> None:
    from tokenizers import normalizers

    backend = tokenizer.backend_tokenizer
    if _prefixes_words(backend):
        return
    prepend = normalizers.Prepend(" ")
    backend.normalizer = prepend if backend.normalizer is None else normalizers.Sequence([backend.normalizer, prepend])


def save_tokenizer(tokenizer: Any, folder: str | Path) -> None:
    """``tokenizer.save_pretrained(folder)``, with a ``tokenizer_class`` that transformers 4.x can load too."""
    tokenizer.save_pretrained(str(folder))
    path = Path(folder) / TOKENIZER_CONFIG
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    name = config.get("tokenizer_class")
    if name in _CLASS_NAMES_FOR_4X:
        write_json(path, {**config, "tokenizer_class": _CLASS_NAMES_FOR_4X[name]})
