"""The command line on top: a module per command group over the functions of the wings below.

May import: base, model, formats, running, annotation, sharing, training.
"""
