"""COCO box mAP, equal to pycocotools' COCOeval (bbox) and much faster.

The protocol, as pycocotools implements it:

* per image and category, detections by descending score (stable), at most
  ``max_dets[-1]`` of them; boxes ignored when ``iscrowd`` or when their
  ``area`` field is outside the area range; a detection takes the best
  free regular box with IoU >= t, else the best ignored one (crowd boxes
  by intersection over the detection's area, and they may be taken many
  times); unmatched detections outside the area range are ignored;
* per category, all images' detections by descending score; precision at
  101 recall points from the monotone envelope; categories or area ranges
  without regular ground truth are undefined (-1) and left out of means.

How it is made fast: a detection can only take a box it overlaps by IoU >=
0.5, so only such pairs enter the sequential walk (``eval_matching``); all
other detections are plain false positives. Accumulation needs precision
only at true positives (the envelope's maxima sit there), so it runs on the
few matched detections, with the false-positive counts read from dense
cumulative sums over all detections.

The straight-line steps (ordering, pairing, accumulation) run eagerly: an
evaluation calls each once, on large tensors, so dispatching their few
hundred ops costs milliseconds, while tracing them into graphs cost about a
second per process (COCO-sized input, 2 cores), most of a fresh
``tools/eval.py``'s metric time. Only the sequential walk is a graph.
"""

import numpy as np
import tensorflow as tf

from detect.ops.eval_matching import RULE_COCO, match_groups

# Exactly pycocotools' Params values (np.linspace gives its float64 values).
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETS = (1, 10, 100)
AREA_RANGES = ((0.0, 1e10), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e10))
AREA_NAMES = ("all", "small", "medium", "large")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# Precision / recall value of an undefined entry (no regular ground truth).
UNDEFINED = -1.0


def box_iou_xywh(det_xywh, gt_xywh, gt_crowd):
    """IoU of matched-up pairs, with the arithmetic of pycocotools' bbIou.

    Args:
      det_xywh: [P, 4] float64.
      gt_xywh: [P, 4] float64.
      gt_crowd: [P] bool; for crowd boxes the union is the detection's area.

    Returns:
      [P] float64.
    """
    dx, dy, dw, dh = tf.unstack(det_xywh, axis=-1)
    gx, gy, gw, gh = tf.unstack(gt_xywh, axis=-1)
    w = tf.minimum(dx + dw, gx + gw) - tf.maximum(dx, gx)
    h = tf.minimum(dy + dh, gy + gh) - tf.maximum(dy, gy)
    inter = w * h
    det_area = dw * dh
    union = tf.where(gt_crowd, det_area, det_area + gw * gh - inter)
    return tf.where((w > 0) & (h > 0), inter / union, tf.zeros_like(inter))


def _stable_order(*keys):
    """Indices sorting by keys[0], then keys[1], ... (all stable, ascending)."""
    order = tf.range(tf.shape(keys[0])[0])
    for key in reversed(keys):
        order = tf.gather(order, tf.argsort(tf.gather(key, order), stable=True))
    return order


def _rank_in_runs(sorted_keys):
    """Position of each element inside its run of equal keys.

    Args:
      sorted_keys: [N] sorted.

    Returns:
      [N] int32 rank within the run, [N] int32 run index.
    """
    n = tf.shape(sorted_keys)[0]
    starts = tf.concat([tf.ones([tf.minimum(n, 1)], tf.bool), sorted_keys[1:] != sorted_keys[:-1]], 0)
    run = tf.cumsum(tf.cast(starts, tf.int32)) - 1
    first = tf.boolean_mask(tf.range(n), starts)
    return tf.range(n) - tf.gather(first, run), run


def _order_detections(dt_image, dt_class, dt_score, num_classes, max_det):
    """Walking order (image, class, -score, file order) and per-group rank.

    Returns:
      order [N'] of detections kept (rank < max_det) in walking order,
      rank [N'] within (image, class).
    """
    key = tf.cast(dt_image, tf.int64) * tf.cast(num_classes, tf.int64) + tf.cast(dt_class, tf.int64)
    order = _stable_order(key, -dt_score)
    rank, _ = _rank_in_runs(tf.gather(key, order))
    keep = rank < max_det
    return tf.boolean_mask(order, keep), tf.boolean_mask(rank, keep)


