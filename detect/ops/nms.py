"""Greedy non-maximum suppression with static shapes.

Single class (:func:`nms`): candidates are sorted by score and walked in
tiles by :func:`_greedy_nms_sorted`: a tile is first suppressed by the boxes
already kept, then resolved against itself by a fixed-point iteration that
reproduces sequential greedy NMS exactly. The walk stops as soon as every
image has all the boxes it may return, so the cost follows the number of
boxes kept, not the number of candidates.

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
*bands*, each a contiguous segment of the walk order, found without sorting
all B x N x C pairs:

* The walk's *edge* (score, pair index) per image separates the pairs walked
  (before it) from those left; each box has a *bound*, an upper bound of the
  score of its pairs left (first its best score: one pass over the scores).
* A band's *lower edge* is estimated from a sample of the pairs left so that
  the band holds about a target number of pairs; the band is every pair
  left that comes before the lower edge and scores above the threshold.
  Every such pair's box has a bound reaching the lower edge, so one
  ``tf.where`` over the [B, N] bounds finds all the boxes that may hold one
  (at most a fixed number: where more do, the lower edge is raised, by
  bisection, to the first box left out in the order of bounds, then box
  indices), and a pass over their scores finds the band's pairs exactly.
* Only the band is sorted. Where it holds more pairs than its buffer, it is
  cut before the first pair that does not fit: the edge moves to that pair,
  else to the lower edge. Either way the band is exactly the next segment of
  the walk order, and is walked in tiles as above, continuing the kept set.
* The band's boxes get their bound anew: their best pair after the band
  (where the band was cut, at most the first pair left out).

An image is decided once it holds ``max_total_size`` pairs or no bound is
above the threshold (no pair above it is left); then the walk so far is
its whole walk, so the result is exact whichever band decides it, and the
bands (sizes, estimates) only decide the speed. Each band walks at least one
pair or tightens an overestimated bound, and the edge never moves back, so
the walk ends (see :func:`_group_nms`): after the first bands
(``BAND_FACTORS``) a last resort repeats bands until every image is
decided. On CPU the batch is split into groups of images that run in
parallel, one per core.
"""

import contextlib
import os
import threading

import tensorflow as tf

from detect.ops.boxes import iou

# Class id of padded detection slots.
PAD_CLASS = -1
# Index value of padded slots in index outputs.
PAD_INDEX = -1

DEFAULT_TILE_SIZE = 128

# Whether the XLA-compiled pieces below are traced as plain TensorFlow ops (per thread).
_PLAIN = threading.local()


def _xla_compiled(fn):
    """``fn`` compiled with XLA, or traced as plain ops inside ``without_xla()``.

    The walks are while loops of small ops, several times faster under XLA
    even when the caller is not compiled; but a graph that holds an
    XLA-compiled function needs XLA's JIT wherever it runs (TensorFlow
    Serving on CPU runs without it by default), so exports trace without.
    """
    compiled = tf.function(fn, jit_compile=True, autograph=False)

    def call(*args, **kwargs):
        return fn(*args, **kwargs) if getattr(_PLAIN, "on", False) else compiled(*args, **kwargs)

    return call


@contextlib.contextmanager
def without_xla():
    """Within it (in this thread), ``nms`` and ``batched_nms`` trace as plain
    TensorFlow ops: the same algorithm without the XLA-compiled functions,
    for graphs that must run where XLA's JIT is off (SavedModel exports).
    """
    previous = getattr(_PLAIN, "on", False)
    _PLAIN.on = True
    try:
        yield
    finally:
        _PLAIN.on = previous


def _self_suppression(candidates, suppresses):
    """Greedy NMS inside one tile, as a fixed point.

    ``keep[j] = candidates[j] and not any(keep[i] and suppresses[i, j])``
    over earlier i has exactly one solution (induction over j), the greedy
    one; iterating it from ``keep = candidates`` reaches it in at most
    tile-size steps, usually a handful.

    Args:
      candidates: [B, T] bool.
      suppresses: [B, T, T] bool, True where earlier box i would suppress j.

    Returns:
      [B, T] bool greedy keep mask.
    """
    suppress_f = tf.cast(suppresses, tf.float32)

    def step(keep):
        hit = tf.einsum("bi,bij->bj", tf.cast(keep, tf.float32), suppress_f)
        return candidates & (hit < 0.5)

    def body(keep, _):
        new_keep = step(keep)
        return new_keep, tf.reduce_any(tf.not_equal(new_keep, keep))

    keep, _ = tf.while_loop(
        lambda keep, changed: changed,
        body,
        (step(candidates), tf.constant(True)),
        maximum_iterations=tf.shape(candidates)[1] + 1,
    )
    return keep


