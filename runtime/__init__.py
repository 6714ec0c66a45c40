"""Torch-free facial-expression runtime: numpy, OpenCV and onnxruntime only.

    from runtime import CascadeFaceDetector, ExpressionClassifier, BatchSolver
    solver = BatchSolver(CascadeFaceDetector(), ExpressionClassifier())
    print(solver.solve_in_json([(0, cv2.imread("face.jpg"))]))
"""
from .classifier import DEFAULT_MODEL, ExpressionClassifier
from .detectors import CascadeFaceDetector, CV2FaceDetector, YuNetFaceDetector, create_detector
from .metadata import ModelError, ModelMetadata
from .pipeline import FramePipeline
from .smoothing import LinearExponentialSmoothing
from .solvers import BatchSolver, CameraSolver, StreamSolver, VideoSolver
from .tracking import IntervalDetector
from .visualizer import Visualizer

__all__ = ["BatchSolver", "CameraSolver", "CascadeFaceDetector", "CV2FaceDetector", "DEFAULT_MODEL",
           "ExpressionClassifier", "FramePipeline", "IntervalDetector", "LinearExponentialSmoothing", "ModelError",
           "ModelMetadata", "StreamSolver", "VideoSolver", "Visualizer", "YuNetFaceDetector", "create_detector"]
