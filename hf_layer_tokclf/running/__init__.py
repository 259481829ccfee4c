"""Running a model: features and windows, the one decode path, inference (PyTorch or ONNX), evaluation, the ONNX
runner and export, the stock export, and the spaCy component.

- features: sentences cut into windows, and the windows' rows back to words.
- decoding: the one decode path (argmax, Viterbi, the model's CRF; entities as the pipeline aggregates them).
- loading: a model loaded (PyTorch or ONNX, with consent before any folder's code runs), its device and precision.
- tasks: a model's heads (a single-task model's one, a multi-task model's tasks, --tasks), each's labels and decoder.
- logits: the model over windows (length-sorted batches, logits in input order, every task's), its longest input.
- sentences: labels of sentences (a column per task), evaluation on gold labels (per task), CoNLL lines out.
- texts: entities of raw texts as the pipeline finds them, JSON lines out.
- prefetch: reading and tokenizing one chunk ahead of the model.
- metrics: entity-level scores.
- onnx_runner, export, stock_export: the ONNX runner, the ONNX export, the export to transformers' own classes.
- spacy_component: the spaCy pipeline component.

May import: base, model, formats.
"""
