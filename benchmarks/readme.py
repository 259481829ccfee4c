"""Puts the benchmark tables of ``benchmarks/results/`` into README.md, between HTML comments:

    python -m benchmarks.readme   # after `python -m benchmarks`, `benchmarks.few_data`, `.corpus` or `.train_ncbi`

`tests/test_readme.py` checks the README holds what the summary functions make of the committed JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import corpus, few_data, train_ncbi
from benchmarks.common import REPO, RESULTS_DIR
from benchmarks.suite import readme_summary
from hf_layer_tokclf.files import atomic_writer

# Block name -> the results it is made of, and how.
BLOCKS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "summary": ("benchmarks.json", readme_summary),
    "few-data": ("few_data.json", few_data.readme_table),
    "corpus": ("corpus.json", corpus.readme_table),
    "main-job": ("train_ncbi.json", train_ncbi.readme_time),
}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- benchmarks:{name} (python -m benchmarks.readme) -->", f"<!-- /benchmarks:{name} -->"


def block(name: str, results_dir: Path = RESULTS_DIR) -> str:
    filename, summarize = BLOCKS[name]
    begin, end = markers(name)
    return f"{begin}\n{summarize(json.loads((results_dir / filename).read_text()))}\n{end}"


def current_block(readme: str, name: str) -> str:
    begin, end = markers(name)
    start, stop = readme.index(begin), readme.index(end) + len(end)
    return readme[start:stop]


def main() -> int:
    path = REPO / "README.md"
    readme = updated = path.read_text()
    for name in BLOCKS:
        if any(marker not in readme for marker in markers(name)):
            print(f"{path}: no {' ... '.join(markers(name))} block to fill", file=sys.stderr)
            return 1
        updated = updated.replace(current_block(updated, name), block(name))
    with atomic_writer(path) as f:
        f.write(updated)
    print(f"{path}: benchmark tables {'updated' if updated != readme else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
