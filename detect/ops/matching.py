"""Anchor-to-ground-truth matching by IoU thresholds."""

import tensorflow as tf

POSITIVE = 1
NEGATIVE = 0
IGNORE = -1
# matched_gt value for anchors of an image without any valid ground truth.
NO_MATCH = -1


def match(
    iou_matrix,
    thresholds=(0.3, 0.7),
    labels=(NEGATIVE, IGNORE, POSITIVE),
    allow_low_quality_matches=True,
    gt_valid=None,
):
    """Assigns each anchor its best ground truth and a label by IoU band.

    The IoU of an anchor with its best valid ground truth falls in one band
    ``[-inf, t0), [t0, t1), ..., [t_last, inf)``; the band's entry of
    ``labels`` is the anchor's label (RPN defaults: below 0.3 negative, from
    0.7 positive, between ignored). With ``allow_low_quality_matches``, every
    anchor that ties for a ground truth's highest IoU (when that IoU is > 0)
    is made positive too, so no object goes unmatched (Faster R-CNN rule ii).
    Such an anchor keeps its own best ground truth as ``matched_gt``.

    Args:
      iou_matrix: [..., N, M] IoU of N anchors with M ground-truth boxes.
      thresholds: increasing band edges.
      labels: len(thresholds) + 1 labels, one per band.
      allow_low_quality_matches: add the best anchors of every object.
      gt_valid: optional [..., M] bool; False marks padded ground truth, which
        never matches. Defaults to all valid.

    Returns:
      matched_gt: [..., N] int32 index of the best valid ground truth, or
        ``NO_MATCH`` (-1) in an image with no valid ground truth.
      match_labels: [..., N] int32 from ``labels``; every anchor of an image
        without valid ground truth gets the label of the lowest band.
    """
    thresholds = tuple(float(t) for t in thresholds)
    if list(thresholds) != sorted(thresholds):
        raise ValueError(f"match: thresholds must increase, got {thresholds}")
    if len(labels) != len(thresholds) + 1:
        raise ValueError(f"match: need len(thresholds) + 1 = {len(thresholds) + 1} labels, got {len(labels)}")
    iou_matrix = tf.convert_to_tensor(iou_matrix)
    if not iou_matrix.dtype.is_floating:
        iou_matrix = tf.cast(iou_matrix, tf.float32)
    if gt_valid is None:
        gt_valid = tf.ones_like(iou_matrix[..., 0, :], dtype=tf.bool)
    gt_valid = tf.cast(gt_valid, tf.bool)
    # A zero-width column keeps argmax/max defined when M == 0; it is invalid.
    # (reduce over the last axis gives the right [..., 1] shape even for M == 0)
    iou_matrix = tf.concat([iou_matrix, tf.zeros_like(tf.reduce_sum(iou_matrix, -1, keepdims=True))], -1)
    gt_valid = tf.concat([gt_valid, tf.zeros_like(tf.reduce_any(gt_valid, -1, keepdims=True))], -1)
    valid = gt_valid[..., None, :]  # [..., 1, M+1]
    # -1 is below any IoU, so invalid columns never win the argmax.
    masked = tf.where(valid, iou_matrix, tf.constant(-1.0, iou_matrix.dtype))
    best_gt = tf.argmax(masked, axis=-1, output_type=tf.int32)  # [..., N]
    best_iou = tf.maximum(tf.reduce_max(masked, axis=-1), 0.0)

    match_labels = tf.fill(tf.shape(best_iou), tf.constant(labels[0], tf.int32))
    for edge, label in zip(thresholds, labels[1:]):
        match_labels = tf.where(best_iou >= edge, tf.constant(label, tf.int32), match_labels)

    if allow_low_quality_matches:
        best_per_gt = tf.reduce_max(masked, axis=-2, keepdims=True)  # [..., 1, M+1]
        is_best = (masked == best_per_gt) & valid & (best_per_gt > 0.0)
        low_quality = tf.reduce_any(is_best, axis=-1)
        match_labels = tf.where(low_quality, tf.constant(POSITIVE, tf.int32), match_labels)

    has_gt = tf.reduce_any(gt_valid, axis=-1, keepdims=True)  # [..., 1]
    matched_gt = tf.where(has_gt, best_gt, tf.constant(NO_MATCH, tf.int32))
    return matched_gt, match_labels
