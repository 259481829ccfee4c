"""The one policy for what the package writes and deletes: a run writes and deletes only what it wrote.

- Output folders (train, sweep, the exports, push's staging) are claimed with `claim_output_dir`: a
  manifest in the folder (`MANIFEST`, written atomically) lists the entries a run of this package
  wrote there, and a lock file (`LOCK`, created with ``O_EXCL``, holding the process id) tells a
  second run that one is in progress. An overwrite deletes only what a manifest lists
  (`remove_outputs`), never following a symlink; a folder that holds files and no manifest is
  refused, naming them (unless it is an older version's output of the same command: `Outputs.legacy`).
- Single output files are checked with `check_output_path` before any model runs, written
  atomically (`atomic_writer`: a temporary file renamed over the name, never written through a
  symlink), or, for a file built piece by piece, opened with `open_new` (``O_EXCL``) and
  `open_for_resume` (``O_NOFOLLOW``); `acquire_lock` guards them as it guards folders.
- A folder built whole and swapped into place is `atomic_folder`; `copy_file` copies regular files only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
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
# The bookkeeping of an output folder: what runs of this package wrote there, and the run in progress.
MANIFEST = ".hf_layer_tokclf.json"
LOCK = ".hf_layer_tokclf.lock"
BOOKKEEPING = frozenset({MANIFEST, LOCK})
_MANIFEST_FORMAT = 1
# What `atomic_writer` leaves of NAME if the process is killed while writing: ".NAME.<random>.tmp".
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.[^.]+\.tmp$")
# Not on Windows: there, opening never follows a symlink of this kind anyway.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class OutputExistsError(ValueError):
    """An output that already holds something, which the user did not ask to overwrite (or that no
    overwrite may touch: files this package did not write, a symlink)."""


class RunInProgressError(OutputExistsError):
    """Another live process holds the output's lock: a run is in progress."""


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


def _listed(names: Iterable[str], limit: int = 10) -> str:
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


# --- single files ------------------------------------------------------------------------------


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


# --- locks -------------------------------------------------------------------------------------


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
            _create_whole(path, content)
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


def _create_whole(path: Path, content: str) -> None:
    """Creates ``path`` with ``content``, whole, or raises FileExistsError if anything is there."""
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


# --- output folders ----------------------------------------------------------------------------


def is_bookkeeping(name: str) -> bool:
    """Whether an entry of an output folder is its manifest or lock (or what writing one left), not an output."""
    leftover = _LEFTOVER.match(name)
    return name in BOOKKEEPING or (leftover is not None and leftover["name"] in BOOKKEEPING)


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


def _json_object(path: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        if not path.is_symlink():
            data = json.loads(path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
    return {}


def _finished_run(folder: Path) -> bool:
    """A training run of a version before manifests: its metrics.json (written last) has the run's settings."""
    return "settings" in _json_object(folder / METRICS)


RUN_OUTPUTS = Outputs(
    "train",
    is_run_output,
    legacy=_finished_run,
    resume_flag="--resume",
    # transformers 5 rotates (deletes) the oldest checkpoint-* folders by modification time, whatever follows the dash
    touched=lambda entry: entry.name.startswith("checkpoint-") and entry.is_dir(),
)
"""A training run's output folder (`training.train`)."""


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of ``folder`` (``{"command", "files", "complete"}``), or None where there is none."""
    path = Path(folder) / MANIFEST
    if not (path.exists() or path.is_symlink()):
        return None
    manifest = _json_object(path)
    files = manifest.get("files")
    plain = isinstance(files, list) and all(isinstance(n, str) and n and "/" not in n and n not in (".", "..")
                                            for n in files)  # fmt: skip
    if manifest.get("hf_layer_tokclf_outputs") != _MANIFEST_FORMAT or not plain:
        raise OutputExistsError(f"{path} is not a manifest of this package (a symlink, or garbled); remove it.")
    return manifest


def _write_manifest(folder: Path, command: str, files: Iterable[str], complete: bool) -> None:
    """Names relative to ``folder``, sorted; written atomically (a reader sees the old list or the new one)."""
    names = sorted(name for name in set(files) if not is_bookkeeping(name))
    data = {"hf_layer_tokclf_outputs": _MANIFEST_FORMAT, "command": command, "complete": complete, "files": names}
    write_json(folder / MANIFEST, data)


def record_outputs(
    folder: str | Path, names: Iterable[str] = (), *, written: Callable[[str], bool] | None = None,
    complete: bool | None = None,
) -> None:  # fmt: skip
    """Adds ``names`` (and, with ``written``, every entry of ``folder`` it names) to the folder's manifest.

    ``complete=True``: the run finished writing, so an entry of its names that the manifest does not
    list is not the run's (`claim_output_dir` refuses it).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        raise OutputExistsError(f"{folder} has no {MANIFEST}: claim it (files.claim_output_dir) before writing.")
    found = {entry.name for entry in folder.iterdir() if written(entry.name)} if written else set()
    done = manifest.get("complete", False) if complete is None else complete
    _write_manifest(folder, manifest["command"], {*manifest["files"], *names, *found}, done)


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
        leftover = _LEFTOVER.match(entry.name)
        if entry.name in chosen or (leftover and leftover["name"] in chosen):
            _delete(entry)
            gone.append(entry.name)
    _write_manifest(folder, manifest["command"], set(manifest["files"]) - chosen, manifest.get("complete", False))
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
            _write_manifest(path, outputs.command, owned, complete=not in_place)
        if overwrite and in_place:
            remove_outputs(path)
    except BaseException:
        lock.release()
        raise
    return OutputClaim(path, outputs, lock, created)


@contextlib.contextmanager
def atomic_folder(path: str | Path, outputs: Outputs) -> Iterator[Path]:
    """Builds a folder in a temporary sibling of ``path`` and swaps it into place only if the block succeeds.

    A rename within one parent folder is atomic: the old folder is moved aside, the new one renamed in,
    then the old one deleted, so a crash leaves the old folder or the new one, never a mix, and none of
    the old one's files outlives the swap. On error the temporary folder goes and the old one stays. An
    existing ``path`` must hold only what a run of ``outputs`` wrote (`check_output_dir` with ``whole``,
    again just before the swap: files may appear while the block runs); the new folder gets a complete
    manifest of its entries. A symlink at ``path`` is followed: its target is replaced. Every secret the
    process knows is masked in the new folder's files first (`redaction.scrub_tree`).
    """
    target = Path(os.path.realpath(path))
    check_output_dir(target, outputs, overwrite=True, whole=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        os.chmod(building, 0o777 & ~current_umask())  # mkdtemp made it private (0700); a plain mkdir would not
        yield building
        scrub_tree(building)
        _write_manifest(building, outputs.command, os.listdir(building), complete=True)
        aside = _swap_in(building, target, outputs)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside)  # the old folder, once the new one is in place


def _swap_in(building: Path, target: Path, outputs: Outputs) -> Path | None:
    """Renames ``building`` to ``target``; returns the folder holding the old ``target``, to delete, if any."""
    if not target.exists():
        os.rename(building, target)
        return None
    check_output_dir(target, outputs, overwrite=True, whole=True)
    refuse_live_lock(target / LOCK)  # another export's: its folder is not ours to move
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
