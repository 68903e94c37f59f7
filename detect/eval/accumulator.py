"""Collects padded batches of ground truth and detections, scores them at the end."""

import numpy as np

from detect.eval.metrics import evaluate_coco, evaluate_voc
from detect.eval.types import DetectionRows, GroundTruth
from detect.ops import PAD_CLASS  # the one definition: padded slots of batches and of NMS output


def _numpy(x, dtype=None):
    x = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    return x.astype(dtype) if dtype is not None else x


def _xyxy_to_xywh(boxes):
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


class DetectionAccumulator:
    """Accumulates a validation pass batch by batch; reports COCO and VOC mAP.

    Typical use in a validation loop::

        acc = DetectionAccumulator(class_names)
        for batch in val_data:
            out = model.predict_step(batch)            # batched_nms output
            acc.add(batch["boxes"], batch["classes"], out["boxes"], out["scores"],
                    out["classes"], out["num_detections"], gt_ignore=batch["ignore"])
        summary = acc.summary()                        # {"AP": ..., "AP50": ..., "mAP50": ...}

    Boxes are ``xyxy`` pixels of the same frame for both sides (for numbers
    equal to ``tools/eval.py``, the original image's).
    """

    def __init__(self, class_names):
        self.class_names = list(class_names)
        self.reset()

    def reset(self):
        self._gt = {"image": [], "classes": [], "boxes": [], "area": [], "ignore": []}
        self._dt = {"image": [], "classes": [], "boxes": [], "scores": []}
        self._num_images = 0

    @property
    def num_images(self):
        return self._num_images

    def add(self, gt_boxes, gt_classes, det_boxes, det_scores, det_classes, num_detections=None,
            gt_ignore=None, gt_area=None):
        """Adds one batch.

        Args:
          gt_boxes: [B, N, 4] xyxy; gt_classes: [B, N] int, ``PAD_CLASS``
            (``detect.ops.PAD_CLASS``, -1) for padding.
          det_boxes: [B, K, 4] xyxy; det_scores: [B, K]; det_classes: [B, K]
            int, ``PAD_CLASS`` for padding.
          num_detections: optional [B]; slots past it are padding.
          gt_ignore: optional [B, N] bool (crowd / difficult).
          gt_area: optional [B, N] float area for COCO's small / medium /
            large ranges: pass ``Record.area`` (COCO's ``area`` field) so
            APs / APm / APl equal ``tools/eval.py``; None for the box area.
        """
        gt_classes = _numpy(gt_classes, np.int64)
        batch = gt_classes.shape[0]
        gt_boxes = _numpy(gt_boxes, np.float64)
        gt_ignore = np.zeros_like(gt_classes, bool) if gt_ignore is None else _numpy(gt_ignore, bool)
        det_classes = _numpy(det_classes, np.int64)
        det_valid = det_classes != PAD_CLASS
        if num_detections is not None:
            det_valid &= np.arange(det_classes.shape[1])[None, :] < _numpy(num_detections)[:, None]
        image = self._num_images + np.arange(batch)
        gt_valid = gt_classes != PAD_CLASS
        gt_xywh = _xyxy_to_xywh(gt_boxes[gt_valid])
        area = gt_xywh[:, 2] * gt_xywh[:, 3] if gt_area is None else _numpy(gt_area, np.float64)[gt_valid]
        self._gt["image"].append(np.broadcast_to(image[:, None], gt_classes.shape)[gt_valid])
        self._gt["classes"].append(gt_classes[gt_valid])
        self._gt["boxes"].append(gt_xywh)
        self._gt["area"].append(area)
        self._gt["ignore"].append(gt_ignore[gt_valid])
        self._dt["image"].append(np.broadcast_to(image[:, None], det_classes.shape)[det_valid])
        self._dt["classes"].append(det_classes[det_valid])
        self._dt["boxes"].append(_xyxy_to_xywh(_numpy(det_boxes, np.float64)[det_valid]))
        self._dt["scores"].append(_numpy(det_scores, np.float64)[det_valid])
        self._num_images += batch

    def _collected(self):
        def cat(parts, width=None):
            if parts:
                return np.concatenate(parts)
            return np.zeros((0, width) if width else 0)

        gt = GroundTruth(
            image_ids=list(range(self._num_images)), class_names=self.class_names,
            category_ids=list(range(len(self.class_names))),
            image_index=cat(self._gt["image"]).astype(np.int32), classes=cat(self._gt["classes"]).astype(np.int32),
            boxes_xywh=cat(self._gt["boxes"], 4), area=cat(self._gt["area"]),
            ignore=cat(self._gt["ignore"]).astype(bool),
            source="<validation>")
        dets = DetectionRows(cat(self._dt["image"]).astype(np.int32), cat(self._dt["classes"]).astype(np.int32),
                             cat(self._dt["boxes"], 4), cat(self._dt["scores"]), source="<validation>")
        return gt, dets

    def evaluate(self):
        """Returns (CocoResult, VocResult with the all-point AP)."""
        gt, dets = self._collected()
        return evaluate_coco(gt, dets), evaluate_voc(gt, dets, use_07_metric=False)

    def summary(self):
        """Flat numbers for logs: the 12 COCO stats plus ``mAP50`` (VOC all-point)."""
        coco, voc = self.evaluate()
        out = dict(coco.stats)
        out["mAP50"] = voc.mAP
        return out
