"""The ``hf-layer-tokclf`` command: the table of its subcommands, and `main`, which runs the one named.

Each subcommand (a module of this package) parses its options and calls one function that the tests call directly.
Errors the user can fix (bad data, an output that exists) print one line and exit with 2; Ctrl-C prints
one line, what was kept and the command that goes on from it, and exits with 130.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from ..base.redaction import redact_command, remember_secrets_in, scrub_text
from ..sharing.hub import HubError
from .evaluate import evaluate_command, evaluate_parser
from .export import export_onnx_command, export_onnx_parser, export_transformers_command, export_transformers_parser
from .interrupts import KEPT_ON_INTERRUPT
from .predict import predict_command, predict_parser
from .push import push_command, push_parser
from .serve import serve_command, serve_parser
from .sweep import sweep_command, sweep_parser
from .train import train_command, train_parser

USAGE = """hf-layer-tokclf <command> [options]

Token classification from a chosen hidden layer of an encoder (BERT, RoBERTa, DeBERTa, ModernBERT, ...).

commands:
  train      fine-tune a model on CoNLL / JSON lines / datasets data (the Trainer's options apply)
  evaluate   entity-level precision, recall and F1 of a trained model on labeled data
  predict    entities in raw text (JSON lines out), or labels for pre-tokenized CoNLL
  push       share a trained model on the Hugging Face Hub, verified first (as push_to_hub.py)
  sweep      which layer? one linear probe per layer from one pass over the data; F1 vs cost
  export-onnx  the model as ONNX for serving (dynamic batch and sequence), optionally int8-quantized
  export-transformers  a one-layer model as its family's stock *ForTokenClassification (no custom code)
  serve      an entity server: the Inference API's token classification over HTTP, concurrent requests batched

Run `hf-layer-tokclf <command> --help` for a command's options.
"""

# Each subcommand's parser: its --help, and the README's option table (`reference`).
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "train": train_parser,
    "evaluate": evaluate_parser,
    "predict": predict_parser,
    "push": push_parser,
    "sweep": sweep_parser,
    "export-onnx": export_onnx_parser,
    "export-transformers": export_transformers_parser,
    "serve": serve_parser,
}

COMMANDS = {
    "train": train_command,
    "evaluate": evaluate_command,
    "predict": predict_command,
    "push": push_command,
    "sweep": sweep_command,
    "export-onnx": export_onnx_command,
    "export-transformers": export_transformers_command,
    "serve": serve_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the subcommand ``argv`` names (default: the command line's) and returns the exit status.

    A reader that leaves early (``predict ... | head``) ends the run quietly, with the status of a process
    SIGPIPE ended (141), as other command-line tools do: no "Broken pipe" error, no traceback.
    """
    try:
        try:
            return _run_command(argv)
        finally:
            sys.stdout.flush()  # here, not at the interpreter's exit: a reader that left is caught below
    except BrokenPipeError:
        _stdout_to_devnull()
        return SIGPIPE_STATUS


SIGPIPE_STATUS = 128 + 13  # the shell's status of a process that SIGPIPE ended


def _stdout_to_devnull() -> None:
    """Points standard output at /dev/null, as Python's documentation advises after a BrokenPipeError: what is
    still buffered then goes nowhere, instead of failing again when the interpreter flushes it at exit."""
    try:
        descriptor = sys.stdout.fileno()
    except (OSError, ValueError):  # not a file (a test's capture): nothing is flushed at exit
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)


def _run_command(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    remember_secrets_in(argv)  # their values are masked in every file written from here on (redaction)
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"hf-layer-tokclf: unknown command {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    KEPT_ON_INTERRUPT.clear()
    try:
        return command(argv[1:])
    except KeyboardInterrupt:  # Ctrl-C: what was kept and how to go on, in one line, not a traceback
        line = redact_command(["hf-layer-tokclf", *argv])  # printed: secret options' values hidden
        notes = [note for note in (kept(line) for kept in KEPT_ON_INTERRUPT) if note]
        return _say(argv[0], f"interrupted; {'; '.join(notes) or 'nothing was kept to resume from'}", 130)
    except ValueError as error:  # DataError, OutputExistsError and bad option values: the user can fix them
        return _say(argv[0], f"error: {error}", 2)
    except HubError as error:  # train --push-to-hub: the model is saved, the Hub failed
        return _say(argv[0], f"error: {error}", 1)
    except BrokenPipeError:  # the reader of standard output left (| head): `main` ends quietly
        raise
    except OSError as error:  # a Hub id that cannot be fetched, a full disk: the environment, not a bug
        return _say(argv[0], f"error: {' '.join(str(error).split())}", 1)


def _say(command: str, message: str, code: int) -> int:
    """Prints ``hf-layer-tokclf COMMAND: MESSAGE`` on stderr, any secret the process knows masked; returns ``code``."""
    print(f"hf-layer-tokclf {command}: {scrub_text(message)}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