def _overlapping_pairs(det_key, det_xywh, gt_key, gt_xywh, gt_crowd, min_iou):
    """All (detection, box) pairs of one group with IoU >= min_iou.

    Args:
      det_key: [D] int64 group key of each detection (any order).
      gt_key: [B] int64 group key of each box, sorted.

    Returns:
      pair_det [P], pair_gt [P] int32 and pair_iou [P] float64.
    """
    start = tf.searchsorted(gt_key, det_key, side="left", out_type=tf.int32)
    end = tf.searchsorted(gt_key, det_key, side="right", out_type=tf.int32)
    counts = end - start
    pair_det = tf.repeat(tf.range(tf.shape(det_key)[0]), counts)
    offset = tf.range(tf.reduce_sum(counts)) - tf.repeat(tf.cumsum(counts, exclusive=True), counts)
    pair_gt = tf.gather(start, pair_det) + offset
    ious = box_iou_xywh(tf.gather(det_xywh, pair_det), tf.gather(gt_xywh, pair_gt), tf.gather(gt_crowd, pair_gt))
    keep = ious >= min_iou
    return tf.boolean_mask(pair_det, keep), tf.boolean_mask(pair_gt, keep), tf.boolean_mask(ious, keep)


def _reverse_cummax(values):
    """max(values[..., i:]) along the last axis, by log-step doubling."""
    size = values.shape[-1]
    shift = 1
    while shift < size:
        tail = tf.concat([values[..., shift:], tf.fill(tf.concat([tf.shape(values)[:-1], [shift]], 0),
                                                       tf.constant(-np.inf, values.dtype))], -1)
        values = tf.maximum(values, tail)
        shift *= 2
    return values


def _count_reached(thresholds, values):
    """How many of the evenly spaced ``thresholds`` are <= each value.

    Equals ``searchsorted(thresholds, values, side="right")`` exactly, for
    thresholds ``linspace(0, 1, R)``, without a binary search: the guess
    ``floor(v * (R - 1))`` is off by at most one, so three comparisons
    around it settle the count.

    Args:
      thresholds: [R] float64, ``linspace(0, 1, R)``.
      values: [P] float64 in [0, 1].

    Returns:
      [P] int32 counts in [0, R].
    """
    size = tf.shape(thresholds)[0]
    guess = tf.cast(tf.floor(values * tf.cast(size - 1, values.dtype)), tf.int32)
    low = tf.clip_by_value(guess - 1, 0, size - 1)
    count = low
    for offset in range(3):
        idx = tf.minimum(low + offset, size - 1)
        count += tf.cast((low + offset < size) & (tf.gather(thresholds, idx) <= values), tf.int32)
    return count


