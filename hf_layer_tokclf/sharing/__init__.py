"""Sharing: the Hub upload, the model card, and the checks that load a model as a stranger would.

- hub: `push_to_hub` as the steps of one job (stage, verify, one commit), the token and the upload; `push_request`
  for ``train --push-to-hub``.
- staging: what a Hub model repository holds (an allow-list), copied into a folder of its own with its card.
- verification: the staged folder loaded in a fresh process and compared with the source (`verify`).
- model_card: the ``README.md`` model card, rendered from ``model_card.md``, the config and ``metrics.json``.
- card_scores: the card's score tables (a row per task for a multi-task model) and the Hub's eval results.
- remote_check: a fresh ``python -I`` that loads a folder through remote code, as a stranger would.
- plain_check: a fresh ``python -I`` that loads a stock form with plain transformers (no remote code).

May import: base, model, formats, running.
"""
