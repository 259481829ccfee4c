"""Ctrl-C: what a command leaves behind to go on from (a partial output, a checkpoint), said in one line by
`main.main` with the command that goes on from it.
"""

from __future__ import annotations

import glob
from collections.abc import Callable
from pathlib import Path

# What a command leaves behind to go on from, should Ctrl-C stop it: a command that keeps something adds
# a note (given the command line, it says what is kept and how to go on); `main` prints it in one line.
KEPT_ON_INTERRUPT: list[Callable[[str], str | None]] = []


def partial_kept(output: str, line: str) -> str | None:
    """predict's note: the partial output (torchrun's shards' too), if one was started, and the command that resumes."""
    output_path = Path(output)
    partials = sorted(output_path.parent.glob(f"{glob.escape(output_path.name)}*.partial"))
    if not partials:
        return None
    return f"the partial output {', '.join(map(str, partials))} is kept, and the same command resumes it: {line}"


def checkpoint_kept(output_dir: str, line: str, resume: bool) -> str:
    """train's note: the last complete checkpoint, if one was saved, and the command that goes on from it."""
    from ..training.trainer import last_complete_checkpoint

    again = line if resume else f"{line} --resume"
    checkpoint = last_complete_checkpoint(output_dir) if output_dir else None
    if checkpoint is None:
        return f"no checkpoint was saved in {output_dir} yet; this starts again: {again}"
    return f"checkpoint {checkpoint} is kept, and --resume continues from it: {again}"
