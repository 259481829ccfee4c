"""Serving: pipeline throughput per layer, our corpus-scale `predict` vs the pipeline, ONNX fp32 vs int8.

* **pipeline throughput** — sentences/s of ``pipeline("token-classification", batch_size=32)`` on
  the NCBI-disease devel text with the stock head and with ours at a few k (the notebook recipe
  cannot go into a pipeline at all);
* **predict vs pipeline** — sentences/s of `inference.predict_texts` (what `hf-layer-tokclf predict`
  runs: length-sorted batches of 32) against the pipeline on the same trained model, same
  ``aggregation_strategy`` (``first``, the CLI default), same device; the entities of the two must
  be the same (label, offsets, word; scores within 1e-4);
* **ONNX** — the model exported by `export.export_onnx` as float32 and as int8 (dynamic
  quantization), run by onnxruntime on the CPU with as many threads as PyTorch: sentences/s of
  word-level prediction (`inference.predict_sentences`: windows sorted by length, batch 32), the
  latency of one batch of 32 x 128 tokens, and entity-level test F1 (seqeval); PyTorch as a
  reference row.

On a GPU, PyTorch runs in bfloat16 with sdpa attention; onnxruntime stays on the CPU, and each
row says which device it measured. Timings are medians over rounds, each round running every
contender once in a fresh random order.
"""

from __future__ import annotations

import contextlib
import io
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import CpuShare, contention_lines, log
from benchmarks.models import Spec

REPO = Path(__file__).resolve().parent.parent
NCBI = REPO / "data" / "ncbi-disease"
SEED = 0
BATCH = 32
STRATEGY = "first"
FIXED_SEQ = 128
SCORE_TOLERANCE = 1e-4

# Targets from the project plan.
TARGET_PREDICT_SPEEDUP = 1.5  # predict vs pipeline, sentences/s
TARGET_INT8_SPEEDUP = 1.5  # int8 vs fp32 ONNX at batch 32
TARGET_INT8_F1_GAP = 1.0  # F1 points


def ncbi_sentences(name: str) -> list[Any]:
    """The sentences of one NCBI-disease file (``train.tsv``, ``devel.tsv``, ``test.tsv``), labels in IOB2."""
    from hf_layer_tokclf.data import load_sentences, normalize_labels

    sentences, _ = normalize_labels(load_sentences(str(NCBI / name)))
    return sentences


def train_model(output_dir: Path, plan: dict[str, Any], hidden_layer: int) -> dict[str, Any]:
    """Fine-tunes the packaged MiniLM on NCBI-disease for a few hundred steps (the model to serve).

    ``plan``: steps, batch, train (sentences, None for all) and dev (sentences).
    """
    from transformers import TrainingArguments

    from hf_layer_tokclf.training import TRAINING_DEFAULTS, DataArguments, ModelArguments, train

    data = DataArguments(
        train_file=str(NCBI / "train.tsv"),
        validation_file=str(NCBI / "devel.tsv"),
        max_train_samples=plan["train"],
        max_eval_samples=plan["dev"],
    )
    settings = {
        **TRAINING_DEFAULTS,
        "max_steps": plan["steps"],
        "learning_rate": 1e-4,
        "warmup_steps": plan["steps"] // 10,
        "per_device_train_batch_size": plan["batch"],
        "seed": SEED,
    }
    args = TrainingArguments(output_dir=str(output_dir), disable_tqdm=True, **settings)
    began = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        metrics = train(ModelArguments(hidden_layer=[hidden_layer]), data, args, command="benchmarks.serving")
    return {
        "steps": plan["steps"],
        "hidden_layer": hidden_layer,
        "train_sentences": plan["train"] or "all",
        "wall_s": time.perf_counter() - began,
        "dev_f1": metrics.get("eval_f1"),
    }


