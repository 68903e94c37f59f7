"""Faster R-CNN losses: the RPN's and the detector head's (Fast R-CNN).

Both stages train on a sampled mini-batch: the RPN on anchors labelled
``POSITIVE``/``NEGATIVE`` (every other anchor ``IGNORE``), the detector on
sampled RoIs (``roi_valid`` marks the slots holding one). Each returns a
classification and a box-regression term, normalised one of two ways:

- ``"code"``: as py-faster-rcnn's Caffe layers compute it. Classification is
  the mean cross-entropy over the sampled examples; box regression is the
  smooth-L1 summed over the positives' 4 coordinates and divided by the
  number of sampled examples (RPN: the ``1 / num_examples`` outside weights;
  detector: SmoothL1Loss dividing by the number of RoIs).
- ``"paper"``: the papers' equation 1. For the RPN (Faster R-CNN),
  ``L = 1/N_cls sum L_cls + lambda/N_reg sum p* L_reg`` with ``N_cls`` the
  sampled anchors and ``N_reg`` the anchor *locations* (feature-map cells),
  ``lambda = 10``. For the detector (Fast R-CNN), both terms are means over
  the sampled RoIs and lambda = 1, i.e. the same as ``"code"`` at
  ``paper_lambda = 1``.

Counts are totals over the whole batch (for a batch of one this is exactly
the original). With nothing sampled, losses are 0 rather than 0 / 0. All
arithmetic is float32 whatever the input dtype, since a sum over thousands
of anchors in float16 loses precision or overflows.
"""

import tensorflow as tf

from detect.ops import POSITIVE, smooth_l1

LOSS_NORMALIZATIONS = ("code", "paper")


def _check_normalization(normalization, where):
    if normalization not in LOSS_NORMALIZATIONS:
        raise ValueError(f"{where}: normalization must be one of {LOSS_NORMALIZATIONS}, got {normalization!r}")


def _check_sigma(sigma, where):
    if not sigma > 0:
        raise ValueError(f"{where}: sigma must be > 0, got {sigma}")


def _safe_divide(total, count):
    """``total / max(count, 1)``: an empty sample gives 0, not NaN."""
    return total / tf.maximum(tf.cast(count, tf.float32), 1.0)


def rpn_loss(objectness, deltas, labels, box_targets, sigma=3.0, normalization="code", paper_lambda=10.0,
             num_locations=None):
    """RPN objectness and box-regression losses of one batch.

    Args:
      objectness: [B, N] logits, one sigmoid logit per anchor (object vs
        background; py-faster-rcnn's 2-way softmax is the same model).
      deltas: [B, N, 4] predicted box deltas.
      labels: [B, N] int, ``POSITIVE`` (1) / ``NEGATIVE`` (0) at sampled
        anchors, ``IGNORE`` (-1, or any negative value) elsewhere.
      box_targets: [B, N, 4] encoded targets; only read at positives.
      sigma: smooth-L1 sharpness, ``beta = 1 / sigma**2`` (3 -> 1/9).
      normalization: "code" or "paper" (see the module docstring).
      paper_lambda: weight of the box term under "paper" (10 in the paper);
        unused under "code".
      num_locations: anchor locations per image (``H * W`` of the feature
        map, i.e. N / anchors per location), int or scalar tensor; required
        for "paper", where the box term is divided by ``B * num_locations``.

    Returns:
      (cls_loss, box_loss): float32 scalars.
    """
    _check_normalization(normalization, "rpn_loss")
    _check_sigma(sigma, "rpn_loss")
    if normalization == "paper" and num_locations is None:
        raise ValueError("rpn_loss: normalization='paper' needs num_locations (anchor locations per image)")
    objectness = tf.cast(objectness, tf.float32)
    deltas = tf.cast(deltas, tf.float32)
    box_targets = tf.cast(box_targets, tf.float32)
    labels = tf.cast(labels, tf.int32)

    sampled = labels >= 0
    positive = tf.equal(labels, POSITIVE)
    num_sampled = tf.reduce_sum(tf.cast(sampled, tf.float32))

    # tf.where rather than a multiply by the mask, so an inf/NaN in an
    # ignored slot (whose logits and targets are arbitrary) cannot leak in.
    bce = tf.nn.sigmoid_cross_entropy_with_logits(tf.cast(positive, tf.float32), objectness)  # [B, N]
    cls_loss = _safe_divide(tf.reduce_sum(tf.where(sampled, bce, 0.0)), num_sampled)

    per_anchor = tf.reduce_sum(smooth_l1(deltas, box_targets, beta=1.0 / sigma**2), -1)  # [B, N]
    box_sum = tf.reduce_sum(tf.where(positive, per_anchor, 0.0))
    if normalization == "code":
        box_loss = _safe_divide(box_sum, num_sampled)
    else:
        batch_size = tf.cast(tf.shape(labels)[0], tf.float32)
        box_loss = paper_lambda * _safe_divide(box_sum, batch_size * tf.cast(num_locations, tf.float32))
    return cls_loss, box_loss


