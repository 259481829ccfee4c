"""Forward latency and throughput of ours at k = 1..L against the stock head and the notebook recipe, beside the
``torch.matmul`` ceiling (BERT-shaped products only) and the profiler's word on where the time goes."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import torch

from benchmarks.common import SEED, Timing, contention_lines, interleaved, md_row, md_table, sync, verdict
from benchmarks.models import NUM_LABELS, SEQ_LEN, Batches, Family, Models, Spec, dtype_of, make_inputs

MIN_SAMPLE_S = 0.02  # tiny forwards repeat inside one sample until it lasts this long
BERT_SHAPED = ("bert", "roberta")  # families whose encoder layer has BERT's matrix products
CEILING_BATCH = 32
# A 12-layer backbone's targets: ours at k = 3 / notebook recipe, ours at k = 12 / stock head, and ours at k = 12
# as a fraction of the torch.matmul ceiling at batch 32. BERT's from the project plan, the others' from issue #13.
TARGETS = {"bert": (0.28, 1.03, 0.85)}
OTHER_TARGETS = (0.30, 1.03, None)


def targets(table: dict[str, Any]) -> tuple[float, float, float | None]:
    """The targets of a table's family (tables written before families had a model_type are BERT's)."""
    return TARGETS.get(table.get("model_type", "bert"), OTHER_TARGETS)


@dataclass(frozen=True)
class Matmul:
    """``count`` products of (batch x) m x k by k x n; ``linear``: by a weight stored out x in, as nn.Linear's."""

    name: str
    batch: int
    m: int
    k: int
    n: int
    count: int = 1
    linear: bool = True

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
    return products + ([Matmul("pooler", 1, batch, config.hidden_size, config.hidden_size)] if pooler else [])


def time_matmul(product: Matmul, device: torch.device, dtype: torch.dtype) -> float:
    """Median seconds of one ``torch.matmul`` of this shape (count 1)."""
    generator, lead = torch.Generator().manual_seed(SEED), (product.batch,) if product.batch > 1 else ()
    a = torch.randn(*lead, product.m, product.k, generator=generator).to(device, dtype)
    b = torch.randn(*((product.n, product.k) if product.linear else (*lead, product.k, product.n)), generator=generator)
    b = b.to(device, dtype).t() if product.linear else b.to(device, dtype)
    with torch.inference_mode():
        timings, _ = interleaved({0: lambda: torch.matmul(a, b)}, 7, warmup=1, min_sample_s=0.05, device=device)
    return timings[0].median


class Ceiling:
    """Matmul times for one backbone at one batch shape; `of` gives a contender's FLOPs and ceiling."""

    def __init__(self, config: Any, batch: int, seq_len: int, num_labels: int, device: torch.device, dtype: Any):
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
            {"name": p.name, "shape": (f"{p.batch} x " if p.batch > 1 else "") + f"{p.m} x {p.k} @ {p.k} x {p.n}"}
            | {"count": p.count, "ms": 1e3 * self.seconds[p], "gflop_per_s": p.flops / self.seconds[p] / 1e9}
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


