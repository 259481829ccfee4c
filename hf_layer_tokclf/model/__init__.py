"""The model that travels, and what builds it.

- configuration_layer_tokclf, modeling_layer_tokclf, pipeline_layer_tokclf: the config, the model and the
  pipeline (label-scheme constraints, the CRF), copied flat into every saved folder; they import only torch,
  transformers and each other, since strangers run them.
- modeling_multitask_layer_tokclf: the multi-task model (a head per task, each on its own layer), travelling too
  (beside the three) in a multi-task model's folder.
- auto: the Auto classes and a class per encoder family (BERT, RoBERTa, DeBERTa, ModernBERT, ...).
- tokenization: a model's tokenizer loaded and saved, with the consent its code needs.
- cost: the compute of layer k relative to the whole model (torch's FLOP counter).

May import: base.
"""
