"""The run lock: one run at a time on an output (a folder's `LOCK`, a single file's ``NAME.lock``).

`acquire_lock` creates a lock file holding the process's id (`files.create_whole`: no half-written lock is ever
seen) or raises `RunInProgressError` naming the process that holds it; a lock whose process is gone (killed, with
no chance to remove it) is taken over. `refuse_live_lock` only checks.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import weakref
from pathlib import Path
from typing import Any

from .files import OutputExistsError, create_whole


class RunInProgressError(OutputExistsError):
    """Another live process holds the output's lock: a run is in progress."""


def _started(pid: int) -> str | None:
    """When process ``pid`` started (Linux: clock ticks since boot), to tell a reused pid; None elsewhere."""
    with contextlib.suppress(OSError, IndexError), open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        return f.read().rsplit(")", 1)[1].split()[19]
    return None


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the process a lock names still runs (on this host; a lock of another host counts as alive)."""
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False  # not a lock this package wrote whole: nobody holds it
    if holder.get("host") != socket.gethostname():
        return True  # we cannot tell: refuse, and the message says how to remove it
    if pid == os.getpid():
        return False  # this process, done with it (a process runs one command on an output at a time)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    return holder.get("started") in (None, _started(pid))


class Lock:
    """A lock file this process holds (`acquire_lock`); released by `release`, at garbage collection or exit."""

    def __init__(self, path: Path, token: str) -> None:
        self.path, self.token = path, token
        self._finalizer = weakref.finalize(self, _release, path, token)

    def release(self) -> None:
        self._finalizer()


def _read_lock(path: Path) -> tuple[str, dict[str, Any]]:
    if path.is_symlink():
        raise OutputExistsError(f"{path} is a symlink, not a lock of this package; remove it.")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        holder = json.loads(text)
    except ValueError:
        holder = {}
    return text, holder if isinstance(holder, dict) else {}


def _release(path: Path, token: str) -> None:
    """Deletes the lock if it is still ours (after a swap, or a takeover of a lock believed stale, it is not)."""
    with contextlib.suppress(OSError):
        if _read_lock(path)[1].get("token") == token:
            path.unlink()


def acquire_lock(path: str | Path, command: str) -> Lock:
    """Creates the lock file ``path`` holding this process's id, or raises `RunInProgressError` naming the
    process that holds it. A lock whose process is gone (killed: no chance to remove it) is taken over.

    The lock is written whole under a temporary name, then linked to ``path``, which fails if it exists
    (``O_CREAT|O_EXCL`` where links are not supported): another process sees no lock or a complete one.
    """
    path = Path(path)
    token = secrets.token_hex(8)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _started(os.getpid()), "command": command}
    content = json.dumps({**me, "token": token})
    for _ in range(3):
        try:
            create_whole(path, content)
            return Lock(path, token)
        except FileExistsError:
            pass
        try:
            text, holder = _read_lock(path)
        except FileNotFoundError:
            continue  # released meanwhile
        if _alive(holder):
            raise RunInProgressError(_in_progress(path, holder))
        with contextlib.suppress(FileNotFoundError):  # stale: taken over, unless replaced meanwhile
            if _read_lock(path)[0] == text:
                path.unlink()
    raise RunInProgressError(f"{path}: another run keeps taking this output's lock; a run is in progress.")


def refuse_live_lock(path: str | Path) -> None:
    """Raises `RunInProgressError` if the lock file ``path`` is held by another live process."""
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        holder = _read_lock(path)[1]
        if _alive(holder):
            raise RunInProgressError(_in_progress(path, holder))


def _in_progress(path: Path, holder: dict[str, Any]) -> str:
    where = "" if holder.get("host") == socket.gethostname() else f" on {holder.get('host')}"
    command = f" (`{holder['command']}`)" if holder.get("command") else ""
    return (
        f"a run is in progress (pid {holder.get('pid')}{where}{command}) on this output; {path} is its lock. "
        f"Wait for it to end; if no such run exists, delete {path}."
    )
