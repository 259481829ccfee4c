"""Training (the Trainer, its options, the saved folder) and the layer sweep.

- train: `train`, the steps of one run: check the options and data, claim the output folder, train, save, push.
- arguments: the run_ner.py-style dataclasses (model, data, run); importable without torch or transformers.
- splits: the data a run reads (`read_splits`) and the labels of the model to train (`head_labels`).
- head: the backbone loaded with a new head (`load_with_new_head`), seeded, for the run's labels and layers.
- trainer: `NerTrainer`, `build_trainer` with its metrics and callbacks, `TRAINING_DEFAULTS`, resuming checkpoints.
- multitask: several corpora, a task each: batches of one task (`TaskBatchSampler`), per-task dev F1, `TaskView`.
- results: the saved folder: the model, its dev and test scores, its settings, ``metrics.json`` and card.
- sweep/: linear probes on every layer of a frozen encoder, then fine-tuning the best (`sweep`, `run_sweep`).

May import: base, model, formats, running, sharing.
"""
