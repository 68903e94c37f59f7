"""Greedy detection-to-ground-truth matching for mAP, as the official evaluators do it.

Both COCO and VOC walk an image's detections of one class by descending
score and let each take one ground-truth box. The walk is sequential, but
only detections that overlap some ground truth enough can take anything, and
those are few: callers pass just those "involved" detections and boxes,
grouped per (image, class) and padded into dense blocks. The walk then runs
over the detection axis, vectorised over groups, IoU thresholds and area
ranges. (Matching anchors to ground truth for training targets is
``detect.ops.matching``.)
"""

import functools

import numpy as np
import tensorflow as tf

# Which evaluator's rule a detection follows when it picks a box.
RULE_COCO = "coco"
RULE_VOC = "voc"


def _last_argmax(values):
    """Index of the maximum along the last axis; ties go to the last index."""
    size = tf.shape(values)[-1]
    return size - 1 - tf.argmax(tf.reverse(values, axis=[-1]), axis=-1, output_type=tf.int32)


def _coco_step(iou_d, thresholds, taken, crowd, ignore):
    """One detection of pycocotools' evaluateImg, for all groups at once.

    Args:
      iou_d: [G, M] float64 IoU of this detection with the group's boxes
        (-1 for padding).
      thresholds: [T] float64.
      taken: [G, T, A, M] bool, boxes already matched.
      crowd: [G, M] bool; crowd boxes may be matched again.
      ignore: [G, A, M] bool, boxes ignored in each area range.

    Returns:
      matched [G, T, A] bool, matched_ignored [G, T, A] bool, new ``taken``.
    """
    good = iou_d[:, None, None, :] >= thresholds[None, :, None, None]  # [G, T, 1, M]
    free = ~taken | crowd[:, None, None, :]
    candidates = good & free
    ign = ignore[:, None, :, :]
    # A regular box always beats an ignored one; within each kind the best
    # IoU wins and ties go to the later box, as in the reference loop.
    regular = candidates & ~ign
    has_regular = tf.reduce_any(regular, axis=-1, keepdims=True)
    pool = tf.where(has_regular, regular, candidates & ign)
    scores = tf.where(pool, iou_d[:, None, None, :], tf.constant(-2.0, tf.float64))
    best = _last_argmax(scores)  # [G, T, A]
    matched = tf.reduce_any(pool, axis=-1)
    pick = tf.one_hot(best, tf.shape(iou_d)[-1], on_value=True, off_value=False) & matched[..., None]
    matched_ignored = tf.reduce_any(pick & ign, axis=-1)
    return matched, matched_ignored, taken | pick


def _voc_step(iou_d, threshold, taken, ignore):
    """One detection of the VOC devkit's voc_eval loop.

    The detection looks only at its best-overlapping box (first on ties): it
    is a true positive if that box overlaps by more than the threshold, is
    not difficult and is not taken yet; a difficult best box makes it
    neither true nor false.

    Args:
      iou_d: [G, M] float64 (-1 for padding).
      threshold: scalar float64.
      taken: [G, 1, 1, M] bool.
      ignore: [G, 1, M] bool (difficult).

    Returns:
      matched [G, 1, 1] (true positive), matched_ignored [G, 1, 1]
      (difficult: not counted), new ``taken``.
    """
    best = tf.argmax(iou_d, axis=-1, output_type=tf.int32)  # first maximum
    overlaps = tf.reduce_max(iou_d, axis=-1) > threshold  # [G]
    pick = tf.one_hot(best, tf.shape(iou_d)[-1], on_value=True, off_value=False) & overlaps[:, None]
    difficult = tf.reduce_any(pick & ignore[:, 0, :], axis=-1)
    already = tf.reduce_any(pick[:, None, None, :] & taken, axis=-1)  # [G, 1, 1]
    hit = (overlaps & ~difficult)[:, None, None] & ~already
    new_taken = taken | (pick[:, None, None, :] & hit[..., None])
    return hit, difficult[:, None, None], new_taken


def _match_block(iou, crowd, ignore, thresholds, rule):
    """Walks the detections of a block of groups in order.

    Args:
      iou: [G, D, M] float64; detections and boxes of a group, detections in
        descending score order, -1 where padded.
      crowd: [G, M] bool.
      ignore: [G, A, M] bool.
      thresholds: [T] float64.
      rule: RULE_COCO or RULE_VOC (a Python string: one trace each).

    Returns:
      matched [G, D, T, A] bool and matched_ignored [G, D, T, A] bool.
    """
    groups = tf.shape(iou)[0]
    num_dets = tf.shape(iou)[1]
    boxes = tf.shape(iou)[2]
    num_t = tf.shape(thresholds)[0]
    num_a = tf.shape(ignore)[1]
    taken = tf.zeros([groups, num_t, num_a, boxes], tf.bool)
    matched_ta = tf.TensorArray(tf.bool, size=num_dets)
    ignored_ta = tf.TensorArray(tf.bool, size=num_dets)

    def body(d, taken, matched_ta, ignored_ta):
        iou_d = iou[:, d, :]
        if rule == RULE_COCO:
            matched, matched_ignored, taken = _coco_step(iou_d, thresholds, taken, crowd, ignore)
        else:
            matched, matched_ignored, taken = _voc_step(iou_d, thresholds[0], taken, ignore)
        return d + 1, taken, matched_ta.write(d, matched), ignored_ta.write(d, matched_ignored)

    _, _, matched_ta, ignored_ta = tf.while_loop(
        lambda d, *_: d < num_dets, body, (tf.constant(0), taken, matched_ta, ignored_ta))
    # TensorArray stacks to [D, G, T, A].
    matched = tf.transpose(matched_ta.stack(), [1, 0, 2, 3])
    ignored = tf.transpose(ignored_ta.stack(), [1, 0, 2, 3])
    return matched, ignored