def _greedy_nms_sorted(boxes, classes, num_valid, iou_threshold, max_output_size, max_per_class=None,
                       num_classes=None, tile_size=DEFAULT_TILE_SIZE):
    """Greedy (class-aware) NMS over candidates already sorted by score.

    Args:
      boxes: [B, P, 4] xyxy, sorted by descending score per image.
      classes: [B, P] int32 class of each candidate, or None (one class).
      num_valid: [B] int32; candidates at positions >= num_valid are ignored
        (those below the score threshold form the tail of a sorted list).
      iou_threshold: a candidate is suppressed by a kept box of its class
        when their IoU is strictly greater than this.
      max_output_size: K, the most boxes kept per image (Python int).
      max_per_class: the most boxes kept per class (Python int), or None.
      num_classes: C (Python int), needed with ``max_per_class``.
      tile_size: candidates resolved together.

    Returns:
      keep_pos: [B, K] int32 positions into P of the kept boxes, in order,
        padded with ``PAD_INDEX``.
      num_kept: [B] int32.
    """
    # Static sizes where known keep the loop's shapes fixed across iterations.
    batch = boxes.shape[0] if boxes.shape[0] is not None else tf.shape(boxes)[0]
    num_cand = boxes.shape[1] if boxes.shape[1] is not None else tf.shape(boxes)[1]
    out = int(max_output_size)
    tile = int(tile_size)
    iou_threshold = tf.cast(iou_threshold, boxes.dtype)
    class_aware = classes is not None
    cap_classes = max_per_class is not None and int(max_per_class) < out
    if not class_aware:
        classes = tf.zeros([batch, num_cand], tf.int32)
    num_valid = tf.cast(num_valid, tf.int32)

    # Pad to whole tiles (at least one, so the tile slice is valid even with
    # no candidates); padded candidates are beyond num_valid.
    num_tiles = tf.maximum((num_cand + tile - 1) // tile, 1)
    if isinstance(num_cand, int):
        num_tiles = max((num_cand + tile - 1) // tile, 1)
    pad = num_tiles * tile - num_cand
    boxes = tf.pad(boxes, [[0, 0], [0, pad], [0, 0]])
    classes = tf.pad(classes, [[0, 0], [0, pad]])
    position = tf.range(tile)
    earlier = position[:, None] < position[None, :]  # [T, T] i before j

    def cond(t, num_kept, *_):
        pending = (num_kept < out) & (t * tile < num_valid)
        return (t < num_tiles) & tf.reduce_any(pending)

    def body(t, num_kept, kept_boxes, kept_classes, kept_pos, class_counts):
        start = t * tile
        tile_boxes = tf.slice(boxes, [0, start, 0], [batch, tile, 4])
        tile_classes = tf.slice(classes, [0, start], [batch, tile])
        tile_pos = start + position  # [T]
        candidates = tile_pos[None, :] < num_valid[:, None]  # [B, T]

        # Suppression by boxes kept in earlier tiles.
        kept_slot = tf.range(out)[None, :] < num_kept[:, None]  # [B, K]
        overlap = iou(tile_boxes, kept_boxes) > iou_threshold  # [B, T, K]
        overlap &= kept_slot[:, None, :]
        if class_aware:
            overlap &= tf.equal(tile_classes[:, :, None], kept_classes[:, None, :])
        candidates &= ~tf.reduce_any(overlap, axis=-1)

        # Greedy resolution inside the tile.
        same_class = tf.equal(tile_classes[:, :, None], tile_classes[:, None, :])
        suppresses = (iou(tile_boxes, tile_boxes) > iou_threshold) & earlier[None] & same_class
        keep = _self_suppression(candidates, suppresses)

        if cap_classes:
            # A class's boxes beyond its cap are dropped; they could only have
            # suppressed later boxes of the same class, which are over the cap too.
            keep_f = tf.cast(keep, tf.float32)
            earlier_same = tf.cast(same_class & earlier[None], tf.float32)
            rank_in_tile = tf.einsum("bi,bij->bj", keep_f, earlier_same)
            before = tf.gather(class_counts, tile_classes, batch_dims=1)
            keep &= (tf.cast(before, tf.float32) + rank_in_tile) < float(max_per_class)
            class_counts += tf.reduce_sum(
                tf.one_hot(tile_classes, num_classes, dtype=tf.int32) * tf.cast(keep, tf.int32)[..., None], axis=1
            )

        # Append the kept boxes after those already kept; overflow goes to a
        # spare slot K that is cut off at the end.
        keep_i = tf.cast(keep, tf.int32)
        slot = num_kept[:, None] + tf.cumsum(keep_i, axis=1) - 1
        slot = tf.where(keep & (slot < out), slot, out)  # [B, T]
        batch_idx = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(slot))
        scatter_idx = tf.stack([batch_idx, slot], axis=-1)  # [B, T, 2]
        kept_boxes = tf.tensor_scatter_nd_update(
            tf.pad(kept_boxes, [[0, 0], [0, 1], [0, 0]]), scatter_idx, tile_boxes)[:, :out]
        kept_classes = tf.tensor_scatter_nd_update(
            tf.pad(kept_classes, [[0, 0], [0, 1]]), scatter_idx, tile_classes)[:, :out]
        kept_pos = tf.tensor_scatter_nd_update(
            tf.pad(kept_pos, [[0, 0], [0, 1]]), scatter_idx,
            tf.broadcast_to(tile_pos[None, :], tf.shape(slot)))[:, :out]
        num_kept = tf.minimum(num_kept + tf.reduce_sum(keep_i, axis=1), out)
        return t + 1, num_kept, kept_boxes, kept_classes, kept_pos, class_counts

    init = (
        tf.constant(0),
        tf.zeros([batch], tf.int32),
        tf.zeros([batch, out, 4], boxes.dtype),
        tf.zeros([batch, out], tf.int32),
        tf.fill([batch, out], PAD_INDEX),
        tf.zeros([batch, int(num_classes) if cap_classes else 1], tf.int32),
    )
    invariants = tuple(tf.TensorShape(x.shape) for x in init)
    if not isinstance(batch, int):
        invariants = tuple(tf.TensorShape([None] + s.as_list()[1:]) if s.rank else s for s in invariants)
    _, num_kept, _, _, kept_pos, _ = tf.while_loop(cond, body, init, shape_invariants=invariants)
    kept_pos = tf.where(tf.range(out)[None, :] < num_kept[:, None], kept_pos, PAD_INDEX)
    return kept_pos, num_kept


def _gather_kept(values, keep_pos, pad_value):
    """values[b, keep_pos[b, k]], or pad_value where keep_pos is PAD_INDEX.

    Args:
      values: [B, M, ...]; M may be 0.
      keep_pos: [B, K] int32 positions into M, or PAD_INDEX.
      pad_value: scalar fill for padded slots.

    Returns:
      [B, K, ...].
    """
    # One extra row of padding gives PAD_INDEX slots (and M == 0) a target.
    pad_row = tf.fill(tf.concat([tf.shape(values)[:1], [1], tf.shape(values)[2:]], 0),
                      tf.constant(pad_value, values.dtype))
    padded = tf.concat([values, pad_row], axis=1)
    pos = tf.where(keep_pos >= 0, keep_pos, tf.shape(values)[1])
    return tf.gather(padded, pos, batch_dims=1)


# The tile walk is a while loop of small ops: compiled with XLA it runs
# several times faster than op by op, even when the caller is not compiled.
_greedy_nms_sorted_xla = _xla_compiled(_greedy_nms_sorted)


def nms(boxes, scores, iou_threshold=0.5, max_output_size=100, score_threshold=float("-inf"),
        tile_size=DEFAULT_TILE_SIZE):
    """Single-class greedy NMS; the kept set of ``tf.image.non_max_suppression``.

    Boxes are visited by descending score (ties: lower index first); a box is
    dropped when its IoU with a kept box is greater than ``iou_threshold`` or
    its score is not greater than ``score_threshold``. Boxes must have
    x1 <= x2 and y1 <= y2: an inverted box is empty here (IoU 0), whereas
    ``tf.image`` silently reorders its corners.

    Args:
      boxes: [N, 4] xyxy (or [B, N, 4] for independent images).
      scores: [N] (or [B, N]).
      iou_threshold: IoU above which a box is suppressed.
      max_output_size: K, the most indices returned (Python int).
      score_threshold: scores at or below it are never kept.
      tile_size: candidates resolved together (speed only).

    Returns:
      indices: [K] (or [B, K]) int32 indices into N, by descending score,
        padded with ``PAD_INDEX`` (-1).
      num_valid: scalar (or [B]) int32 count of real indices.
    """
    boxes = tf.convert_to_tensor(boxes)
    if not boxes.dtype.is_floating:
        boxes = tf.cast(boxes, tf.float32)
    scores = tf.cast(scores, boxes.dtype)
    single = scores.shape.rank == 1
    if single:
        boxes, scores = boxes[None], scores[None]
    sorted_scores, order = tf.math.top_k(scores, k=tf.shape(scores)[1])
    sorted_boxes = tf.gather(boxes, order, batch_dims=1)
    num_valid = tf.reduce_sum(tf.cast(sorted_scores > score_threshold, tf.int32), axis=1)
    keep_pos, num_kept = _greedy_nms_sorted_xla(
        sorted_boxes, None, num_valid, iou_threshold, max_output_size, tile_size=tile_size)
    indices = _gather_kept(order, keep_pos, PAD_INDEX)
    if single:
        return indices[0], num_kept[0]
    return indices, num_kept


# ---- batched, multi-class: the band walk ----------------------------------------------

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
# Pairs sampled per image (the scores of every k-th box) to estimate lower edges.
EDGE_SAMPLE = 16384
# Pairs resolved together in the batched walk.
BAND_TILE_SIZE = 64
# On CPU the batch is split into at most this many groups of images (one per
# core), which run in parallel: the tile walk is a sequential loop.
MAX_GROUPS = 4


def _area(x1, y1, x2, y2):
    """Box areas from coordinate arrays: :func:`detect.ops.boxes.box_area`'s arithmetic."""
    return tf.maximum(x2 - x1, 0.0) * tf.maximum(y2 - y1, 0.0)


def _coord_iou(a, b):
    """IoU [B, n, m] of boxes given as coordinate tuples (x1, y1, x2, y2, area) of
    [B, n] and [B, m] arrays.

    The arithmetic of :func:`detect.ops.boxes.iou`, op for op (and that of
    ``tf.image``'s NMS kernels), so all of them decide a threshold alike; the
    coordinates come as separate contiguous arrays, which XLA vectorises far
    better than the minor axis of [..., 4] boxes.
    """
    ax1, ay1, ax2, ay2, area_a = (v[:, :, None] for v in a)
    bx1, by1, bx2, by2, area_b = (v[:, None, :] for v in b)
    inter_w = tf.maximum(tf.minimum(ax2, bx2) - tf.maximum(ax1, bx1), 0.0)
    inter_h = tf.maximum(tf.minimum(ay2, by2) - tf.maximum(ay1, by1), 0.0)
    inter = inter_w * inter_h
    return tf.math.divide_no_nan(inter, area_a + area_b - inter)


def _coords(coords):
    """[B, 4, n] -> (x1, y1, x2, y2, area), each [B, n]."""
    x1, y1, x2, y2 = tf.unstack(coords, axis=1)
    return x1, y1, x2, y2, _area(x1, y1, x2, y2)


def _resolve_tile(candidates, suppressed_by):
    """Greedy NMS inside one tile, as a fixed point.

    ``keep[j] = candidates[j] and not any(keep[i] and suppressed_by[j, i])``
    (i earlier than j) has exactly one solution (induction over j), the
    greedy one; iterating it from any start reaches it within tile-size
    steps, in practice two or three.

    Args:
      candidates: [B, T] bool.
      suppressed_by: [B, T, T] bool, [b, j, i] True where earlier box i would
        suppress j.

    Returns:
      [B, T] bool greedy keep mask.
    """
    suppressed_by = tf.cast(suppressed_by, tf.float32)

    def step(keep):
        return candidates & (tf.einsum("bji,bi->bj", suppressed_by, tf.cast(keep, tf.float32)) < 0.5)

    def body(keep, _):
        new_keep = step(keep)
        return new_keep, tf.reduce_any(tf.not_equal(new_keep, keep))

    keep, _ = tf.while_loop(lambda keep, changed: changed, body, (step(candidates), tf.constant(True)),
                            maximum_iterations=tf.shape(candidates)[1] + 1)
    return keep


def _walk(state, cand_scores, cand_coords, cand_classes, num_valid, iou_threshold, max_per_class, tile_size):
    """Greedy class-aware NMS continued over one band of candidates.

    Args:
      state: (num_kept [B] int32, kept_coords [B, 4, K], kept_classes [B, K]
        int32, kept_scores [B, K], class_counts [B, C'] int32): the boxes kept
        so far, in order (C' is 1 when there is no per-class cap).
      cand_scores: [B, S] the band's pairs, sorted by the walk order.
      cand_coords: [B, 4, S] their boxes, coordinate-major.
      cand_classes: [B, S] int32.
      num_valid: [B] int32; pairs at positions >= num_valid are not in the band.
      iou_threshold: scalar; a pair is suppressed by a kept one of its class
        when their IoU is strictly greater.
      max_per_class: Python int, the most pairs kept per class, or None
        (no cap below K).
      tile_size: T (Python int), pairs resolved together.

    Returns:
      the new state; an image stops as soon as it holds K boxes.
    """
    num_kept, kept_coords, kept_classes, kept_scores, class_counts = state
    # A static batch where known: XLA slices a dynamic extent by copying it all.
    batch = cand_scores.shape[0] if cand_scores.shape[0] is not None else tf.shape(cand_scores)[0]
    size = cand_scores.shape[1]
    out = kept_scores.shape[1]
    tile = int(tile_size)
    num_tiles = -(-size // tile)
    pad = num_tiles * tile - size
    if pad:
        cand_scores = tf.pad(cand_scores, [[0, 0], [0, pad]])
        cand_coords = tf.pad(cand_coords, [[0, 0], [0, 0], [0, pad]])
        cand_classes = tf.pad(cand_classes, [[0, 0], [0, pad]])
    iou_threshold = tf.cast(iou_threshold, cand_scores.dtype)
    num_valid = tf.cast(num_valid, tf.int32)
    # One array to slice tiles from (class ids are exact as floats below
    # 2**24): XLA then slices once per step rather than inside each use.
    cand_packed = tf.concat([cand_coords, cand_scores[:, None, :],
                             tf.cast(cand_classes, cand_coords.dtype)[:, None, :]], axis=1)  # [B, 6, S]
    position = tf.range(tile)
    earlier = position[None, :] < position[:, None]  # [j, i]: i comes before j
    up_to = tf.cast(position[:, None] <= position[None, :], tf.float32)  # [i, j]: i at or before j
    slots = tf.range(out)
    ones_kept, ones_tile = tf.ones([out], tf.float32), tf.ones([tile], tf.float32)
    cap = max_per_class is not None and max_per_class < out
    num_classes = class_counts.shape[1]

    def cond(t, num_kept, *_):
        return (t < num_tiles) & tf.reduce_any((num_kept < out) & (t * tile < num_valid))

    def body(t, num_kept, kept_coords, kept_classes, kept_scores, class_counts):
        # The tile, sliced once per step.
        start = t * tile
        packed = tf.slice(cand_packed, [0, 0, start], [batch, 6, tile])
        coords, scores = packed[:, :4], packed[:, 4]
        classes = tf.cast(packed[:, 5], tf.int32)
        box = _coords(coords)
        candidates = (start + position)[None, :] < num_valid[:, None]  # [B, T]

        # Suppression by the boxes already kept. (Reductions run as products
        # with 0/1 matrices: XLA's CPU code for them is the fastest.)
        hit = _coord_iou(box, _coords(kept_coords)) > iou_threshold  # [B, T, K]
        hit &= tf.equal(classes[:, :, None], kept_classes[:, None, :])
        hit &= (slots[None, :] < num_kept[:, None])[:, None, :]
        candidates &= tf.einsum("btk,k->bt", tf.cast(hit, tf.float32), ones_kept) < 0.5

        # Greedy resolution inside the tile.
        same_class = tf.equal(classes[:, :, None], classes[:, None, :])  # [B, T, T]
        suppressed_by = (_coord_iou(box, box) > iou_threshold) & earlier[None] & same_class
        keep = _resolve_tile(candidates, suppressed_by)

        if cap:
            # A class's pairs beyond its cap are dropped; they could only have
            # suppressed later pairs of their class, which are over it too.
            rank = tf.einsum("bji,bi->bj", tf.cast(same_class & earlier[None], tf.float32), tf.cast(keep, tf.float32))
            before = tf.gather(class_counts, classes, batch_dims=1)
            keep &= tf.cast(before, tf.float32) + rank < max_per_class
            class_counts += tf.reduce_sum(
                tf.one_hot(classes, num_classes, dtype=tf.int32) * tf.cast(keep, tf.int32)[..., None], axis=1)

        # Append the kept pairs after those kept before: slot k takes the
        # (k - num_kept + 1)-th kept pair of the tile, at the position where
        # the running count of kept pairs first reaches it.
        running = tf.einsum("bi,ij->bj", tf.cast(keep, tf.float32), up_to)  # [B, T] inclusive count
        num_new = tf.cast(running[:, -1], tf.int32)
        new = tf.cast(slots[None, :] - num_kept[:, None], tf.float32)  # [B, K]
        source = tf.einsum("bkt,t->bk", tf.cast(running[:, None, :] <= new[:, :, None], tf.float32), ones_tile)
        source = tf.minimum(tf.cast(source, tf.int32), tile - 1)
        fill = (slots[None, :] >= num_kept[:, None]) & (slots[None, :] < (num_kept + num_new)[:, None])
        kept_coords = tf.where(fill[:, None, :], tf.gather(coords, source, axis=2, batch_dims=1), kept_coords)
        kept_classes = tf.where(fill, tf.gather(classes, source, batch_dims=1), kept_classes)
        kept_scores = tf.where(fill, tf.gather(scores, source, batch_dims=1), kept_scores)
        num_kept = tf.minimum(num_kept + num_new, out)
        return t + 1, num_kept, kept_coords, kept_classes, kept_scores, class_counts

    init = (tf.constant(0), num_kept, kept_coords, kept_classes, kept_scores, class_counts)
    invariants = tuple(tf.TensorShape([None] + x.shape.as_list()[1:]) if x.shape.rank else x.shape for x in init)
    return tf.while_loop(cond, body, init, shape_invariants=invariants)[1:]


def _sample_stride(num_boxes, num_classes):
    """Stride (in boxes) of a sample of every pair of about EDGE_SAMPLE / C
    boxes: whole rows of scores are cheap to read."""
    return max(1, num_boxes * num_classes // EDGE_SAMPLE)


def _band_lower(sample, stride, target):
    """An estimate of a band's lower edge: the score above which about
    ``target`` pairs are left to walk, from the sample of the pairs not
    walked yet (cheap); only the speed depends on it, never the result.

    Args:
      sample: [B, L] sampled scores of pairs not walked yet (-inf for the
        others): the pairs of every ``stride``-th box.
      stride: Python int.
      target: Python int.

    Returns:
      [B] lower edges (-inf where the band should take every pair left).
    """
    rank = max(1, target // stride)
    if rank >= sample.shape[1]:
        return tf.fill(tf.shape(sample)[:1], tf.constant(float("-inf"), sample.dtype))
    return tf.reduce_min(tf.math.top_k(sample, k=rank, sorted=False)[0], axis=-1)


def _float_keys(values):
    """Integer keys in the order of float32 (int32 keys) or float64 (int64)
    values: equal values (0.0 and -0.0 too) get equal keys."""
    key_type = tf.int32 if values.dtype == tf.float32 else tf.int64
    values = tf.where(tf.equal(values, 0.0), tf.zeros_like(values), values)
    bits = tf.bitcast(values, key_type)
    return tf.where(bits < 0, bits ^ tf.constant(key_type.max, key_type), bits)


def _key_floats(keys, dtype=tf.float32):
    """The values of :func:`_float_keys`."""
    return tf.bitcast(tf.where(keys < 0, keys ^ tf.constant(keys.dtype.max, keys.dtype), keys), dtype)


def _after(scores, pair, edge_score, edge_pair):
    """Whether pairs come after an edge (score, flat pair index) in the walk
    order: lower score, or the same score and a higher index."""
    return (scores < edge_score) | (tf.equal(scores, edge_score) & (pair >= edge_pair))


def _box_reaches(bound, box_index, lower_score, lower_pair, num_classes):
    """Whether a box may hold a pair before the edge (lower_score,
    lower_pair), given its bound (the best score of its pairs left)."""
    return (bound > lower_score) | (tf.equal(bound, lower_score) & (box_index * num_classes < lower_pair))


def _band_start(bound, sample, stride, active, score_threshold, target, box_size, num_classes):
    """The next band's lower edge and the boxes that may hold its pairs.

    The band is every pair left (after the walk's edge) before its lower
    edge (lower_score, lower_pair) in the walk order and above the
    threshold. The lower score is estimated from the sample to give about
    ``target`` pairs; the band then takes every pair scoring at least that
    (lower_pair = N * C), or, where that is at most the threshold, every
    pair above the threshold (lower_score = threshold, lower_pair = 0).
    The boxes that may hold its pairs are those whose bound (an upper bound
    of their best pair left) reaches the edge. Where they are more than
    ``box_size``, the band is estimated anew for half the target; where they
    still are (rare: ties), the edge is raised to the (box_size + 1)-th box
    in the order (bound descending, index ascending), found by bisection:
    then exactly the first ``box_size`` boxes reach it.

    Returns:
      lower_score [B], lower_pair [B] int32, mask [B, N] bool (the boxes),
      count [B] int32 (boxes in the mask).
    """
    num_boxes = bound.shape[1]
    lower = _band_lower(sample, stride, target)
    above = lower > score_threshold
    lower_score = tf.where(above, lower, score_threshold)
    lower_pair = tf.where(above, num_boxes * num_classes, 0)
    box_index = tf.range(num_boxes)[None, :]
    eligible = active[:, None] & (bound > score_threshold)
    mask = eligible & _box_reaches(bound, box_index, lower_score[:, None], lower_pair[:, None], num_classes)
    count = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    over = count > box_size

    def shrink_band():
        # A band of half the target fits (almost always).
        lower = _band_lower(sample, stride, max(1, target // 2))
        shrunk = over & (lower > score_threshold)
        score = tf.where(shrunk, lower, lower_score)
        pair = tf.where(shrunk, num_boxes * num_classes, lower_pair)
        fits = eligible & _box_reaches(bound, box_index, score[:, None], pair[:, None], num_classes)
        return score, pair, fits, tf.reduce_sum(tf.cast(fits, tf.int32), axis=1)

    def raise_edge(lower_score, lower_pair, mask, count):
        over = count > box_size

        def bisect(lo, hi, right):
            """The smallest t in (lo, hi] where ``right(t)`` turns False
            (True at lo, False at hi), per image over the buffer (others: 1).

            Ends: while lo + 1 < hi, lo < mid < hi, so hi - lo shrinks every
            step (at most 64 steps). Images not over get (0, 1) and are never
            searched: their bounds may be empty, where lo and hi would be the
            sentinels, whose difference overflows (an endless loop once).
            """
            def body(lo, hi):
                # Their mean, rounded down, without overflow.
                mid = tf.bitwise.bitwise_and(lo, hi) + tf.bitwise.right_shift(tf.bitwise.bitwise_xor(lo, hi), 1)
                go = right(mid)
                return tf.where(go, mid, lo), tf.where(go, hi, mid)

            lo = tf.where(over, lo, tf.zeros_like(lo))
            hi = tf.where(over, hi, tf.ones_like(hi))
            return tf.while_loop(lambda lo, hi: tf.reduce_any(lo + 1 < hi), body, (lo, hi))[1]

        # The (box_size + 1)-th largest bound, on keys that order the
        # floats: the smallest key with at most box_size boxes above it.
        bound_keys = _float_keys(bound)
        keys = tf.where(mask, tf.cast(bound_keys, tf.int64), tf.int64.min)
        key = bisect(tf.reduce_min(tf.where(mask, keys, tf.int64.max), axis=1) - 1, tf.reduce_max(keys, axis=1),
                     lambda t: tf.reduce_sum(tf.cast(keys > t[:, None], tf.int32), axis=1) > box_size)
        # Of the boxes at that bound the first ones by index fill the
        # buffer: the edge is at the index of the next one.
        tied = tf.equal(keys, key[:, None])
        room = box_size - tf.reduce_sum(tf.cast(keys > key[:, None], tf.int32), axis=1)
        index = bisect(tf.fill(tf.shape(room), tf.constant(-1, tf.int64)),
                       tf.fill(tf.shape(room), tf.constant(num_boxes, tf.int64)),
                       lambda t: tf.reduce_sum(tf.cast(tied & (tf.cast(box_index, tf.int64) <= t[:, None]), tf.int32),
                                               axis=1) <= room)
        raised_score = tf.where(over, _key_floats(tf.cast(key, bound_keys.dtype), bound.dtype), lower_score)
        raised_pair = tf.where(over, tf.cast(index, tf.int32) * num_classes, lower_pair)
        raised = eligible & _box_reaches(bound, box_index, raised_score[:, None], raised_pair[:, None], num_classes)
        return raised_score, raised_pair, raised, tf.reduce_sum(tf.cast(raised, tf.int32), axis=1)

    start = (lower_score, lower_pair, mask, count)
    start = tf.cond(tf.reduce_any(over), shrink_band, lambda: start)
    return tf.cond(tf.reduce_any(start[3] > box_size), lambda: raise_edge(*start), lambda: start)


def _prologue(scores):
    """One pass over the scores: each box's best score [B, N] and a sample
    of the pairs' scores [B, ~EDGE_SAMPLE] (those of every k-th box)."""
    sample = scores[:, ::_sample_stride(scores.shape[1], scores.shape[2]), :]
    return tf.reduce_max(scores, axis=-1), tf.reshape(sample, [-1, sample.shape[1] * sample.shape[2]])


def _next_band_start(bound, sample, active, score_threshold, target, box_size, num_classes):
    """:func:`_band_start` with the sample's stride."""
    stride = _sample_stride(bound.shape[1], num_classes)
    return _band_start(bound, sample, stride, active, score_threshold, target, box_size, num_classes)


# Separate calls: XLA fuses the pass over the scores better alone.
_prologue_xla = _xla_compiled(_prologue)
_band_start_xla = _xla_compiled(_next_band_start)


def _band_boxes(mask, count, size):
    """The boxes of the mask (see :func:`_band_start`), at most ``size`` per
    image, in a fixed buffer: found by one ``tf.where`` over [B, N].

    Returns:
      box_slots [B, size] int32 box indices in increasing order, padded with N.
    """
    batch = mask.shape[0] if mask.shape[0] is not None else tf.shape(mask)[0]
    select = tf.where(mask)  # [n, 2] (image, box), image-major
    image = tf.cast(select[:, 0], tf.int32)
    slot = tf.range(tf.shape(image)[0]) - tf.gather(tf.cumsum(count, exclusive=True), image)
    return tf.tensor_scatter_nd_update(tf.fill([batch, size], mask.shape[1]), tf.stack([image, slot], axis=-1),
                                       tf.cast(select[:, 1], tf.int32))


def _band_rows(scores, box_slots, edge_score, edge_pair, lower_score, lower_pair, score_threshold):
    """The band's pairs among its boxes' pairs, and each box's best pair
    left after the band.

    Returns:
      keys [B, Sb, C]: for float32 scores int32 keys in their order (see
      :func:`_float_keys`), otherwise the scores; in_band [B, Sb, C] bool;
      below [B, Sb] the best score of each box's pairs after the band (-inf:
      none).
    """
    num_boxes, num_classes = scores.shape[1], scores.shape[2]
    neg_inf = tf.constant(float("-inf"), scores.dtype)
    rows = tf.gather(scores, tf.minimum(box_slots, num_boxes - 1), batch_dims=1)  # [B, Sb, C]
    rows = tf.where((box_slots < num_boxes)[:, :, None], rows, neg_inf)
    # Pair indices, as offsets from each row's first pair (box * C).
    pair = tf.range(num_classes)[None, None, :]
    first = box_slots[:, :, None] * num_classes
    left = _after(rows, pair, edge_score[:, None, None], edge_pair[:, None, None] - first)
    after_band = _after(rows, pair, lower_score[:, None, None], lower_pair[:, None, None] - first)
    below = tf.reduce_max(tf.where(left & after_band, rows, neg_inf), axis=-1)
    keys = _float_keys(rows) if rows.dtype == tf.float32 else rows
    return keys, left & ~after_band & (rows > score_threshold), below


_band_rows_xla = _xla_compiled(_band_rows)


def _band_sort(keys, in_band, size):
    """The band's pairs of each image in the walk order, in a fixed buffer.

    Only the band is sorted, in one stable sort by image, then by score
    (int64 keys), then by flat pair index: the order ``tf.where`` lists
    them in (boxes in increasing index, then classes), which the stable sort
    keeps.

    Returns:
      buffer_keys [B, S + 1] (keys as from :func:`_band_rows`),
      buffer_pairs [B, S + 1] int32 (box slot * C + class): slot S holds the
      first pair that does not fit; slots past the band hold padding. count
      [B] int32, the pairs in the band.
    """
    batch = keys.shape[0] if keys.shape[0] is not None else tf.shape(keys)[0]
    num_classes = keys.shape[2]
    found = tf.where(in_band)  # [m, 3] (image, slot, class), image-major
    found_keys = tf.gather_nd(keys, found)
    image = found[:, 0]
    count = tf.math.unsorted_segment_sum(tf.ones_like(image, tf.int32), image, batch)
    if keys.dtype == tf.int32:
        order = tf.argsort(tf.cast(found_keys, tf.int64) - image * (1 << 32), direction="DESCENDING", stable=True)
    else:  # scores (float64): by score, then by image
        order = tf.argsort(found_keys, direction="DESCENDING", stable=True)
        order = tf.gather(order, tf.argsort(tf.gather(image, order), stable=True))
    found = tf.gather(found, order)
    # Padded with one pair past the last; each image's first S + 1 looked up.
    sorted_keys = tf.concat([tf.gather(found_keys, order), tf.zeros([1], keys.dtype)], 0)
    sorted_pairs = tf.concat([tf.cast(found[:, 1] * num_classes + found[:, 2], tf.int32), [0]], 0)
    rank = tf.range(size + 1)[None, :]
    position = tf.cumsum(count, exclusive=True)[:, None] + rank
    position = tf.where(rank < count[:, None], position, tf.shape(found)[0])  # [B, S + 1]
    return tf.gather(sorted_keys, position), tf.gather(sorted_pairs, position), count


def _band_walk(state, boxes, bound, sample, box_slots, below, buffer_keys, buffer_pairs, count, edge_score,
               edge_pair, lower_score, lower_pair, active, score_threshold, iou_threshold, num_classes,
               max_per_class, tile_size):
    """Ends the band (its edge, its boxes' new bounds) and walks it.

    Returns:
      (state, edge_score, edge_pair, bound, sample of the pairs left, done [B]).
    """
    num_boxes = bound.shape[1]
    out = state[3].shape[1]
    dtype = bound.dtype
    size = buffer_keys.shape[1] - 1
    valid = tf.range(size + 1)[None, :] < count[:, None]
    buffer_scores = _key_floats(buffer_keys) if buffer_keys.dtype == tf.int32 else buffer_keys
    buffer_scores = tf.where(valid, tf.cast(buffer_scores, dtype), tf.constant(float("-inf"), dtype))
    overflow = count > size
    # The new edge: the first pair that does not fit, else the band's lower
    # edge, unless that is before the edge (a raised lower edge can be: the
    # band is then empty), so the edge never moves back and no pair is
    # walked twice.
    first_score, first_pair = buffer_scores[:, size], buffer_pairs[:, size]
    first_pair = (tf.gather(box_slots, first_pair // num_classes, batch_dims=1) * num_classes
                  + first_pair % num_classes)
    move = active & (overflow | _after(lower_score, lower_pair, edge_score, edge_pair))
    edge_score = tf.where(move, tf.where(overflow, first_score, lower_score), edge_score)
    edge_pair = tf.where(move, tf.where(overflow, first_pair, lower_pair), edge_pair)

    # The band's boxes' new bounds: their best pair after the band, or where
    # the band did not fit, at most the first pair left out (an upper bound
    # is enough: it only selects a box for a later band, which then looks).
    padded = tf.pad(bound, [[0, 0], [0, 1]])
    old = tf.gather(padded, box_slots, batch_dims=1)
    new_bound = tf.where(overflow[:, None], tf.maximum(below, tf.minimum(old, first_score[:, None])), below)
    batch_index = tf.broadcast_to(tf.range(tf.shape(box_slots)[0])[:, None], tf.shape(box_slots))
    bound = tf.tensor_scatter_nd_update(padded, tf.stack([batch_index, box_slots], -1),
                                        new_bound)[:, :num_boxes]  # padding slots write to column N

    # The band's pairs, walked.
    cand_pairs = buffer_pairs[:, :size]
    cand_classes = cand_pairs % num_classes
    cand_boxes = tf.gather(box_slots, cand_pairs // num_classes, batch_dims=1)
    if boxes.shape.rank == 4:
        cand_coords = tf.gather_nd(boxes, tf.stack([cand_boxes, cand_classes], axis=-1), batch_dims=1)
    else:
        cand_coords = tf.gather(boxes, cand_boxes, batch_dims=1)  # [B, S, 4]
    state = _walk(state, buffer_scores[:, :size], tf.transpose(cand_coords, [0, 2, 1]), cand_classes,
                  tf.minimum(count, size), iou_threshold, max_per_class, tile_size)
    done = (state[0] >= out) | (tf.reduce_max(bound, axis=-1) <= score_threshold)
    sample = tf.where(sample < edge_score[:, None], sample, tf.constant(float("-inf"), dtype))
    return state, edge_score, edge_pair, bound, sample, done


# Separate from the band's start, so that each is compiled once per buffer
# size, not once per pair of consecutive bands.
_band_walk_xla = _xla_compiled(_band_walk)


def _group_nms(boxes, scores, out, per_class, iou_threshold, score_threshold, targets, last_target, tile_size):
    """:func:`_batched_nms` for one group of images: the first bands (each
    only while some image is undecided), then the last resort.

    Args:
      targets: the first bands' target sizes (Python ints), maybe none.
      last_target: the last resort's.

    Returns:
      (state as in :func:`_walk`, level [] int32: the first band that
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
        """The start of a band (see :func:`_band_start`)."""
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
