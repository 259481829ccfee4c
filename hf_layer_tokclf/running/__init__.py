"""Running a model: features and windows, the one decode path, inference (PyTorch or ONNX), evaluation, the ONNX
runner and export, the stock export, and the spaCy component.

May import: base, model, formats.
"""