def _accumulate(acc_class, acc_rank, acc_out, tp_pos, tp_matched, tp_matched_ignored, npig, num_classes,
                max_dets, recall_thresholds):
    """Precision and recall tables from the walk's results.

    Detections are in accumulation order (class, -score, image, rank).

    Args:
      acc_class: [N] int32 class of each detection.
      acc_rank: [N] int32 rank inside its (image, class).
      acc_out: [N, A] bool, detection area outside each range.
      tp_pos: [S] int32 positions (in accumulation order, increasing) of
        detections matched at some (threshold, area).
      tp_matched, tp_matched_ignored: [S, T, A] bool.
      npig: [K, A] int32 regular ground truth per class and area range.
      max_dets: [M] int32.
      recall_thresholds: [R] float64.

    Returns:
      precision [T, R, K, A, M] and recall [T, K, A, M] float64.
    """
    num_t = tf.shape(tp_matched)[1]
    num_a = tf.shape(acc_out)[1]
    num_m = tf.shape(max_dets)[0]
    num_r = tf.shape(recall_thresholds)[0]
    # Dense counts over all detections: included (rank < maxDet) and
    # included-but-outside-area, cumulated within each class.
    included = acc_rank[:, None] < max_dets[None, :]  # [N, M]
    inc_out = included[:, :, None] & acc_out[:, None, :]  # [N, M, A]
    dense = tf.concat([tf.cast(included, tf.int32)[:, :, None], tf.cast(inc_out, tf.int32)], axis=2)
    cum = tf.cumsum(dense, axis=0)  # [N, M, 1 + A]
    class_start = tf.searchsorted(acc_class, tf.range(num_classes), side="left", out_type=tf.int32)
    before = tf.concat([tf.zeros([1, num_m, num_a + 1], tf.int32), cum], 0)
    tp_class = tf.gather(acc_class, tp_pos)
    at_tp = tf.gather(cum, tp_pos) - tf.gather(before, tf.gather(class_start, tp_class))  # [S, M, 1+A]
    # Included, not ignored, up to here = included - outside + corrections
    # for matched detections (whose ignore flag is their box's, not area's).
    inc_tp = tf.gather(included, tp_pos)[:, None, None, :]  # [S, 1, 1, M]
    out_tp = tf.gather(acc_out, tp_pos)[:, None, :, None]  # [S, 1, A, 1]
    matched = tp_matched[..., None] & inc_tp  # [S, T, A, M]
    ign = tp_matched_ignored[..., None]
    is_tp = matched & ~ign
    correction = tf.cast(matched & out_tp, tf.int32) - tf.cast(matched & ign, tf.int32)

    def class_cumsum(x):
        cum_x = tf.cumsum(x, axis=0)
        start = tf.searchsorted(tp_class, tp_class, side="left", out_type=tf.int32)
        prev = tf.concat([tf.zeros_like(cum_x[:1]), cum_x], 0)
        return cum_x - tf.gather(prev, start)

    tp_sum = class_cumsum(tf.cast(is_tp, tf.int32))  # [S, T, A, M]
    counted = (tf.transpose(at_tp[:, :, :1] - at_tp[:, :, 1:], [0, 2, 1])[:, None, :, :]
               + class_cumsum(correction))  # [S, T, A, M] = tp + fp so far
    # Only true positives matter from here on.
    where = tf.where(is_tp)  # [P, 4] (s, t, a, m)
    s_idx, t_idx, a_idx, m_idx = (tf.cast(where[:, i], tf.int32) for i in range(4))
    tp_f = tf.cast(tf.gather_nd(tp_sum, where), tf.float64)
    precision_at = tp_f / (tf.cast(tf.gather_nd(counted, where), tf.float64) + np.spacing(1))
    cls = tf.gather(tp_class, s_idx)
    recall_at = tp_f / tf.cast(tf.gather_nd(npig, tf.stack([cls, a_idx], 1)), tf.float64)
    # Recall bin: how many thresholds this recall reaches; the precision at
    # threshold r is the best precision of a true positive with bin > r.
    bins = _count_reached(recall_thresholds, recall_at)
    num_bins = num_r + 1
    seg = (((t_idx * num_classes + cls) * num_a + a_idx) * num_m + m_idx) * num_bins + bins
    best = tf.math.unsorted_segment_max(precision_at, seg, num_t * num_classes * num_a * num_m * num_bins)
    best = tf.reshape(best, [num_t, num_classes, num_a, num_m, num_bins])
    best = tf.maximum(best, 0.0)  # empty bins (lowest float) -> 0
    q = _reverse_cummax(best)[..., 1:]  # [T, K, A, M, R]: best over bins > r
    defined = (npig > 0)[None, :, :, None]  # [1, K, A, 1]
    precision = tf.where(defined[..., None], q, UNDEFINED)
    precision = tf.transpose(precision, [0, 4, 1, 2, 3])  # [T, R, K, A, M]
    # Recall: true positives over regular ground truth, per class.
    tp_total = tf.math.unsorted_segment_sum(tf.cast(is_tp, tf.float64), tp_class, num_classes)  # [K,T,A,M]
    recall = tf.transpose(tp_total, [1, 0, 2, 3]) / tf.maximum(tf.cast(npig, tf.float64), 1.0)[None, :, :, None]
    recall = tf.where(defined, recall, UNDEFINED)
    return precision, recall


