"""Batched, multi-class greedy non-maximum suppression with static shapes.

Multi-class (:func:`batched_nms`) is one greedy walk over the (box, class)
pairs of an image in the *walk order*: descending score, ties by the flat
pair index ``box * C + class``. A pair is kept when it scores above the
threshold, fewer than ``max_total_size`` pairs and fewer than
``max_output_size_per_class`` pairs of its class are kept, and no kept pair
of its class overlaps it by more than the IoU threshold. Within a class this
is greedy NMS in score order with its cap; kept pairs come out in descending
score order, so the first ``max_total_size`` are exactly the top of the
union of the per-class results: what ``tf.image.combined_non_max_suppression``
returns on distinct scores (on ties it may order differently).

Only the head of the walk order is ever needed, so the pairs are walked in
*bands*, contiguous segments of the walk order found without sorting all
B x N x C pairs (:mod:`detect.ops.nms_banded`), each resolved tile by tile
as greedy NMS (:mod:`detect.ops.nms_greedy`, which also holds the
single-class :func:`detect.ops.nms_greedy.nms`).

An image is decided once it holds ``max_total_size`` pairs or no bound is
above the threshold (no pair above it is left); then the walk so far is
its whole walk, so the result is exact whichever band decides it, and the
bands (sizes, estimates) only decide the speed. Each band walks at least one
pair or tightens an overestimated bound, and the edge never moves back, so
the walk ends (see :func:`_group_nms`): after the first bands
(``BAND_FACTORS``) a last resort repeats bands until every image is
decided. On CPU the batch is split into groups of images that run in
parallel, one per core.

This module keeps the public batched API: it runs the bands per group of
images and pads the result; what a band is and how it is walked live in the
modules above, the XLA switch in :mod:`detect.ops.nms_xla`.
"""

import os

import tensorflow as tf

from detect.ops.nms_banded import (
    _band_boxes,
    _band_rows_xla,
    _band_sort,
    _band_start_xla,
    _band_walk_xla,
    _prologue_xla,
)

# Class id of padded detection slots.
PAD_CLASS = -1

# Which band decided a batched_nms result (see _batched_nms): the first bands
# are numbered from 0; any band of the last resort is SEARCH_ALL.
SEARCH_ALL = -1
# Target sizes of the first bands, in (box, class) pairs, as multiples of
# candidate_pool (a second band as large as the first costs a crowd less than
# a larger one)...
BAND_FACTORS = (1, 1, 4)
# ... and of the bands of the last resort, which repeats them until every
# image is decided.
LAST_RESORT_FACTOR = 4
# A band's pair buffer holds this many times its target size, and its lower
# edge is estimated to fill this share of the buffer: a band estimated too
# large is cut short (exactly), one estimated too small walks less.
BAND_BUFFER_FACTOR = 2
ESTIMATE_SHARE = 0.75
# A band's box buffer holds this many quarters of its pair buffer: each box
# in a band has at least one pair in it, in a crowd exactly one.
BOX_BUFFER_SHARE = 3
# Pairs resolved together in the batched walk.
BAND_TILE_SIZE = 64
# On CPU the batch is split into at most this many groups of images (one per
# core), which run in parallel: the tile walk is a sequential loop.
MAX_GROUPS = 4


