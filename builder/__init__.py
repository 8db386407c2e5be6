"""`tritium build`: from a trained model to validated, optimized versions in a Triton repository.

Heavy libraries (torch, onnx, onnxruntime) are imported inside the functions that need them, so
the package imports cheaply (the CLI and the gateway image do not need torch).
"""
