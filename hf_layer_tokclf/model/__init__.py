"""The model that travels (configuration, modeling, pipeline: copied flat into every saved folder, importing
only torch, transformers and each other) and what builds it (the Auto classes over the families, tokenizers, cost).

May import: base.
"""
