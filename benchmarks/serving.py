"""Serving speed: our corpus-scale `predict` vs transformers' pipeline, and ONNX fp32 vs int8.

Run from the repository root::

    python -m benchmarks.serving                          # full: trains a MiniLM (300 steps, ~5-10 min
                                                          #   on 2 cores) and uses every NCBI test sentence
    python -m benchmarks.serving --model-dir runs/ncbi-disease-minilm   # an already trained model
    python -m benchmarks.serving --quick                  # smoke run (~1 min): 100 sentences, 80 training steps
    python -m benchmarks.serving --output-dir DIR         # default: benchmarks/results/

On the NCBI-disease test sentences (words joined by spaces, one sentence per document):

1. **predict vs pipeline** — sentences/s of `inference.predict_texts` (what `hf-layer-tokclf predict`
   runs: length-sorted batches of 32) against ``pipeline("token-classification", batch_size=32)`` on
   the same model, same ``aggregation_strategy`` (``first``, the CLI default), same device; the
   entities of the two must be the same (label, offsets, word; scores within 1e-4).
2. **ONNX** — the model exported by `export.export_onnx` as float32 and as int8 (dynamic
   quantization), run by onnxruntime on the CPU with the same number of threads as PyTorch:
   sentences/s of word-level prediction (`inference.predict_sentences`: windows sorted by length,
   batch 32), the latency of one batch of 32 x 128 tokens, and entity-level test F1 (seqeval, the
   first subword's label per word, the windows of `predict_sentences`); PyTorch as a reference row.

On a GPU, PyTorch runs in bfloat16 with sdpa attention on it (section 1 and the PyTorch row of
section 2); onnxruntime stays on the CPU. The report says which device each row measured.
Timings are medians over rounds, each round running every contender once in a fresh random
order; nothing is asserted: verdict lines print PASS or FAIL and the exit code is 0. Results go to
``serving.md`` and ``serving.json`` in the output directory.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers

from benchmarks.common import machine_facts, write_results
from benchmarks.forward import CpuShare, contention_lines

REPO = Path(__file__).resolve().parent.parent
NCBI = REPO / "data" / "ncbi-disease"
DEFAULT_OUTPUT_DIR = Path(__file__).resolve().parent / "results"
THREADS = 2
SEED = 0
BATCH = 32
STRATEGY = "first"
FIXED_SEQ = 128
SCORE_TOLERANCE = 1e-4

# Targets from the project plan.
TARGET_PREDICT_SPEEDUP = 1.5  # predict vs pipeline, sentences/s
TARGET_INT8_SPEEDUP = 1.5  # int8 vs fp32 ONNX at batch 32
TARGET_INT8_F1_GAP = 1.0  # F1 points

PLANS = {
    # training steps, batch, train sentences, dev sentences, test sentences, timing rounds
    "full": {"steps": 300, "batch": 32, "train": None, "dev": 200, "test": None, "rounds": 5},
    "quick": {"steps": 80, "batch": 16, "train": 1280, "dev": 50, "test": 100, "rounds": 2},
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train_model(output_dir: Path, plan: dict[str, Any], hidden_layer: int) -> dict[str, Any]:
    """Fine-tunes the packaged MiniLM on NCBI-disease for a few hundred steps (the model to serve)."""
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
    runners = {name: OnnxTokenClassifier(info["path"], threads=THREADS) for name, info in exports.items()}
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


def verdicts(predict: dict[str, Any], onnx: dict[str, Any], shared: bool) -> list[dict[str, Any]]:
    agreement = predict["agreement"]
    same = agreement["identical"] == agreement["documents"]
    note = "; machine shared, rerun when idle" if shared else ""
    return [
        {
            "text": f"predict vs pipeline: {predict['speedup']:.2f}x the sentences/s (target >= "
            f"{TARGET_PREDICT_SPEEDUP}), same entities on {agreement['identical']}/{agreement['documents']} "
            f"documents{note}",
            "pass": predict["speedup"] >= TARGET_PREDICT_SPEEDUP and same,
        },
        {
            "text": f"int8 vs fp32 ONNX at batch {BATCH}: {onnx['int8_speedup']:.2f}x the sentences/s "
            f"({onnx['int8_fixed_batch_speedup']:.2f}x on 32 x {FIXED_SEQ}) (target >= {TARGET_INT8_SPEEDUP}){note}",
            "pass": onnx["int8_speedup"] >= TARGET_INT8_SPEEDUP,
        },
        {
            "text": f"ONNX test F1, fp32 - int8 = {onnx['int8_f1_gap_points']:+.2f} points "
            f"(target within {TARGET_INT8_F1_GAP})",
            "pass": abs(onnx["int8_f1_gap_points"]) <= TARGET_INT8_F1_GAP,
        },
    ]


def verdict_line(verdict: dict[str, Any]) -> str:
    return f"VERDICT {'PASS' if verdict['pass'] else 'FAIL'}: {verdict['text']}"


def report_markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    predict, onnx = result["predict"], result["onnx"]
    agreement = predict["agreement"]
    model = result["model"]
    trained = model.get("trained")
    lines = [
        "# Serving: predict vs pipeline, ONNX fp32 vs int8",
        "",
        f"- command: `{result['command']}`; mode {result['mode']}; started {result['started']}; "
        f"total wall time {result['wall_time_s']:.0f} s",
        f"- device measured: **{result['device']}** (PyTorch: {result['torch_dtype']}, "
        f"{result['attn_implementation']} attention); ONNX rows: onnxruntime {result['onnxruntime_version']} "
        f"on the CPU, {THREADS} intra-op threads",
        f"- CPU: {machine['cpu_model']} ({machine['os_cpu_count']} logical CPUs); torch {machine['torch_version']} "
        f"with {machine['torch_num_threads']} threads; transformers {machine['transformers_version']}; "
        f"python {machine['python_version']}",
        f"- load average at start {machine['load_average']}, at end {result['load_average_at_end']}",
        f"- model: `{model['dir']}`"
        + (
            f" (trained here: packaged MiniLM, hidden_layer={trained['hidden_layer']}, {trained['steps']} steps on "
            f"{trained['train_sentences']} NCBI training sentences, dev F1 {100 * (trained['dev_f1'] or 0):.2f}, "
            f"{trained['wall_s']:.0f} s)"
            if trained
            else ""
        )
        + f"; {model['encoder_layers']} encoder layers run",
        f"- data: {result['sentences']} NCBI-disease test sentences ({result['words']} words); as raw text "
        "for section 1 (words joined by spaces)",
        "",
        f"## 1. predict vs pipeline (aggregation_strategy={STRATEGY!r}, batch {BATCH})",
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
        "",
        f"## 2. ONNX fp32 vs int8 (batch {BATCH})",
        "",
        *contention_lines(onnx["cpu_during_timing"]),
        "sentences/s: word-level prediction of every test sentence (`predict_sentences`, windows sorted by "
        f"length); 32 x {FIXED_SEQ}: one fixed batch; F1: entity-level (seqeval) on the test sentences.",
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
        "",
        "## Verdicts",
        "",
        *(f"- {verdict_line(v)}" for v in result["verdicts"]),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 sentences, an 80-step model, 2 rounds")
    parser.add_argument("--model-dir", default=None, help="a trained model (default: train a MiniLM here first)")
    parser.add_argument("--hidden-layer", type=int, default=-1, help="layer of the model trained here (default -1)")
    parser.add_argument("--sentences", type=int, default=None, help="use only the first N test sentences")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds (default: 5, quick: 2)")
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR, help=f"default: {DEFAULT_OUTPUT_DIR}")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv

    import onnxruntime

    from hf_layer_tokclf.data import load_sentences, normalize_labels
    from hf_layer_tokclf.inference import load_model

    began = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    mode = "quick" if args.quick else "full"
    plan = PLANS[mode]
    torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    cuda = torch.cuda.is_available()
    device_label = f"cuda: {torch.cuda.get_device_name(0)}" if cuda else "cpu"
    command = shlex.join(["python", "-m", "benchmarks.serving", *argv])
    print(f"# Serving ({mode}): `{command}`; device {device_label}", flush=True)

    with tempfile.TemporaryDirectory(prefix="serving-") as tmp:
        workdir = Path(tmp)
        trained = None
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = workdir / "model"
            log(f"training a MiniLM for {plan['steps']} steps (pass --model-dir to skip) ...")
            trained = train_model(model_dir, plan, args.hidden_layer)
            log(f"  trained in {trained['wall_s']:.0f} s, dev F1 {100 * (trained['dev_f1'] or 0):.2f}")
        model, tokenizer = load_model(model_dir, device="auto")
        sentences, _ = normalize_labels(load_sentences(str(NCBI / "test.tsv")))
        limit = args.sentences or plan["test"]
        sentences = sentences[:limit] if limit else sentences
        texts = [" ".join(s.tokens) for s in sentences]
        rounds = args.rounds or plan["rounds"]

        log(f"1. predict vs pipeline on {len(texts)} sentences ...")
        predict = section_predict(model, tokenizer, texts, rounds, device_label)
        log(f"  speed-up {predict['speedup']:.2f}x; identical {predict['agreement']}")
        log("2. ONNX fp32 vs int8 ...")
        onnx = section_onnx(model_dir, model, tokenizer, sentences, texts, rounds, device_label, workdir)

    cpu = predict["cpu_during_timing"]
    shared = cpu is not None and cpu["other_processes_cores"] + cpu["steal_cores"] > 0.15
    result = {
        "command": command,
        "argv": argv,
        "cwd": os.getcwd(),
        "mode": mode,
        "started": started,
        "device": device_label,
        "torch_dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "attn_implementation": str(getattr(model.config, "_attn_implementation", "unknown")),
        "onnxruntime_version": onnxruntime.__version__,
        "machine": machine_facts(),
        "model": {
            "dir": str(args.model_dir) if args.model_dir else "(trained in a temporary folder)",
            "trained": trained,
            "encoder_layers": len(model.bert.encoder.layer) if hasattr(model, "bert") else None,
        },
        "sentences": len(sentences),
        "words": sum(len(s.tokens) for s in sentences),
        "settings": {"batch": BATCH, "aggregation_strategy": STRATEGY, "threads": THREADS, "rounds": rounds},
        "predict": predict,
        "onnx": onnx,
    }
    result["verdicts"] = verdicts(predict, onnx, shared)
    result["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result["wall_time_s"] = time.perf_counter() - began
    markdown = report_markdown(result)
    print(markdown, flush=True)
    write_results(args.output_dir, "serving", markdown, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