def _group_nms(boxes, scores, out, per_class, iou_threshold, score_threshold, targets, last_target, tile_size):
    """:func:`_batched_nms` for one group of images: the first bands (each
    only while some image is undecided), then the last resort.

    Args:
      targets: the first bands' target sizes (Python ints), maybe none.
      last_target: the last resort's.

    Returns:
      (state as in :func:`detect.ops.nms_greedy._walk`, level [] int32: the first band that
      decided the last image, or SEARCH_ALL).
    """
    batch = scores.shape[0] if scores.shape[0] is not None else tf.shape(scores)[0]
    num_boxes, num_classes = scores.shape[1], scores.shape[2]
    num_pairs = num_boxes * num_classes
    dtype = scores.dtype
    cap = per_class if per_class < out else None
    iou_threshold = tf.cast(iou_threshold, dtype)
    targets = list(targets) + [last_target]

    def sizes(target):
        """A band's pair buffer (whole tiles) and box buffer."""
        size = min(BAND_BUFFER_FACTOR * target, num_pairs)
        size = -(-size // tile_size) * tile_size
        return size, max(1, min(size * BOX_BUFFER_SHARE // 4, num_boxes))

    def band_step(carry, band):
        state, edge_score, edge_pair, bound, sample, done, _, lower_score, lower_pair, mask, count = carry
        active = ~done
        size, box_size = sizes(targets[min(band, len(targets) - 1)])
        box_slots = _band_boxes(mask, count, box_size)
        keys, in_band, below = _band_rows_xla(scores, box_slots, edge_score, edge_pair, lower_score, lower_pair,
                                              score_threshold)
        buffer_keys, buffer_pairs, count = _band_sort(keys, in_band, size)
        result = _band_walk_xla(state, boxes, bound, sample, box_slots, below, buffer_keys, buffer_pairs, count,
                                edge_score, edge_pair, lower_score, lower_pair, active, score_threshold, iou_threshold,
                                num_classes, cap, tile_size)
        level = band if band < len(targets) - 1 else SEARCH_ALL
        return result + (tf.constant(level, tf.int32),) + start(result[3], result[4], ~result[5], band + 1)

    def start(bound, sample, active, band):
        """The start of a band (see :func:`detect.ops.nms_banded._band_start`)."""
        size, box_size = sizes(targets[min(band, len(targets) - 1)])
        return _band_start_xla(bound, sample, active, score_threshold, int(size * ESTIMATE_SHARE), box_size,
                               num_classes)

    bound, sample = _prologue_xla(scores)
    lower_score, lower_pair, mask, count = start(bound, sample, tf.reduce_max(bound, axis=-1) > score_threshold, 0)
    state = (tf.zeros([batch], tf.int32), tf.zeros([batch, 4, out], dtype), tf.zeros([batch, out], tf.int32),
             tf.zeros([batch, out], dtype), tf.zeros([batch, num_classes if cap else 1], tf.int32))
    done = tf.reduce_max(bound, axis=-1) <= score_threshold
    carry = (state, tf.fill([batch], tf.constant(float("inf"), dtype)), tf.zeros([batch], tf.int32), bound, sample,
             done, tf.constant(0, tf.int32), lower_score, lower_pair, mask, count)
    for band in range(len(targets) - 1):
        carry = tf.cond(tf.reduce_all(carry[5]), lambda carry=carry: carry,
                        lambda carry=carry, band=band: band_step(carry, band))

    # The last resort: bands of the last target size until every image is
    # decided. It ends: in each band an undecided image either walks a pair
    # (a new one: the edge only moves forward) or, with an empty band, lowers
    # the bound of every box of the band, and it has some (an estimated lower
    # edge is a pair left above the threshold, so its band is not empty; at
    # the threshold, every box above it; raised, box_size of them), strictly:
    # lower edges lie between boxes (pair index a multiple of C), so a box
    # that reaches one has no pair after it at its score, and gets a bound
    # below it. Bounds never rise and are scores (or -inf): after at most
    # N * C walks and N * (N * C + 1) lowerings, every bound is at most the
    # threshold, or K pairs are kept.
    flat = tf.nest.flatten(carry)
    invariants = tf.nest.pack_sequence_as(
        carry, [tf.TensorShape([None] + x.shape.as_list()[1:]) if x.shape.rank else x.shape for x in flat])

    def last_resort(carry):
        return tf.while_loop(lambda *c: ~tf.reduce_all(c[5]), lambda *c: band_step(c, len(targets) - 1), carry,
                             shape_invariants=invariants)

    carry = tf.cond(tf.reduce_all(carry[5]), lambda: carry, lambda: last_resort(carry))
    return carry[0], carry[6]


def _num_groups(batch):
    """Groups of images run in parallel: one per CPU core (at most MAX_GROUPS)
    dividing the batch; one when eager, on GPU or with a dynamic batch."""
    if batch is None or tf.executing_eagerly() or tf.config.list_logical_devices("GPU"):
        return 1
    limit = min(MAX_GROUPS, os.cpu_count() or 1, batch)
    return max(g for g in range(1, limit + 1) if batch % g == 0)


def _batched_nms(boxes, scores, max_output_size_per_class=100, max_total_size=100, iou_threshold=0.5,
                 score_threshold=float("-inf"), candidate_pool=None, tile_size=BAND_TILE_SIZE):
    """:func:`batched_nms` plus which band decided it.

    Returns:
      (the ``batched_nms`` dict, scalar int32: the first band after which
      every image was decided, 0 for the first one, or ``SEARCH_ALL`` when
      the last resort ran).
    """
    boxes = tf.convert_to_tensor(boxes)
    if not boxes.dtype.is_floating:
        boxes = tf.cast(boxes, tf.float32)
    dtype = boxes.dtype
    if dtype.size < 4:  # half precision: computed in float32, which holds it exactly
        boxes = tf.cast(boxes, tf.float32)
    scores = tf.cast(scores, boxes.dtype)
    if boxes.shape.rank == 4 and boxes.shape[2] == 1:
        boxes = boxes[:, :, 0, :]
    if scores.shape.rank != 3 or scores.shape[1] is None or scores.shape[2] is None:
        raise ValueError(f"batched_nms: scores must be [B, N, C] with static N and C, got {scores.shape}")
    num_boxes, num_classes = scores.shape[1], scores.shape[2]
    out = int(max_total_size)
    per_class = min(int(max_output_size_per_class), out)
    score_threshold = tf.cast(score_threshold, scores.dtype)
    batch = scores.shape[0] if scores.shape[0] is not None else tf.shape(scores)[0]
    if num_boxes * num_classes == 0 or out == 0 or per_class <= 0:
        outputs = {"boxes": tf.zeros([batch, out, 4], dtype), "scores": tf.zeros([batch, out], dtype),
                   "classes": tf.fill([batch, out], PAD_CLASS), "num_detections": tf.zeros([batch], tf.int32)}
        return outputs, tf.constant(0, tf.int32)

    default_pool = max(1024, 8 * out)
    candidate_pool = default_pool if candidate_pool is None else int(candidate_pool)
    if candidate_pool > 0:
        targets = [candidate_pool * f for f in BAND_FACTORS]
        last_target = candidate_pool * LAST_RESORT_FACTOR
    else:
        targets, last_target = [], default_pool * LAST_RESORT_FACTOR

    groups = _num_groups(scores.shape[0])
    results = [_group_nms(b, s, out, per_class, iou_threshold, score_threshold, targets, last_target,
                          int(tile_size))
               for b, s in zip(tf.split(boxes, groups), tf.split(scores, groups))]
    num_kept = tf.concat([r[0][0] for r in results], 0)
    coords = tf.concat([r[0][1] for r in results], 0)
    classes = tf.concat([r[0][2] for r in results], 0)
    det_scores = tf.concat([r[0][3] for r in results], 0)
    levels = tf.stack([r[1] for r in results])
    level = tf.where(tf.reduce_any(tf.equal(levels, SEARCH_ALL)), SEARCH_ALL, tf.reduce_max(levels))

    valid = tf.range(out)[None, :] < num_kept[:, None]
    det_boxes = tf.where(valid[..., None], tf.transpose(coords, [0, 2, 1]), tf.zeros([], coords.dtype))
    outputs = {
        "boxes": tf.cast(det_boxes, dtype),
        "scores": tf.cast(tf.where(valid, det_scores, tf.zeros([], det_scores.dtype)), dtype),
        "classes": tf.where(valid, classes, PAD_CLASS),
        "num_detections": num_kept,
    }
    return outputs, level


def batched_nms(boxes, scores, max_output_size_per_class=100, max_total_size=100, iou_threshold=0.5,
                score_threshold=float("-inf"), candidate_pool=None, tile_size=BAND_TILE_SIZE):
    """Per-class NMS over a batch, padded to a fixed number of detections.

    The same detections as ``tf.image.combined_non_max_suppression`` (with
    ``clip_boxes=False``) on inputs with distinct scores: per class, greedy
    NMS keeps at most ``max_output_size_per_class`` boxes scoring above
    ``score_threshold``; of all classes' kept boxes the ``max_total_size``
    best are returned by descending score.

    The (box, class) pairs are walked from the best down in bands (see the
    module notes): a first band of about ``candidate_pool`` pairs decides
    typical images, a dense crowd (many objects, each with many duplicates)
    takes a band or two more (as large, then 4 times as large), and a last
    resort walks on in bands of 4 times ``candidate_pool`` until every image
    is decided. The answer is exact whichever band decides it; the bands only
    decide the speed. On CPU the batch is split into groups of images (one
    per core, at most ``MAX_GROUPS``) that run in parallel.

    Args:
      boxes: [B, N, 4] xyxy shared by all classes, or [B, N, C, 4] per class
        (a class axis of 1 is shared).
      scores: [B, N, C], N and C static.
      max_output_size_per_class: per-class cap (Python int).
      max_total_size: K, detections per image (Python int).
      iou_threshold: same-class IoU above which a box is suppressed.
      score_threshold: scores at or below it are never kept.
      candidate_pool: M, the target size of the first band in pairs
        (default ``max(1024, 8 * K)``); 0 goes straight to the last resort
        (with the default M).
      tile_size: candidates resolved together (speed only).

    Returns:
      dict with ``boxes`` [B, K, 4] (0 padded), ``scores`` [B, K] (0 padded),
      ``classes`` [B, K] int32 (``PAD_CLASS`` padded), ``num_detections``
      [B] int32.
    """
    return _batched_nms(boxes, scores, max_output_size_per_class, max_total_size, iou_threshold,
                        score_threshold, candidate_pool, tile_size)[0]