def detector_loss(class_logits, box_deltas, labels, box_targets, roi_valid, sigma=1.0, normalization="code",
                  paper_lambda=1.0):
    """Detector-head (Fast R-CNN) classification and box-regression losses.

    Args:
      class_logits: [B, S, C + 1] logits over sampled RoIs; class 0 is
        background.
      box_deltas: [B, S, 4C] class-specific deltas: object class ``c``
        (label ``c + 1``) owns columns ``4c:4c + 4``.
      labels: [B, S] int in [0, C]; 0 = background. Read only where valid.
      box_targets: [B, S, 4] encoded (already normalised) targets of each
        RoI's own ground truth; only read at foreground RoIs.
      roi_valid: [B, S] bool; False marks empty sample slots, which count
        nowhere.
      sigma: smooth-L1 sharpness, ``beta = 1 / sigma**2`` (1 -> 1).
      normalization: "code" or "paper". Both divide both terms by the number
        of valid RoIs; "paper" multiplies the box term by ``paper_lambda``
        (Fast R-CNN eq. 1), so the two coincide at ``paper_lambda = 1``.
      paper_lambda: weight of the box term under "paper"; unused under "code".

    Returns:
      (cls_loss, box_loss): float32 scalars.
    """
    _check_normalization(normalization, "detector_loss")
    _check_sigma(sigma, "detector_loss")
    class_logits = tf.cast(class_logits, tf.float32)
    box_deltas = tf.cast(box_deltas, tf.float32)
    box_targets = tf.cast(box_targets, tf.float32)
    roi_valid = tf.cast(roi_valid, tf.bool)
    # Empty slots may carry any label (-1 padding); sparse softmax CE rejects
    # out-of-range labels, so give them background before masking them out.
    labels = tf.where(roi_valid, tf.cast(labels, tf.int32), 0)
    foreground = roi_valid & (labels > 0)
    num_valid = tf.reduce_sum(tf.cast(roi_valid, tf.float32))

    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, class_logits)  # [B, S]
    cls_loss = _safe_divide(tf.reduce_sum(tf.where(roi_valid, ce, 0.0)), num_valid)

    # Only the RoI's own class's 4 deltas are trained; background RoIs pick
    # class 0's columns here, but are masked out below.
    shape = tf.shape(box_deltas)
    per_class = tf.reshape(box_deltas, tf.concat([shape[:2], [-1, 4]], 0))  # [B, S, C, 4]
    own = tf.gather(per_class, tf.maximum(labels - 1, 0), batch_dims=2)  # [B, S, 4]
    per_roi = tf.reduce_sum(smooth_l1(own, box_targets, beta=1.0 / sigma**2), -1)  # [B, S]
    box_loss = _safe_divide(tf.reduce_sum(tf.where(foreground, per_roi, 0.0)), num_valid)
    if normalization == "paper":
        box_loss = paper_lambda * box_loss
    return cls_loss, box_loss
