"""``python -m benchmarks``: the whole speed, memory and serving benchmark in one process.

python -m benchmarks                      # full run: ~45 minutes on 2 CPU cores
python -m benchmarks --quick              # short run: ~15 minutes
python -m benchmarks --only forward,memory --model-dir runs/ncbi-disease-minilm
"""

from __future__ import annotations

import argparse
import sys

from benchmarks import suite
from benchmarks.common import command_line, parser_of


def parse_sections(text: str) -> tuple[str, ...]:
    sections = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [s for s in sections if s not in suite.SECTIONS]
    if unknown or not sections:
        raise argparse.ArgumentTypeError(f"unknown section(s) {unknown}; choose from {', '.join(suite.SECTIONS)}")
    return sections


def main(argv: list[str] | None = None) -> int:
    """Runs the sections asked for; a run of some (``--only``) keeps the others of the results it replaces."""
    parser = parser_of("benchmarks", __doc__, quick="fewer rounds, fewer layers, data slices")
    only = f"comma-separated subset of {','.join(suite.SECTIONS)}"
    parser.add_argument("--only", type=parse_sections, default=suite.SECTIONS, help=only)
    parser.add_argument("--model-dir", default=None, help="trained model for the serving section (default: train one)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default: 2)")
    args = parser.parse_args(argv)
    plan, command = suite.PLANS["quick" if args.quick else "full"], command_line("benchmarks", argv)
    result = suite.run(plan, args.only, model_dir=args.model_dir, threads=args.threads, command=command)
    for verdict in result["verdicts"]:
        print(suite.verdict_line(verdict), flush=True)
    suite.write(suite.keep_earlier(result, suite.earlier_result(args.output_dir)), args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
