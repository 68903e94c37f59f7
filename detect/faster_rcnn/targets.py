"""Training targets of Faster R-CNN: RPN anchor labels and sampled RoIs.

Batched, static-shape versions of py-faster-rcnn's ``AnchorTargetLayer``
(:func:`rpn_targets`) and ``ProposalTargetLayer`` (:func:`proposal_targets`).
Boxes are ``xyxy`` in continuous input pixels (a box ``[x1, x2]`` is
``x2 - x1`` wide), where py-faster-rcnn uses inclusive pixel corners
(``x2 - x1 + 1``); the rules are otherwise the same, and each function says
where it departs from them.

A ground-truth box counts when it is valid and has a positive area (and, for
the RoI head, a class >= 0): a zero-area box overlaps nothing, so it can
neither make an anchor positive nor be regressed to.
"""

import tensorflow as tf

from detect.ops import (
    IGNORE,
    NEGATIVE,
    NO_MATCH,
    NO_SAMPLE,
    POSITIVE,
    box_area,
    encode_boxes,
    iou,
    match,
    sample_balanced,
)
from detect.ops.gather import gather_or_fill

# RoI label of background; object class c (0-based) is label c + 1.
BACKGROUND = 0
# py-faster-rcnn's BBOX_NORMALIZE_STDS: the RoI head regresses deltas divided
# by these, so all four targets have a similar spread.
DEFAULT_BOX_STDS = (0.1, 0.1, 0.2, 0.2)


def _sampled_mask(indices, size):
    """Which of ``size`` positions a sample holds.

    Args:
      indices: [B, S] int32 positions, ``NO_SAMPLE`` in empty slots.
      size: N (Python int or scalar tensor).

    Returns:
      [B, N] bool.
    """
    # Empty slots scatter into a spare column N that is cut off.
    cols = tf.where(indices == NO_SAMPLE, size, indices)
    rows = tf.broadcast_to(tf.range(tf.shape(indices)[0])[:, None], tf.shape(cols))
    counts = tf.scatter_nd(tf.stack([rows, cols], axis=-1), tf.ones_like(cols),
                           tf.stack([tf.shape(indices)[0], size + 1]))
    return counts[:, :size] > 0


def _counted_gt(gt_boxes, gt_valid):
    """[B, M] bool: valid ground truth with a positive area."""
    return tf.cast(gt_valid, tf.bool) & (box_area(gt_boxes) > 0.0)


