"""One grammar for every subcommand: `CommandParser`, and the option kinds that several commands declare alike
(the model, run_ner.py's underscore spellings, switches, refused options, a dataclass's fields).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Sequence
from typing import Any

# Every parser of the CLI is a CommandParser, built with allow_abbrev=False: argparse would otherwise take --hub-tok for
# --hub-token, a spelling that redaction by option name cannot know, and a typo for another option.


class CommandParser(argparse.ArgumentParser):
    """The parser of every subcommand, so that all share one grammar.

    - Every ``--dashed-option`` is also accepted as ``--dashed_option``, as run_ner.py spells options, and is
      listed once in ``--help`` (the epilog says so).
    - Abbreviations are refused (``allow_abbrev=False``; see the comment above).
    - Options and positionals may come in any order (``parse_intermixed_args``): ``MODEL OUT_DIR`` around options.
    - Where a command takes a model (`add_model_argument`), it is MODEL or ``--model``, once.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("epilog", UNDERSCORES)
        super().__init__(allow_abbrev=False, **kwargs)
        self.model_required: bool | None = None  # None: the command takes no model

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        self.add_underscore_spellings()
        return super().parse_known_args(args, namespace)

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        parsed = self.parse_intermixed_args(args, namespace)
        if self.model_required is not None:
            self._resolve_model(parsed)
        return parsed

    def error(self, message: str) -> typing.NoReturn:
        """``PROG: error: MESSAGE`` and where the options are listed, with the option a mistyped one is nearest to;
        not argparse's synopsis first, which for train runs to thirty lines before the error."""
        self.add_underscore_spellings()
        hint = near_options(message, [*self._option_string_actions, *self.more_options])
        self.exit(2, f"{self.prog}: error: {message}{hint}\n{self.short_usage()}  (--help lists every option)\n")

    def short_usage(self) -> str:
        """``usage: PROG [options] (MODEL | --model MODEL) OUT_DIR``: the words a command needs, in one line."""
        words = ["[options]"]
        for action in self._actions:
            if action.option_strings:
                continue
            name, optional = action.metavar or action.dest.upper(), not action.required
            if action.dest == "model":
                name, optional = "MODEL | --model MODEL", not self.model_required
            words.append(f"[{name}]" if optional else f"({name})" if " " in name else name)
        return f"usage: {self.prog} {' '.join(words)}"

    more_options: Sequence[str] = ()  # options read by another parser after this one (train: TrainingArguments')

    def add_underscore_spellings(self) -> None:
        """Makes ``--a_b`` parse as ``--a-b`` for every option (not shown in --help: its actions keep their names)."""
        for name, action in list(self._option_string_actions.items()):
            if name.startswith("--"):
                self._option_string_actions.setdefault("--" + name[2:].replace("-", "_"), action)

    def _resolve_model(self, parsed: argparse.Namespace) -> None:
        given = [value for value in (parsed.model, parsed.model_option) if value is not None]
        if len(given) == 2:
            self.error(
                f"the model is given twice, as MODEL {parsed.model} and --model {parsed.model_option}: give it once, "
                "as MODEL or --model, not both."
            )
        if not given and self.model_required:
            self.error("a model is required: give MODEL (a trained output directory or a Hub id) or --model MODEL.")
        parsed.model = given[0] if given else None
        del parsed.model_option


def near_options(message: str, options: Sequence[str]) -> str:
    """``; did you mean --output?`` for each ``--option`` in an argparse error ``message`` that is none of
    ``options`` but close to one (difflib), else an empty string."""
    unknown = [word for word in re.findall(r"--[\w-]+", message) if word not in options]
    near = {word: difflib.get_close_matches(word, options, n=1, cutoff=0.75) for word in unknown}
    return "".join(f"; did you mean {match[0]}?" for match in near.values() if match)


UNDERSCORES = "Every option is also accepted spelled --like_this, as transformers' run_ner.py spells them."
MODEL_OPTIONS = ("--model", "--model-name-or-path", "--model_name_or_path")


class _Once(argparse.Action):
    """An option that may be given once: a second, different value is refused rather than silently winning."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        before = getattr(namespace, self.dest, None)
        if before is not None and before != values:
            parser.error(f"the model is given twice ({before}, {values}): give it once.")
        setattr(namespace, self.dest, values)


def add_model_argument(parser: CommandParser, help: str, required: bool = True) -> None:
    """MODEL, or ``--model`` / ``--model-name-or-path`` (run_ner.py's), in every command that takes a model."""
    parser.add_argument("model", nargs="?", default=None, metavar="MODEL", help=help)
    parser.add_argument(
        *MODEL_OPTIONS, dest="model_option", action=_Once, default=None, metavar="MODEL", help="The same as MODEL."
    )
    parser.model_required = required


def boolean(value: str) -> bool:
    """A switch's value as run_ner.py's parser reads it: true/false, yes/no, 1/0."""
    if value.lower() in ("true", "yes", "y", "t", "1"):
        return True
    if value.lower() in ("false", "no", "n", "f", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not true or false")


def add_progress_option(parser: argparse.ArgumentParser, help: str) -> None:
    """--no-progress, and the Trainer's --disable-tqdm [BOOL] as its alias (its own, so that MODEL may follow it)."""
    parser.add_argument("--no-progress", action="store_true", help=help)
    parser.add_argument(
        "--disable-tqdm",
        dest="no_progress",
        nargs="?",
        const=True,
        type=boolean,
        default=argparse.SUPPRESS,
        metavar="BOOL",
        help="The same as --no-progress (the Trainer's spelling).",
    )


class _Refused(argparse.Action):
    """A run_ner.py option this package does not take: refused with the reason, whatever its value."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        parser.error(self.help)


def add_refused_option(parser: argparse.ArgumentParser, name: str, reason: str) -> None:
    """``name`` (with or without a value) stops the parse with ``reason``, which its --help line shows."""
    parser.add_argument(name, action=_Refused, nargs="?", metavar="VALUE", help=reason)


def add_dataclass_options(
    parser: argparse.ArgumentParser,
    cls: type,
    skip: tuple[str, ...] = (),
    declare: dict[str, typing.Callable[[argparse.ArgumentParser, dataclasses.Field], None]] | None = None,
) -> None:
    """One option per field of ``cls``, as transformers' HfArgumentParser makes them (``--field-name`` and the
    field's ``aliases``; a bool is ``--flag [BOOL]``), without importing transformers. A field named in ``declare``
    is declared by its function instead (in its place: --help lists the options in the fields' order)."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip or not field.init:
            continue
        if declare and field.name in declare:
            declare[field.name](parser, field)
            continue
        kind = hints[field.name]
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        options: dict[str, Any] = {"dest": field.name, "help": field.metadata.get("help")}
        options["default"] = None if field.default is dataclasses.MISSING else field.default
        if kind is bool:
            options.update(nargs="?", const=True, type=boolean, metavar="BOOL")
        elif typing.get_origin(kind) is typing.Literal:
            options["choices"] = typing.get_args(kind)
        elif typing.get_origin(kind) is list:
            options.update(nargs="+", type=typing.get_args(kind)[0])
        else:
            options["type"] = kind
        parser.add_argument("--" + field.name.replace("_", "-"), *field.metadata.get("aliases", ()), **options)
