"""The hardware ceiling of a forward pass: what ``torch.matmul`` alone reaches on the same shapes.

A BERT forward pass is, in FLOPs, almost only matrix products: per encoder layer the four
``hidden x hidden`` projections (query, key, value, attention output), the two attention
products and the two feed-forward products; then the classifier (and, in the notebook recipe,
the pooler). `forward_matmuls` lists them; `Ceiling` times ``torch.matmul`` on each shape, on
the same device, dtype and thread count as the models. For a model that ran in ``t`` seconds,

    achieved FLOP/s = FLOPs / t,  fraction of the ceiling = (time torch.matmul needs) / t,

so the fraction says how much of the forward pass is spent doing what the hardware does best;
`where_time_goes` then says, from the profiler, where the rest went.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

from benchmarks.common import sync

MIN_SAMPLE_S = 0.05


@dataclass(frozen=True)
class Matmul:
    """``count`` products of (batch x) m x k by k x n."""

    name: str
    batch: int
    m: int
    k: int
    n: int
    count: int = 1
    linear: bool = True  # a weight (stored out x in, as nn.Linear does) rather than an activation

    @property
    def flops(self) -> int:
        return 2 * self.batch * self.m * self.k * self.n * self.count


def layer_matmuls(config: Any, batch: int, seq_len: int) -> list[Matmul]:
    """The matrix products of one BERT encoder layer."""
    hidden, inner, heads = config.hidden_size, config.intermediate_size, config.num_attention_heads
    tokens, head_dim = batch * seq_len, hidden // heads
    return [
        Matmul("query, key, value, attention output", 1, tokens, hidden, hidden, count=4),
        Matmul("attention scores (Q K^T)", batch * heads, seq_len, head_dim, seq_len, linear=False),
        Matmul("attention context (P V)", batch * heads, seq_len, seq_len, head_dim, linear=False),
        Matmul("feed-forward up", 1, tokens, hidden, inner),
        Matmul("feed-forward down", 1, tokens, inner, hidden),
    ]


def head_matmuls(config: Any, batch: int, seq_len: int, num_labels: int, pooler: bool) -> list[Matmul]:
    products = [Matmul("classifier", 1, batch * seq_len, config.hidden_size, num_labels)]
    if pooler:
        products.append(Matmul("pooler", 1, batch, config.hidden_size, config.hidden_size))
    return products


def time_matmul(product: Matmul, device: torch.device, dtype: torch.dtype, rounds: int = 7) -> float:
    """Median seconds of one ``torch.matmul`` of this shape (count 1)."""
    generator = torch.Generator().manual_seed(0)
    lead = (product.batch,) if product.batch > 1 else ()
    a = torch.randn(*lead, product.m, product.k, generator=generator).to(device, dtype)
    if product.linear:
        b = torch.randn(product.n, product.k, generator=generator).to(device, dtype).t()
    else:
        b = torch.randn(*lead, product.k, product.n, generator=generator).to(device, dtype)
    with torch.inference_mode():
        torch.matmul(a, b)
        sync(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        sync(device)
        inner = max(1, int(MIN_SAMPLE_S / max(time.perf_counter() - start, 1e-7)))
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(inner):
                torch.matmul(a, b)
            sync(device)
            samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


class Ceiling:
    """Matmul times for one backbone at one batch shape; `of` gives a contender's FLOPs and ceiling."""

    def __init__(
        self, config: Any, batch: int, seq_len: int, num_labels: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        self.layer = layer_matmuls(config, batch, seq_len)
        self.head = head_matmuls(config, batch, seq_len, num_labels, pooler=False)
        self.pooler = head_matmuls(config, batch, seq_len, num_labels, pooler=True)[1:]
        self.seconds = {p: time_matmul(p, device, dtype) * p.count for p in [*self.layer, *self.head, *self.pooler]}

    def of(self, layers: int, pooler: bool) -> tuple[int, float]:
        """(FLOPs, seconds torch.matmul needs) for `layers` encoder layers, the classifier and maybe the pooler."""
        products = [*self.layer] * layers + self.head + (self.pooler if pooler else [])
        return sum(p.flops for p in products), sum(self.seconds[p] for p in products)

    def table(self) -> list[dict[str, Any]]:
        return [
            {
                "name": p.name,
                "shape": (f"{p.batch} x " if p.batch > 1 else "") + f"{p.m} x {p.k} @ {p.k} x {p.n}",
                "count": p.count,
                "ms": 1e3 * self.seconds[p],
                "gflop_per_s": p.flops / self.seconds[p] / 1e9,
            }
            for p in [*self.layer, *self.head]
        ]


CATEGORIES = (
    ("matrix products", ("addmm", "aten::mm", "bmm", "aten::matmul", "aten::linear", "baddbmm")),
    ("attention kernel (sdpa)", ("scaled_dot_product", "flash_attention", "efficient_attention")),
    ("layer norm", ("layer_norm",)),
    ("GELU", ("gelu",)),
    ("embeddings lookup", ("embedding", "index_select")),
    ("residual adds and other elementwise", ("aten::add", "aten::mul", "aten::div", "dropout", "aten::copy_")),
)


def where_time_goes(
    model: torch.nn.Module, inputs: dict[str, torch.Tensor], device: torch.device, passes: int = 3
) -> dict[str, float]:
    """Share of the operator time of `passes` forward passes by category, from the PyTorch profiler (self time)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.inference_mode():
        model(**inputs)
        sync(device)
        with profile(activities=activities) as prof:
            for _ in range(passes):
                model(**inputs)
            sync(device)
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        if device.type == "cuda":
            spent = getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0)
        else:
            spent = event.self_cpu_time_total
        category = next(
            (c for c, keys in CATEGORIES if any(key in event.key for key in keys)), "other (views, masks, ...)"
        )
        totals[category] = totals.get(category, 0.0) + spent
    whole = sum(totals.values()) or 1.0
    return {category: 100 * spent / whole for category, spent in sorted(totals.items(), key=lambda kv: -kv[1])}
