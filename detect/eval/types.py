"""Flat, numpy-backed ground truth and detections for evaluation.

One row per box. Images are referred to by a dense index into
``image_ids``; classes by a dense index into ``class_names``. Boxes are kept
in COCO ``xywh`` (absolute pixels, float64) because the official COCO tool
computes IoU and areas from x, y, w, h; VOC results are the same in either
form (our VOC boxes use continuous edges, ``x1 = xmin - 1``).
"""

from dataclasses import dataclass, field
from typing import List

import numpy as np


@dataclass
class GroundTruth:
    """Ground-truth boxes of a dataset split.

    Attributes:
      image_ids: original image ids (COCO ids or VOC file stems), in the
        order the evaluators visit images (sorted, as pycocotools does).
      class_names: class names; their index is the class id.
      category_ids: original category id of each class (COCO), else
        ``list(range(len(class_names)))``.
      image_index: [N] int32 index into ``image_ids``.
      classes: [N] int32 index into ``class_names``.
      boxes_xywh: [N, 4] float64.
      area: [N] float64 (COCO's ``area`` field; box area where absent).
      ignore: [N] bool, COCO ``iscrowd`` or VOC ``difficult``.
      source: file or folder the data came from, for messages.
    """

    image_ids: List
    class_names: List[str]
    category_ids: List[int]
    image_index: np.ndarray
    classes: np.ndarray
    boxes_xywh: np.ndarray
    area: np.ndarray
    ignore: np.ndarray
    source: str = "<memory>"

    @property
    def num_images(self):
        return len(self.image_ids)

    @property
    def num_classes(self):
        return len(self.class_names)


@dataclass
class DetectionRows:
    """Detections over the images of a ``GroundTruth``, one row per box (``detect.Detections`` is one image's).

    Attributes:
      image_index: [N] int32 index into the ground truth's ``image_ids``.
      classes: [N] int32 class index.
      boxes_xywh: [N, 4] float64.
      scores: [N] float64.
      source: where they came from, for messages.
    """

    image_index: np.ndarray
    classes: np.ndarray
    boxes_xywh: np.ndarray
    scores: np.ndarray
    source: str = "<memory>"

    @classmethod
    def empty(cls, source="<memory>"):
        return cls(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros((0, 4)), np.zeros(0), source)


@dataclass
class CocoResult:
    """COCO bbox evaluation, as pycocotools' COCOeval.

    Attributes:
      stats: the 12 summary numbers by name: AP, AP50, AP75, APs, APm, APl,
        AR1, AR10, AR100, ARs, ARm, ARl (-1 where undefined, as pycocotools).
      per_class: class name -> AP@[.5:.95] (area all, 100 dets), -1 when the
        class has no ground truth.
      precision: [T, R, K, A, M] interpolated precision (-1 = undefined).
      recall: [T, K, A, M].
      iou_thresholds: [T]; recall_thresholds: [R].
    """

    stats: dict
    per_class: dict
    precision: np.ndarray
    recall: np.ndarray
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    class_names: List[str] = field(default_factory=list)


@dataclass
class VocResult:
    """Pascal VOC evaluation at IoU > 0.5 with ``difficult`` ignored.

    Attributes:
      mAP: mean AP over classes that have (non-difficult) ground truth.
      per_class: class name -> AP (NaN for a class without ground truth).
      curves: class name -> (recall [D], precision [D]) in score order.
      use_07_metric: True for the VOC2007 11-point AP.
    """

    mAP: float
    per_class: dict
    curves: dict
    use_07_metric: bool
