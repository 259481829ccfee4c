"""Running a sweep: `sweep`, sentences in and a `SweepResult` out, as the steps of the job; and
`run_sweep`, files to files, which the CLI calls."""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ...base.extras import require
from ...base.locations import check_model_location
from ...base.manifest import is_run_output, output_names
from ...base.niceties import optional_step
from ...base.outputs import Outputs, claim_output_dir
from ...formats.labels import check_known_labels, label_list, normalize_labels
from ...formats.lines import DataError
from ...formats.sentence import Sentence
from ...model.cost import relative_costs
from ...running.decoding import DEFAULT_DECODING
from .extract import EncodedSplit, FeatureStores, cache_folder, encode_split, extract_features
from .finetune import finetune_layers, train_command
from .probes import Probes, auto_epochs, one_thread, score_probes, train_probes, word_logits, word_targets
from .report import JSON_FILE, PLOT_FILE, TABLE_FILE, write_sweep
from .result import SweepResult, best_layer, recommend_layer, resolve_layers
from .settings import SWEEP_DEFAULTS, SweepSettings, check_settings

# Folders of --save-probe and --finetune-top: a model folder, a training run's output folder (of a multi-task
# sweep: one, finetune.JOINT_FOLDER).
RUN_FOLDER = re.compile(r"^(probe|finetune)-layer-\d+$|^finetune-joint$")
# A sweep's output folder: its files and run folders (a sweep before manifests wrote sweep.json every time).
SWEEP_OUTPUTS = Outputs(
    "sweep", output_names((TABLE_FILE, JSON_FILE, PLOT_FILE), (RUN_FOLDER,)), legacy=lambda f: (f / JSON_FILE).is_file()
)
# The probe folder of --save-probe: a model folder.
PROBE_OUTPUTS = Outputs("sweep --save-probe", is_run_output)


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
    decoding: str = DEFAULT_DECODING,
) -> SweepResult:
    """Trains a linear probe on every layer of a frozen encoder from one pass over the data; scores each on dev.

    Args:
        model_name_or_path: A checkpoint of a supported family (folder or Hub id), e.g. `arguments.default_backbone()`.
        train_sentences, dev_sentences: Labeled sentences (any IOB scheme; converted to IOB2). Dev
            labels must all appear in the training data.
        layers: ``hidden_states`` indices to probe (0 = embeddings, L = last, negative from the
            end); default all of 0..L. The encoder runs up to the deepest one.
        epochs, learning_rate, probe_batch_size: Probe training: AdamW with a linear decay, zero
            initialisation, features standardized per layer and dimension on the training words.
            ``epochs=None`` takes `auto_epochs`: at least 3 epochs and `MIN_PROBE_STEPS` steps.
        batch_size: Windows per encoder forward pass.
        max_length, stride: Windows of long sentences, as in `features.encode` (default: the model's maximum).
        cache: ``"memory"`` keeps the training features in RAM; ``"disk"`` in ``.npy`` memory maps in
            a temporary folder (under ``cache_dir`` if given), deleted when the sweep ends.
        cache_dtype: ``"float16"`` (half the size) or ``"float32"`` for the training features; dev
            features are always float32, so dev scores match the exported probe models.
        tolerance: F1 points: the recommendation is the shallowest layer within this of the best.
        seed: Order of the training words.
        progress: Progress bars for feature extraction and probe training.
        device, dtype: Where and in which precision the encoder pass runs (`loading.pick_device`,
            `loading.pick_dtype`: ``"auto"`` takes the GPU when there is one, in bfloat16 or
            float16); the features are kept, and the probes trained, in float32 on the CPU.
        decoding: How a probe's word scores become labels on dev (`decoding.word_labels`): as ``predict``
            and ``evaluate`` decode the saved probe, so its dev F1 is theirs.

    Raises:
        DataError: unlabeled sentences, or a dev label the training data lacks.
        ValueError: a layer out of range or another bad setting.
    """
    given = locals()  # the keyword arguments after ``layers`` are `SweepSettings`' fields, one for one
    settings = SweepSettings(**{field.name: given[field.name] for field in fields(SweepSettings)})
    started = time.perf_counter()
    train_sentences, dev_sentences, labels = label_data(train_sentences, dev_sentences)
    encoder = load_encoder(str(model_name_or_path), layers, settings)
    return probe_corpus(encoder, train_sentences, dev_sentences, labels, settings, started)


