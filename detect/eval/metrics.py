"""COCO and VOC evaluation of flat ground truth and detections.

TensorFlow is imported on the first evaluation, not with this module, so
tools can validate their input (and fail fast and cleanly) before paying for
it.
"""

import numpy as np

from detect.eval.types import CocoResult, VocResult


def evaluate_coco(gt, dets):
    """COCO bbox evaluation; equals pycocotools COCOeval.

    Args:
      gt: ``GroundTruth``.
      dets: ``DetectionRows`` over ``gt``'s images.

    Returns:
      ``CocoResult``.
    """
    from detect.ops import coco_map

    precision, recall = coco_map.coco_evaluate(
        gt.image_index, gt.classes, gt.boxes_xywh, gt.area, gt.ignore,
        dets.image_index, dets.classes, dets.boxes_xywh, dets.scores, gt.num_classes)
    stats = dict(zip(coco_map.STAT_NAMES, coco_map.coco_summarize(precision, recall)))
    per_class = dict(zip(gt.class_names, coco_map.coco_per_class_ap(precision).tolist()))
    return CocoResult(stats=stats, per_class=per_class, precision=precision, recall=recall,
                      iou_thresholds=coco_map.IOU_THRESHOLDS, recall_thresholds=coco_map.RECALL_THRESHOLDS,
                      class_names=list(gt.class_names))


def evaluate_voc(gt, dets, use_07_metric=False):
    """Pascal VOC AP at IoU > 0.5, difficult ignored; equals the devkit.

    Args:
      gt: ``GroundTruth`` (``ignore`` = difficult).
      dets: ``DetectionRows``.
      use_07_metric: VOC2007 11-point AP instead of the all-point area.

    Returns:
      ``VocResult``.
    """
    from detect.ops import voc_map

    ap, curves = voc_map.voc_evaluate(
        gt.image_index, gt.classes, gt.boxes_xywh, gt.ignore,
        dets.image_index, dets.classes, dets.boxes_xywh, dets.scores, gt.num_classes,
        use_07_metric=use_07_metric)
    defined = ap[~np.isnan(ap)]
    return VocResult(
        mAP=float(defined.mean()) if defined.size else float("nan"),
        per_class=dict(zip(gt.class_names, ap.tolist())),
        curves={name: curve for name, curve in zip(gt.class_names, curves)},
        use_07_metric=bool(use_07_metric))
