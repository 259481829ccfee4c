"""The optional dependencies (the extras of pyproject.toml's ``[project.optional-dependencies]``), checked before work.

Every command calls `require` for each extra it will need before it loads a model or reads data, so that a
missing one costs nothing and is named with the one pip line that installs it, instead of a traceback at the
end of a run. The package's own modules import an optional dependency only after `require` said it is there.
"""

from __future__ import annotations

import importlib

__all__ = ["EXTRAS", "MissingExtraError", "install_line", "require"]

# Extra -> the modules of it the package imports (onnxscript, also in the onnx extra, is only the fallback
# exporter's: `export.export_onnx` says so if it is missing and needed).
EXTRAS: dict[str, tuple[str, ...]] = {
    "plot": ("matplotlib",),
    "onnx": ("onnx", "onnxruntime"),
    "spacy": ("spacy",),
    "ray": ("ray.data", "pyarrow"),
    "serve": ("fastapi", "uvicorn", "prometheus_client"),
}


class MissingExtraError(ImportError, ValueError):
    """An optional dependency is not installed; the message names what needs it and the pip line.

    An `ImportError` for library callers, and a `ValueError` (an error the user can fix) for the command line,
    which prints it in one line.
    """


def install_line(extra: str) -> str:
    """``pip install "hf-layer-tokclf[EXTRA]"``: the one command that installs ``extra``."""
    if extra not in EXTRAS:
        raise KeyError(f"unknown extra {extra!r}; expected one of {', '.join(EXTRAS)}")
    return f'pip install "hf-layer-tokclf[{extra}]"'


def require(extra: str, what_for: str) -> None:
    """Imports the modules of ``extra`` (`EXTRAS`); raises `MissingExtraError` for the first one missing.

    ``what_for`` names what needs it as the user asked for it ("predict --format html"); the message reads
    "<what_for> needs <module>, which is not installed (<why>): pip install "hf-layer-tokclf[<extra>]"".
    """
    line = install_line(extra)
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise MissingExtraError(f"{what_for} needs {module}, which is not installed ({error}): {line}") from None
