"""Secrets never reach a file: they are caught by their value, whatever option or variable carried them.

`train` records the command that started it in ``metrics.json`` and the model card, and the card is
uploaded with the model; a Hub token must travel with neither. Two layers, one mechanism:

- `redact_command` hides the value of every option whose name says it is secret (``--hub-token``,
  ``--token``, ``--password``...), in both spellings (``--hub-token V``, ``--hub_token=V``). Every
  parser of the package refuses abbreviations (``allow_abbrev=False``), so an option is only ever
  spelled in full.
- `scrub_file` masks every occurrence of every secret the process knows (`secret_values`: the values
  given to secret options, remembered with `remember_secret`; ``HF_TOKEN``;
  ``HUGGING_FACE_HUB_TOKEN``; the token huggingface_hub would use) in a file, byte for byte with
  ``*`` so that binary files keep their layout. `files.atomic_writer` and `outputs.atomic_folder` run
  it on everything they write before it is put in place, and `staging.stage` on every staged file, so a
  secret that slipped into a setting, a card or a pickle is masked on the way out.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path

REDACTED = "REDACTED"  # needs no shell quoting
# An option whose name says it holds a secret: --hub-token, --token, --hub_token, --api-secret, --password...
SECRET_OPTION = re.compile(r"^--?[\w-]*(token|secret|password)[\w-]*$", re.IGNORECASE)
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# Shorter values are not masked: a one-letter "token" would be masked in every word of every file.
MIN_SECRET_LENGTH = 8
CHUNK_BYTES = 1 << 20  # read at a time when a file is searched for secrets

_remembered: set[str] = set()


def remember_secret(value: object) -> None:
    """Adds ``value`` (a token the run was given) to the secrets masked in everything written from now on."""
    if isinstance(value, str) and len(value.strip()) >= MIN_SECRET_LENGTH:
        _remembered.add(value.strip())


def remember_secrets_in(argv: Sequence[str]) -> None:
    """Remembers the value of every secret option in a command line (``--opt VALUE`` and ``--opt=VALUE``)."""
    words = [str(word) for word in argv]
    for i, word in enumerate(words):
        name, equals, value = word.partition("=")
        if SECRET_OPTION.match(name):
            remember_secret(value if equals else (words[i + 1] if i + 1 < len(words) else None))


def secret_values() -> list[str]:
    """Every secret this process knows, longest first (a token that contains another is masked whole)."""
    values = set(_remembered)
    values.update(os.environ.get(name, "").strip() for name in SECRET_ENV)
    try:
        import huggingface_hub

        values.add((huggingface_hub.get_token() or "").strip())
    except Exception:  # no huggingface_hub, an unreadable token file: nothing more to mask
        pass
    return sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def scrub_text(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every known secret replaced by ``REDACTED``."""
    for secret in secret_values() if secrets is None else secrets:
        text = text.replace(secret, REDACTED)
    return text


def scrub_file(path: str | Path, secrets: Iterable[str] | None = None) -> int:
    """Overwrites every occurrence of a known secret in the file at ``path`` with as many ``*``; returns how many.

    Same length, patched in place: a JSON file stays JSON and a pickle stays a pickle. Read in chunks
    (a model's weights are as big as they come), and rewritten only where a secret is found.
    """
    needles = [s.encode("utf-8") for s in (secret_values() if secrets is None else secrets)]
    if not needles:
        return 0
    found = _occurrences(Path(path), needles)
    if found:
        with open(path, "r+b") as f:
            for offset, length in found:
                f.seek(offset)
                f.write(b"*" * length)
    return len(found)


def _occurrences(path: Path, needles: list[bytes]) -> list[tuple[int, int]]:
    """(offset, length) of each needle in the file, including those across chunk boundaries."""
    overlap = max(map(len, needles)) - 1
    found: set[tuple[int, int]] = set()
    with open(path, "rb") as f:
        start, carry = 0, b""
        while chunk := f.read(CHUNK_BYTES):
            window = carry + chunk
            base = start - len(carry)
            for needle in needles:
                at = window.find(needle)
                while at != -1:
                    found.add((base + at, len(needle)))
                    at = window.find(needle, at + 1)
            start += len(chunk)
            carry = window[-overlap:] if overlap else b""
    return sorted(found)


def scrub_tree(folder: str | Path) -> int:
    """`scrub_file` on every regular file under ``folder`` (symlinks are not followed); returns the count."""
    secrets = secret_values()
    if not secrets:
        return 0
    count = 0
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root, name)
            if path.is_file() and not path.is_symlink():
                count += scrub_file(path, secrets)
    return count


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with the value of every secret option, and every known secret value, replaced by ``REDACTED``.

    Both spellings are covered: ``--hub-token VALUE`` and ``--hub-token=VALUE``. The option names
    stay, so the recorded command still says that a token was given.
    """
    words = [str(word) for word in argv]
    out: list[str] = []
    hide_next = False
    for word in words:
        if hide_next:
            hide_next = False
            if not word.startswith("--"):
                out.append(REDACTED)
                continue
        name, equals, _ = word.partition("=")
        if SECRET_OPTION.match(name):
            if equals:
                out.append(f"{name}={REDACTED}")
                continue
            hide_next = True
        out.append(word)
    secrets = secret_values()
    return [scrub_text(word, secrets) for word in out]


def redact_command(command: str | Sequence[str] | None) -> str | None:
    """A recorded command line (a shell string or an argv list) as a shell string, secrets hidden."""
    if command is None:
        return None
    words = command if not isinstance(command, str) else _split(command)
    return shlex.join(redact_argv(words))


def _split(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:  # unbalanced quotes: still hide what follows a secret option
        return command.split()
