"""torchrun's corpus run (`parallel`): every process gets work on a small input, and says so in the summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hf_layer_tokclf.annotation.chunks import Shard
from hf_layer_tokclf.annotation.summary import summary_path
from hf_layer_tokclf.base.defaults import CORPUS_CHUNK_SIZE

REPO = Path(__file__).resolve().parents[1]
NCBI = REPO / "data" / "ncbi-disease"


def test_the_world_chunk_size_deals_every_rank_a_near_equal_share():
    from hf_layer_tokclf.annotation.parallel import world_chunk_size

    # 210 abstracts in chunks of 256 were one chunk: rank 1 of 2 got none, and rank 0 did all with one thread.
    assert world_chunk_size(210, 2) == 105
    assert [Shard(i, 2).records(210, world_chunk_size(210, 2)) for i in range(2)] == [105, 105]
    # 600 records in chunks of 256 are 256 + 88 for rank 0 and 256 for rank 1; four chunks of 150 are even.
    assert world_chunk_size(600, 2) == 150
    for total, size in [(7, 2), (1000, 3), (5000, 4), (100_000, 8)]:
        chunk = world_chunk_size(total, size)
        shares = [Shard(i, size).records(total, chunk) for i in range(size)]
        assert 1 <= chunk <= CORPUS_CHUNK_SIZE and sum(shares) == total
        assert max(shares) - min(shares) <= chunk, (total, size, shares)
        assert min(shares) > 0
    assert world_chunk_size(10**6, 1) == CORPUS_CHUNK_SIZE  # one process: the default stands
    assert world_chunk_size(1, 4) == 1  # fewer records than ranks: some get none whatever the size
    with pytest.raises(ValueError, match="at least 1"):
        world_chunk_size(10, 0)


def _torchrun(*argv: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    command += ["-m", "hf_layer_tokclf", *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_torchrun_deals_a_small_input_to_every_process_and_says_what_each_did(tiny_dir, tmp_path):
    """5 documents and no --chunk-size (256): today one chunk, rank 1 idle; now 3 + 2, each rank's share in the
    merged summary. A --chunk-size that leaves a rank idle is warned about once, with the size that deals to all."""
    sentences = [
        " ".join(line.split("\t")[0] for line in b.splitlines()) for b in (NCBI / "test.tsv").read_text().split("\n\n")
    ]
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"D{i}", "text": sentences[i]}) + "\n" for i in range(5)))
    argv = ["predict", str(tiny_dir), "--input", str(corpus), "--no-progress"]
    result = _torchrun(*argv, "--output", str(tmp_path / "even.jsonl"))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(summary_path(tmp_path / "even.jsonl").read_text())
    assert [(s["shard"], s["records"]) for s in summary["shards"]] == [("0/2", 3), ("1/2", 2)]
    assert all(s["seconds"] >= 0 for s in summary["shards"]) and "warning" not in result.stderr
    assert [json.loads(line)["id"] for line in (tmp_path / "even.jsonl").read_text().splitlines()] == [
        f"D{i}" for i in range(5)
    ]
    result = _torchrun(*argv, "--chunk-size", "256", "--output", str(tmp_path / "idle.jsonl"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("warning: ") == 1, result.stderr[-3000:]  # rank 0 says it, for both
    assert "shard 1 of 2 gets none" in result.stderr and "--chunk-size 2 (or less)" in result.stderr
    summary = json.loads(summary_path(tmp_path / "idle.jsonl").read_text())
    assert [s["records"] for s in summary["shards"]] == [5, 0]
