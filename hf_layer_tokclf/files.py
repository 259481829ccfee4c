"""Writing results without losing anything: atomic files, and output folders never overwritten by surprise."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


class OutputExistsError(ValueError):
    """An output that already holds something, which the user did not ask to overwrite."""


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Opens a temporary file beside ``path`` and renames it into place only if the block succeeds.

    Readers see the old file or the complete new one, never half of it; on error the old file stays.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would have: the
        # replaced file's, or what the umask allows.
        with contextlib.suppress(OSError):
            os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    with contextlib.suppress(OSError, ValueError, StopIteration), open("/proc/self/status", encoding="utf-8") as f:
        return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)  # Linux: no side effect
    current = os.umask(0o22)  # elsewhere the only way to read it is to set it
    os.umask(current)
    return current


def write_json(path: str | Path, data: Any) -> None:
    """Writes ``data`` as indented JSON, atomically."""
    with atomic_writer(path) as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")


def check_output_file(path: str | Path, overwrite: bool = False) -> Path:
    """Refuses an existing output file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass --overwrite to replace it.")
    return path


def prepare_output_dir(path: str | Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Makes ``path`` ready for a run: created if missing, refused if it holds anything.

    ``resume`` keeps what is there (checkpoints to continue from); ``overwrite`` empties it first.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path} is a file, not a directory.")
    busy = path.is_dir() and any(path.iterdir())
    if busy and overwrite:
        shutil.rmtree(path)
    elif busy and not resume:
        raise OutputExistsError(
            f"Output directory {path} is not empty; pass --overwrite-output-dir to replace its content, "
            "or --resume to continue the training run it holds."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path
