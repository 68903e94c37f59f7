"""detect: object detection (YOLO, Faster R-CNN) on TensorFlow 2 and Keras 3.

Importing the package is cheap and needs neither a GPU nor network access;
TensorFlow is imported by the submodules that need it (``detect.ops``, ...).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