def coco_evaluate(gt_image, gt_class, gt_xywh, gt_area, gt_crowd, dt_image, dt_class, dt_xywh, dt_score,
                  num_classes, iou_thresholds=IOU_THRESHOLDS, max_dets=MAX_DETS, area_ranges=AREA_RANGES):
    """COCO precision and recall tables (pycocotools' ``eval`` dict).

    Images and classes are dense indices; every image id the ground truth
    knows is evaluated. Ground truth is taken in file order and detections
    in file order (score ties keep it, as pycocotools does).

    Args:
      gt_image, gt_class: [G] int.
      gt_xywh: [G, 4] float64 COCO boxes.
      gt_area: [G] float64, the annotation's ``area`` (for area ranges).
      gt_crowd: [G] bool ``iscrowd``.
      dt_image, dt_class: [D] int.
      dt_xywh: [D, 4] float64.
      dt_score: [D] float64.
      num_classes: K.
      iou_thresholds, max_dets, area_ranges: protocol parameters.

    Returns:
      precision [T, R, K, A, M] and recall [T, K, A, M] numpy float64, -1
      where undefined.
    """
    iou_thresholds = np.asarray(iou_thresholds, np.float64)
    area_lo = np.array([lo for lo, _ in area_ranges], np.float64)
    area_hi = np.array([hi for _, hi in area_ranges], np.float64)
    gt_image, gt_class = np.asarray(gt_image, np.int64), np.asarray(gt_class, np.int64)
    gt_xywh = np.asarray(gt_xywh, np.float64).reshape(-1, 4)
    gt_area = np.asarray(gt_area, np.float64)
    gt_crowd = np.asarray(gt_crowd, bool)
    dt_xywh = np.asarray(dt_xywh, np.float64).reshape(-1, 4)
    dt_score = np.asarray(dt_score, np.float64)

    # Ground truth sorted by (image, class), file order inside a group.
    gt_key = gt_image * num_classes + gt_class
    gt_order = np.argsort(gt_key, kind="stable")
    gt_key = gt_key[gt_order]
    gt_xywh, gt_area, gt_crowd = gt_xywh[gt_order], gt_area[gt_order], gt_crowd[gt_order]
    gt_cls_sorted = gt_class[gt_order]
    gt_ignore = gt_crowd[:, None] | (gt_area[:, None] < area_lo) | (gt_area[:, None] > area_hi)  # [G, A]
    npig = np.zeros((num_classes, len(area_ranges)), np.int32)
    np.add.at(npig, gt_cls_sorted, (~gt_ignore).astype(np.int32))

    # Detections in walking order, at most max_dets[-1] per (image, class).
    walk, rank = _order_detections(tf.constant(np.asarray(dt_image, np.int32)),
                                   tf.constant(np.asarray(dt_class, np.int32)), tf.constant(dt_score),
                                   num_classes, max(max_dets))
    walk, rank = walk.numpy(), rank.numpy()
    d_image, d_class = np.asarray(dt_image, np.int64)[walk], np.asarray(dt_class, np.int64)[walk]
    d_xywh, d_score = dt_xywh[walk], dt_score[walk]
    d_key = d_image * num_classes + d_class
    d_area = d_xywh[:, 2] * d_xywh[:, 3]

    # The walk over detections that overlap some box of their group.
    pair_det, pair_gt, pair_iou = (x.numpy() for x in _overlapping_pairs(
        tf.constant(d_key), tf.constant(d_xywh), tf.constant(gt_key), tf.constant(gt_xywh),
        tf.constant(gt_crowd), float(iou_thresholds.min())))
    inv_det, pair_det_local = np.unique(pair_det, return_inverse=True)
    inv_gt, pair_gt_local = np.unique(pair_gt, return_inverse=True)
    _, det_group = np.unique(d_key[inv_det], return_inverse=True)
    group_keys = np.unique(d_key[inv_det])
    gt_group = np.searchsorted(group_keys, gt_key[inv_gt])
    matched, matched_ignored = match_groups(
        pair_det_local, pair_gt_local, pair_iou, det_group, gt_group, gt_crowd[inv_gt], gt_ignore[inv_gt],
        iou_thresholds, RULE_COCO)

    # Accumulation order: (class, -score, image, rank).
    acc = np.lexsort((rank, d_image, -d_score, d_class))
    position = np.empty_like(acc)
    position[acc] = np.arange(len(acc))
    any_match = matched.any(axis=(1, 2))
    tp_det = inv_det[any_match]
    tp_pos = position[tp_det]
    by_pos = np.argsort(tp_pos)
    acc_out = (d_area[acc, None] < area_lo) | (d_area[acc, None] > area_hi)
    precision, recall = _accumulate(
        tf.constant(d_class[acc].astype(np.int32)), tf.constant(rank[acc].astype(np.int32)), tf.constant(acc_out),
        tf.constant(tp_pos[by_pos].astype(np.int32)), tf.constant(matched[any_match][by_pos]),
        tf.constant(matched_ignored[any_match][by_pos]), tf.constant(npig), num_classes,
        tf.constant(np.asarray(max_dets, np.int32)), tf.constant(RECALL_THRESHOLDS))
    return precision.numpy(), recall.numpy()


def _mean_defined(values):
    values = values[values > UNDEFINED]
    return float(values.mean()) if values.size else UNDEFINED


def coco_summarize(precision, recall, iou_thresholds=IOU_THRESHOLDS, max_dets=MAX_DETS):
    """The 12 numbers of COCOeval.summarize(), in ``STAT_NAMES`` order.

    Args:
      precision: [T, R, K, A, M]; recall: [T, K, A, M].

    Returns:
      [12] float list; -1 where nothing is defined.
    """
    last = len(max_dets) - 1
    t50 = int(np.argmax(np.isclose(iou_thresholds, 0.5)))
    t75 = int(np.argmax(np.isclose(iou_thresholds, 0.75)))
    stats = [
        _mean_defined(precision[:, :, :, 0, last]),
        _mean_defined(precision[t50, :, :, 0, last]),
        _mean_defined(precision[t75, :, :, 0, last]),
        _mean_defined(precision[:, :, :, 1, last]),
        _mean_defined(precision[:, :, :, 2, last]),
        _mean_defined(precision[:, :, :, 3, last]),
    ]
    stats += [_mean_defined(recall[:, :, 0, m]) for m in range(len(max_dets))]
    stats += [_mean_defined(recall[:, :, a, last]) for a in (1, 2, 3)]
    return stats


def coco_per_class_ap(precision, max_dets=MAX_DETS):
    """AP@[.5:.95] (area all, most detections) of each class; -1 if undefined.

    Args:
      precision: [T, R, K, A, M].

    Returns:
      [K] float64.
    """
    return np.array([_mean_defined(precision[:, :, k, 0, len(max_dets) - 1]) for k in range(precision.shape[2])])