def sweep_settings(**kwargs: Any) -> SweepSettings:
    """The `SweepSettings` of `sweep`'s keyword arguments after ``layers``, its defaults for those not given."""
    parameters = inspect.signature(sweep).parameters
    names = [field.name for field in fields(SweepSettings)]
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise TypeError(f"unknown sweep settings {unknown}; expected some of {names}")
    return SweepSettings(**{name: kwargs.get(name, parameters[name].default) for name in names})


@dataclass
class Encoder:
    """The frozen encoder of a sweep, its tokenizer and config, and the layers swept (as `resolve_layers` gives)."""

    model_name_or_path: str
    model: Any
    tokenizer: Any
    config: Any
    layers: list[int]


def probe_corpus(
    encoder: Encoder,
    train_sentences: Sequence[Sentence],
    dev_sentences: Sequence[Sentence],
    labels: list[str],
    settings: SweepSettings,
    started: float,
) -> SweepResult:
    """One corpus's sweep on a loaded encoder, its data labeled (`label_data`): window the sentences, extract the
    features in one encoder pass, fit the probes, score them on dev, build the result (timed from ``started``)."""
    train, dev, settings = _encode_splits(encoder, train_sentences, dev_sentences, settings)
    with cache_folder(settings.cache, settings.cache_dir) as folder:
        t0 = time.perf_counter()
        features = _extract_features(encoder, train, dev, settings, folder)
        t1 = time.perf_counter()
        with one_thread():
            probes = _fit_probes(features, word_targets(train_sentences, labels), len(labels), settings)
            t2 = time.perf_counter()
            dev_logits = word_logits(features.dev, probes.weight, probes.bias).numpy()
        del features  # release the memory maps before their folder goes
    scores = score_probes(dev_logits, dev_sentences, labels, encoder.layers, settings.decoding)
    t3 = time.perf_counter()
    timings = {
        "extract_s": round(t1 - t0, 2),
        "probe_train_s": round(t2 - t1, 2),
        "score_s": round(t3 - t2, 2),
        "total_s": round(t3 - started, 2),
    }
    return _build_result(encoder, labels, scores, probes, train, dev, settings, timings)


def label_data(
    train_sentences: Sequence[Sentence], dev_sentences: Sequence[Sentence]
) -> tuple[list[Sentence], list[Sentence], list[str]]:
    """Both splits in IOB2 and the label list; every dev label must be a training label (`DataError` otherwise)."""
    train_sentences = _labeled(train_sentences, "training")
    dev_sentences = _labeled(dev_sentences, "dev")
    labels = label_list(train_sentences)
    check_known_labels(dev_sentences, {label: i for i, label in enumerate(labels)})
    return train_sentences, dev_sentences, labels


def _labeled(sentences: Sequence[Sentence], split: str) -> list[Sentence]:
    sentences = list(sentences)
    if not sentences:
        raise DataError(f"no {split} sentences")
    for sentence in sentences:
        if sentence.labels is None:
            raise DataError(f"{sentence.where()}: the {split} sentence has no labels; the sweep needs labeled data")
    return normalize_labels(sentences)[0]


def load_encoder(model_name_or_path: str, layers: Sequence[int] | None, settings: SweepSettings) -> Encoder:
    """The encoder up to the deepest swept layer, frozen, in eval mode, on its device and in its dtype."""
    from ...model.auto import AutoLayerConfig, AutoLayerModel
    from ...model.tokenization import load_tokenizer
    from ...running.loading import pick_device, pick_dtype
    from ...running.logits import check_max_length

    config = AutoLayerConfig.from_pretrained(model_name_or_path)
    layers = resolve_layers(layers, config.num_hidden_layers)
    check_max_length(settings.max_length, config.max_position_embeddings, model_name_or_path)
    tokenizer = load_tokenizer(model_name_or_path)
    target = pick_device(settings.device)
    model = AutoLayerModel.from_pretrained(
        model_name_or_path, hidden_layer=max(layers), dtype=pick_dtype(target, settings.dtype)
    )
    model.to(target).eval().requires_grad_(False)
    return Encoder(model_name_or_path, model, tokenizer, config, layers)


def _encode_splits(
    encoder: Encoder, train_sentences: Sequence[Sentence], dev_sentences: Sequence[Sentence], settings: SweepSettings
) -> tuple[EncodedSplit, EncodedSplit, SweepSettings]:
    """Both splits' windows, and the settings with ``max_length`` and ``epochs`` resolved (`auto_epochs`)."""
    from ...running.logits import default_max_length

    max_length = settings.max_length or default_max_length(encoder.model, encoder.tokenizer)
    train = encode_split(train_sentences, encoder.tokenizer, max_length, settings.stride)
    dev = encode_split(dev_sentences, encoder.tokenizer, max_length, settings.stride)
    if train.num_words == 0:
        raise DataError(f"{train_sentences[0].source}: the training sentences hold no words")
    epochs = settings.epochs or auto_epochs(train.num_words, settings.probe_batch_size)
    return train, dev, replace(settings, max_length=max_length, epochs=epochs)


