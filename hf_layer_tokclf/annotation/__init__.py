"""Many documents: a corpus run (chunks, shards, resume, summary), torchrun's processes, Ray Data.

May import: base, model, formats, running.
"""