def time_rounds(contenders: dict[str, Callable[[], Any]], rounds: int, label: str) -> tuple[dict, dict, Any]:
    """Runs every contender once per round in a fresh random order; returns samples, first outputs, CPU share."""
    rng = random.Random(SEED)
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    outputs: dict[str, Any] = {}
    share = CpuShare()
    for number in range(rounds):
        order = list(contenders)
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            result = contenders[name]()
            samples[name].append(time.perf_counter() - start)
            outputs.setdefault(name, result)
        log(f"  [{label}] round {number + 1}/{rounds}: " + ", ".join(f"{n} {samples[n][-1]:.2f} s" for n in order))
    return samples, outputs, share.stop()


def compare_entities(ours: list[list[dict]], theirs: list[list[dict]]) -> dict[str, Any]:
    """How many documents get the same entities (label, offsets, word; scores within tolerance)."""
    same = 0
    max_score_diff = 0.0
    for a, b in zip(ours, theirs, strict=True):
        keys_a = [(e["entity_group"], e["start"], e["end"], e["word"]) for e in a]
        keys_b = [(e["entity_group"], int(e["start"]), int(e["end"]), e["word"]) for e in b]
        if keys_a == keys_b:
            diffs = [abs(x["score"] - float(y["score"])) for x, y in zip(a, b, strict=True)]
            max_score_diff = max([max_score_diff, *diffs])
            same += all(d <= SCORE_TOLERANCE for d in diffs)
    return {
        "documents": len(ours),
        "identical": same,
        "entities_ours": sum(map(len, ours)),
        "entities_pipeline": sum(map(len, theirs)),
        "max_score_diff": max_score_diff,
    }


def median(values: list[float]) -> float:
    return statistics.median(values)


def section_predict(model, tokenizer, texts, rounds, device_label) -> dict[str, Any]:
    from transformers import pipeline

    from hf_layer_tokclf.inference import model_device, predict_texts

    ner = pipeline(
        "token-classification",
        model=model,
        tokenizer=tokenizer,
        aggregation_strategy=STRATEGY,
        device=model_device(model),
    )
    contenders = {
        "ours": lambda: list(predict_texts(model, tokenizer, texts, aggregation_strategy=STRATEGY, batch_size=BATCH)),
        "pipeline": lambda: ner(texts, batch_size=BATCH),
    }
    warm = texts[: 2 * BATCH]
    list(predict_texts(model, tokenizer, warm, aggregation_strategy=STRATEGY, batch_size=BATCH))
    ner(warm, batch_size=BATCH)
    samples, outputs, cpu = time_rounds(contenders, rounds, "predict vs pipeline")
    agreement = compare_entities(outputs["ours"], outputs["pipeline"])
    rows = []
    for name, title in (
        ("ours", f"hf_layer_tokclf predict_texts (length-sorted, batch {BATCH})"),
        ("pipeline", f'pipeline("token-classification", batch_size={BATCH})'),
    ):
        rows.append(
            {
                "name": name,
                "title": title,
                "device": device_label,
                "median_s": median(samples[name]),
                "sentences_per_s": len(texts) / median(samples[name]),
                "samples_s": samples[name],
            }
        )
    speedup = rows[1]["median_s"] / rows[0]["median_s"]
    return {"rows": rows, "speedup": speedup, "agreement": agreement, "cpu_during_timing": cpu}


def fixed_batch(tokenizer, texts) -> dict[str, np.ndarray]:
    """32 real sentences, padded or cut to 128 tokens: one batch of a fixed shape."""
    batch = tokenizer(
        (texts * BATCH)[:BATCH], padding="max_length", truncation=True, max_length=FIXED_SEQ, return_tensors="np"
    )
    return {k: v.astype(np.int64) for k, v in batch.items()}


