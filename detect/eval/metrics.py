"""COCO and VOC evaluation of flat ground truth and detections."""


def evaluate_coco(gt, dets):
    """COCO bbox evaluation; equals pycocotools COCOeval.

    Args:
      gt: ``GroundTruth``.
      dets: ``Detections`` over ``gt``'s images.

    Returns:
      ``CocoResult``.
    """
    raise NotImplementedError


def evaluate_voc(gt, dets, use_07_metric=False):
    """Pascal VOC AP at IoU > 0.5, difficult ignored; equals the devkit.

    Args:
      gt: ``GroundTruth`` (``ignore`` = difficult).
      dets: ``Detections``.
      use_07_metric: VOC2007 11-point AP instead of the all-point area.

    Returns:
      ``VocResult``.
    """
    raise NotImplementedError
