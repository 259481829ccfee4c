"""Writing results without losing anything: atomic files and folders, and output folders never overwritten by
surprise; an overwrite replaces what a run wrote there, never anything else."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .redaction import scrub_file, scrub_tree

# The files of a model folder (`save_pretrained` of the model and tokenizer, and the card): hub.py picks
# its allow-list from them, and they are most of what a training run writes (`RUN_FILES`).
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
SHARD = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
CONFIG = "config.json"
CODE_FILES = ("configuration_layer_tokclf.py", "modeling_layer_tokclf.py", "pipeline_layer_tokclf.py")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "added_tokens.json",
)
CARD = "README.md"
METRICS = "metrics.json"
TEST_PREDICTIONS = "test_predictions.conll"  # train's test predictions, as run_ner.py's predictions.txt
CHECKPOINT = re.compile(r"^checkpoint-\d+$")
# Everything `training.train` (with the Trainer) may write in its output folder, besides shards and checkpoints.
RUN_FILES = (
    WEIGHTS,
    WEIGHTS_INDEX,
    CONFIG,
    *CODE_FILES,
    *TOKENIZER_FILES,
    CARD,
    METRICS,
    TEST_PREDICTIONS,
    "training_args.bin",
)
# What `atomic_writer` leaves of NAME if the process is killed while writing: ".NAME.<random>.tmp".
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.[^.]+\.tmp$")


class OutputExistsError(ValueError):
    """An output that already holds something, which the user did not ask to overwrite."""


@contextlib.contextmanager
def atomic_writer(
    path: str | Path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO[Any]]:
    """Opens a temporary file beside ``path`` and renames it into place only if the block succeeds.

    Readers see the old file or the complete new one, never half of it; on error the old file stays.
    Every secret the process knows is masked in it first (`redaction.scrub_file`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would have: the
        # replaced file's, or what the umask allows.
        with contextlib.suppress(OSError):
            os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~current_umask())
        text = "b" not in mode
        with os.fdopen(fd, mode, encoding=encoding if text else None, newline=newline if text else None) as f:
            yield f
            f.flush()
            scrub_file(tmp)  # a secret that reached the content is masked before anyone can read it
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (os.umask can only set it)."""
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


def output_names(names: Iterable[str], patterns: Iterable[re.Pattern[str]] = ()) -> Callable[[str], bool]:
    """A test of whether an entry's name is one a command writes: one of ``names``, a match of one of
    ``patterns``, or a temporary file of `atomic_writer` for one of them that a killed process left."""
    names, patterns = frozenset(names), tuple(patterns)

    def written(name: str) -> bool:
        leftover = _LEFTOVER.match(name)
        name = leftover["name"] if leftover else name
        return name in names or any(pattern.match(name) for pattern in patterns)

    return written


is_run_output = output_names(RUN_FILES, (SHARD, CHECKPOINT))
"""Whether a name in an output folder is something a training run writes: model, card, metrics, checkpoint-N."""


def remove_outputs(folder: str | Path, written: Callable[[str], bool] = is_run_output) -> None:
    """Deletes the entries of ``folder`` that ``written`` names (a folder whole, as a checkpoint); keeps the rest."""
    for entry in sorted(Path(folder).iterdir()):
        if not written(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def scrub_outputs(folder: str | Path, written: Callable[[str], bool] = is_run_output) -> int:
    """Masks every known secret (`redaction.scrub_file`) in the entries of ``folder`` that ``written`` names,
    for files that libraries wrote there (``save_pretrained``, the Trainer's checkpoints); returns the count."""
    count = 0
    for entry in sorted(Path(folder).iterdir()):
        if written(entry.name) and not entry.is_symlink():
            count += scrub_tree(entry) if entry.is_dir() else scrub_file(entry)
    return count


def check_overwritable(path: str | Path) -> None:
    """Refuses to overwrite the home folder, the filesystem root, or the working directory or a folder above it.

    They hold far more than any run wrote, and a slip (``--output-dir .`` or ``~``) points there; a run's
    output belongs in a folder of its own. Symlinks are resolved first.
    """
    real, cwd = Path(path).resolve(), Path.cwd().resolve()
    places = {cwd: "the working directory", Path(real.anchor): "the filesystem root"}
    places.update(dict.fromkeys(cwd.parents, "a folder above the working directory"))
    with contextlib.suppress(RuntimeError, KeyError):  # no home folder known
        places[Path.home().resolve()] = "the home folder"
    if real in places:
        raise OutputExistsError(
            f"refusing to overwrite {path}: it is {places[real]} ({real}); use a new subfolder for the output."
        )


def prepare_output_dir(
    path: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    clear: Callable[[Path], Any] | None = remove_outputs,
) -> Path:
    """Makes ``path`` ready for a run: created if missing, refused if it holds anything.

    ``resume`` keeps what is there (checkpoints to continue from). ``overwrite`` runs ``clear`` on it,
    which by default deletes what an earlier training run wrote (`is_run_output`) and keeps every other
    file, as transformers' ``--overwrite_output_dir`` never deleted anything; ``clear=None`` deletes
    nothing (the other processes of a distributed run, after the first one cleared). Overwriting the
    home folder, the root or the working directory (or above it) is refused (`check_overwritable`).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path} is a file, not a directory.")
    if overwrite:
        check_overwritable(path)
        if clear is not None and path.is_dir():
            clear(path)
    elif path.is_dir() and any(path.iterdir()) and not resume:
        raise OutputExistsError(
            f"Output directory {path} is not empty; pass --overwrite-output-dir to replace what an earlier run "
            "wrote there, or --resume to continue the training run it holds."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_replaceable(path: str | Path, written: Callable[[str], bool]) -> None:
    """Refuses a ``path`` that `atomic_folder` could not replace without losing something.

    That is a file, a folder holding an entry that ``written`` does not name (the error names them), and
    the places `check_overwritable` refuses. A missing ``path`` is fine.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path} is a file, not a directory.")
    if not path.is_dir():
        return
    check_overwritable(path)
    foreign = sorted(entry.name for entry in path.iterdir() if not written(entry.name))
    if foreign:
        listed = ", ".join(foreign[:10]) + (f" and {len(foreign) - 10} more" if len(foreign) > 10 else "")
        raise OutputExistsError(
            f"{path} holds files this command did not write ({listed}); replacing the folder would delete them. "
            "Move them away, or choose another folder."
        )