def section_onnx(model_dir, model, tokenizer, sentences, texts, rounds, device_label, workdir) -> dict[str, Any]:
    from hf_layer_tokclf.export import OnnxTokenClassifier, export_onnx
    from hf_layer_tokclf.inference import evaluate_sentences, model_device

    exports = {}
    for name, quantize in (("onnx fp32", None), ("onnx int8", "int8")):
        began = time.perf_counter()
        path = export_onnx(model_dir, workdir / name.replace(" ", "-"), quantize=quantize)
        exports[name] = {"path": path, "export_s": time.perf_counter() - began, "size_mb": path.stat().st_size / 2**20}
        log(f"  exported {name}: {exports[name]['size_mb']:.1f} MiB in {exports[name]['export_s']:.0f} s")
    runners = {
        name: OnnxTokenClassifier(info["path"], threads=torch.get_num_threads()) for name, info in exports.items()
    }
    engines = {"pytorch": model, **runners}

    def run_sentences(engine):
        return lambda: evaluate_sentences(engine, tokenizer, sentences, batch_size=BATCH, progress=False)

    fixed = fixed_batch(tokenizer, texts)
    device = model_device(model)
    fixed_torch = {k: torch.from_numpy(v).to(device) for k, v in fixed.items()}

    def run_fixed(engine):
        if engine is model:

            def call():
                with torch.inference_mode():
                    return model(**fixed_torch).logits.float().cpu()

            return call
        return lambda: engine.logits(**fixed)

    for engine in engines.values():  # warm-up
        run_fixed(engine)()
    samples, outputs, cpu = time_rounds({n: run_sentences(e) for n, e in engines.items()}, rounds, "predict_sentences")
    fixed_rounds = max(rounds * 4, 10)
    fixed_samples, _, _ = time_rounds({n: run_fixed(e) for n, e in engines.items()}, fixed_rounds, "32 x 128")
    rows = []
    for name in engines:
        scores, _ = outputs[name]
        rows.append(
            {
                "name": name,
                "device": device_label if name == "pytorch" else "cpu (onnxruntime, CPUExecutionProvider)",
                "sentences_per_s": len(sentences) / median(samples[name]),
                "median_s": median(samples[name]),
                "fixed_batch_ms": 1e3 * median(fixed_samples[name]),
                "test_f1": scores["f1"],
                "test_precision": scores["precision"],
                "test_recall": scores["recall"],
                "size_mb": exports[name]["size_mb"] if name in exports else None,
                "samples_s": samples[name],
                "fixed_batch_samples_ms": [1e3 * s for s in fixed_samples[name]],
            }
        )
    by_name = {row["name"]: row for row in rows}
    fp32, int8 = by_name["onnx fp32"], by_name["onnx int8"]
    return {
        "rows": rows,
        "int8_speedup": int8["sentences_per_s"] / fp32["sentences_per_s"],
        "int8_fixed_batch_speedup": fp32["fixed_batch_ms"] / int8["fixed_batch_ms"],
        "int8_f1_gap_points": 100 * (fp32["test_f1"] - int8["test_f1"]),
        "cpu_during_timing": cpu,
        "exports": {name: {k: str(v) if k == "path" else v for k, v in info.items()} for name, info in exports.items()},
    }


def section_pipeline(family, models, tokenizer, texts, rounds, device_label) -> dict[str, Any]:
    """Sentences/s of ``pipeline("token-classification", batch_size=32)`` per contender (no notebook recipe)."""
    from transformers import pipeline

    from hf_layer_tokclf.inference import model_device

    pipes = {
        spec: pipeline(
            "token-classification",
            model=model,
            tokenizer=tokenizer,
            aggregation_strategy=STRATEGY,
            device=model_device(model),
        )
        for spec, model in models.items()
        if spec.kind != "notebook"
    }
    warm = texts[:BATCH]
    for pipe in pipes.values():
        pipe(warm, batch_size=BATCH)
    contenders = {spec.name(): (lambda p=pipe: p(texts, batch_size=BATCH)) for spec, pipe in pipes.items()}
    samples, _, cpu = time_rounds(contenders, rounds, f"{family.name} pipeline")
    stock = median(samples[Spec("stock").name()])
    rows = [
        {
            "name": spec.name(),
            "kind": spec.kind,
            "k": spec.k,
            "device": device_label,
            "median_s": median(samples[spec.name()]),
            "sentences_per_s": len(texts) / median(samples[spec.name()]),
            "speedup_vs_stock": stock / median(samples[spec.name()]),
            "samples_s": samples[spec.name()],
        }
        for spec in pipes
    ]
    return {
        "family": family.name,
        "title": family.title,
        "num_layers": family.num_layers,
        "sentences": len(texts),
        "rounds": rounds,
        "cpu_during_timing": cpu,
        "rows": rows,
    }


