"""Which layer? Linear probes on every layer of a frozen encoder, from one pass over the data.

`sweep` runs the frozen encoder once over the training and dev sentences, with all hidden states,
and keeps for every word the vector of its first subword at every requested layer (a word in
several windows of a long sentence takes the window `merge_windows` would take). The vectors are
cached in memory or in a disk cache, so the probe epochs never run the encoder again. One linear
probe per layer is then trained on them, all at once: the weights are a
``[num_layers, hidden, num_labels]`` tensor, every minibatch is one batched matmul, and the loss is
the sum of the layers' cross-entropies, so each probe gets exactly the gradient it would get
alone. Every probe is scored with seqeval entity-level F1 on the dev words; the recommendation is
the shallowest layer within ``tolerance`` F1 points of the best.

A probe is exactly ``BertForLayerTokenClassification(hidden_layer=k)`` with the probe as its
classifier (dropout is off in eval mode): `SweepResult.probe_model` builds that model, which
`inference.evaluate_sentences` scores like any other.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import re
import shlex
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .cost import relative_costs
from .data import DataError, Sentence, check_known_labels, label_list, normalize_labels
from .decoding import word_labels
from .features import encode, length_sorted_batches, merge_windows, model_inputs
from .files import OutputExistsError, atomic_writer, output_names, prepare_output_dir, remove_outputs, write_json
from .metrics import entity_scores

logger = logging.getLogger(__name__)

__all__ = [
    "CACHES",
    "SWEEP_DEFAULTS",
    "SweepResult",
    "auto_epochs",
    "finetune_candidates",
    "recommend_layer",
    "resolve_layers",
    "run_sweep",
    "sweep",
    "write_sweep",
]

CACHES = ("memory", "disk")
_DTYPES = {"float16": torch.float16, "float32": torch.float32}

# Probe training defaults, shared by `sweep`, `run_sweep` and the CLI.
SWEEP_DEFAULTS: dict[str, Any] = {
    "epochs": None,  # None: `auto_epochs`
    "learning_rate": 0.05,
    "batch_size": 32,  # windows per encoder forward
    "probe_batch_size": 1024,  # words per probe step
    "cache_dtype": "float16",
    "tolerance": 1.0,
    "seed": 42,
    "finetune_epochs": 3.0,
    "finetune_learning_rate": 5e-5,
}

# With epochs=None, probes train for at least this many steps (and 3 epochs); about where the
# training loss of MiniLM probes on NCBI-disease stops improving at the default learning rate.
MIN_PROBE_STEPS = 600

# Output file names, in the output directory.
TABLE_FILE, JSON_FILE, PLOT_FILE = "sweep.md", "sweep.json", "sweep.png"
# Folders of --save-probe and --finetune-top: a model folder, a training run's output folder.
RUN_FOLDER = re.compile(r"^(probe|finetune)-layer-\d+$")
_is_sweep_file = output_names((TABLE_FILE, JSON_FILE, PLOT_FILE))


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """Dev scores of one linear probe per layer, their costs and the recommended layer.

    ``f1``, ``scores`` and ``relative_cost`` are keyed by layer (an index into ``hidden_states``:
    0 = embeddings, ``num_hidden_layers`` = last). ``probe_weight[i]`` / ``probe_bias[i]`` are
    the probe of ``layers[i]`` as it acts on the raw hidden state:
    ``logits = hidden @ probe_weight[i] + probe_bias[i]``.
    """

    model_name_or_path: str
    layers: list[int]
    num_hidden_layers: int
    labels: list[str]
    f1: dict[int, float]
    scores: dict[int, dict[str, Any]]
    relative_cost: dict[int, float]
    tolerance: float
    recommended_layer: int
    best_layer: int
    probe_weight: torch.Tensor
    probe_bias: torch.Tensor
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    finetune: dict[int, dict[str, Any]] = field(default_factory=dict)  # layer -> {"f1", "output_dir"}
    train_command: str | None = None

    def probe_model(self, layer: int) -> Any:
        """The probe of ``layer`` as a `BertForLayerTokenClassification` (eval mode), ready to save or score."""
        from .modeling_layer_tokclf import BertForLayerTokenClassification

        if layer not in self.layers:
            raise ValueError(f"layer {layer} was not swept (swept: {self.layers})")
        index = self.layers.index(layer)
        transformers_logger = logging.getLogger("transformers")
        level = transformers_logger.level
        transformers_logger.setLevel(logging.ERROR)  # the "classifier is newly initialized" notice: we fill it
        try:
            model = BertForLayerTokenClassification.from_pretrained(
                self.model_name_or_path,
                hidden_layer=layer,
                num_labels=len(self.labels),
                id2label=dict(enumerate(self.labels)),
                label2id={label: i for i, label in enumerate(self.labels)},
            )
        finally:
            transformers_logger.setLevel(level)
        with torch.no_grad():
            model.classifier.weight.copy_(self.probe_weight[index].T)
            model.classifier.bias.copy_(self.probe_bias[index])
        return model.eval()

    def to_json(self) -> dict[str, Any]:
        """What `write_sweep` puts in ``sweep.json``: F1 and costs as fractions in 0..1."""
        rows = []
        for layer in self.layers:
            row = {
                "layer": layer,
                "f1": self.f1[layer],
                "relative_cost": self.relative_cost[layer],
                "precision": self.scores[layer]["precision"],
                "recall": self.scores[layer]["recall"],
            }
            if layer in self.finetune:
                row["finetune_f1"] = self.finetune[layer]["f1"]
                row["finetune_output_dir"] = self.finetune[layer].get("output_dir")
            rows.append(row)
        return {
            "layers": rows,
            "recommended_layer": self.recommended_layer,
            "best_layer": self.best_layer,
            "tolerance": self.tolerance,
            "model": self.model_name_or_path,
            "num_hidden_layers": self.num_hidden_layers,
            "labels": self.labels,
            "train_command": self.train_command,
            "settings": self.settings,
            "timings": self.timings,
        }

    def table(self) -> str:
        """A Markdown table: layer, probe dev F1, fine-tuned dev F1 (if any), relative cost."""
        tuned = bool(self.finetune)
        header = "| layer | dev F1 (probe) |" + (" dev F1 (fine-tuned) |" if tuned else "") + " relative cost | |"
        rule = "|---:|---:|" + ("---:|" if tuned else "") + "---:|---|"
        lines = [header, rule]
        for layer in self.layers:
            notes = []
            if layer == self.recommended_layer:
                notes.append(f"**recommended** (shallowest within {self.tolerance:g} F1 of the best)")
            if layer == self.best_layer:
                notes.append("best probe")
            tuned_cell = ""
            if tuned:
                tuned_cell = f" {100 * self.finetune[layer]['f1']:.2f} |" if layer in self.finetune else " |"
            lines.append(
                f"| {layer} | {100 * self.f1[layer]:.2f} |{tuned_cell} {self.relative_cost[layer]:.3f} | "
                f"{'; '.join(notes)} |"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Small pieces
# --------------------------------------------------------------------------------------------


def resolve_layers(layers: Sequence[int] | None, num_hidden_layers: int) -> list[int]:
    """Layers as sorted, distinct, non-negative ``hidden_states`` indices; `None` = all of 0..L.

    Raises:
        ValueError: naming the allowed range, for a layer out of range or not an int.
    """
    n = num_hidden_layers
    if layers is None:
        return list(range(n + 1))
    layers = list(layers)
    if not layers:
        raise ValueError(f"no layers to sweep; give layers from 0 to {n} (or none for all)")
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, int) or not -(n + 1) <= layer <= n:
            raise ValueError(
                f"layer {layer!r} is out of range: the model has {n} layers, so layers are ints from 0 "
                f"(embeddings) to {n} (last), or -1 .. -{n + 1} counted from the end"
            )
    return sorted({layer % (n + 1) for layer in layers})


def recommend_layer(f1: Mapping[int, float], tolerance: float = 1.0) -> int:
    """The shallowest layer whose F1 is within ``tolerance`` F1 points (F1 in 0..1, points in 0..100) of the best."""
    if not f1:
        raise ValueError("no scores to recommend a layer from")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 F1 points, got {tolerance}")
    best = max(f1.values())
    return min(layer for layer, score in f1.items() if score >= best - tolerance / 100 - 1e-12)


def finetune_candidates(result: SweepResult, n: int) -> list[int]:
    """The ``n`` best-value layers to fine-tune: the recommended one, then the others by probe F1.

    Ties in F1 go to the shallower (cheaper) layer.
    """
    others = sorted(
        (layer for layer in result.layers if layer != result.recommended_layer), key=lambda k: (-result.f1[k], k)
    )
    return [result.recommended_layer, *others][: max(n, 0)]


def _check_settings(
    cache: str, cache_dir: Any, cache_dtype: str, epochs: int | None, tolerance: float, **sizes: Any
) -> None:
    if cache not in CACHES:
        raise ValueError(f"cache={cache!r} is unknown; expected one of {CACHES}")
    if cache_dir is not None and cache != "disk":
        raise ValueError("a cache directory needs cache='disk' (--cache disk)")
    if cache_dtype not in _DTYPES:
        raise ValueError(f"cache_dtype={cache_dtype!r} is unknown; expected one of {tuple(_DTYPES)}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be a positive int (or None for automatic), got {epochs!r}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 F1 points, got {tolerance}")
    for name, value in sizes.items():
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


def _word_plan(features: Sequence[dict[str, Any]], lengths: Sequence[int]) -> list[tuple[list[int], list[int]]]:
    """For every feature: (token positions, word rows) of the words whose vector it provides.

    Word rows number the words of all sentences in order. A word in several windows is taken from
    the window `merge_windows` picks, so the probes see what the exported model predicts from.
    """
    width = max((len(f["word_ids"]) for f in features), default=1)
    codes = [range(n * width, n * width + len(f["word_ids"])) for n, f in enumerate(features)]
    chosen = merge_windows(features, codes, list(lengths))
    plan: list[tuple[list[int], list[int]]] = [([], []) for _ in features]
    row = 0
    for words in chosen:
        for code in words:
            feature, position = divmod(code, width)
            plan[feature][0].append(position)
            plan[feature][1].append(row)
            row += 1
    return plan


def _allocate(shape: tuple[int, ...], dtype: torch.dtype, directory: Path | None, name: str) -> torch.Tensor:
    if directory is None:
        return torch.empty(shape, dtype=dtype)
    import numpy as np

    array = np.lib.format.open_memmap(
        directory / f"{name}.npy", mode="w+", dtype=np.float16 if dtype == torch.float16 else np.float32, shape=shape
    )
    return torch.from_numpy(array)


@torch.inference_mode()
def _extract(
    encoder: Any,
    tokenizer: Any,
    features: Sequence[dict[str, Any]],
    plan: Sequence[tuple[list[int], list[int]]],
    layers: Sequence[int],
    store: torch.Tensor,
    batch_size: int,
    desc: str,
    progress: bool,
    moments: list[torch.Tensor] | None = None,
) -> None:
    """Runs the encoder once per batch and writes every planned word's vectors at ``layers`` into ``store``.

    ``store`` is layer-major, ``[layers, words, H]``: a probe step then gathers a contiguous
    ``[layers, batch, H]`` block for its batched matmul (about a third faster than word-major).
    """
    bar = tqdm(total=len(features), desc=desc, unit="window", disable=not progress)
    for indices in length_sorted_batches([len(f["input_ids"]) for f in features], batch_size):
        rows = [model_inputs(features[i]) for i in indices]
        batch = tokenizer.pad(rows, return_tensors="pt").to(encoder.device)
        hidden_states = encoder(**batch, output_hidden_states=True, return_dict=True).hidden_states
        batch_rows, positions, word_rows = [], [], []
        for b, i in enumerate(indices):
            batch_rows += [b] * len(plan[i][0])
            positions += plan[i][0]
            word_rows += plan[i][1]
        b_index, t_index = torch.tensor(batch_rows), torch.tensor(positions)
        rows_index = torch.tensor(word_rows)
        for column, layer in enumerate(layers):
            vectors = hidden_states[layer][b_index, t_index].float().cpu()  # [n, H], from any device
            store[column].index_copy_(0, rows_index, vectors.to(store.dtype))
            if moments is not None:  # per-batch sums in float32, running totals in float64
                moments[0][column] += vectors.sum(0)
                moments[1][column] += (vectors * vectors).sum(0)
        bar.update(len(indices))
    bar.close()


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Runs the block on one intra-op thread, then restores the setting.

    Probe steps are small matmuls that a second thread barely speeds up, while on a busy machine
    the threads' synchronisation made them up to 40 times slower (measured on 2 shared cores).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def auto_epochs(num_words: int, batch_size: int, min_steps: int = MIN_PROBE_STEPS) -> int:
    """Epochs for ``epochs=None``: at least 3, and enough for ``min_steps`` optimizer steps (at most 100)."""
    steps_per_epoch = max(1, math.ceil(num_words / batch_size))
    return min(100, max(3, math.ceil(min_steps / steps_per_epoch)))


def _train_probes(
    store: torch.Tensor,
    targets: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    num_labels: int,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
    progress: bool,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Trains one linear probe per layer, all in one batched matmul per step.

    The probes are trained on standardized features, ``logits = ((x - mean) / std) @ W + b``, but
    computed in the folded form ``x @ (W / std) + (b - (mean / std) @ W)``: the same function of
    ``W`` and ``b`` (so the same gradients), without a pass over every feature to standardize it.

    Returns the folded weights and biases, which act on raw features, and the mean training loss
    per layer over the last epoch.
    """
    num_layers, count, hidden = store.shape
    weight = torch.zeros(num_layers, hidden, num_labels, requires_grad=True)
    bias = torch.zeros(num_layers, num_labels, requires_grad=True)
    inv_std = std.reciprocal().unsqueeze(-1)  # [layers, H, 1]
    scaled_mean = (mean / std).unsqueeze(1)  # [layers, 1, H]

    def folded() -> tuple[torch.Tensor, torch.Tensor]:
        return weight * inv_std, bias - torch.bmm(scaled_mean, weight).squeeze(1)

    optimizer = torch.optim.AdamW([weight, bias], lr=learning_rate, weight_decay=0.0)
    steps = epochs * math.ceil(count / batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)  # linear decay to 0
    generator = torch.Generator().manual_seed(seed)
    bar = tqdm(total=steps, desc="Training probes", unit="step", disable=not progress)
    last_epoch_loss = torch.zeros(num_layers, dtype=torch.float64)
    for epoch in range(epochs):
        order = torch.randperm(count, generator=generator)
        epoch_loss = torch.zeros(num_layers, dtype=torch.float64)
        for start in range(0, count, batch_size):
            index = order[start : start + batch_size].sort().values  # sorted: friendlier to a disk cache
            x = torch.index_select(store, 1, index).float()  # [layers, batch, H]
            folded_weight, folded_bias = folded()
            logits = torch.baddbmm(folded_bias.unsqueeze(1), x, folded_weight)  # [layers, batch, labels]
            # Every layer's probe against the same word labels; the sum over layers of their mean losses.
            losses = torch.nn.functional.cross_entropy(
                logits.reshape(-1, num_labels), targets[index].repeat(num_layers), reduction="none"
            ).view(num_layers, len(index))
            optimizer.zero_grad(set_to_none=True)
            losses.mean(1).sum().backward()
            optimizer.step()
            scheduler.step()
            epoch_loss += losses.detach().sum(1).double()
            bar.update(1)
        last_epoch_loss = epoch_loss / count
        bar.set_postfix(epoch=epoch + 1, loss=f"{last_epoch_loss.mean().item():.4f}")
    bar.close()
    with torch.no_grad():
        folded_weight, folded_bias = folded()
    return folded_weight.detach(), folded_bias.detach(), last_epoch_loss.tolist()


