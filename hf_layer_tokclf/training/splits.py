"""The data a training run reads: `read_splits` (train, dev and test, in IOB2, checked against the training labels)
and `head_labels` (the labels of the model to train, in id order)."""

from __future__ import annotations

from ..formats.conll import check_conll_columns
from ..formats.labels import check_known_labels, check_training_labels, describe_labels, label_list, normalize_labels
from ..formats.loading import MissingSplitError, label_names_from, load_sentences
from ..formats.records import Columns
from ..formats.sentence import Sentence
from .arguments import DataArguments


def _limit(sentences: list[Sentence], limit: int | None) -> list[Sentence]:
    return sentences if limit is None else sentences[:limit]


def data_columns(data_args: DataArguments) -> Columns:
    """The fields the data's words and labels are in, and the names of integer labels."""
    names = label_names_from(data_args.label_names, data_args.label_column_name) if data_args.label_names else None
    return Columns(data_args.text_column_name, data_args.label_column_name, names)


def read_splits(data_args: DataArguments) -> tuple[dict[str, list[Sentence]], str]:
    """Reads train/validation/test, converts labels to IOB2 and checks dev/test against the train labels.

    Prints the training labels with their counts (`labels.describe_labels`) and refuses what looks like a typo in
    them (`labels.check_training_labels`) unless ``allow_rare_labels``.

    Returns the splits and the scheme the training labels were written in (`labels.detect_scheme`),
    which predictions are written back in.
    """
    sources = {
        "train": (data_args.train_file, data_args.max_train_samples),
        "validation": (data_args.validation_file, data_args.max_eval_samples),
        "test": (data_args.test_file, data_args.max_test_samples),
    }
    if data_args.train_file is None and data_args.dataset_name is None:
        raise ValueError("No training data: give --train-file (or --dataset-name).")
    columns = data_columns(data_args)
    splits: dict[str, list[Sentence]] = {}
    for split, (path, limit) in sources.items():
        if path is None and data_args.dataset_name is None:
            continue
        source, split_name = (path, None) if path is not None else (data_args.dataset_name, split)
        try:
            sentences = load_sentences(
                source,
                split=split_name,
                columns=columns,
                config_name=data_args.dataset_config_name,
                hub=path is None,  # --dataset-name may be a Hub id; a file option is a file
            )
        except MissingSplitError:  # a dataset without a dev or test split
            if split == "train":
                raise
            continue
        normalized, scheme = normalize_labels(sentences)
        splits[split] = _limit(normalized, limit)
        if split == "train":
            train_scheme = scheme
            print(f"labels of {source} ({scheme}): {describe_labels(splits['train'])}")
            if not data_args.allow_rare_labels:
                check_training_labels(sentences, scheme, allow="--allow-rare-labels")
            label2id = {label: i for i, label in enumerate(label_list(splits["train"]))}
        else:  # as read: an unknown label is named as the file writes it
            check_known_labels(_limit(sentences, limit), label2id)
    for sentence in splits.get("test", ()):  # written to test_predictions.conll at the end: refused now
        check_conll_columns(sentence)
    return splits, train_scheme


def trained_labels(model: str) -> list[str] | None:
    """The labels of a trained token classifier's head, in id order; `None` for a backbone (no head)."""
    from transformers import PretrainedConfig

    config, _ = PretrainedConfig.get_config_dict(model)
    if not any(name.endswith("TokenClassification") for name in config.get("architectures") or ()):
        return None
    id2label = config.get("id2label") or {}
    return [id2label[key] for key in sorted(id2label, key=int)]


def head_labels(model: str, labels: list[str], ignore_mismatched_sizes: bool = False) -> list[str]:
    """The labels of the model to train, in id order.

    Continuing from a trained NER model: its own order where the data has the same labels (its head is
    kept); the data's labels and a new head with ``ignore_mismatched_sizes``; else a ValueError, before
    anything is written, naming both label sets.
    """
    trained = trained_labels(model)
    if trained is None or trained == labels:
        return labels
    if sorted(trained) == sorted(labels):
        return trained
    if not ignore_mismatched_sizes:
        raise ValueError(
            f"{model} was trained with the labels {', '.join(trained)}; the data has {', '.join(labels)}. Give "
            "--ignore-mismatched-sizes to keep its encoder and train a new head."
        )
    return labels
