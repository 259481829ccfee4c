"""The one policy for what the package writes and deletes: a run writes and deletes only what it wrote.

- Output folders (train, sweep, the exports, push's staging) are claimed with `claim_output_dir`: a
  manifest in the folder (`MANIFEST`, written atomically) lists the entries a run of this package
  wrote there, and a lock file (`LOCK`, `locks.acquire_lock`, holding the process id) tells a
  second run that one is in progress. An overwrite deletes only what a manifest lists
  (`remove_outputs`), never following a symlink; a folder that holds files and no manifest is
  refused, naming them (unless it is an older version's output of the same command: `Outputs.legacy`).
- Single output files are checked with `check_output_path` before any model runs, then written with
  `files.atomic_writer` (never through a symlink) or, piece by piece, `files.open_new` and
  `files.open_for_resume`; `locks.acquire_lock` guards them as it guards folders.
- A folder built whole and swapped into place is `atomic_folder` (`files.swapped_folder` does the renames).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import OutputExistsError, leftover_of, swapped_folder
from .locks import Lock, acquire_lock, refuse_live_lock
from .manifest import (
    BOOKKEEPING,
    LOCK,
    MANIFEST,
    METRICS,
    is_bookkeeping,
    is_run_output,
    json_object,
    read_manifest,
    record_outputs,
    write_manifest,
)
from .redaction import scrub_file, scrub_tree


def _listed(names: Iterable[str], limit: int = 10) -> str:
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_output_path(path: str | Path, overwrite: bool = False, *, flag: str = "--overwrite") -> Path:
    """Refuses an output file before any work: a folder (or a symlink to one) at ``path``, a parent that
    is a file, and an existing file (or symlink) unless ``overwrite``.

    An overwrite renames a new file over the name (`atomic_writer`): a symlink there is replaced, its
    target never written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(f"{path} is a folder; give the name of a file to write.")
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise OutputExistsError(f"{path}: {parent} is not a folder.")
            break
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass {flag} to replace it.")
    return path


# --- output folders ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outputs:
    """What a command writes in its output folder.

    Args:
        command: Its name (``train``, ``sweep``, ...), recorded in the manifest: a folder holding
            one command's output is refused to another.
        written: Whether an entry's name is one the command writes (`output_names`). A run's manifest
            lists what it wrote; a run killed before it finished (its manifest not complete) owns the
            entries of these names too.
        legacy: Whether a folder without a manifest is an older version's output of the command
            (which wrote no manifest): then the entries it names (``written``) are taken as the run's.
        exclusive: The folder holds nothing but the command's output (a folder replaced whole: the
            exports, push's staging): any other entry is refused, not kept.
        touched: Whether the run may replace or delete an entry although it does not write it (the
            Trainer's checkpoint rotation deletes any ``checkpoint-*`` folder): refused where no manifest
            lists it.
        flag, resume_flag: The options that allow an overwrite and a resume, for the messages.
    """

    command: str
    written: Callable[[str], bool]
    legacy: Callable[[Path], bool] | None = None
    exclusive: bool = False
    flag: str = "--overwrite-output-dir"
    resume_flag: str | None = None
    touched: Callable[[Path], bool] | None = None


def _finished_run(folder: Path) -> bool:
    """A training run of a version before manifests: its metrics.json (written last) has the run's settings."""
    return "settings" in json_object(folder / METRICS)


RUN_OUTPUTS = Outputs(
    "train",
    is_run_output,
    legacy=_finished_run,
    resume_flag="--resume",
    # transformers 5 rotates (deletes) the oldest checkpoint-* folders by modification time, whatever follows the dash
    touched=lambda entry: entry.name.startswith("checkpoint-") and entry.is_dir(),
)
"""A training run's output folder (`train.train`)."""


def _delete(entry: Path) -> None:
    """Deletes one entry a manifest lists: a symlink itself (never its target), a file, or a folder (a folder
    with a manifest of its own loses only what that lists, and goes if that empties it)."""
    if entry.is_symlink() or not entry.is_dir():
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
    elif (entry / MANIFEST).is_file():
        remove_outputs(entry)
        for name in BOOKKEEPING:
            with contextlib.suppress(FileNotFoundError):
                (entry / name).unlink()
        with contextlib.suppress(OSError):  # kept if it holds something of the user's
            entry.rmdir()
    else:
        shutil.rmtree(entry)  # rmtree deletes the links inside a folder, never what they point to


