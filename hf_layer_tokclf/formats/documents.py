"""What `predict` reads and writes: which format an input file is in, and which format to write.

Raw text has one document per line; JSON lines hold one object per document, whose other fields
(a PMID ``id``, a title, ...) are written back beside the entities; PubMed XML, BioC and PubTator
hold documents of passages (all read by `corpus_readers`); CoNLL files hold pre-tokenized sentences
(`conll.read_conll`). A file's format is told by its first bytes and extension and, where those say
nothing (``.txt``, no extension), by its first lines, so that a token-per-line file is never
tagged as one document per token. What is written is chosen by one rule (`pick_output_format`): the
``--format`` given, else the output's name, else the input's own format where it can be written back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from .conll import DOCSTART
from .corpus_readers import CORPUS_FORMATS
from .corpus_scan import detect_corpus_format
from .corpus_writers import OUTPUT_FORMATS
from .lines import HEAD_BYTES, DataError, existing_file, format_suffix, read_head
from .records import JSON_SUFFIXES, read_json_records

__all__ = [
    "CONLL_SUFFIXES",
    "INPUT_FORMATS",
    "OUTPUT_SUFFIXES",
    "PREDICT_FORMATS",
    "detect_input_format",
    "format_name",
    "looks_like_conll",
    "pick_output_format",
    "text_column",
    "writable_formats",
]

INPUT_FORMATS = ("auto", "text", "conll", *CORPUS_FORMATS)
CONLL_SUFFIXES = (".conll", ".conllu", ".tsv", ".iob", ".iob2", ".bio", ".bioes")
DEFAULT_TEXT_COLUMN = "text"
_SAMPLE_LINES = 200
_LABEL = re.compile(r"^(O|[BIESLU]-\S+)$")


def _first_lines(path: str | Path, count: int = _SAMPLE_LINES) -> list[str]:
    """Up to ``count`` whole lines from the (decompressed) start of a file, within its first 64 KiB (undecodable
    bytes replaced: this only sniffs)."""
    head = read_head(path)
    lines = head.decode("utf-8", errors="replace").removeprefix("\ufeff").split("\n")
    if len(head) == HEAD_BYTES:
        lines.pop()  # cut short: a token without its label would make CoNLL look like text
    elif lines[-1] == "":
        lines.pop()  # after the last line break
    return [line.removesuffix("\r") for line in lines[:count]]


def looks_like_conll(lines: Sequence[str]) -> bool:
    """Whether lines read as CoNLL (one token per line) rather than as one text document per line.

    CoNLL: a ``-DOCSTART-`` line; or every non-blank line in tab-separated columns without spaces
    (``token<TAB>label``, ``.txt`` exports of CoNLL-2003); or every line ``token label`` with a label
    (``O``, ``B-X``, ...) last; or single tokens in blank-line separated sentences of several lines.
    """
    filled = [line for line in lines if line.strip(" \t")]
    if not filled:
        return False
    if any(line.split()[:1] == [DOCSTART] for line in filled):
        return True
    if all("\t" in line and " " not in line.strip(" \t") for line in filled):
        return True
    columns = [line.split() for line in filled]
    if all(len(row) >= 2 and _LABEL.match(row[-1]) for row in columns):
        return True
    blank = len(lines) - len(filled)
    return all(len(row) == 1 for row in columns) and blank > 0 and len(filled) >= 2 * blank


def detect_input_format(path: str | Path | None, declared: str = "auto") -> str:
    """``"text"``, ``"conll"`` or a corpus format (`corpus_readers.CORPUS_FORMATS`: ``"jsonl"``, ``"pubmed"``, ...):
    ``declared`` if not ``"auto"``, else a corpus format its first bytes show (`corpus_scan.detect_corpus_format`),
    else from the file's extension (`CONLL_SUFFIXES`, ``.jsonl`` / ``.json``) or its first lines. A gzip file
    is read decompressed, its extension the one before ``.gz`` (``docs.conll.gz``).

    Raises:
        DataError: ``declared`` is ``"text"`` but the file reads as CoNLL (it would become one
            document per token), naming ``--input-format``; or ``declared`` is ``"auto"`` and the file is
            XML that is neither PubMed nor BioC, naming its root element.
    """
    if declared not in INPUT_FORMATS:
        raise ValueError(f"unknown input format {declared!r}; expected one of {', '.join(INPUT_FORMATS)}")
    if path is None:  # standard input or --text: documents
        return "text" if declared == "auto" else declared
    suffix = format_suffix(path)
    existing_file(path)
    if declared == "text":
        if suffix in CONLL_SUFFIXES or looks_like_conll(_first_lines(path)):
            raise DataError(
                f"{path}: looks like CoNLL (one token per line), which text mode would tag as one document per "
                "line; give --input-format conll (or leave --input-format auto)"
            )
        return "text"
    if declared != "auto":
        return declared
    if suffix in CONLL_SUFFIXES:
        return "conll"
    found = detect_corpus_format(path)
    if found is not None:
        return found
    if suffix in JSON_SUFFIXES:
        return "jsonl"
    return "conll" if looks_like_conll(_first_lines(path)) else "text"


def text_column(path: str | Path, name: str | None = None) -> tuple[str, bool]:
    """The field of a JSON lines file's records that holds the text, and whether it is pre-tokenized.

    ``name`` (``--text-column-name``) or ``text`` for documents, else ``tokens`` for word lists; read
    from the first record.

    Raises:
        DataError: the first record has no such field, or its value is neither a string nor a list.
    """
    for number, record in read_json_records(path):
        candidates = [name] if name else [DEFAULT_TEXT_COLUMN, "tokens"]
        for column in candidates:
            if column in record and isinstance(record[column], (str, list)):
                return column, isinstance(record[column], list)
        raise DataError(
            f"{path}, line {number}: no {' or '.join(repr(c) for c in candidates)} field with a text or a word list "
            f"(keys: {', '.join(record) or 'none'}); name it with --text-column-name"
        )
    raise DataError(f"{path}: no records found (the file is empty or holds only blank lines)")


# --- What predict writes ------------------------------------------------------------------------

PREDICT_FORMATS = (*OUTPUT_FORMATS, "conll", "html")  # predict's --format
_NAMES = {
    "text": "text",
    "jsonl": "JSON lines",
    "pubmed": "PubMed XML",
    "bioc": "BioC XML",
    "bioc-json": "BioC JSON",
    "pubtator": "PubTator",
    "conll": "CoNLL",
    "html": "HTML",
}
# The formats an output's name says it holds: the first, unless the input's own format is another of them
# (a ``.json`` name holds JSON lines, or BioC JSON read from BioC JSON). Longest suffix first.
OUTPUT_SUFFIXES = {
    ".bioc.json": ("bioc-json",),
    ".bioc.xml": ("bioc",),
    ".pubtator": ("pubtator",),
    ".ndjson": ("jsonl",),
    ".jsonl": ("jsonl",),
    ".json": ("jsonl", "bioc-json"),
    ".html": ("html",),
    ".htm": ("html",),
    ".xml": ("bioc",),  # PubMed XML is read, never written
    **{suffix: ("conll",) for suffix in sorted(CONLL_SUFFIXES, key=len, reverse=True) if suffix != ".conllu"},
}
# Names whose format predict does not write, and what to do instead.
_UNWRITTEN_SUFFIXES = {
    ".gz": "predict does not compress what it writes (the output grows chunk by chunk, resumably); name it "
    "{stem} and compress it once the run is done (gzip {stem})",
    ".conllu": "predict writes CoNLL columns (token, gold label where given, prediction), not CoNLL-U; name it "
    "{stem}.conll or {stem}.tsv",
}
# The name to suggest for a format.
_SUFFIX_OF = {
    "jsonl": ".jsonl",
    "pubtator": ".pubtator",
    "bioc": ".bioc.xml",
    "bioc-json": ".bioc.json",
    "conll": ".conll",
    "html": ".html",
}


def format_name(name: str) -> str:
    """A format's name for people (``"bioc-json"`` → ``"BioC JSON"``), for messages and progress lines."""
    return _NAMES.get(name, name)


