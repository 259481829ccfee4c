"""``predict --engine ray``: predict's parsed options handed to `ray_engine.predict_with_ray` (Ray Data, on this
machine or a cluster), which reads --input files and writes --output as a folder.

Imported only once the ray extra is known to be installed (`predict.predict_command`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..annotation.ray_engine import predict_with_ray
from ..formats.corpus_readers import CORPUS_FORMATS
from ..formats.documents import format_name
from ..running.tasks import parse_tasks


def _ray_input_format(path: str, declared: str) -> str:
    """The corpus format of ``--input``: as declared, or, for ``auto``, JSON lines by its (or its files') suffix."""
    if declared != "auto":
        if declared not in CORPUS_FORMATS:
            raise ValueError(f"--engine ray reads {', '.join(CORPUS_FORMATS)}; --input-format is {declared}.")
        return declared
    names = [p.name for p in Path(path).iterdir() if p.is_file()] if Path(path).is_dir() else [path]
    if names and all(name.lower().endswith((".jsonl", ".json")) for name in names):
        return "jsonl"
    raise ValueError(f"--engine ray: give --input-format for {path} (one of {', '.join(CORPUS_FORMATS)}).")


def _ray_device(device: str | None, num_gpus: float) -> str:
    """predict's --device for an actor: auto = its GPU when it has one (--ray-num-gpus), else the CPU."""
    if device in (None, "auto"):
        return "cuda" if num_gpus else "cpu"
    if device == "cuda" and not num_gpus:
        raise ValueError("--device cuda with --engine ray needs --ray-num-gpus (GPUs for each actor).")
    return device


def predict_command_ray(args: argparse.Namespace) -> int:
    """``predict --engine ray`` from predict's parsed options; returns the exit status.

    Reads ``model``, ``input``, ``input_format``, ``output``, ``overwrite``, ``batch_size``,
    ``aggregation_strategy``, ``decoding``, ``min_score``, ``tasks``, ``device``, ``dtype``, ``trust_remote_code``,
    ``on_error``, ``text_column_name``, ``format`` and the ``--ray-*`` options (``ray_address``,
    ``ray_concurrency``, ``ray_num_gpus``, ``ray_num_cpus``, ``ray_batch_size``); ``text`` and
    HTML are refused (Ray reads files and writes a corpus format).
    """
    if args.text:
        raise ValueError("--engine ray reads --input files; --text is for the local engine.")
    if not args.input or not args.output:
        raise ValueError("--engine ray needs --input (files Ray reads) and --output (the folder Ray writes).")
    result = predict_with_ray(
        args.input,
        _ray_input_format(args.input, args.input_format),
        args.output,
        model_dir=args.model,
        output_format=args.format,
        address=args.ray_address,
        concurrency=args.ray_concurrency,
        num_gpus=args.ray_num_gpus,
        num_cpus=args.ray_num_cpus,
        batch_size=args.ray_batch_size,
        text_column=args.text_column_name or "text",
        on_error=args.on_error,
        overwrite=args.overwrite,
        device=_ray_device(args.device, args.ray_num_gpus),
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        forward_batch_size=args.batch_size,
        aggregation_strategy=args.aggregation_strategy,
        decoding=args.decoding,
        min_score=args.min_score,
        tasks=parse_tasks(args.tasks),
    )
    skipped = f"; {len(result.skipped)} records skipped (named above)" if result.skipped else ""
    print(f"{result.written} documents with their entities in {result.output}/ ({format_name(result.output_format)})"
          f"{skipped}", file=sys.stderr)  # fmt: skip
    return 0