def _extract_features(
    encoder: Encoder, train: EncodedSplit, dev: EncodedSplit, settings: SweepSettings, folder: Path | None
) -> FeatureStores:
    """The one encoder pass, with the settings' batch size, cache dtype and progress bar."""
    return extract_features(
        encoder.model,
        encoder.tokenizer,
        train,
        dev,
        encoder.layers,
        batch_size=settings.batch_size,
        cache_dtype=settings.cache_dtype,
        folder=folder,
        progress=settings.progress,
    )


def _fit_probes(features: FeatureStores, targets: Any, num_labels: int, settings: SweepSettings) -> Probes:
    """The probes of every layer, trained on the stored training features as the settings say."""
    return train_probes(
        features.train,
        targets,
        features.mean,
        features.std,
        num_labels,
        epochs=settings.epochs,
        learning_rate=settings.learning_rate,
        batch_size=settings.probe_batch_size,
        seed=settings.seed,
        progress=settings.progress,
    )


def _recorded_settings(
    settings: SweepSettings, encoder: Encoder, train: EncodedSplit, dev: EncodedSplit, losses: Sequence[float]
) -> dict[str, Any]:
    """`SweepResult.settings`: what the sweep was told, where it ran, how much data it saw, its last losses."""
    return {
        **settings.recorded(),
        "device": str(encoder.model.device),
        "dtype": str(encoder.model.dtype).removeprefix("torch."),
        "train_sentences": len(train.lengths),
        "train_words": train.num_words,
        "train_windows": len(train.features),
        "dev_sentences": len(dev.lengths),
        "dev_words": dev.num_words,
        "dev_windows": len(dev.features),
        "mean_window_tokens": round(train.mean_window_tokens, 2),
        "last_epoch_loss": dict(zip(encoder.layers, [round(x, 5) for x in losses], strict=True)),
    }


def _build_result(
    encoder: Encoder,
    labels: list[str],
    scores: dict[int, dict[str, Any]],
    probes: Probes,
    train: EncodedSplit,
    dev: EncodedSplit,
    settings: SweepSettings,
    timings: dict[str, float],
) -> SweepResult:
    """The `SweepResult`: F1 per layer, costs (at the training windows' mean length) and the recommendation."""
    layers = encoder.layers
    f1 = {layer: scores[layer]["f1"] for layer in layers}
    # A layer's share of the layers, where the FLOP count fails: the cost column is a nicety, the F1s are the sweep.
    cost = {layer: layer / encoder.config.num_hidden_layers for layer in layers}
    with optional_step("counting each layer's FLOPs (the cost column shows k/L instead)"):
        cost = relative_costs(encoder.config, layers, len(labels), train.mean_window_tokens)
    return SweepResult(
        model_name_or_path=encoder.model_name_or_path,
        layers=layers,
        num_hidden_layers=encoder.config.num_hidden_layers,
        labels=labels,
        f1=f1,
        scores=scores,
        relative_cost=cost,
        tolerance=settings.tolerance,
        recommended_layer=recommend_layer(f1, settings.tolerance),
        best_layer=best_layer(f1),
        probe_weight=probes.weight,
        probe_bias=probes.bias,
        settings=_recorded_settings(settings, encoder, train, dev, probes.losses),
        timings=timings,
    )


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
    plot: bool = True,
    allow_rare_labels: bool = False,
    progress: bool = True,
    **sweep_kwargs: Any,
) -> SweepResult:
    """Reads the data, sweeps, writes table, JSON and plot; optionally fine-tunes the best layers.

    Bad data and bad settings fail before anything is written; a non-empty ``output_dir`` is
    refused unless ``overwrite_output_dir``, which replaces an earlier sweep's files and folders and
    keeps every other file (the home folder and the working directory, or above it, are refused).
    With ``finetune_top=N`` the `finetune_candidates` are fine-tuned with `train.train` (the
    `TRAINING_DEFAULTS`, ``finetune_epochs`` and ``finetune_learning_rate``) into
    ``output_dir/finetune-layer-K`` and their dev F1 joins the table and plot. ``save_probe`` saves
    the recommended layer's probe as a model folder ``output_dir/probe-layer-K``. ``plot=False`` writes no
    ``sweep.png``; with ``plot``, a missing matplotlib (the ``plot`` extra) is refused before anything is read
    (`extras.MissingExtraError`). The data is read as `train` reads it (`splits.read_splits`), labels that look
    like typos refused unless ``allow_rare_labels``. Other keyword arguments go to `sweep`.
    """
    from ...model.auto import AutoLayerConfig
    from ..arguments import default_backbone
    from ..splits import read_splits

    model = model or default_backbone()
    if plot:
        require("plot", "the sweep's plot (sweep.png; --no-plot skips it)")
    check_model_location(model)  # a mistyped folder is not a Hub error, and is said before the data is read
    check_run(validation_file, finetune_top, max_train_samples, max_eval_samples, sweep_kwargs)
    data_args = data_arguments(
        train_file, validation_file, max_train_samples, max_eval_samples, sweep_kwargs, allow_rare_labels
    )
    splits, _ = read_splits(data_args)  # bad data fails before anything is written
    layers = resolve_layers(layers, AutoLayerConfig.from_pretrained(model).num_hidden_layers)
    with claim_output_dir(output_dir, SWEEP_OUTPUTS, overwrite=overwrite_output_dir) as claim:
        output_dir = claim.path
        result = sweep(model, splits["train"], splits["validation"], layers=layers, progress=progress, **sweep_kwargs)
        _record_run(result, model, train_file, validation_file, allow_rare_labels)
        write_sweep(result, output_dir, overwrite=True, plot=plot)
        if save_probe:
            _save_probe(result, model, output_dir)
            write_sweep(result, output_dir, overwrite=True, plot=plot)
        if finetune_top:
            finetuning = (finetune_top, finetune_epochs, finetune_learning_rate)
            finetune_layers(result, model, data_args, output_dir, *finetuning, progress, plot)
        claim.finish()
    return result


