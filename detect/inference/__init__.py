"""Running a trained detector: the ``Detector`` (``detector.py``), its results (``Detections``), the image and
video readers and the runtimes it drives (Keras, SavedModel, TFLite).

``Detector`` is imported from its module (or ``from detect import Detector``): it sits a layer above the rest of
this package and above ``detect.export``, whose writers it calls (ARCHITECTURE.md).
"""

from detect.inference.detections import Detections

__all__ = ["Detections"]
