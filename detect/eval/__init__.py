"""Evaluation: COCO and VOC mAP over datasets, files and training batches."""

from detect.eval.metrics import evaluate_coco, evaluate_voc
from detect.eval.types import CocoResult, DetectionRows, GroundTruth, VocResult

__all__ = ["CocoResult", "DetectionRows", "GroundTruth", "VocResult", "evaluate_coco", "evaluate_voc"]
