"""Atomic files and safe opening: how the package puts a file or folder in place, never half written, never
through a symlink.

- `atomic_writer`: a temporary file beside the name, renamed over it only when the block succeeds (`write_json`,
  `fill_marked_block` write with it); `publish` renames a file written over a long run into place the same way.
- `open_new` (``O_EXCL``), `open_for_resume` (``O_NOFOLLOW``) and `copy_file`: files built piece by piece, a
  symlink or a stranger's file refused; `create_whole`: a small file created whole or not at all (the run lock).
- `swapped_folder`: a folder built beside its name and swapped in with renames.

Every rename and temporary file of the package is here (`tests/test_layout.py`); what a run may write or delete
is `outputs`'s policy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .redaction import scrub_file

# What `atomic_writer` leaves of NAME if the process is killed while writing: ".NAME.<random>.tmp".
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.[^.]+\.tmp$")
# Not on Windows: there, opening never follows a symlink of this kind anyway.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class OutputExistsError(ValueError):
    """An output that already holds something, which the user did not ask to overwrite (or that no
    overwrite may touch: files this package did not write, a symlink)."""


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


def publish(partial: str | Path, path: str | Path) -> None:
    """Moves a file written (and synced) beside ``path`` under its name in one step, as `atomic_writer` does:
    readers see no file, or the old one, or the whole new one. For files written over a long run (a corpus's
    output, resumed after a kill), which `atomic_writer`'s one block cannot hold."""
    os.replace(partial, path)


def leftover_of(name: str) -> str | None:
    """The name whose `atomic_writer` temporary file ``name`` is (what a process killed while writing left), or
    None for any other name."""
    leftover = _LEFTOVER.match(name)
    return leftover["name"] if leftover else None


def create_whole(path: Path, content: str) -> None:
    """Creates ``path`` with ``content``, whole, or raises FileExistsError if anything is there.

    The text is written under a temporary name, then linked to ``path`` (``O_CREAT|O_EXCL`` where links are
    not supported): another process sees no file or a complete one.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # as atomic_writer's
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # readable by whoever must be told a run is in progress
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:  # a filesystem without hard links: O_EXCL (FileExistsError if it is there)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
            with open(os.open(path, flags, 0o666), "w", encoding="utf-8") as f:
                f.write(content)
    finally:
        os.unlink(tmp)


def marked_block(text: str, begin: str, end: str) -> str:
    """The part of ``text`` from the marker line ``begin`` to ``end``, both included; a ValueError naming them if
    either is missing (a generated README table, say, whose markers were edited away)."""
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"no {begin} ... {end} block")
    return text[start : stop + len(end)]


def fill_marked_block(path: str | Path, begin: str, end: str, content: str) -> bool:
    """Replaces the block between the markers ``begin`` and ``end`` of the text file ``path`` (`marked_block`)
    with ``content`` between the same markers, atomically; returns whether the file changed."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    updated = text.replace(marked_block(text, begin, end), f"{begin}\n{content}\n{end}")
    if updated != text:
        with atomic_writer(path) as f:
            f.write(updated)
    return updated != text


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


def _regular(fd: int, path: Path) -> None:
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutputExistsError(f"{path} is not a regular file.")


def _open_fd(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags | _NOFOLLOW | getattr(os, "O_BINARY", 0), 0o666)
    except FileExistsError:
        raise OutputExistsError(f"{path} already exists: it was not written by this run.") from None
    except OSError:
        if path.is_symlink():  # ELOOP: O_NOFOLLOW met a symlink
            raise OutputExistsError(f"{path} is a symlink: this package never writes through one.") from None
        raise


def open_new(path: str | Path) -> IO[bytes]:
    """A new file at ``path`` for writing bytes: refused if anything (a file, a symlink) is there."""
    path = Path(path)
    return os.fdopen(_open_fd(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb")


def open_for_resume(path: str | Path) -> IO[bytes]:
    """An existing regular file at ``path``, for reading and writing bytes; a symlink there is refused."""
    path = Path(path)
    fd = _open_fd(path, os.O_RDWR)
    _regular(fd, path)
    return os.fdopen(fd, "r+b")


def copy_file(source: str | Path, target: str | Path) -> None:
    """Copies the regular file ``source`` to the new file ``target``; a symlink at either end is refused."""
    source, target = Path(source), Path(target)
    fd = _open_fd(source, os.O_RDONLY)
    _regular(fd, source)
    with os.fdopen(fd, "rb") as reading, open_new(target) as writing:
        shutil.copyfileobj(reading, writing, 1 << 20)


@contextlib.contextmanager
def swapped_folder(target: Path, *, finish: Callable[[Path], None], check: Callable[[Path], None]) -> Iterator[Path]:
    """Builds a folder in a temporary sibling of ``target`` and swaps it into place only if the block succeeds.

    A rename within one parent folder is atomic: the old folder is moved aside, the new one renamed in, then the
    old one deleted, so a crash leaves the old folder or the new one, never a mix, and none of the old one's files
    outlives the swap. ``finish`` completes the new folder after the block; ``check`` may refuse the old
    ``target`` just before it is moved aside. On error the temporary folder goes and the old one stays. What may
    be replaced is `outputs.atomic_folder`'s to decide.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        os.chmod(building, 0o777 & ~current_umask())  # mkdtemp made it private (0700); a plain mkdir would not
        yield building
        finish(building)
        aside = _swap_in(building, target, check)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside)  # the old folder, once the new one is in place


def _swap_in(building: Path, target: Path, check: Callable[[Path], None]) -> Path | None:
    """Renames ``building`` to ``target``; returns the folder holding the old ``target``, to delete, if any."""
    if not target.exists():
        os.rename(building, target)
        return None
    check(target)
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