def rpn_targets(anchors, gt_boxes, gt_valid, image_hw, num_samples=256, positive_fraction=0.5,
                positive_iou=0.7, negative_iou=0.3, allowed_border=0.0, seed=0):
    """Labels and box targets of the RPN's anchors (py-faster-rcnn AnchorTargetLayer).

    Anchors that are not fully inside an image's valid extent (grown by
    ``allowed_border``) are ignored and take part in no maximum, not even an
    object's best anchor. Of the others: best IoU below ``negative_iou`` is
    negative; best IoU from ``positive_iou`` is positive, and so is every
    anchor that ties for an object's highest IoU when that IoU is > 0;
    positives win over negatives (``RPN_CLOBBER_POSITIVES = False``). Then at
    most ``floor(num_samples * positive_fraction)`` positives are sampled and
    negatives fill up to ``num_samples``; all other anchors are ignored.

    "Inside" is the original's test on the original's anchor values
    (``generate_anchors`` reproduces them): ``x1 >= -allowed_border`` and
    ``x2 < w + allowed_border``, likewise in y; an anchor whose corner lies
    exactly on the edge is outside.

    Differences from py-faster-rcnn: an object whose best IoU is 0
    (e.g. no inside anchor touches it) gives no positive, where theirs would
    make every anchor with IoU 0 to it positive; zero-area and padded ground
    truth never match; the sample is a static-size top-k over random
    priorities (same distribution: uniform without replacement).

    Args:
      anchors: [N, 4] xyxy input pixels, shared by the batch.
      gt_boxes: [B, M, 4] xyxy.
      gt_valid: [B, M] bool; False marks padding.
      image_hw: [B, 2] int (height, width) of each image's valid extent in
        the padded batch.
      num_samples: anchors sampled per image (Python int).
      positive_fraction: largest share of positives in the sample.
      positive_iou: best IoU from which an anchor is positive.
      negative_iou: best IoU below which an anchor is negative.
      allowed_border: how far (pixels) an anchor may stick out of the image.
      seed: int or shape [2] int seed of the stateless sampler.

    Returns:
      dict with
        ``labels``: [B, N] int32 ``POSITIVE`` / ``NEGATIVE`` at sampled
          anchors, ``IGNORE`` everywhere else;
        ``box_targets``: [B, N, 4] float32 ``encode_boxes`` deltas (weights
          1) of the matched ground truth at sampled positives, 0 elsewhere;
        ``matched_gt``: [B, N] int32 index into M of each inside anchor's
          best ground truth (before sampling), ``NO_MATCH`` for anchors
          outside the image and in images without ground truth.
    """
    if not 0.0 <= negative_iou <= positive_iou:
        raise ValueError(f"rpn_targets: need 0 <= negative_iou <= positive_iou, got {negative_iou}, {positive_iou}")
    anchors = tf.cast(anchors, tf.float32)
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    gt_valid = _counted_gt(gt_boxes, gt_valid)
    image_hw = tf.cast(image_hw, tf.float32)
    height, width = image_hw[:, 0:1], image_hw[:, 1:2]  # [B, 1]
    border = float(allowed_border)
    x1, y1, x2, y2 = tf.unstack(anchors[None], axis=-1)  # [1, N] each
    inside = (x1 >= -border) & (y1 >= -border) & (x2 < width + border) & (y2 < height + border)  # [B, N]

    # IoU 0 for outside anchors: never the best of an object (match needs
    # IoU > 0 for that), and their labels are overwritten below.
    overlaps = tf.where(inside[:, :, None], iou(anchors[None], gt_boxes), 0.0)  # [B, N, M]
    matched_gt, labels = match(overlaps, (negative_iou, positive_iou), (NEGATIVE, IGNORE, POSITIVE),
                               allow_low_quality_matches=True, gt_valid=gt_valid)
    labels = tf.where(inside, labels, IGNORE)
    matched_gt = tf.where(inside, matched_gt, NO_MATCH)

    sample = sample_balanced(labels, num_samples, positive_fraction, seed)
    labels = tf.where(_sampled_mask(sample, tf.shape(labels)[1]), labels, IGNORE)

    positive = labels == POSITIVE
    # Non-positive anchors regress onto themselves (deltas exactly 0), so no
    # log(0) or 0/0 is ever evaluated.
    target_boxes = tf.where(positive[..., None], gather_or_fill(gt_boxes, matched_gt, 0.0), anchors[None])
    box_targets = tf.where(positive[..., None], encode_boxes(target_boxes, anchors[None]), 0.0)
    return {"labels": labels, "box_targets": box_targets, "matched_gt": matched_gt}