def writable_formats(input_format: str, tokenized: bool = False) -> tuple[str, ...]:
    """What predict can write of an input: CoNLL as CoNLL, word lists (``tokenized`` JSON lines) as JSON lines
    with their predictions, documents (every other input) as a corpus format or an HTML page."""
    if input_format == "conll":
        return ("conll",)
    return ("jsonl",) if tokenized else (*OUTPUT_FORMATS, "html")


def _named_formats(output: str | Path | None) -> tuple[str, tuple[str, ...]] | None:
    """(suffix, the formats it says) of an output's name; None for standard output or a name that says none.

    Raises:
        ValueError: a name predict never writes (``.gz``, ``.conllu``), saying what to name it instead.
    """
    if output is None:
        return None
    name = Path(output).name.lower()
    for suffix, how in _UNWRITTEN_SUFFIXES.items():
        if name.endswith(suffix):
            stem = str(output)[: -len(suffix)]
            raise ValueError(f"--output {output}: {how.format(stem=stem)}.")
    for suffix, formats in OUTPUT_SUFFIXES.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix, formats
    return None


def _either(items: Sequence[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _renamed(output: str | Path, suffix: str, new: str) -> str:
    """``output`` with its format's ``suffix`` replaced by ``new``: what to name it instead."""
    return str(output)[: -len(suffix)] + new


def pick_output_format(
    declared: str | None, output: str | Path | None, input_format: str, tokenized: bool = False
) -> str:
    """The format predict writes (one of `PREDICT_FORMATS`), by one rule for every engine.

    ``declared`` (``--format``) if given; else the format the output's name says (`OUTPUT_SUFFIXES`); else
    the input's own format where it can be written back (PubTator, BioC XML and JSON, JSON lines, CoNLL,
    word lists); else JSON lines (text and PubMed XML).

    Args:
        declared: ``--format``, or None.
        output: ``--output`` (a file, or Ray's folder), or None for standard output.
        input_format: The input's format (`detect_input_format`).
        tokenized: The input is JSON lines of word lists (`text_column`).

    Raises:
        ValueError: before anything is read or loaded, naming both values and what to give instead: a
            ``declared`` format the output's name contradicts, a format the input cannot be written as,
            or an output name predict never writes (``.gz``, ``.conllu``).
    """
    if declared is not None and declared not in PREDICT_FORMATS:
        raise ValueError(f"unknown output format {declared!r}; expected one of {', '.join(PREDICT_FORMATS)}")
    writable = writable_formats(input_format, tokenized)
    own = input_format if input_format in writable else writable[0]
    named = _named_formats(output)
    if named is not None and declared is not None and declared not in named[1]:
        suffix, formats = named
        said = _either([format_name(name) for name in formats])
        raise ValueError(
            f"--format {declared} contradicts --output {output}, whose {suffix} name says {said}: give --format "
            f"{formats[0]} (or no --format), or name the output {_renamed(output, suffix, _SUFFIX_OF[declared])}."
        )
    if declared is None and named is None:
        return own
    chosen = declared or (own if own in named[1] else named[1][0])
    if chosen not in writable:
        _refuse_unwritable(chosen, declared, output, named, input_format, tokenized)
    return chosen


def _refuse_unwritable(
    chosen: str,
    declared: str | None,
    output: str | Path | None,
    named: tuple[str, tuple[str, ...]] | None,
    input_format: str,
    tokenized: bool,
) -> None:
    """Raises the `ValueError` of an output format the input cannot be written as, naming both and what to give."""
    writable = writable_formats(input_format, tokenized)
    given = f"--format {declared}" if declared else f"--output {output} ({format_name(chosen)} by its name)"
    source = f"{format_name(input_format)} input" + (" (word lists)" if tokenized else "")
    if named is not None:
        names = _either([_renamed(output, named[0], _SUFFIX_OF[name]) for name in writable])
        instead = f"an output named {names}" + (f", and --format {_either(writable)} or none" if declared else "")
    else:
        instead = f"--format {_either(writable)}, or no --format"
    raise ValueError(
        f"{given}: {source} cannot be written as {format_name(chosen)}, only as "
        f"{_either([format_name(name) for name in writable])}: give {instead}."
    )