def where_time_goes(model: torch.nn.Module, inputs: dict, device: torch.device, passes: int = 3) -> dict[str, float]:
    """Share of the operator time of `passes` forward passes by category, from the PyTorch profiler (self time)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    with torch.inference_mode():
        model(**inputs)
        sync(device)
        with profile(activities=[ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * cuda) as prof:
            for _ in range(passes):
                model(**inputs)
            sync(device)
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        spent = (
            (getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0))
            if cuda
            else None
        )
        category = next((c for c, keys in CATEGORIES if any(k in event.key for k in keys)), "other (views, masks, ...)")
        totals[category] = totals.get(category, 0.0) + (event.self_cpu_time_total if spent is None else spent)
    whole = sum(totals.values()) or 1.0
    return {category: 100 * spent / whole for category, spent in sorted(totals.items(), key=lambda kv: -kv[1])}


def breakdown_lines(breakdown: dict[str, dict[str, float]]) -> list[str]:
    """The profiler shares of a few contenders as a Markdown table, one row per category."""
    categories = dict.fromkeys(c for shares in breakdown.values() for c in shares)
    lines = [md_row(["operators", *breakdown]), "|---|" + "---:|" * len(breakdown)]
    return lines + [md_row([c, *(f"{s.get(c, 0.0):.1f}" for s in breakdown.values())]) for c in categories]


def rows_of(family: Family, batch: int, timings: dict[Spec, Timing], ceiling: Ceiling | None) -> list[dict[str, Any]]:
    from hf_layer_tokclf.model.cost import relative_costs  # what ours at k would cost if time followed compute

    medians = {spec.kind: timing.median for spec, timing in timings.items() if spec.kind != "ours"}
    rows = []
    for spec, timing in timings.items():
        median, layers, spread = timing.median, spec.layers_run(family), timing.spread("ms")
        ideal = relative_costs(family.config, [spec.k], NUM_LABELS, SEQ_LEN)[spec.k] if spec.k is not None else None
        row = {**spec.describe(family), "layers_run": layers, **{k: spread[k] for k in ("median_ms", "min_ms")}}
        row |= {"iqr_pct": spread["iqr_pct"], "tokens_per_s": batch * SEQ_LEN / median}
        row |= {"ratio_vs_stock": median / medians["stock"], "ratio_vs_notebook": median / medians["notebook"]}
        row |= {"ideal_ratio": ideal, **dict.fromkeys(("gflop", "gflop_per_s", "ceiling_gflop_per_s"))}
        row["fraction_of_ceiling"] = None
        if ceiling is not None:
            flops, matmul_s = ceiling.of(layers, spec.kind == "notebook")
            row |= {"gflop": flops / 1e9, "gflop_per_s": flops / median / 1e9}
            row |= {"ceiling_gflop_per_s": flops / matmul_s / 1e9, "fraction_of_ceiling": matmul_s / median}
        row |= {"page_faults_per_pass": statistics.median(timing.faults), "repeats_per_sample": timing.inner}
        rows.append(row | {"kernel_cpu_share": statistics.median(timing.kernel), "samples_ms": spread["samples_ms"]})
    return rows


def run(
    family: Family, models: Models, batches: Batches, warmup: int, device: torch.device, profile_ks: tuple = (3,)
) -> list[dict[str, Any]]:
    """One table per batch size (`batches`: batch -> rounds, time budget in s). At the largest the profiler also
    says where the time of the stock head and of ours at k = L (and at `profile_ks`) goes."""
    tables = []
    for batch, (rounds, budget_s) in batches.items():
        inputs = make_inputs(batch, family, device=device)
        # each call waits for the GPU, so that a sample of repeated calls is a latency, not a throughput
        fns = {spec: (lambda m=model, x=inputs: (m(**x), sync(device))) for spec, model in models.items()}
        timing = {"warmup": warmup, "budget_s": budget_s, "min_sample_s": MIN_SAMPLE_S, "device": device}
        with torch.inference_mode():
            timings, cpu = interleaved(fns, rounds, label=f"{family.name} batch {batch}", **timing)
        ceiling = None
        if family.model_type in BERT_SHAPED:  # the products `layer_matmuls` describes
            ceiling = Ceiling(family.plain_config(), batch, SEQ_LEN, NUM_LABELS, device, dtype_of(device))
        table = {**family.describe(), "model_type": family.model_type, "attn_implementation": family.attn}
        table |= {"hidden_size": family.hidden_size, "batch": batch, "seq_len": SEQ_LEN, "warmup_rounds": warmup}
        table |= {"rounds": len(timings[Spec("stock")].samples), "rounds_planned": rounds, "budget_s": budget_s}
        table |= {"cpu_during_timing": cpu, "ceiling": ceiling.table() if ceiling else None}
        table |= {"rows": rows_of(family, batch, timings, ceiling), "time_breakdown": {}}
        if batch == max(batches):
            wanted = [Spec("stock"), Spec("ours", family.num_layers), *(Spec("ours", k) for k in profile_ks)]
            for spec in (spec for spec in dict.fromkeys(wanted) if spec in models):
                table["time_breakdown"][spec.name(family)] = where_time_goes(models[spec], inputs, device)
        tables.append(table)
    return tables


COLUMNS = (
    "model | layers run | median ms | IQR % | tokens/s | vs stock head | vs notebook | ideal k/L | GFLOP/s "
    "| of matmul ceiling | page faults / pass | kernel CPU",
    "| {name} | {layers_run} | {median_ms:.1f} | {iqr_pct:.1f} | {tokens_per_s:,.0f} | {ratio_vs_stock:.3f} "
    "| {ratio_vs_notebook:.3f} | {ideal_ratio:.3f} | {gflop_per_s:.0f} | {fraction_of_ceiling:.0%} "
    "| {page_faults_per_pass:,.0f} | {kernel_cpu_share:.0%} |",
)
NO_CEILING = "No torch.matmul ceiling (columns —): this family's layers have other products than BERT's."


def table_markdown(table: dict[str, Any]) -> str:
    lines = [
        f"#### {table['title']}: {table['num_layers']} layers x {table['hidden_size']}, "
        f"batch {table['batch']} x {table['seq_len']} tokens",
        "",
        f"Medians of {table['rounds']} rounds ({table['rounds_planned']} planned, {table['budget_s']:.0f} s budget, "
        f"{table['warmup_rounds']} warm-up); ceiling: `torch.matmul`'s time for the same products / the median.",
        "",
        *contention_lines(table.get("cpu_during_timing")),
        *md_table(*COLUMNS, table["rows"]),
        "",
    ]
    if not table["ceiling"]:
        lines.append(NO_CEILING)
    else:
        lines += ["`torch.matmul` on the shapes of one encoder layer and of the classifier:", ""]
        ceiling = (
            "product | shape | per layer | ms | GFLOP/s",
            "| {name} | {shape} | {count} | {ms:.2f} | {gflop_per_s:.0f} |",
        )
        lines += md_table(*ceiling, table["ceiling"], left=2)
    if table["time_breakdown"]:
        lines += ["", "Where the time goes (PyTorch profiler, self time of three forward passes, % of it):", ""]
        lines += breakdown_lines(table["time_breakdown"])
    return "\n".join(lines)


def row(table: dict[str, Any], kind: str, k: int | None = None) -> dict[str, Any] | None:
    return next((r for r in table["rows"] if r["kind"] == kind and (kind != "ours" or r["k"] == k)), None)


def has_ceiling_target(table: dict[str, Any]) -> bool:
    """12 layers, batch 32, a family with a ceiling target, and ours at k = 12 measured."""
    wanted = table["num_layers"] == 12 and table["batch"] == CEILING_BATCH and targets(table)[2] is not None
    return wanted and row(table, "ours", 12) is not None


def ceiling_verdict(table: dict[str, Any], label: str, where: str) -> dict[str, Any]:
    """Ours at k = 12 as a fraction of the torch.matmul ceiling, against the target (the stock head beside it)."""
    value, stock, target = row(table, "ours", 12)["fraction_of_ceiling"], row(table, "stock"), targets(table)[2]
    text = f"forward at batch {CEILING_BATCH}, k = 12{label}: {100 * value:.1f}% of the torch.matmul ceiling "
    text += f"(target >= {100 * target:.0f}%; stock head {100 * stock['fraction_of_ceiling']:.1f}%) [{where}]"
    return verdict(value >= target, text, table["cpu_during_timing"], value=value)


def verdicts(tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Time at k = 3 against the notebook recipe, at k = 12 against the stock head and (BERT) the ceiling."""
    found = []
    for table in (t for t in tables if t["num_layers"] == 12):
        where, (shallow_target, full_target, _) = f"{table['family']}, batch {table['batch']}", targets(table)
        cpu = table["cpu_during_timing"]
        if shallow := row(table, "ours", 3):
            value = shallow["ratio_vs_notebook"]
            text = f"forward time, k = 3 of 12 / notebook recipe = {value:.3f} (target <= {shallow_target:.2f}; "
            text += f"ideal {shallow['ideal_ratio']:.2f}) [{where}]"
            found.append(verdict(value <= shallow_target, text, cpu, value=value))
        if full := row(table, "ours", 12):
            value = full["ratio_vs_stock"]
            text = f"forward time, k = 12 of 12 / stock head = {value:.3f} (target <= {full_target:.2f}) [{where}]"
            found.append(verdict(value <= full_target, text, cpu, value=value))
        if has_ceiling_target(table):
            found.append(ceiling_verdict(table, "", where))
    return found


# the README summary's lines: (title, key, format); at the smallest batch the first two
SUMMARY = (
    ("forward ms, batch {batch} x {seq_len}", "median_ms", "{:.0f}"),
    ("… vs notebook recipe", "ratio_vs_notebook", "{:.3f}"),
    ("… vs stock head", "ratio_vs_stock", "{:.3f}"),
    ("… of the torch.matmul ceiling", "fraction_of_ceiling", "{:.0%}"),
    ("… page faults per pass", "page_faults_per_pass", "{:,.0f}"),
    ("… kernel share of CPU time", "kernel_cpu_share", "{:.0%}"),
)
