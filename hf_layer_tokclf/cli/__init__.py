"""The command line on top: a module per command group over the functions of the wings below.

- main: the ``hf-layer-tokclf`` entry point, its table of subcommands and the dispatch (exit status, Ctrl-C).
- parsing: `CommandParser`, one grammar for every subcommand, and the option kinds declared alike.
- options: options several commands share (--device, --dtype, --decoding, --max-batch-tokens, --trust-remote-code).
- interrupts: what a command leaves to go on from when Ctrl-C stops it.
- train: ``train``, with every TrainingArguments option and run_ner.py's.
- evaluate: ``evaluate``, a model's scores on labeled data.
- predict: ``predict``'s options and checks, and the engine that runs it.
- predict_local: ``predict`` in this process (or torchrun's), per kind of input: CoNLL, word lists, documents.
- predict_ray: ``predict --engine ray``, over Ray Data.
- push: ``push`` (and push_to_hub.py), a model shared on the Hub.
- sweep: ``sweep``, one probe per layer.
- export: ``export-onnx`` and ``export-transformers``.
- serve: ``serve``, an entity server (this process with uvicorn, or Ray Serve), checked before its port is bound.
- reference: the README's table of every option, made from the parsers.

May import: base, model, formats, running, annotation, server, sharing, training.
"""