@torch.no_grad()
def _word_logits(store: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Every layer's probe logits for every word, ``[layers, words, labels]``, from a ``[layers, words, H]`` store."""
    out = [
        torch.baddbmm(bias.unsqueeze(1), store[:, start : start + chunk].float(), weight)
        for start in range(0, store.shape[1], chunk)
    ]
    return torch.cat(out, dim=1) if out else torch.empty(weight.shape[0], 0, weight.shape[2])


def _labeled(sentences: Sequence[Sentence], split: str) -> list[Sentence]:
    sentences = list(sentences)
    if not sentences:
        raise DataError(f"no {split} sentences")
    for sentence in sentences:
        if sentence.labels is None:
            raise DataError(f"{sentence.where()}: the {split} sentence has no labels; the sweep needs labeled data")
    return normalize_labels(sentences)[0]


# --------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------


def sweep(
    model_name_or_path: str,
    train_sentences: Sequence[Sentence],
    dev_sentences: Sequence[Sentence],
    *,
    layers: Sequence[int] | None = None,
    epochs: int | None = SWEEP_DEFAULTS["epochs"],
    learning_rate: float = SWEEP_DEFAULTS["learning_rate"],
    batch_size: int = SWEEP_DEFAULTS["batch_size"],
    probe_batch_size: int = SWEEP_DEFAULTS["probe_batch_size"],
    max_length: int | None = None,
    stride: int | None = None,
    cache: str = "memory",
    cache_dir: str | Path | None = None,
    cache_dtype: str = SWEEP_DEFAULTS["cache_dtype"],
    tolerance: float = SWEEP_DEFAULTS["tolerance"],
    seed: int = SWEEP_DEFAULTS["seed"],
    progress: bool = True,
    device: str | None = None,
    dtype: str = "auto",
) -> SweepResult:
    """Trains a linear probe on every layer of a frozen encoder from one pass over the data; scores each on dev.

    Args:
        model_name_or_path: A BERT checkpoint (folder or Hub id), e.g. `training.default_backbone()`.
        train_sentences, dev_sentences: Labeled sentences (any IOB scheme; converted to IOB2). Dev
            labels must all appear in the training data.
        layers: ``hidden_states`` indices to probe (0 = embeddings, L = last, negative from the
            end); default all of 0..L. The encoder runs up to the deepest one.
        epochs, learning_rate, probe_batch_size: Probe training: AdamW with a linear decay, zero
            initialisation, features standardized per layer and dimension on the training words.
            ``epochs=None`` takes `auto_epochs`: at least 3 epochs and `MIN_PROBE_STEPS` steps.
        batch_size: Windows per encoder forward pass.
        max_length, stride: Windows of long sentences, as in `data.encode` (default: the model's maximum).
        cache: ``"memory"`` keeps the training features in RAM; ``"disk"`` in ``.npy`` memory maps in
            a temporary folder (under ``cache_dir`` if given), deleted when the sweep ends.
        cache_dtype: ``"float16"`` (half the size) or ``"float32"`` for the training features; dev
            features are always float32, so dev scores match the exported probe models.
        tolerance: F1 points: the recommendation is the shallowest layer within this of the best.
        seed: Order of the training words.
        progress: Progress bars for feature extraction and probe training.
        device, dtype: Where and in which precision the encoder pass runs (`inference.pick_device`,
            `inference.pick_dtype`: ``"auto"`` takes the GPU when there is one, in bfloat16 or
            float16); the features are kept, and the probes trained, in float32 on the CPU.

    Returns:
        A `SweepResult`.

    Raises:
        DataError: unlabeled sentences, or a dev label the training data lacks.
        ValueError: a layer out of range or another bad setting.
    """
    from transformers import AutoTokenizer

    from .configuration_layer_tokclf import LayerTokenClassificationConfig
    from .inference import check_max_length, default_max_length, pick_device, pick_dtype
    from .modeling_layer_tokclf import BertLayerModel

    _check_settings(
        cache,
        cache_dir,
        cache_dtype,
        epochs,
        tolerance,
        learning_rate=learning_rate,
        batch_size=batch_size,
        probe_batch_size=probe_batch_size,
        max_length=max_length,
    )
    started = time.perf_counter()
    train_sentences = _labeled(train_sentences, "training")
    dev_sentences = _labeled(dev_sentences, "dev")
    labels = label_list(train_sentences)
    label2id = {label: i for i, label in enumerate(labels)}
    check_known_labels(dev_sentences, label2id)

    config = LayerTokenClassificationConfig.from_pretrained(model_name_or_path)
    depth = config.num_hidden_layers
    layers = resolve_layers(layers, depth)
    check_max_length(max_length, config.max_position_embeddings, model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, trust_remote_code=False)
    target = pick_device(device)
    encoder = BertLayerModel.from_pretrained(
        model_name_or_path, hidden_layer=max(layers), dtype=pick_dtype(target, dtype)
    )
    encoder.to(target).eval().requires_grad_(False)
    max_length = max_length or default_max_length(encoder, tokenizer)

    train_features = encode(train_sentences, tokenizer, max_length=max_length, stride=stride)
    dev_features = encode(dev_sentences, tokenizer, max_length=max_length, stride=stride)
    train_lengths = [len(s.tokens) for s in train_sentences]
    dev_lengths = [len(s.tokens) for s in dev_sentences]
    num_train, num_dev = sum(train_lengths), sum(dev_lengths)
    if num_train == 0:
        raise DataError(f"{train_sentences[0].source}: the training sentences hold no words")
    targets = torch.tensor([label2id[label] for s in train_sentences for label in s.labels])
    shape = (len(layers), config.hidden_size)
    epochs = epochs or auto_epochs(num_train, probe_batch_size)

    with tempfile.TemporaryDirectory(prefix="hf-layer-tokclf-sweep-", dir=cache_dir) as tmp:
        directory = Path(tmp) if cache == "disk" else None
        train_store = _allocate((len(layers), num_train, config.hidden_size), _DTYPES[cache_dtype], directory, "train")
        dev_store = _allocate((len(layers), num_dev, config.hidden_size), torch.float32, directory, "dev")
        moments = [torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)]
        t0 = time.perf_counter()
        _extract(
            encoder,
            tokenizer,
            train_features,
            _word_plan(train_features, train_lengths),
            layers,
            train_store,
            batch_size,
            "Extracting train features",
            progress,
            moments,
        )
        _extract(
            encoder,
            tokenizer,
            dev_features,
            _word_plan(dev_features, dev_lengths),
            layers,
            dev_store,
            batch_size,
            "Extracting dev features",
            progress,
        )
        t1 = time.perf_counter()
        mean = (moments[0] / num_train).float()
        std = (moments[1] / num_train - (moments[0] / num_train).square()).clamp_min(0).add(1e-6).sqrt().float()
        with _one_thread():
            weight, bias, losses = _train_probes(
                train_store,
                targets,
                mean,
                std,
                len(labels),
                epochs=epochs,
                learning_rate=learning_rate,
                batch_size=probe_batch_size,
                seed=seed,
                progress=progress,
            )
            t2 = time.perf_counter()
            dev_logits = _word_logits(dev_store, weight, bias).numpy()
        del train_store, dev_store  # release the memory maps before their folder goes

    gold = [s.labels for s in dev_sentences]
    ends = list(itertools.accumulate(dev_lengths))
    id2label = dict(enumerate(labels))
    scores: dict[int, dict[str, Any]] = {}
    for column, layer in enumerate(layers):
        per_sentence = [dev_logits[column, end - length : end] for end, length in zip(ends, dev_lengths, strict=True)]
        scores[layer] = entity_scores(gold, word_labels(per_sentence, id2label))
    f1 = {layer: scores[layer]["f1"] for layer in layers}
    mean_tokens = sum(len(f["input_ids"]) for f in train_features) / max(len(train_features), 1)
    t3 = time.perf_counter()
    return SweepResult(
        model_name_or_path=str(model_name_or_path),
        layers=layers,
        num_hidden_layers=depth,
        labels=labels,
        f1=f1,
        scores=scores,
        relative_cost=relative_costs(config, layers, len(labels), mean_tokens),
        tolerance=tolerance,
        recommended_layer=recommend_layer(f1, tolerance),
        best_layer=min(layers, key=lambda k: (-f1[k], k)),
        probe_weight=weight,
        probe_bias=bias,
        settings={
            "epochs": epochs,
            "learning_rate": learning_rate,
            "batch_size": batch_size,
            "probe_batch_size": probe_batch_size,
            "max_length": max_length,
            "stride": stride,
            "cache": cache,
            "cache_dtype": cache_dtype,
            "seed": seed,
            "device": str(encoder.device),
            "dtype": str(encoder.dtype).removeprefix("torch."),
            "train_sentences": len(train_sentences),
            "train_words": num_train,
            "train_windows": len(train_features),
            "dev_sentences": len(dev_sentences),
            "dev_words": num_dev,
            "dev_windows": len(dev_features),
            "mean_window_tokens": round(mean_tokens, 2),
            "last_epoch_loss": dict(zip(layers, [round(x, 5) for x in losses], strict=True)),
        },
        timings={
            "extract_s": round(t1 - t0, 2),
            "probe_train_s": round(t2 - t1, 2),
            "score_s": round(t3 - t2, 2),
            "total_s": round(t3 - started, 2),
        },
    )


