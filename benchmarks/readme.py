"""Puts the benchmark tables of ``benchmarks/results/`` into README.md, between HTML comments:

    python -m benchmarks.readme   # after `python -m benchmarks`, `benchmarks.few_data`, ..., `.multitask` or `.server`

`tests/test_readme.py` checks the README holds what the summary functions make of the committed JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import corpus, few_data, multitask, server, train_ncbi
from benchmarks.common import REPO, RESULTS_DIR
from benchmarks.suite import readme_summary
from hf_layer_tokclf.base.files import fill_marked_block, marked_block

# Block name -> the results it is made of, and how.
BLOCKS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "summary": ("benchmarks.json", readme_summary),
    "few-data": ("few_data.json", few_data.readme_table),
    "corpus": ("corpus.json", corpus.readme_table),
    "main-job": ("train_ncbi.json", train_ncbi.readme_time),
    "train-ncbi": ("train_ncbi.json", train_ncbi.readme_table),
    "multitask": ("multitask.json", multitask.readme_table),
    "server": ("server.json", server.readme_table),
}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- benchmarks:{name} (python -m benchmarks.readme) -->", f"<!-- /benchmarks:{name} -->"


def summary(name: str, results_dir: Path = RESULTS_DIR) -> str:
    """What block ``name`` holds between its markers, made from its results file."""
    filename, summarize = BLOCKS[name]
    return summarize(json.loads((results_dir / filename).read_text()))


def block(name: str, results_dir: Path = RESULTS_DIR) -> str:
    begin, end = markers(name)
    return f"{begin}\n{summary(name, results_dir)}\n{end}"


def current_block(readme: str, name: str) -> str:
    return marked_block(readme, *markers(name))


def main() -> int:
    path = REPO / "README.md"
    changed = []
    for name in BLOCKS:
        try:
            changed += [name] * fill_marked_block(path, *markers(name), summary(name))
        except ValueError as error:
            print(f"{path}: {error} to fill", file=sys.stderr)
            return 1
    print(f"{path}: benchmark tables {'updated: ' + ', '.join(changed) if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
