"""Serving: pipeline throughput per layer, our corpus-scale `predict` vs the pipeline, ONNX fp32 vs int8."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import common
from benchmarks.common import SEED, contention_lines, interleaved, log, md_table, ncbi_sentences, verdict
from benchmarks.models import Family, Models, Spec

BATCH = 32
STRATEGY = "first"
FIXED_SEQ = 128
SCORE_TOLERANCE = 1e-4
# Targets from the project plan.
TARGET_PREDICT_SPEEDUP = 3.0  # predict vs pipeline, sentences/s (issue 28; 2.27x before it)
TARGET_INT8_SPEEDUP = 1.5  # int8 vs fp32 ONNX at batch 32
TARGET_INT8_F1_GAP = 1.0  # F1 points


def train_model(output_dir: Path, plan: dict[str, Any], hidden_layer: int) -> dict[str, Any]:
    """Fine-tunes the packaged MiniLM on NCBI-disease (the model to serve); `plan`: steps, batch, train (sentences,
    None for all) and dev (sentences)."""
    from transformers import TrainingArguments

    from hf_layer_tokclf.training.arguments import DataArguments, ModelArguments
    from hf_layer_tokclf.training.train import train
    from hf_layer_tokclf.training.trainer import TRAINING_DEFAULTS

    data = DataArguments(**common.ncbi_files(test=False), max_train_samples=plan["train"], max_eval_samples=plan["dev"])
    settings = {"max_steps": plan["steps"], "learning_rate": 1e-4, "warmup_steps": plan["steps"] // 10}
    settings |= {"per_device_train_batch_size": plan["batch"], "seed": SEED}
    args = TrainingArguments(output_dir=str(output_dir), disable_tqdm=True, **{**TRAINING_DEFAULTS, **settings})
    with contextlib.redirect_stdout(io.StringIO()):
        model_args = ModelArguments(hidden_layer=[hidden_layer])
        metrics, wall = common.timed(lambda: train(model_args, data, args, command="benchmarks.serving"))
    trained = {"steps": plan["steps"], "hidden_layer": hidden_layer, "train_sentences": plan["train"] or "all"}
    return trained | {"wall_s": wall, "dev_f1": metrics.get("eval_f1")}


def compare_entities(ours: list[list[dict]], theirs: list[list[dict]]) -> dict[str, Any]:
    """How many documents get the same entities (label, offsets, word; scores within tolerance)."""
    same, max_score_diff = 0, 0.0
    for a, b in zip(ours, theirs, strict=True):
        keys_a = [(e["entity_group"], e["start"], e["end"], e["word"]) for e in a]
        keys_b = [(e["entity_group"], int(e["start"]), int(e["end"]), e["word"]) for e in b]
        if keys_a == keys_b:
            diffs = [abs(x["score"] - float(y["score"])) for x, y in zip(a, b, strict=True)]
            max_score_diff = max([max_score_diff, *diffs])
            same += all(d <= SCORE_TOLERANCE for d in diffs)
    found = {"documents": len(ours), "identical": same, "entities_ours": sum(map(len, ours))}
    return found | {"entities_pipeline": sum(map(len, theirs)), "max_score_diff": max_score_diff}


def token_pipeline(model: Any, tokenizer: Any) -> Any:
    """The pipeline a saved model ships (what ``pipeline(task, model=PATH, trust_remote_code=True)`` gives):
    it decodes as ``predict_texts`` does by default."""
    from transformers import pipeline

    from hf_layer_tokclf import LayerTokenClassificationPipeline
    from hf_layer_tokclf.running.logits import model_device

    options = {"aggregation_strategy": STRATEGY, "device": model_device(model)}
    task = "token-classification"
    return pipeline(task, model=model, tokenizer=tokenizer, pipeline_class=LayerTokenClassificationPipeline, **options)


def section_predict(model: Any, tokenizer: Any, texts: list[str], rounds: int, device_label: str) -> dict[str, Any]:
    from hf_layer_tokclf.running.texts import predict_texts

    ner = token_pipeline(model, tokenizer)
    options = {"aggregation_strategy": STRATEGY, "batch_size": BATCH}
    fns = {
        "ours": lambda some=texts: list(predict_texts(model, tokenizer, some, **options)),
        "pipeline": lambda some=texts: ner(some, batch_size=BATCH),
    }
    for fn in fns.values():  # warm-up on two batches
        fn(texts[: 2 * BATCH])
    timings, cpu = interleaved(fns, rounds, label="predict vs pipeline")
    titles = {
        "ours": f"hf_layer_tokclf predict_texts (length-sorted, batch {BATCH})",
        "pipeline": f'pipeline("token-classification", batch_size={BATCH})',
    }
    rows = [
        {"name": name, "title": title, "device": device_label, "sentences_per_s": len(texts) / timings[name].median}
        | timings[name].spread("s")
        for name, title in titles.items()
    ]
    speedup = timings["pipeline"].median / timings["ours"].median
    agreement = compare_entities(timings["ours"].output, timings["pipeline"].output)
    return {"rows": rows, "speedup": speedup, "agreement": agreement, "cpu_during_timing": cpu}


def export_both(model_dir: Path, workdir: Path) -> dict[str, dict[str, Any]]:
    from hf_layer_tokclf.running.export import export_onnx

    exports = {}
    for name, quantize in (("onnx fp32", None), ("onnx int8", "int8")):
        folder = workdir / name.replace(" ", "-")
        path, seconds = common.timed(lambda f=folder, q=quantize: export_onnx(model_dir, f, quantize=q))
        exports[name] = {"path": path, "export_s": seconds, "size_mb": path.stat().st_size / 2**20}
        log(f"  exported {name}: {exports[name]['size_mb']:.1f} MiB in {exports[name]['export_s']:.0f} s")
    return exports


def one_batch_fns(model: Any, tokenizer: Any, texts: list[str], engines: dict[str, Any]) -> dict[str, Any]:
    """Each engine on 32 real sentences, padded or cut to 128 tokens: one batch of a fixed shape."""
    from hf_layer_tokclf.running.logits import model_device

    fixed = tokenizer(
        (texts * BATCH)[:BATCH], padding="max_length", truncation=True, max_length=FIXED_SEQ, return_tensors="np"
    )
    fixed = {k: v.astype(np.int64) for k, v in fixed.items()}
    fixed_torch = {k: torch.from_numpy(v).to(model_device(model)) for k, v in fixed.items()}

    @torch.inference_mode()
    def pytorch() -> torch.Tensor:
        return model(**fixed_torch).logits.float().cpu()

    return {name: pytorch if e is model else (lambda e=e: e.logits(**fixed)) for name, e in engines.items()}


def section_onnx(
    model_dir: Path, model: Any, tokenizer: Any, sentences: list[Any], rounds: int, device_label: str, workdir: Path
) -> dict[str, Any]:
    from hf_layer_tokclf.running.export import OnnxTokenClassifier
    from hf_layer_tokclf.running.sentences import evaluate_sentences

    exports = export_both(model_dir, workdir)
    threads, engines = torch.get_num_threads(), {"pytorch": model}
    engines |= {name: OnnxTokenClassifier(e["path"], threads=threads) for name, e in exports.items()}
    batch_fns = one_batch_fns(model, tokenizer, [" ".join(s.tokens) for s in sentences], engines)
    for fn in batch_fns.values():  # warm-up: onnxruntime sets itself up on its first call
        fn()
    sentence_fns = {
        name: (lambda e=engine: evaluate_sentences(e, tokenizer, sentences, batch_size=BATCH, progress=False))
        for name, engine in engines.items()
    }
    timings, cpu = interleaved(sentence_fns, rounds, label="predict_sentences")
    fixed, _ = interleaved(batch_fns, max(rounds * 4, 10), label="32 x 128")
    rows = []
    for name, timing in timings.items():
        onnx = name != "pytorch"
        row = {"name": name, "device": "cpu (onnxruntime, CPUExecutionProvider)" if onnx else device_label}
        row |= {"sentences_per_s": len(sentences) / timing.median, "median_s": timing.median}
        row |= {"fixed_batch_ms": 1e3 * fixed[name].median, "size_mb": exports[name]["size_mb"] if onnx else None}
        row |= {f"test_{key}": timing.output[0][key] for key in ("f1", "precision", "recall")}
        rows.append(row | {"samples_s": timing.samples, "fixed_batch_samples_ms": fixed[name].spread()["samples_ms"]})
    _, fp32, int8 = rows
    found = {"rows": rows, "int8_speedup": int8["sentences_per_s"] / fp32["sentences_per_s"]}
    found |= {"int8_fixed_batch_speedup": fp32["fixed_batch_ms"] / int8["fixed_batch_ms"]}
    found |= {"int8_f1_gap_points": 100 * (fp32["test_f1"] - int8["test_f1"]), "cpu_during_timing": cpu}
    return found | {"exports": {name: info | {"path": str(info["path"])} for name, info in exports.items()}}


def section_pipeline(
    family: Family, models: Models, tokenizer: Any, texts: list[str], rounds: int, device_label: str
) -> dict[str, Any]:
    """Sentences/s of ``pipeline("token-classification", batch_size=32)`` per contender (no notebook recipe)."""
    pipes = {spec: token_pipeline(model, tokenizer) for spec, model in models.items() if spec.kind != "notebook"}
    for pipe in pipes.values():
        pipe(texts[:BATCH], batch_size=BATCH)
    fns = {spec: (lambda p=pipe: p(texts, batch_size=BATCH)) for spec, pipe in pipes.items()}
    timings, cpu = interleaved(fns, rounds, label=f"{family.name} pipeline")
    stock = timings[Spec("stock")].median
    rows = [
        spec.describe(family)
        | {"device": device_label, "median_s": t.median, "sentences_per_s": len(texts) / t.median}
        | {"speedup_vs_stock": stock / t.median, "samples_s": t.samples}
        for spec, t in timings.items()
    ]
    return {**family.describe(), "sentences": len(texts), "rounds": rounds, "cpu_during_timing": cpu, "rows": rows}


def run(settings: dict[str, Any], model_dir: str | None, device_label: str) -> dict[str, Any]:
    """The predict and ONNX sections on `model_dir`, or on a MiniLM trained here for `settings['steps']`."""
    from hf_layer_tokclf.running.loading import load_model

    with tempfile.TemporaryDirectory(prefix="serving-") as tmp:
        workdir, trained = Path(tmp), None
        if model_dir is None:
            model_dir = workdir / "model"
            log(f"training a MiniLM for {settings['steps']} steps to serve (pass --model-dir to skip) ...")
            trained = train_model(model_dir, settings, hidden_layer=-1)
            log(f"  trained in {trained['wall_s']:.0f} s, dev F1 {100 * (trained['dev_f1'] or 0):.2f}")
        model, tokenizer = load_model(model_dir, device="auto")
        sentences = ncbi_sentences("test.tsv")[: settings["test"]]
        log(f"predict vs pipeline on {len(sentences)} NCBI test sentences ...")
        texts = [" ".join(s.tokens) for s in sentences]
        predict = section_predict(model, tokenizer, texts, settings["rounds"], device_label)
        log("ONNX fp32 vs int8 ...")
        onnx = section_onnx(model_dir, model, tokenizer, sentences, settings["rounds"], device_label, workdir)
    layers = len(model.bert.encoder.layer) if hasattr(model, "bert") else None
    model_line = f"`{model_dir}` ({layers} encoder layers)"
    if trained:
        f1, wall = 100 * (trained["dev_f1"] or 0), trained["wall_s"]
        model_line = f"packaged MiniLM fine-tuned here for {trained['steps']} steps on NCBI-disease train "
        model_line += f"(hidden_layer=-1, {layers} layers; dev F1 {f1:.2f}, {wall:.0f} s)"
    served = {"model": model_line, "trained": trained, "sentences": len(sentences)}
    served |= {"words": sum(len(s.tokens) for s in sentences), "torch_dtype": str(next(model.parameters()).dtype)[6:]}
    return served | {"predict": predict, "onnx": onnx}


def verdicts(served: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not served:
        return []
    predict, onnx = served["predict"], served["onnx"]
    agreement, speedup = predict["agreement"], predict["speedup"]
    int8, gap = onnx["int8_speedup"], onnx["int8_f1_gap_points"]
    same = f"same entities on {agreement['identical']}/{agreement['documents']} documents"
    fixed = onnx["int8_fixed_batch_speedup"]
    return [
        verdict(
            speedup >= TARGET_PREDICT_SPEEDUP and agreement["identical"] == agreement["documents"],
            f"predict / pipeline = {speedup:.2f}x the sentences/s (target >= {TARGET_PREDICT_SPEEDUP}), {same}",
            predict["cpu_during_timing"],
            value=speedup,
        ),
        verdict(
            int8 >= TARGET_INT8_SPEEDUP,
            f"ONNX int8 / fp32 at batch {BATCH} = {int8:.2f}x the sentences/s ({fixed:.2f}x on one 32 x 128 batch; "
            f"target >= {TARGET_INT8_SPEEDUP})",
            onnx["cpu_during_timing"],
            value=int8,
        ),
        verdict(
            abs(gap) <= TARGET_INT8_F1_GAP,
            f"ONNX NCBI test F1, fp32 - int8 = {gap:+.2f} points (target within {TARGET_INT8_F1_GAP})",
            value=gap,
        ),
    ]


def pipeline_markdown(table: dict[str, Any]) -> str:
    return "\n".join(
        [
            f'#### {table["title"]}: `pipeline("token-classification", batch_size={BATCH}, '
            f'aggregation_strategy="{STRATEGY}")` on {table["sentences"]} NCBI devel sentences',
            "",
            f"Median of {table['rounds']} interleaved rounds (the notebook recipe cannot go in a pipeline).",
            "",
            *contention_lines(table.get("cpu_during_timing")),
            *md_table(
                "model | device | median s | sentences/s | vs stock head",
                "| {name} | {device} | {median_s:.2f} | {sentences_per_s:.1f} | {speedup_vs_stock:.2f}x |",
                table["rows"],
                left=2,
            ),
        ]
    )


def report_lines(served: dict[str, Any]) -> list[str]:
    """Section 5 of the report: predict vs the pipeline, then ONNX fp32 vs int8."""
    predict, onnx = served["predict"], served["onnx"]
    agreement = predict["agreement"]
    return [
        f"## 5. Serving: predict vs pipeline, ONNX fp32 vs int8 ({served['sentences']} NCBI test sentences)",
        "",
        f'### predict vs `pipeline("token-classification", batch_size={BATCH})`',
        "",
        f"Model: {served['model']}.",
        "",
        *contention_lines(predict["cpu_during_timing"]),
        *md_table(
            "contender | device | median s | sentences/s",
            "| {title} | {device} | {median_s:.2f} | {sentences_per_s:.0f} |",
            predict["rows"],
            left=2,
        ),
        "",
        f"Speed-up: **{predict['speedup']:.2f}x**; same entities on {agreement['identical']}/"
        f"{agreement['documents']} documents ({agreement['entities_ours']} ours, {agreement['entities_pipeline']} "
        f"pipeline; largest score difference {agreement['max_score_diff']:.1e}).",
        "",
        f"### ONNX fp32 vs int8 (onnxruntime, batch {BATCH})",
        "",
        *contention_lines(onnx["cpu_during_timing"]),
        f"sentences/s: `predict_sentences` on every test sentence; 32 x {FIXED_SEQ}: one fixed batch.",
        "",
        *md_table(
            f"engine | device | sentences/s | 32 x {FIXED_SEQ} ms | test F1 | precision | recall | file MiB",
            "| {name} | {device} | {sentences_per_s:.0f} | {fixed_batch_ms:.1f} | {test_f1:.2fp} "
            "| {test_precision:.2fp} | {test_recall:.2fp} | {size_mb:.1f} |",
            onnx["rows"],
            left=2,
        ),
        "",
        f"int8 vs fp32: **{onnx['int8_speedup']:.2f}x** the sentences/s ({onnx['int8_fixed_batch_speedup']:.2f}x on "
        f"the fixed batch); test F1, fp32 - int8 = {onnx['int8_f1_gap_points']:+.2f} points.",
        "",
    ]


# the README summary's lines: (title, key, format)
SUMMARY = (("pipeline sentences/s, NCBI devel ({sentences}), batch 32", "sentences_per_s", "{:.1f}"),)
