"""Sharing: the Hub upload, the model card, and the checks that load a model as a stranger would.

May import: base, model, formats, running.
"""
