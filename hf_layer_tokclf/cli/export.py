"""``hf-layer-tokclf export-onnx`` and ``export-transformers``: a trained model as ONNX, or as its family's
stock transformers class.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..base.manifest import CARD, is_bookkeeping
from .options import add_trust_option
from .parsing import CommandParser, add_model_argument


def export_onnx_parser() -> argparse.ArgumentParser:
    from ..base.defaults import DEFAULT_OPSET

    parser = CommandParser(
        prog="hf-layer-tokclf export-onnx",
        description="Export a trained model for serving: OUT_DIR/model.onnx (the encoder layers the model uses "
        "plus its head; inputs input_ids, attention_mask and, where the family has them, token_type_ids; output "
        "logits, or for a multi-task model one output per task, logits_<task>; dynamic batch and "
        "sequence axes), checked against PyTorch, with config.json, the tokenizer files and onnx_export.json "
        "beside it. With --quantize int8, model.onnx is the int8 model (onnxruntime dynamic quantization), "
        "for CPU serving. `predict` and `evaluate` accept OUT_DIR in place of a model directory.",
    )
    _add_export_options(parser, "A trained output directory (or any token classification model).")
    parser.add_argument(
        "--quantize", choices=["int8"], default=None, help="Quantize the weights to int8 (default: float32)."
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset version (default: %(default)s).")
    return parser


def _add_export_options(parser: argparse.ArgumentParser, model_help: str) -> None:
    """MODEL_DIR OUT_DIR, --overwrite and --trust-remote-code: what every export takes."""
    add_model_argument(parser, model_help)
    parser.add_argument(
        "out_dir", metavar="OUT_DIR", help="The folder to write (refused if not empty, unless --overwrite)."
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace an earlier export in OUT_DIR (refused if it holds other files).",
    )
    add_trust_option(parser)


def export_onnx_command(argv: Sequence[str]) -> int:
    import json

    args = export_onnx_parser().parse_args(list(argv))
    from ..running.export import OPTIMUM_CLASS, export_onnx
    from ..running.onnx_runner import EXPORT_INFO

    path = export_onnx(
        args.model,
        args.out_dir,
        quantize=args.quantize,
        opset=args.opset,
        overwrite=args.overwrite,
        trust_remote_code=args.trust_remote_code,
    )
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({'int8' if args.quantize else 'float32'}, {size:.1f} MiB) and the tokenizer beside it")
    info = json.loads((path.parent / EXPORT_INFO).read_text(encoding="utf-8"))
    if info.get("task_outputs"):
        print("one output per task: " + ", ".join(f"{out} ({task})" for task, out in info["task_outputs"].items()))
    if info["no_stock_form"] is None:
        print(
            f"config.json is the stock {info['model_type']} config ({', '.join(info['architectures'] or [])}): "
            f"Optimum loads it as it is, {OPTIMUM_CLASS}.from_pretrained({str(args.out_dir)!r}); see its README.md"
        )
    else:
        print(
            f"no stock form, so Optimum cannot load it: {info['no_stock_form']}. Load it with hf-layer-tokclf "
            f"(predict, evaluate, onnx_runner.OnnxTokenClassifier); see {Path(args.out_dir, CARD)}"
        )
    return 0


def export_transformers_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="hf-layer-tokclf export-transformers",
        description="Write a model that reads one hidden layer (no layer pooling, no CRF) as its family's stock "
        "transformers class, e.g. BertForTokenClassification with num_hidden_layers=k: OUT_DIR then loads with "
        "plain AutoModelForTokenClassification.from_pretrained(OUT_DIR) and pipeline('token-classification', "
        "model=OUT_DIR), without trust_remote_code or this package, on transformers 4.57 and 5.x. Checked at "
        "export: the same logits as the source model. The stock pipeline decodes each token on its own (argmax). "
        "A multi-task model is refused (no stock class has several heads): export-onnx serves it.",
    )
    _add_export_options(parser, "A trained output directory (one --hidden-layer, no --crf).")
    return parser


def export_transformers_command(argv: Sequence[str]) -> int:
    import json

    args = export_transformers_parser().parse_args(list(argv))
    from ..running.stock_export import EXPORT_INFO, export_transformers

    out_dir = export_transformers(
        args.model, args.out_dir, overwrite=args.overwrite, trust_remote_code=args.trust_remote_code
    )
    info = json.loads((out_dir / EXPORT_INFO).read_text(encoding="utf-8"))
    files = ", ".join(sorted(path.name for path in out_dir.iterdir() if not is_bookkeeping(path.name)))
    print(
        f"wrote {out_dir}: {info['class']} with {info['num_hidden_layers']} layers (hidden_layer="
        f"{info['hidden_layer']} of {info['backbone_num_hidden_layers']}), logits within "
        f"{info['max_abs_diff_vs_source']:.1g} of the source ({files})"
    )
    return 0