def check_export_dir(path: str | Path, *, overwrite: bool, written: Callable[[str], bool]) -> None:
    """Refuses a non-empty export folder unless ``overwrite``, and one `atomic_folder` could not replace.

    Checked before an export's work (and by `atomic_folder` again at the swap): ``written`` names what an
    export writes, so an overwrite never deletes anything else.
    """
    path = Path(path)
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"Output directory {path} is not empty; pass --overwrite to replace the earlier export in it."
        )
    check_replaceable(path, written)


@contextlib.contextmanager
def atomic_folder(path: str | Path, *, written: Callable[[str], bool]) -> Iterator[Path]:
    """Builds a folder in a temporary sibling of ``path`` and swaps it into place only if the block succeeds.

    A rename within one parent folder is atomic: the old folder is moved aside, the new one renamed in,
    then the old one deleted, so a crash leaves the old folder or the new one, never a mix, and none of
    the old one's files outlives the swap. On error the temporary folder goes and the old one stays. An
    existing ``path`` must pass `check_replaceable` with ``written`` (again just before the swap: files
    may appear while the block runs). A symlink at ``path`` is followed: its target is replaced. Every
    secret the process knows is masked in the new folder's files first (`redaction.scrub_tree`).
    """
    target = Path(os.path.realpath(path))
    check_replaceable(target, written)
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        os.chmod(building, 0o777 & ~current_umask())  # mkdtemp made it private (0700); a plain mkdir would not
        yield building
        scrub_tree(building)
        aside = _swap_in(building, target, written)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside)  # the old folder, once the new one is in place


def _swap_in(building: Path, target: Path, written: Callable[[str], bool]) -> Path | None:
    """Renames ``building`` to ``target``; returns the folder holding the old ``target``, to delete, if any."""
    if not target.exists():
        os.rename(building, target)
        return None
    check_replaceable(target, written)
    # Moved into a new folder (not renamed over an empty one, which Windows refuses), beside the target.
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", suffix=".tmp", dir=target.parent))
    os.rename(target, aside / target.name)
    try:
        os.rename(building, target)
    except BaseException:
        os.rename(aside / target.name, target)  # put the old one back
        os.rmdir(aside)
        raise
    return aside
