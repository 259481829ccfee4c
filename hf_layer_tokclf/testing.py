"""Helpers shared by the tests and the CI script: where the transformers 4.x environment lives."""

from __future__ import annotations

import os
from pathlib import Path

# The last 4.x release: people who load our remote code may still run it.
TRANSFORMERS4_SPEC = "transformers==4.57.6"


def transformers4_dir() -> Path:
    """A cache folder for `pip install --target` of TRANSFORMERS4_SPEC."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "hf-layer-tokclf" / TRANSFORMERS4_SPEC.replace("==", "-")
