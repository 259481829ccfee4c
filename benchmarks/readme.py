"""Puts the performance tables of ``benchmarks/results/benchmarks.json`` into README.md.

    python -m benchmarks.readme            # after `python -m benchmarks`

The tables sit between two HTML comments in the README; `tests/test_readme.py` checks that they
are what `suite.readme_summary` makes of the committed JSON, so no figure is typed by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.suite import readme_summary
from hf_layer_tokclf.files import atomic_writer

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "benchmarks.json"
BEGIN = "<!-- benchmarks:summary (python -m benchmarks.readme) -->"
END = "<!-- /benchmarks:summary -->"


def summary_block(results: Path = RESULTS) -> str:
    return f"{BEGIN}\n{readme_summary(json.loads(results.read_text()))}\n{END}"


def current_block(readme: str) -> str:
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    return readme[start:end]


def main() -> int:
    path = REPO / "README.md"
    readme = path.read_text()
    if BEGIN not in readme or END not in readme:
        print(f"{path}: no {BEGIN} ... {END} block to fill", file=sys.stderr)
        return 1
    updated = readme.replace(current_block(readme), summary_block())
    with atomic_writer(path) as f:
        f.write(updated)
    print(f"{path}: performance tables {'updated' if updated != readme else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
