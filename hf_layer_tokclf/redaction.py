"""Secrets never reach a file: command lines are recorded with the values of secret options hidden.

`train` records the command that started it in ``metrics.json`` and the model card, and the card
is uploaded with the model; ``--hub-token hf_...`` must not travel with it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

REDACTED = "REDACTED"  # needs no shell quoting
# An option whose name says it holds a secret: --hub-token, --token, --hub_token, --api-secret, --password...
SECRET_OPTION = re.compile(r"^--?[\w-]*(token|secret|password)[\w-]*$", re.IGNORECASE)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with the value of every secret option replaced by ``REDACTED``.

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
    return out


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
