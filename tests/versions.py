"""The versions the tests run besides the installed ones, for the tests and the CI script: the transformers 4.x
folder and the lowest-versions venv."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# The last 4.x release: people who load our remote code may still run it.
TRANSFORMERS4_SPEC = "transformers==4.57.6"


def transformers4_dir() -> Path:
    """A cache folder for `pip install --target` of TRANSFORMERS4_SPEC."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "hf-layer-tokclf" / TRANSFORMERS4_SPEC.replace("==", "-")


def build_transformers4(folder: str | Path) -> Path:
    """`pip install --target FOLDER` of TRANSFORMERS4_SPEC, once (see `build_once`); returns the folder."""
    import subprocess
    import sys

    def install(target: Path) -> None:
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", str(target)]
        subprocess.run([*cmd, TRANSFORMERS4_SPEC], check=True, capture_output=True, text=True)

    folder = Path(folder).absolute()
    build_once(folder, f"{TRANSFORMERS4_SPEC}\n", install)
    return folder


# The lowest versions the package declares, as CI installs them: torch first (a bare torch requirement
# pulls a CUDA build), then the package with its ONNX extra and the last transformers 4.x; pip picks the
# rest (huggingface-hub < 1, tokenizers 0.22, datasets) to match. tests/test_lowest_versions.py runs
# every subcommand in this environment's interpreter, named by LOWEST_PYTHON_ENV.
TORCH_SPEC = "torch==2.13.0"
LOWEST_PYTHON_ENV = "HF_LAYER_TOKCLF_LOWEST_PYTHON"
# Optimum's ONNX Runtime classes, which tests/test_export.py loads export-onnx's folders with. optimum-onnx 0.1.0
# needs optimum 2.1 and transformers < 4.58: the lowest-versions environment's transformers. So it goes into that
# environment, last, with the versions already there as constraints: pip fails rather than move one, and the
# environment still tests the lowest versions, plus two packages that nothing of ours imports (a separate
# environment would cost CI another torch install, about a minute and 1.8 GB).
OPTIMUM_SPEC = "optimum-onnx[onnxruntime]==0.1.0"
_COMPLETE = ".hf-layer-tokclf-complete"


def build_once(folder: Path, stamp: str, build) -> None:
    """Runs ``build(folder)`` unless ``folder`` holds a finished build of the same ``stamp``.

    One process at a time, under a lock file beside the folder: pytest-xdist's workers share the cache,
    and a worker must neither build over another's build nor take a half-built folder for a finished one
    (the stamp is written last).
    """
    import fcntl
    import shutil

    marker = folder / _COMPLETE
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text() == stamp:
            return
        shutil.rmtree(folder, ignore_errors=True)
        build(folder)
        marker.write_text(stamp)


def lowest_venv_dir() -> Path:
    """A cache folder for the lowest-versions virtual environment, when CI has not built one."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    specs = (TRANSFORMERS4_SPEC, TORCH_SPEC, OPTIMUM_SPEC.replace("[onnxruntime]", ""))
    return cache / "hf-layer-tokclf" / "-".join(["venv", *(spec.replace("==", "-") for spec in specs)])


def venv_python(folder: str | Path) -> Path:
    return Path(folder) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def lowest_venv_stamp(pyproject: str) -> str:
    """What the lowest-versions environment is built from: the specs and the package's dependencies (``pyproject``'s
    text). It is rebuilt when this changes, or when a build was interrupted; not for an edit elsewhere in
    pyproject.toml (pytest's or ruff's settings), which would cost CI a torch install for nothing."""
    import hashlib
    import json

    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # 3.10: the whole file, rebuilt on any edit
        depends = pyproject
    else:
        table = tomllib.loads(pyproject)
        # What pip reads to install the package: its build, its metadata and dependencies, setuptools' package list.
        install = {"build": table.get("build-system"), "project": table.get("project")}
        install["setuptools"] = table.get("tool", {}).get("setuptools")
        depends = json.dumps(install, sort_keys=True)
    digest = hashlib.sha256(depends.encode("utf-8")).hexdigest()
    return f"{TORCH_SPEC} {TRANSFORMERS4_SPEC} {OPTIMUM_SPEC} {digest}\n"


def build_lowest_venv(folder: str | Path) -> Path:
    """Creates (or reuses, if complete) the lowest-versions environment in ``folder``; returns its python.

    The package with its ONNX extra on TORCH_SPEC and TRANSFORMERS4_SPEC, then OPTIMUM_SPEC under the versions
    those installed. Standard library only, so that `.ci/run` can run this file as a script before anything is
    installed.
    """
    import subprocess
    import sys

    folder = Path(folder).absolute()
    repo = Path(__file__).resolve().parent.parent
    stamp = lowest_venv_stamp((repo / "pyproject.toml").read_text(encoding="utf-8"))
    exe = venv_python(folder)
    quiet = ["-q", "--disable-pip-version-check"]

    def run(cmd: list[str], stdout: Any = 2) -> None:
        # From outside the repository (nothing there shadows venv or pip); pip's output goes to stderr.
        subprocess.run(cmd, check=True, cwd=folder.parent, stdout=stdout)

    def build(target: Path) -> None:
        pip = [str(exe), "-m", "pip"]
        run([sys.executable, "-m", "venv", str(target)])
        run([*pip, "install", *quiet, TORCH_SPEC])
        run([*pip, "install", *quiet, "-e", f"{repo}[onnx]", TRANSFORMERS4_SPEC])
        # What those installed, as the constraints of Optimum's install: pip fails rather than move a version.
        pinned = target / "lowest-versions.txt"
        with open(pinned, "w") as out:
            run([*pip, "freeze", "--exclude-editable"], stdout=out)
        run([*pip, "install", *quiet, "-c", str(pinned), OPTIMUM_SPEC])

    build_once(folder, stamp, build)
    return exe


if __name__ == "__main__":  # .ci/run: python3 tests/versions.py FOLDER
    import sys

    print(build_lowest_venv(sys.argv[1]))
