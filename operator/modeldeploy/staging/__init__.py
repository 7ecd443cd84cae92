"""Artifact staging: load, convert, optimize, verify and store a model (``modeldeploy stage``).

Imports torch, onnx and onnxruntime: install ``modeldeploy[staging]``. The operator never imports
this package; it runs it in a Job.
"""
