"""The versions the tests run besides the installed ones, for the tests and the CI script: the transformers 4.x
folder and the lowest-versions venv."""

from __future__ import annotations

import os
from pathlib import Path

# The last 4.x release: people who load our remote code may still run it.
TRANSFORMERS4_SPEC = "transformers==4.57.6"


def transformers4_dir() -> Path:
    """A cache folder for `pip install --target` of TRANSFORMERS4_SPEC."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "hf-layer-tokclf" / TRANSFORMERS4_SPEC.replace("==", "-")


# The lowest versions the package declares, as CI installs them: torch first (a bare torch requirement
# pulls a CUDA build), then the package with its ONNX extra and the last transformers 4.x; pip picks the
# rest (huggingface-hub < 1, tokenizers 0.22, datasets) to match. tests/test_lowest_versions.py runs
# every subcommand in this environment's interpreter, named by LOWEST_PYTHON_ENV.
TORCH_SPEC = "torch==2.13.0"
LOWEST_PYTHON_ENV = "HF_LAYER_TOKCLF_LOWEST_PYTHON"
_COMPLETE = ".hf-layer-tokclf-complete"


def lowest_venv_dir() -> Path:
    """A cache folder for the lowest-versions virtual environment, when CI has not built one."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "hf-layer-tokclf" / f"venv-{TRANSFORMERS4_SPEC.replace('==', '-')}-{TORCH_SPEC.replace('==', '-')}"


def venv_python(folder: str | Path) -> Path:
    return Path(folder) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def build_lowest_venv(folder: str | Path) -> Path:
    """Creates (or reuses, if complete) the lowest-versions environment in ``folder``; returns its python.

    Standard library only, so that `.ci/run` can run this file as a script before anything is installed.
    """
    import hashlib
    import shutil
    import subprocess
    import sys

    folder = Path(folder).absolute()
    exe = venv_python(folder)
    repo = Path(__file__).resolve().parent.parent
    # Rebuilt when the specs or the package's dependencies change, or when a build was interrupted.
    stamp = f"{TORCH_SPEC} {TRANSFORMERS4_SPEC} {hashlib.sha256((repo / 'pyproject.toml').read_bytes()).hexdigest()}\n"
    marker = folder / _COMPLETE
    if exe.is_file() and marker.is_file() and marker.read_text() == stamp:
        return exe
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    quiet = ["-q", "--disable-pip-version-check"]
    for cmd in (
        [sys.executable, "-m", "venv", str(folder)],
        [str(exe), "-m", "pip", "install", *quiet, TORCH_SPEC],
        [str(exe), "-m", "pip", "install", *quiet, "-e", f"{repo}[onnx]", TRANSFORMERS4_SPEC],
    ):
        # Run from outside the repository (nothing there shadows venv or pip); pip's output goes to stderr.
        subprocess.run(cmd, check=True, cwd=folder.parent, stdout=2)
    marker.write_text(stamp)
    return exe


if __name__ == "__main__":  # .ci/run: python3 tests/versions.py FOLDER
    import sys

    print(build_lowest_venv(sys.argv[1]))
