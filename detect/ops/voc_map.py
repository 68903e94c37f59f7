"""Pascal VOC box AP, equal to the VOC devkit's algorithm (voc_eval).

Per class, detections of all images by descending score; each looks at its
best-overlapping ground-truth box of the same image (first on ties): a true
positive when IoU > 0.5 and that box is not difficult and not yet taken, no
count at all when the box is difficult, a false positive otherwise. AP is
the VOC2007 11-point average or, from VOC2010 on, the area under the
monotone precision envelope at every recall step.

Boxes use continuous edges (``x1 = xmin - 1``), so widths and IoUs equal the
devkit's ``+ 1`` arithmetic on its 1-based corners.
"""

import numpy as np
import tensorflow as tf

from detect.ops.coco_map import _overlapping_pairs
from detect.ops.eval_matching import RULE_VOC, match_groups

IOU_THRESHOLD = 0.5
# np.arange gives the devkit's exact float64 recall points.
VOC07_RECALL_POINTS = np.arange(0.0, 1.1, 0.1)


def _class_suffix_max(values, classes):
    """max(values[i:end of i's class]) along sorted classes, by doubling.

    Args:
      values: [N] float; classes: [N] int, sorted.

    Returns:
      [N] suffix maxima within each class.
    """
    n = tf.shape(values)[0]

    def body(shift, out):
        ahead = tf.minimum(tf.range(n) + shift, n - 1)
        same = tf.gather(classes, ahead) == classes
        new = tf.maximum(out, tf.where(same, tf.gather(out, ahead), out))
        new.set_shape(values.shape)
        return shift * 2, new

    _, out = tf.while_loop(lambda shift, _: shift < n, body, (tf.constant(1), values))
    return out


@tf.function(reduce_retracing=True, autograph=False)
def _voc_curves(acc_class, is_tp, is_fp, npos, num_classes, use_07_metric):
    """Per-class recall/precision curves and AP.

    Args:
      acc_class: [N] int32, detections sorted by (class, -score).
      is_tp, is_fp: [N] bool (difficult matches are neither).
      npos: [K] int32 non-difficult ground truth per class.
      num_classes: K.
      use_07_metric: Python bool.

    Returns:
      recall [N], precision [N] (in the same order) and ap [K] (NaN where a
      class has no ground truth).
    """
    class_start = tf.searchsorted(acc_class, acc_class, side="left", out_type=tf.int32)

    def class_cumsum(x):
        cum = tf.cumsum(x)
        return cum - tf.gather(tf.concat([tf.zeros([1], cum.dtype), cum], 0), class_start)

    tp = class_cumsum(tf.cast(is_tp, tf.float64))
    fp = class_cumsum(tf.cast(is_fp, tf.float64))
    npos_f = tf.cast(tf.gather(npos, acc_class), tf.float64)
    recall = tp / npos_f
    precision = tp / tf.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07_metric:
        # Best precision at recall >= t, for t = 0, 0.1, ..., 1.
        reaches = recall[:, None] >= tf.constant(VOC07_RECALL_POINTS)[None, :]  # [N, 11]
        best = tf.math.unsorted_segment_max(tf.where(reaches, precision[:, None], 0.0), acc_class, num_classes)
        ap = tf.reduce_sum(tf.maximum(best, 0.0), axis=1) / 11.0
    else:
        # Area under the envelope: recall rises only at true positives, by
        # 1/npos, and the envelope there is the best precision from it on.
        envelope = _class_suffix_max(precision, acc_class)
        steps = tf.where(is_tp, envelope / npos_f, 0.0)
        ap = tf.math.unsorted_segment_sum(steps, acc_class, num_classes)
    ap = tf.where(npos > 0, ap, np.nan)
    return recall, precision, ap


def voc_evaluate(gt_image, gt_class, gt_xywh, gt_difficult, dt_image, dt_class, dt_xywh, dt_score, num_classes,
                 use_07_metric=False, iou_threshold=IOU_THRESHOLD):
    """VOC AP per class, with the devkit's matching.

    Args:
      gt_image, gt_class: [G] int; gt_xywh: [G, 4] float64 (continuous
        edges); gt_difficult: [G] bool.
      dt_image, dt_class: [D] int; dt_xywh: [D, 4] float64; dt_score: [D].
      num_classes: K.
      use_07_metric: 11-point AP (VOC2007) instead of all-point (VOC2010+).
      iou_threshold: a true positive needs IoU strictly above it.

    Returns:
      ap [K] numpy (NaN for classes without non-difficult ground truth), and
      per class a (recall, precision) pair of arrays in score order.
    """
    gt_image, gt_class = np.asarray(gt_image, np.int64), np.asarray(gt_class, np.int64)
    gt_xywh = np.asarray(gt_xywh, np.float64).reshape(-1, 4)
    gt_difficult = np.asarray(gt_difficult, bool)
    dt_image, dt_class = np.asarray(dt_image, np.int64), np.asarray(dt_class, np.int64)
    dt_xywh = np.asarray(dt_xywh, np.float64).reshape(-1, 4)
    dt_score = np.asarray(dt_score, np.float64)

    gt_key = gt_image * num_classes + gt_class
    gt_order = np.argsort(gt_key, kind="stable")
    gt_key, gt_xywh, gt_difficult = gt_key[gt_order], gt_xywh[gt_order], gt_difficult[gt_order]
    npos = np.bincount(gt_class[gt_order][~gt_difficult], minlength=num_classes)

    # Walking order: (image, class, -score, file order).
    walk = np.lexsort((-dt_score, dt_class, dt_image))
    d_key = (dt_image * num_classes + dt_class)[walk]
    pair_det, pair_gt, pair_iou = (x.numpy() for x in _overlapping_pairs(
        tf.constant(d_key), tf.constant(dt_xywh[walk]), tf.constant(gt_key), tf.constant(gt_xywh),
        tf.zeros([len(gt_key)], tf.bool), np.nextafter(iou_threshold, 1.0)))
    inv_det, pair_det_local = np.unique(pair_det, return_inverse=True)
    inv_gt, pair_gt_local = np.unique(pair_gt, return_inverse=True)
    group_keys, det_group = np.unique(d_key[inv_det], return_inverse=True)
    gt_group = np.searchsorted(group_keys, gt_key[inv_gt])
    hit, difficult = match_groups(
        pair_det_local, pair_gt_local, pair_iou, det_group, gt_group, np.zeros(len(inv_gt), bool),
        gt_difficult[inv_gt][:, None], np.array([iou_threshold]), RULE_VOC)
    is_tp = np.zeros(len(walk), bool)
    counted = np.ones(len(walk), bool)
    is_tp[inv_det] = hit[:, 0, 0]
    counted[inv_det] = ~difficult[:, 0, 0]

    # Accumulation order: (class, -score, file order).
    acc = np.lexsort((walk, -dt_score[walk], dt_class[walk]))
    acc_class = dt_class[walk][acc].astype(np.int32)
    recall, precision, ap = _voc_curves(
        tf.constant(acc_class), tf.constant(is_tp[acc]), tf.constant(counted[acc] & ~is_tp[acc]),
        tf.constant(npos.astype(np.int32)), num_classes, bool(use_07_metric))
    recall, precision = recall.numpy(), precision.numpy()
    bounds = np.searchsorted(acc_class, np.arange(num_classes + 1))
    curves = [(recall[bounds[k]:bounds[k + 1]], precision[bounds[k]:bounds[k + 1]]) for k in range(num_classes)]
    return ap.numpy(), curves
