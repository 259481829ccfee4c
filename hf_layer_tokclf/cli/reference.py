"""The README's table of every option of every subcommand, made from the parsers themselves:

    python -m hf_layer_tokclf.cli.reference   # rewrites the block between the markers in README.md

`tests/test_cli_grammar.py` checks the README holds what `option_block` makes, so the table cannot go stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..base.files import fill_marked_block, marked_block
from .main import PARSERS

BEGIN = "<!-- options (python -m hf_layer_tokclf.cli.reference) -->"
END = "<!-- /options -->"
README = Path(__file__).resolve().parents[2] / "README.md"
# train's one row for what transformers' TrainingArguments adds (train --help-trainer lists them all).
TRAINER_ROW = (
    "| `train` | every `TrainingArguments` option | `--num-train-epochs`, `--learning-rate`, "
    "`--per-device-train-batch-size`, `--gradient-accumulation-steps`, `--warmup-steps`, `--weight-decay`, "
    "`--seed`, `--bf16`, `--push-to-hub`, ...: all accepted; `train --help-trainer` lists them. |"
)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _names(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest.upper()}`"
    return ", ".join(f"`{name}`" for name in action.option_strings)


def _help(action: argparse.Action, prog: str) -> str:
    """An option's help as --help prints it (``%(default)s`` filled in), on one line."""
    text = (action.help or "") % {**vars(action), "prog": prog}
    if action.choices and "choices" not in text:
        text += f" One of: {', '.join(map(str, action.choices))}."
    if action.required:
        text += " Required."
    return _cell(text)


def option_rows(command: str, parser: argparse.ArgumentParser) -> list[str]:
    """One markdown row per option of ``command`` (help left out), in the order --help lists them."""
    return [
        f"| `{command}` | {_names(action)} | {_help(action, parser.prog)} |"
        for action in parser._actions  # argparse has no public list of a parser's options
        if action.help != argparse.SUPPRESS and action.dest != "help"
    ]


def option_table() -> str:
    """The README's option table (between its markers)."""
    rows = ["| command | option | what it does |", "|---|---|---|"]
    for command, make_parser in PARSERS.items():
        rows += option_rows(command, make_parser())
        if command == "train":
            rows.append(TRAINER_ROW)
    return "\n".join(rows)


def option_block() -> str:
    """The README's option table with its markers."""
    return f"{BEGIN}\n{option_table()}\n{END}"


def current_block(readme: str) -> str:
    """The option table the README holds now, markers included."""
    return marked_block(readme, BEGIN, END)


def main() -> int:
    try:
        changed = fill_marked_block(README, BEGIN, END, option_table())
    except ValueError as error:
        print(f"{README}: {error} to fill", file=sys.stderr)
        return 1
    print(f"{README}: option table {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
