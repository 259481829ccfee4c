"""Load a model folder the way a plain transformers user does (no custom code), and report what came out.

The stock form's counterpart of `remote_check`: run as a script in a fresh, isolated interpreter
(``python -I``: no ``PYTHONPATH``, no user site, not the script's folder, an empty working directory)
where ``hf_layer_tokclf`` cannot be imported, it loads the folder through ``AutoConfig`` /
``AutoTokenizer`` / ``AutoModelForTokenClassification`` and ``pipeline("token-classification")``,
all with ``trust_remote_code=False``, and prints one JSON object: the classes, the depth, the
logits for a text, the pipeline's entities, every warning, and whether anything of ours was imported.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

OURS = "hf_layer_tokclf"


def _load_plainly(model_dir: str, text: str, aggregation_strategy: str) -> dict[str, Any]:
    sys.modules[OURS] = None  # importing it now raises ImportError (a venv may have it installed)
    import io
    import logging
    import warnings

    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer, pipeline

    log = io.StringIO()
    transformers.utils.logging.get_logger().addHandler(logging.StreamHandler(log))
    plain = {"trust_remote_code": False}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = AutoConfig.from_pretrained(model_dir, **plain)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, **plain)
        model = AutoModelForTokenClassification.from_pretrained(model_dir, **plain).eval()
        encoded = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            logits = model(**encoded).logits[0]
        ner = pipeline("token-classification", model=model_dir, aggregation_strategy=aggregation_strategy, **plain)
        entities = [
            {k: (float(v) if k == "score" else v) for k, v in entity.items() if k != "index"} for entity in ner(text)
        ]
    return {
        "transformers_version": transformers.__version__,
        "config_class": type(config).__name__,
        "model_class": type(model).__name__,
        "model_module": type(model).__module__,
        "pipeline_class": type(ner).__name__,
        "num_hidden_layers": config.num_hidden_layers,
        "input_ids": encoded["input_ids"][0].tolist(),
        "logits": logits.tolist(),
        "entities": entities,
        "warnings": log.getvalue().splitlines() + [str(w.message) for w in caught],
        "imported_ours": sorted(name for name, module in sys.modules.items() if name.startswith(OURS) and module),
    }


def run_plain_check(
    model_dir: str | Path,
    text: str,
    *,
    python: str | None = None,
    aggregation_strategy: str | None = None,
    timeout: float = 600,
) -> dict[str, Any]:
    """Runs this file with ``python -I`` (default: this interpreter) in an empty folder; returns its report.

    ``python`` may be another environment's interpreter (transformers 4.57's, say). Raises
    ``RuntimeError`` with the child's output if it fails.
    """
    from ..running.decoding import DEFAULT_STRATEGY
    from .remote_check import run_report_script

    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "warning"}
    env.setdefault("HF_HUB_OFFLINE", "1")
    strategy = aggregation_strategy or DEFAULT_STRATEGY
    script = str(Path(__file__).resolve())
    return run_report_script(
        [python or sys.executable, "-I", script, str(Path(model_dir).resolve()), text, strategy],
        env,
        timeout,
        f"Loading {model_dir} with plain transformers failed",
    )


if __name__ == "__main__":
    print(json.dumps(_load_plainly(*sys.argv[1:4])))
