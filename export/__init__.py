"""Checkpoint -> self-describing ONNX model (and its INT8 variant) for the runtime."""
