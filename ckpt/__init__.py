"""The shipped models (ONNX files and the model card), installed beside the runtime."""