def proposal_targets(proposals, proposal_valid, gt_boxes, gt_classes, gt_valid, num_samples=128, fg_fraction=0.25,
                     fg_iou=0.5, bg_iou_hi=0.5, bg_iou_lo=0.1, box_stds=DEFAULT_BOX_STDS, seed=0):
    """Samples RoIs for the detector head and their targets (py-faster-rcnn ProposalTargetLayer).

    The valid ground-truth boxes join the proposals as candidates. A
    candidate whose best IoU with the ground truth is at least ``fg_iou`` is
    foreground (labelled with that object's class + 1); one with best IoU in
    ``[bg_iou_lo, bg_iou_hi)`` is background (label 0); foreground wins if
    the ranges overlap. At most ``floor(num_samples * fg_fraction)``
    foreground RoIs are drawn uniformly without replacement, background RoIs
    fill the remaining slots; slots left over when candidates run out are
    invalid.

    Differences from py-faster-rcnn: the RoI count is padded to a static
    ``num_samples`` with a validity mask (theirs returns fewer RoIs); the
    foreground quota is ``floor`` (theirs ``round``; equal for the defaults);
    box targets are class-agnostic ``[4]`` beside the label (theirs are laid
    out as ``[4 * num_classes]`` with inside weights); zero-area ground truth
    is dropped rather than appended; no gradient flows into ``proposals``
    (as in theirs, where the layer has no backward pass).

    Args:
      proposals: [B, P, 4] xyxy.
      proposal_valid: [B, P] bool; False marks padding.
      gt_boxes: [B, M, 4] xyxy.
      gt_classes: [B, M] int 0-based object classes, -1 for padding.
      gt_valid: [B, M] bool.
      num_samples: S, RoIs per image (Python int).
      fg_fraction: largest share of foreground RoIs.
      fg_iou: best IoU from which a candidate is foreground (> 0).
      bg_iou_hi: best IoU below which a candidate may be background.
      bg_iou_lo: best IoU from which a candidate may be background; 0.0 makes
        every non-foreground candidate eligible.
      box_stds: (sx, sy, sw, sh) the deltas are divided by.
      seed: int or shape [2] int seed of the stateless sampler.

    Returns:
      dict with
        ``rois``: [B, S, 4] float32 xyxy, 0 in invalid slots;
        ``roi_valid``: [B, S] bool;
        ``labels``: [B, S] int32, 0 (``BACKGROUND``) or class + 1; 0 in
          invalid slots;
        ``box_targets``: [B, S, 4] float32 deltas of the matched ground truth
          divided by ``box_stds`` for foreground RoIs, 0 elsewhere;
        ``matched_iou``: [B, S] float32 best IoU of each RoI with the ground
          truth, 0 in invalid slots.
    """
    if not fg_iou > 0.0:
        raise ValueError(f"proposal_targets: fg_iou must be > 0, got {fg_iou}")
    if bg_iou_lo > bg_iou_hi:
        raise ValueError(f"proposal_targets: need bg_iou_lo <= bg_iou_hi, got {bg_iou_lo}, {bg_iou_hi}")
    proposals = tf.stop_gradient(tf.cast(proposals, tf.float32))
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    gt_classes = tf.cast(gt_classes, tf.int32)
    gt_valid = _counted_gt(gt_boxes, gt_valid) & (gt_classes >= 0)

    candidates = tf.concat([proposals, gt_boxes], axis=1)  # [B, C = P + M, 4]
    candidate_valid = tf.concat([tf.cast(proposal_valid, tf.bool), gt_valid], axis=1)
    overlaps = iou(candidates, gt_boxes)  # [B, C, M]
    # Only the argmax is wanted from the matcher; the bands are set below.
    matched_gt, _ = match(overlaps, (), (NEGATIVE,), allow_low_quality_matches=False, gt_valid=gt_valid)
    # Without valid ground truth every candidate has best IoU 0 (reduce_max
    # over M == 0 is -inf, hence the maximum).
    best_iou = tf.maximum(tf.reduce_max(tf.where(gt_valid[:, None, :], overlaps, 0.0), axis=-1), 0.0)
    foreground = candidate_valid & (best_iou >= fg_iou) & (matched_gt != NO_MATCH)
    background = candidate_valid & ~foreground & (best_iou >= bg_iou_lo) & (best_iou < bg_iou_hi)
    sample_labels = tf.where(foreground, POSITIVE, tf.where(background, NEGATIVE, IGNORE))

    sample = sample_balanced(sample_labels, num_samples, fg_fraction, seed)  # [B, S]
    roi_valid = sample != NO_SAMPLE
    rois = gather_or_fill(candidates, sample, 0.0)
    roi_fg = gather_or_fill(tf.cast(foreground, tf.int32), sample, 0) > 0
    roi_gt = tf.where(roi_fg, gather_or_fill(matched_gt, sample, NO_MATCH), NO_MATCH)
    labels = tf.where(roi_fg, gather_or_fill(gt_classes, roi_gt, 0) + 1, BACKGROUND)

    # Other slots encode a unit box against itself (exactly 0, never 0/0).
    unit = tf.constant([0.0, 0.0, 1.0, 1.0])
    reference = tf.where(roi_fg[..., None], rois, unit)
    target = tf.where(roi_fg[..., None], gather_or_fill(gt_boxes, roi_gt, 0.0), unit)
    weights = tuple(1.0 / float(s) for s in box_stds)
    box_targets = tf.where(roi_fg[..., None], encode_boxes(target, reference, weights), 0.0)
    matched_iou = gather_or_fill(best_iou, sample, 0.0)
    return {"rois": rois, "roi_valid": roi_valid, "labels": labels, "box_targets": box_targets,
            "matched_iou": matched_iou}
