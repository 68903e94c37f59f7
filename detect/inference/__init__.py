"""Detection for applications: ``Detector``, ``Detections``, export (SavedModel, TFLite)."""

from detect.inference.detections import Detections
from detect.inference.detector import DEFAULT_SCORE_THRESHOLD, Detector

__all__ = ["DEFAULT_SCORE_THRESHOLD", "Detections", "Detector"]
