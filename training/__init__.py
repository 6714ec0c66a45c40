"""PyTorch side of the project: data loaders, MobileNetV3 training and evaluation."""
