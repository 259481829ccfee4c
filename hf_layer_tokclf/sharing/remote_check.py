"""Load a saved model the way someone without this package does, and report what came out.

Run as a script in a fresh interpreter (see `run_remote_check`): it makes ``hf_layer_tokclf``
unimportable, loads the model directory through the Auto classes and the
``token-classification`` pipeline with ``trust_remote_code=True``, and prints one JSON object:
the logits for a text (a multi-task model's: per task), the entities the pipeline finds, the
shape ``AutoModel`` returns (a multi-task model has none), and every warning logged on the way.
Tests and `push_to_hub` compare it with the source model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def _load_like_a_stranger(model_dir: str, text: str, aggregation_strategy: str) -> dict[str, Any]:
    sys.modules["hf_layer_tokclf"] = None  # importing it now raises ImportError
    import io
    import logging
    import warnings

    import torch
    import transformers
    from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification, AutoTokenizer, pipeline

    log = io.StringIO()
    handler = logging.StreamHandler(log)
    transformers.utils.logging.get_logger().addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
        model = AutoModelForTokenClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
        encoded = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            scores = model(**encoded).logits  # a multi-task model's: a dict, task name -> logits
            logits = {k: v[0].tolist() for k, v in scores.items()} if isinstance(scores, dict) else scores[0].tolist()
            # A multi-task model has no encoder-only class (AutoModel) in its auto_map.
            has_base = "AutoModel" in (getattr(config, "auto_map", None) or {})
            base = AutoModel.from_pretrained(model_dir, trust_remote_code=True).eval() if has_base else None
            features = base(**encoded).last_hidden_state if has_base else None
        ner = pipeline(
            "token-classification",
            model=model_dir,
            trust_remote_code=True,
            aggregation_strategy=aggregation_strategy,
        )
        entities = [
            {k: (float(v) if k == "score" else v) for k, v in entity.items() if k != "index"} for entity in ner(text)
        ]
    return {
        "transformers_version": transformers.__version__,
        "config_class": type(config).__name__,
        "model_class": type(model).__name__,
        "pipeline_class": type(ner).__name__,
        "auto_model_class": type(base).__name__ if has_base else None,
        "auto_model_shape": list(features.shape) if has_base else None,
        # 0.1.0's code (BERT only) has no `encoder_layers`.
        "num_layers_built": len(model.encoder_layers if hasattr(model, "encoder_layers") else model.bert.encoder.layer),
        "input_ids": encoded["input_ids"][0].tolist(),
        "logits": logits,
        "entities": entities,
        "warnings": log.getvalue().splitlines() + [str(w.message) for w in caught],
    }


def run_remote_check(
    model_dir: str | Path, text: str, python_path: str | None = None, timeout: float = 600
) -> dict[str, Any]:
    """Runs this file in a fresh interpreter, in an empty working directory, and returns its report.

    ``python_path`` is put first on ``PYTHONPATH``: a folder holding another transformers
    release (``pip install --target``) checks that release. Raises ``RuntimeError`` with the
    child's output if it fails.
    """
    from ..running.decoding import DEFAULT_STRATEGY

    env = dict(os.environ)
    if python_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (python_path, env.get("PYTHONPATH")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["TRANSFORMERS_VERBOSITY"] = "warning"

    return run_report_script(
        [sys.executable, str(Path(__file__).resolve()), str(Path(model_dir).resolve()), text, DEFAULT_STRATEGY],
        env,
        timeout,
        f"Loading {model_dir} through remote code failed",
    )


def run_report_script(command: list[str], env: dict[str, str], timeout: float, failure: str) -> dict[str, Any]:
    """Runs a check script (this one, or `plain_check`) in an empty working directory and returns the JSON
    object it prints last. Raises ``RuntimeError`` starting with ``failure``, with the child's output, if it fails."""
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run(
            command, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout, stdin=subprocess.DEVNULL
        )
    if proc.returncode != 0:
        raise RuntimeError(f"{failure}:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    # Python put this file's folder first on sys.path: drop it, so nothing of ours is importable.
    sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    print(json.dumps(_load_like_a_stranger(*sys.argv[1:4])))