def remove_outputs(folder: str | Path, select: Callable[[str], bool] | None = None) -> list[str]:
    """Deletes the entries of ``folder`` that its manifest lists (those ``select`` names, if given), and the
    temporary files `atomic_writer` left for them; keeps everything else. Returns the names deleted."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        return []
    chosen = {name for name in manifest["files"] if select is None or select(name)}
    gone = []
    for entry in sorted(folder.iterdir()):
        if entry.name in chosen or leftover_of(entry.name) in chosen:
            _delete(entry)
            gone.append(entry.name)
    write_manifest(folder, manifest["command"], set(manifest["files"]) - chosen, manifest.get("complete", False))
    return gone


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


def _owned(folder: Path, outputs: Outputs, manifest: dict[str, Any] | None, names: list[str]) -> set[str]:
    """The entries of ``folder`` a run of ``outputs.command`` wrote: what its manifest lists, and, where the
    run was killed before it finished (or wrote no manifest: `Outputs.legacy`), what bears its names."""
    if manifest is None:
        legacy = outputs.legacy is not None and outputs.legacy(folder)
        return {name for name in names if outputs.written(name)} if legacy else set()
    listed = set(manifest["files"])
    killed = not manifest.get("complete")
    return {name for name in names if name in listed or (killed and outputs.written(name))}


def check_output_dir(
    path: str | Path, outputs: Outputs, *, overwrite: bool = False, resume: bool = False, whole: bool = False
) -> set[str]:
    """Refuses an output folder a run of ``outputs`` may not write in, naming why; returns what it owns there.

    Refused: a file; a folder holding anything (but bookkeeping) unless ``overwrite`` or ``resume``; a
    folder holding files and no manifest (unless `Outputs.legacy` says it is an older run's); a folder
    holding another command's output; an entry of the run's names that its manifest does not list (the
    run would replace it); a symlink of the run's names (a run never writes through one); with
    `Outputs.exclusive` or ``whole`` (the folder is replaced whole), any entry it does not own; with
    ``overwrite``, the places `check_overwritable` refuses. Nothing is written or deleted.
    """
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        raise OutputExistsError(f"{path} is a file, not a directory.")
    if not path.is_dir():
        return set()
    if overwrite:
        check_overwritable(path)
    names = sorted(entry.name for entry in path.iterdir() if not is_bookkeeping(entry.name))
    manifest = read_manifest(path)
    if manifest is not None and manifest.get("command") != outputs.command:
        raise OutputExistsError(
            f"{path} holds the output of `{manifest.get('command')}`, not of `{outputs.command}`; choose another "
            "folder."
        )
    owned = _owned(path, outputs, manifest, names)
    foreign = [name for name in names if name not in owned]
    if foreign and manifest is None and not owned:
        raise OutputExistsError(
            f"Output directory {path} is not empty; pass {outputs.flag} only to replace what an earlier "
            f"{outputs.command} wrote: {path} holds files this command did not write ({_listed(foreign)}), and no "
            f"{MANIFEST} listing what a run of this package wrote. Move them away, or choose a new or empty folder."
        )
    if names and not (overwrite or resume):
        more = f", or {outputs.resume_flag} to continue the run it holds" if outputs.resume_flag else ""
        raise OutputExistsError(
            f"Output directory {path} is not empty; pass {outputs.flag} to replace what an earlier "
            f"{outputs.command} wrote there{more}."
        )

    def touched(name: str) -> bool:
        return outputs.written(name) or (outputs.touched is not None and outputs.touched(path / name))

    clashes = [name for name in foreign if touched(name) or outputs.exclusive or whole]
    if clashes:
        raise OutputExistsError(
            f"{path} holds files this command did not write ({_listed(clashes)}): no manifest of a run lists them, "
            "and the run would replace or delete them. Move them away, or choose another folder."
        )
    links = [name for name in names if (name in owned or touched(name)) and (path / name).is_symlink()]
    if links:
        raise OutputExistsError(
            f"{path}: {_listed(links)} {'is a symlink' if len(links) == 1 else 'are symlinks'}; a run never writes "
            "through one nor deletes what it points to. Remove the link, or choose another folder."
        )
    return owned


class OutputClaim:
    """An output folder claimed by a run (`claim_output_dir`): its manifest, and the lock while the run lasts.

    `record` lists names before they are written; `finish` records what the run wrote (every entry of
    its names: nothing else could write them while it held the lock) and marks the manifest complete;
    `release` (also on leaving a ``with`` block, at garbage collection, or at exit) gives the lock back,
    and removes the folder again if the run created it and wrote nothing in it.
    """

    def __init__(self, path: Path, outputs: Outputs, lock: Lock | None, created: bool) -> None:
        self.path, self.outputs, self._lock = path, outputs, lock
        self._finalizer = weakref.finalize(self, _end_claim, path, lock, created)

    def record(self, *names: str) -> None:
        """Lists ``names`` in the manifest before they are written: a run killed while writing them owns them."""
        if self._lock is not None:
            record_outputs(self.path, names)

    def finish(self) -> None:
        if self._lock is not None and self._finalizer.alive:
            record_outputs(self.path, written=self.outputs.written, complete=True)
        self.release()

    def release(self) -> None:
        self._finalizer()

    def __enter__(self) -> OutputClaim:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release()


def _end_claim(path: Path, lock: Lock | None, created: bool) -> None:
    if lock is None:
        return  # a check only: nothing was taken
    lock.release()
    with contextlib.suppress(OSError):  # the folder may be gone (swapped, deleted): nothing to tidy
        if created and all(is_bookkeeping(name) for name in os.listdir(path)):
            (path / MANIFEST).unlink()
            path.rmdir()


def claim_output_dir(
    path: str | Path,
    outputs: Outputs,
    *,
    overwrite: bool = False,
    resume: bool = False,
    in_place: bool = True,
    primary: bool = True,
) -> OutputClaim:
    """Makes ``path`` ready for a run of ``outputs``: checked (`check_output_dir`), locked, listed.

    Created if missing. The lock (`LOCK`, `acquire_lock`) is taken before anything is deleted; a run in
    progress there is refused (`RunInProgressError`). A run writing ``in_place`` is marked unfinished in
    the manifest (killed, it owns what bears its names); ``overwrite`` then deletes what the manifest
    lists (`remove_outputs`) and keeps every other file, as transformers' ``--overwrite_output_dir``
    never deleted anything. ``in_place=False``: the run builds its folder elsewhere and swaps it in
    (`atomic_folder`), so nothing is deleted or marked now. ``resume`` keeps everything (checkpoints to
    continue from). A folder of an older version (`Outputs.legacy`) gets the manifest it lacked.
    ``primary=False`` (the other processes of a distributed run, after the first one claimed) only
    checks: no lock, nothing written or deleted.
    """
    path = Path(path)
    if primary and path.is_dir():
        refuse_live_lock(path / LOCK)
    check_output_dir(path, outputs, overwrite=overwrite, resume=resume)
    if not primary:
        return OutputClaim(path, outputs, None, False)
    created = not path.is_dir()
    path.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(path / LOCK, outputs.command)
    try:
        owned = check_output_dir(path, outputs, overwrite=overwrite, resume=resume)  # again, now that it is ours
        if in_place or read_manifest(path) is None:
            write_manifest(path, outputs.command, owned, complete=not in_place)
        if overwrite and in_place:
            remove_outputs(path)
    except BaseException:
        lock.release()
        raise
    return OutputClaim(path, outputs, lock, created)


@contextlib.contextmanager
def atomic_folder(path: str | Path, outputs: Outputs) -> Iterator[Path]:
    """Builds a folder in a temporary sibling of ``path`` and swaps it into place only if the block succeeds
    (`files.swapped_folder`: the old folder or the new one after a crash, never a mix). An
    existing ``path`` must hold only what a run of ``outputs`` wrote (`check_output_dir` with ``whole``,
    again just before the swap: files may appear while the block runs); the new folder gets a complete
    manifest of its entries. A symlink at ``path`` is followed: its target is replaced. Every secret the
    process knows is masked in the new folder's files first (`redaction.scrub_tree`).
    """
    target = Path(os.path.realpath(path))
    check_output_dir(target, outputs, overwrite=True, whole=True)

    def finish(building: Path) -> None:
        scrub_tree(building)
        write_manifest(building, outputs.command, os.listdir(building), complete=True)

    def check(old: Path) -> None:
        check_output_dir(old, outputs, overwrite=True, whole=True)
        refuse_live_lock(old / LOCK)  # another export's: its folder is not ours to move

    with swapped_folder(target, finish=finish, check=check) as building:
        yield building