def _record_run(
    result: SweepResult, model: str, train_file: str, validation_file: str, allow_rare_labels: bool
) -> None:
    """Records in ``result`` the model and data swept, and the `train_command` of its recommended layer."""
    allow = ("--allow-rare-labels",) if allow_rare_labels else ()  # the data as the sweep read it
    result.train_command = train_command(model, train_file, validation_file, result.recommended_layer, None, *allow)
    result.settings.update(model=model, train_file=train_file, validation_file=validation_file)


def check_run(
    validation_file: str,
    finetune_top: int,
    max_train_samples: int | None,
    max_eval_samples: int | None,
    sweep_kwargs: dict[str, Any],
) -> None:
    """The checks of `run_sweep`'s settings that can run before the data is read."""
    if not validation_file:
        raise ValueError("--validation-file is required: the probes are scored on it.")
    if finetune_top < 0:
        raise ValueError(f"--finetune-top must be >= 0, got {finetune_top}")
    check_settings(
        sweep_kwargs.get("cache", "memory"),
        sweep_kwargs.get("cache_dir"),
        sweep_kwargs.get("cache_dtype", SWEEP_DEFAULTS["cache_dtype"]),
        sweep_kwargs.get("epochs", SWEEP_DEFAULTS["epochs"]),
        sweep_kwargs.get("tolerance", SWEEP_DEFAULTS["tolerance"]),
        max_train_samples=max_train_samples,
        max_eval_samples=max_eval_samples,
    )


def data_arguments(
    train_file: str | dict[str, str],
    validation_file: str | dict[str, str],
    max_train_samples: int | None,
    max_eval_samples: int | None,
    sweep_kwargs: dict[str, Any],
    allow_rare_labels: bool = False,
) -> Any:
    """The `arguments.DataArguments` of the sweep's data, which fine-tuning reads too (files by task for several)."""
    from ..arguments import DataArguments

    return DataArguments(
        train_file=train_file,
        validation_file=validation_file,
        max_train_samples=max_train_samples,
        max_eval_samples=max_eval_samples,
        max_length=sweep_kwargs.get("max_length"),
        stride=sweep_kwargs.get("stride"),
        allow_rare_labels=allow_rare_labels,
    )


def _save_probe(result: SweepResult, model: str, output_dir: Path) -> None:
    """The recommended layer's probe as a model folder, with the tokenizer: ``output_dir/probe-layer-K``."""
    from ...model.tokenization import load_tokenizer, save_tokenizer

    probe_dir = output_dir / f"probe-layer-{result.recommended_layer}"
    with claim_output_dir(probe_dir, PROBE_OUTPUTS) as claim:
        result.probe_model(result.recommended_layer).save_pretrained(probe_dir)
        save_tokenizer(load_tokenizer(model), probe_dir)
        claim.finish()
    result.settings["probe_dir"] = str(probe_dir)
