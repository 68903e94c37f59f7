"""detect: object detection (YOLO, Faster R-CNN) on TensorFlow 2 and Keras 3.

Importing the package is cheap and needs neither a GPU nor network access;
TensorFlow is imported by the submodules that need it (``detect.ops``, ...).
"""

__version__ = "0.1.0"

__all__ = ["Detections", "Detector", "__version__"]


def __getattr__(name):
    # ``from detect import Detector`` without importing TensorFlow at ``import detect``.
    if name == "Detector":
        from detect.inference.detector import Detector

        return Detector
    if name == "Detections":
        from detect.inference.detections import Detections

        return Detections
    raise AttributeError(f"module 'detect' has no attribute {name!r}")