# Any block size, so each rule is traced once per process: blocks come in
# many (groups, detections, boxes) shapes, and a trace per shape (or the
# relaxed retraces reduce_retracing makes) cost more than the walk itself.
_BLOCK_SIGNATURE = (tf.TensorSpec([None, None, None], tf.float64), tf.TensorSpec([None, None], tf.bool),
                    tf.TensorSpec([None, None, None], tf.bool), tf.TensorSpec([None], tf.float64))
_WALKS = {rule: tf.function(functools.partial(_match_block, rule=rule), input_signature=_BLOCK_SIGNATURE,
                            autograph=False)
          for rule in (RULE_COCO, RULE_VOC)}


def _next_pow2(values):
    return np.maximum(1, 2 ** np.ceil(np.log2(np.maximum(values, 1)))).astype(np.int64)


def match_groups(pair_det, pair_gt, pair_iou, det_group, gt_group, crowd, ignore, thresholds, rule):
    """Greedy matching of involved detections, group by group.

    Groups are padded in blocks of similar size (powers of two), so a few
    crowded images do not inflate the work of all the others.

    Args:
      pair_det: [P] int, involved detection of each (detection, box) pair;
        detections are numbered 0..D-1 in walking order (group-major,
        descending score inside a group).
      pair_gt: [P] int, involved box of the pair, numbered 0..B-1 in group
        order (boxes of a group in file order).
      pair_iou: [P] float64.
      det_group: [D] int group of each involved detection (non-decreasing).
      gt_group: [B] int group of each involved box (non-decreasing).
      crowd: [B] bool.
      ignore: [B, A] bool.
      thresholds: [T] float64.
      rule: RULE_COCO or RULE_VOC.

    Returns:
      matched [D, T, A] bool and matched_ignored [D, T, A] bool.
    """
    det_group = np.asarray(det_group, np.int64)
    gt_group = np.asarray(gt_group, np.int64)
    num_dets, num_boxes = len(det_group), len(gt_group)
    num_t, num_a = len(thresholds), ignore.shape[1]
    matched = np.zeros((num_dets, num_t, num_a), bool)
    matched_ignored = np.zeros((num_dets, num_t, num_a), bool)
    if num_dets == 0:
        return matched, matched_ignored
    num_groups = int(max(det_group.max(), gt_group.max() if num_boxes else 0)) + 1
    det_start = np.searchsorted(det_group, np.arange(num_groups))
    gt_start = np.searchsorted(gt_group, np.arange(num_groups))
    det_count = np.bincount(det_group, minlength=num_groups)
    gt_count = np.bincount(gt_group, minlength=num_groups)
    det_local = np.arange(num_dets) - det_start[det_group]
    gt_local = np.arange(num_boxes) - gt_start[gt_group]
    pad_d, pad_m = _next_pow2(det_count), _next_pow2(gt_count)
    thresholds = tf.constant(thresholds, tf.float64)
    pair_group = det_group[pair_det]
    blocks = {}
    for g, key in enumerate(zip(pad_d.tolist(), pad_m.tolist())):
        if det_count[g]:
            blocks.setdefault(key, []).append(g)
    for (size_d, size_m), groups in blocks.items():
        groups = np.asarray(groups)
        slot = np.full(num_groups, -1)
        slot[groups] = np.arange(len(groups))
        iou = np.full((len(groups), size_d, size_m), -1.0)
        in_block = slot[pair_group] >= 0
        iou[slot[pair_group[in_block]], det_local[pair_det[in_block]], gt_local[pair_gt[in_block]]] = \
            pair_iou[in_block]
        block_crowd = np.zeros((len(groups), size_m), bool)
        block_ignore = np.zeros((len(groups), num_a, size_m), bool)
        gt_in = slot[gt_group] >= 0
        block_crowd[slot[gt_group[gt_in]], gt_local[gt_in]] = crowd[gt_in]
        block_ignore[slot[gt_group[gt_in]], :, gt_local[gt_in]] = ignore[gt_in]
        m, mi = _WALKS[rule](tf.constant(iou), tf.constant(block_crowd), tf.constant(block_ignore), thresholds)
        dets_in = np.nonzero(slot[det_group] >= 0)[0]
        matched[dets_in] = m.numpy()[slot[det_group[dets_in]], det_local[dets_in]]
        matched_ignored[dets_in] = mi.numpy()[slot[det_group[dets_in]], det_local[dets_in]]
    return matched, matched_ignored
