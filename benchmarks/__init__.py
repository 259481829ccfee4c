"""Benchmarks for hf-layer-tokclf: timings live here, never in the unit tests."""
