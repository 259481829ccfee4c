"""Training (the Trainer, its options, the saved folder) and the layer sweep.

May import: base, model, formats, running, sharing.
"""