# --------------------------------------------------------------------------------------------
# Output files
# --------------------------------------------------------------------------------------------


def _model_label(model_name_or_path: str) -> str:
    """A short name for titles: the folder or Hub id's last part (the packaged MiniLM by its name)."""
    from .training import default_backbone

    if str(model_name_or_path) == default_backbone():
        return "all-MiniLM-L6-v2"
    return Path(str(model_name_or_path).rstrip("/")).name or str(model_name_or_path)


def _plot(result: SweepResult, path: Path) -> None:
    """F1 (probe and fine-tuned) and relative cost against layer, with the tolerance band; PNG, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazily: matplotlib is optional and slow
    from matplotlib.figure import Figure

    layers = result.layers
    fig = Figure(figsize=(7.5, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    cost_ax = ax.twinx()
    cost_ax.bar(layers, result.relative_cost.values(), width=0.6, color="0.85", label="relative compute cost")
    cost_ax.set_ylim(0, 1.05)
    cost_ax.set_ylabel("relative compute cost (full model = 1)")
    ax.set_zorder(cost_ax.get_zorder() + 1)
    ax.patch.set_visible(False)

    best = 100 * max(result.f1.values())
    ax.axhspan(
        best - result.tolerance,
        best,
        color="tab:green",
        alpha=0.12,
        lw=0,
        label=f"within {result.tolerance:g} F1 of best",
    )
    ax.plot(layers, [100 * result.f1[k] for k in layers], "o-", color="tab:blue", lw=2, label="linear probe (frozen)")
    if result.finetune:
        tuned = sorted(result.finetune)
        ax.plot(
            tuned,
            [100 * result.finetune[k]["f1"] for k in tuned],
            "s",
            color="tab:orange",
            ms=9,
            label="fine-tuned (encoder + head)",
        )
    k = result.recommended_layer
    ax.axvline(
        k,
        color="tab:red",
        ls="--",
        lw=1.2,
        label=f"recommended: layer {k} (F1 {100 * result.f1[k]:.1f}, cost {result.relative_cost[k]:.2f})",
    )
    scores = [100 * v for v in result.f1.values()] + [100 * v["f1"] for v in result.finetune.values()]
    low, high = min(scores), max(scores)
    margin = max(2.0, 0.08 * (high - low))
    ax.set_ylim(max(0.0, low - margin), min(100.0, high + margin))
    ax.set_xticks(layers)
    ax.set_xlabel("hidden layer (0 = embeddings)")
    ax.set_ylabel("dev entity F1 (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"Layer sweep of {_model_label(result.model_name_or_path)}: dev F1 and cost per layer", fontsize=11)
    handles, names = ax.get_legend_handles_labels()
    cost_handles, cost_names = cost_ax.get_legend_handles_labels()
    # Below the axes, so it never hides a point.
    fig.legend(handles + cost_handles, names + cost_names, loc="lower center", ncol=2, fontsize=8, frameon=False)
    rows = math.ceil(len(handles + cost_handles) / 2)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * rows, 1, 1))
    with atomic_writer(path, "wb") as f:
        fig.savefig(f, format="png")


def write_sweep(result: SweepResult, output_dir: str | Path, *, overwrite: bool = False) -> dict[str, Path]:
    """Writes ``sweep.md`` (the table), ``sweep.json`` and ``sweep.png`` (the plot) in ``output_dir``, each atomically.

    Existing files of those names are refused unless ``overwrite``. Without matplotlib the plot is
    skipped with a warning. Returns the paths written.
    """
    output_dir = Path(output_dir)
    paths = {"table": output_dir / TABLE_FILE, "json": output_dir / JSON_FILE, "plot": output_dir / PLOT_FILE}
    if not overwrite:
        for path in paths.values():
            if path.exists():
                raise OutputExistsError(f"{path} already exists; pass --overwrite-output-dir to replace it.")
    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_writer(paths["table"]) as f:
        f.write(f"# Layer sweep of {_model_label(result.model_name_or_path)}\n\n")
        f.write(f"Model: `{result.model_name_or_path}`. Dev entity F1 of a linear probe on each frozen layer")
        f.write(" (and of fine-tuning, where run); relative cost = compute up to that layer / the full model.\n\n")
        f.write(f"{result.table()}\n")
        if result.train_command:
            f.write(f"\nTrain at the recommended layer:\n\n```bash\n{result.train_command}\n```\n")
    write_json(paths["json"], result.to_json())
    try:
        _plot(result, paths["plot"])
    except ImportError:
        logger.warning("matplotlib is not installed: no %s (pip install matplotlib)", paths["plot"])
        del paths["plot"]
    return paths


# --------------------------------------------------------------------------------------------
# From files to files: what the CLI calls
# --------------------------------------------------------------------------------------------


def _train_command(
    model: str, train_file: str, validation_file: str, layer: int, output_dir: str | None = None, *extra: str
) -> str:
    """The `hf-layer-tokclf train` command line that fine-tunes at ``layer``."""
    from .training import default_backbone

    argv = ["hf-layer-tokclf", "train"]
    if model != default_backbone():
        argv += ["--model", model]
    argv += ["--hidden-layer", str(layer), "--train-file", train_file, "--validation-file", validation_file]
    return shlex.join([*argv, "--output-dir", output_dir or f"runs/layer-{layer}", *extra])


def run_sweep(
    train_file: str,
    validation_file: str,
    output_dir: str | Path,
    *,
    model: str | None = None,
    layers: Sequence[int] | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    finetune_top: int = 0,
    finetune_epochs: float = SWEEP_DEFAULTS["finetune_epochs"],
    finetune_learning_rate: float = SWEEP_DEFAULTS["finetune_learning_rate"],
    overwrite_output_dir: bool = False,
    save_probe: bool = False,
    progress: bool = True,
    **sweep_kwargs: Any,
) -> SweepResult:
    """Reads the data, sweeps, writes table, JSON and plot; optionally fine-tunes the best layers.

    Bad data and bad settings fail before anything is written; a non-empty ``output_dir`` is
    refused unless ``overwrite_output_dir``, which replaces an earlier sweep's files and folders and
    keeps every other file (the home folder and the working directory, or above it, are refused).
    With ``finetune_top=N`` the `finetune_candidates` are fine-tuned with `training.train` (the
    `TRAINING_DEFAULTS`, ``finetune_epochs`` and ``finetune_learning_rate``) into
    ``output_dir/finetune-layer-K`` and their dev F1 joins the table and plot. ``save_probe`` saves
    the recommended layer's probe as a model folder ``output_dir/probe-layer-K``. Other keyword
    arguments go to `sweep`.
    """
    from .configuration_layer_tokclf import LayerTokenClassificationConfig
    from .training import DataArguments, default_backbone, read_splits

    model = model or default_backbone()
    if not validation_file:
        raise ValueError("--validation-file is required: the probes are scored on it.")
    if finetune_top < 0:
        raise ValueError(f"--finetune-top must be >= 0, got {finetune_top}")
    _check_settings(
        sweep_kwargs.get("cache", "memory"),
        sweep_kwargs.get("cache_dir"),
        sweep_kwargs.get("cache_dtype", SWEEP_DEFAULTS["cache_dtype"]),
        sweep_kwargs.get("epochs", SWEEP_DEFAULTS["epochs"]),
        sweep_kwargs.get("tolerance", SWEEP_DEFAULTS["tolerance"]),
        max_train_samples=max_train_samples,
        max_eval_samples=max_eval_samples,
    )
    data_args = DataArguments(
        train_file=train_file,
        validation_file=validation_file,
        max_train_samples=max_train_samples,
        max_eval_samples=max_eval_samples,
        max_length=sweep_kwargs.get("max_length"),
        stride=sweep_kwargs.get("stride"),
    )
    splits = read_splits(data_args)  # bad data fails before anything is written
    layers = resolve_layers(layers, LayerTokenClassificationConfig.from_pretrained(model).num_hidden_layers)
    output_dir = prepare_output_dir(output_dir, overwrite=overwrite_output_dir, clear=_clear_sweep)

    result = sweep(model, splits["train"], splits["validation"], layers=layers, progress=progress, **sweep_kwargs)
    result.train_command = _train_command(model, train_file, validation_file, result.recommended_layer)
    result.settings.update(model=model, train_file=train_file, validation_file=validation_file)
    write_sweep(result, output_dir, overwrite=True)
    if save_probe:
        from transformers import AutoTokenizer

        probe_dir = output_dir / f"probe-layer-{result.recommended_layer}"
        result.probe_model(result.recommended_layer).save_pretrained(probe_dir)
        AutoTokenizer.from_pretrained(model, trust_remote_code=False).save_pretrained(probe_dir)
        result.settings["probe_dir"] = str(probe_dir)
        write_sweep(result, output_dir, overwrite=True)
    if finetune_top:
        _finetune(result, model, data_args, output_dir, finetune_top, finetune_epochs, finetune_learning_rate, progress)
    return result


def _clear_sweep(output_dir: Path) -> None:
    """What --overwrite-output-dir deletes: an earlier sweep's table, JSON and plot, and what a run wrote in
    its probe and fine-tune folders (each removed if that empties it). Every other file stays."""
    for folder in output_dir.iterdir():
        if RUN_FOLDER.match(folder.name) and folder.is_dir() and not folder.is_symlink():
            remove_outputs(folder)
            with contextlib.suppress(OSError):  # kept if it holds something of the user's
                folder.rmdir()
    remove_outputs(output_dir, _is_sweep_file)


def _finetune(
    result: SweepResult,
    model: str,
    data_args: Any,
    output_dir: Path,
    top: int,
    epochs: float,
    learning_rate: float,
    progress: bool,
) -> None:
    """Fine-tunes the encoder at the best-value layers; their dev F1 joins the result and the files."""
    from transformers import TrainingArguments

    from .training import TRAINING_DEFAULTS, ModelArguments, RunArguments, train

    seed = result.settings.get("seed", SWEEP_DEFAULTS["seed"])
    for layer in finetune_candidates(result, top):
        run_dir = output_dir / f"finetune-layer-{layer}"
        settings = {**TRAINING_DEFAULTS, "num_train_epochs": epochs, "learning_rate": learning_rate, "seed": seed}
        training_args = TrainingArguments(output_dir=str(run_dir), disable_tqdm=not progress, **settings)
        started = time.perf_counter()
        metrics = train(
            ModelArguments(model=model, hidden_layer=[layer]),
            data_args,
            training_args,
            # The folder is new, or what an earlier sweep wrote there is gone (_clear_sweep): keep the rest.
            RunArguments(overwrite_output_dir=True),
            command=_train_command(
                model,
                str(data_args.train_file),
                str(data_args.validation_file),
                layer,
                str(run_dir),
                *("--num-train-epochs", f"{epochs:g}", "--learning-rate", f"{learning_rate:g}", "--seed", str(seed)),
                *(("--max-train-samples", str(data_args.max_train_samples)) if data_args.max_train_samples else ()),
                *(("--max-eval-samples", str(data_args.max_eval_samples)) if data_args.max_eval_samples else ()),
            ),
        )
        result.finetune[layer] = {"f1": metrics["eval_f1"], "output_dir": str(run_dir)}
        result.timings[f"finetune_layer_{layer}_s"] = round(time.perf_counter() - started, 2)
        write_sweep(result, output_dir, overwrite=True)  # after every run: partial results survive
