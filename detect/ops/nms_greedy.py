"""Greedy NMS over candidates in score order, tile by tile: the exact core.

Single class (:func:`nms`): candidates are sorted by score and walked in
tiles by :func:`_greedy_nms_sorted`: a tile is first suppressed by the boxes
already kept, then resolved against itself by a fixed-point iteration that
reproduces sequential greedy NMS exactly. The walk stops as soon as every
image has all the boxes it may return, so the cost follows the number of
boxes kept, not the number of candidates.

Multi-class: :func:`_walk` continues the same tile walk, class-aware and
with a per-class cap, over one band of (box, class) pairs already in the
walk order (see :mod:`detect.ops.nms`).

This module owns what resolves candidates exactly once their order is known;
finding that order for batched NMS is :mod:`detect.ops.nms_banded`'s, the
batched, padded API :mod:`detect.ops.nms`'s.
"""

import tensorflow as tf

from detect.ops.boxes import iou
from detect.ops.nms_xla import _xla_compiled

# Index value of padded slots in index outputs.
PAD_INDEX = -1

DEFAULT_TILE_SIZE = 128


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