def pipeline_markdown(table: dict[str, Any]) -> str:
    lines = [
        f'#### {table["title"]}: `pipeline("token-classification", batch_size={BATCH}, '
        f'aggregation_strategy="{STRATEGY}")` on {table["sentences"]} NCBI devel sentences',
        "",
        f"Median of {table['rounds']} interleaved rounds. The notebook recipe has no row: it is not a "
        "`PreTrainedModel` and cannot be put in a pipeline.",
        "",
        *contention_lines(table.get("cpu_during_timing")),
        "| model | device | median s | sentences/s | vs stock head |",
        "|---|---|---:|---:|---:|",
    ]
    for row in table["rows"]:
        lines.append(
            f"| {row['name']} | {row['device']} | {row['median_s']:.2f} | {row['sentences_per_s']:.1f} | "
            f"{row['speedup_vs_stock']:.2f}x |"
        )
    return "\n".join(lines)


def predict_markdown(predict: dict[str, Any], model_line: str) -> str:
    agreement = predict["agreement"]
    lines = [
        f"Model: {model_line}.",
        "",
        *contention_lines(predict["cpu_during_timing"]),
        "| contender | device | median s | sentences/s |",
        "|---|---|---:|---:|",
    ]
    for row in predict["rows"]:
        lines.append(f"| {row['title']} | {row['device']} | {row['median_s']:.2f} | {row['sentences_per_s']:.0f} |")
    lines += [
        "",
        f"Speed-up: **{predict['speedup']:.2f}x**. Same entities (label, offsets, word; score within "
        f"{SCORE_TOLERANCE}) on {agreement['identical']}/{agreement['documents']} documents "
        f"({agreement['entities_ours']} entities ours, {agreement['entities_pipeline']} pipeline; largest score "
        f"difference {agreement['max_score_diff']:.1e}).",
    ]
    return "\n".join(lines)


def onnx_markdown(onnx: dict[str, Any]) -> str:
    lines = [
        *contention_lines(onnx["cpu_during_timing"]),
        "sentences/s: word-level prediction of every test sentence (`predict_sentences`, windows sorted by "
        f"length, batch {BATCH}); 32 x {FIXED_SEQ}: one fixed batch; F1: entity-level (seqeval) on the test "
        "sentences.",
        "",
        f"| engine | device | sentences/s | 32 x {FIXED_SEQ} ms | test F1 | precision | recall | file MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in onnx["rows"]:
        size = f"{row['size_mb']:.1f}" if row["size_mb"] is not None else "—"
        lines.append(
            f"| {row['name']} | {row['device']} | {row['sentences_per_s']:.0f} | {row['fixed_batch_ms']:.1f} | "
            f"{100 * row['test_f1']:.2f} | {100 * row['test_precision']:.2f} | {100 * row['test_recall']:.2f} | "
            f"{size} |"
        )
    lines += [
        "",
        f"int8 vs fp32: **{onnx['int8_speedup']:.2f}x** the sentences/s ({onnx['int8_fixed_batch_speedup']:.2f}x on "
        f"the fixed batch); test F1, fp32 - int8 = {onnx['int8_f1_gap_points']:+.2f} points.",
    ]
    return "\n".join(lines)
