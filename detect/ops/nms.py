"""Greedy non-maximum suppression with static shapes.

Both entry points sort candidates by score and run one core,
:func:`_greedy_nms_sorted`, which walks the sorted list in tiles: a tile is
first suppressed by the boxes already kept, then resolved against itself by
a fixed-point iteration that reproduces sequential greedy NMS exactly. The
walk stops as soon as every image has all the boxes it may return, so the
cost follows the number of boxes kept, not the number of candidates.

Multi-class NMS runs in one global score order with suppression only between
boxes of the same class. Kept boxes come out in descending score order, so
the first ``max_total_size`` kept are exactly the top of the union of the
per-class NMS results, the set ``tf.image.combined_non_max_suppression``
returns.
"""

import math

import tensorflow as tf

from detect.ops.boxes import iou

# Class id of padded detection slots.
PAD_CLASS = -1
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
_greedy_nms_sorted_xla = tf.function(_greedy_nms_sorted, jit_compile=True, autograph=False)


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


def _pool_candidates(boxes, scores, pool_boxes, pool_candidates):
    """The best-scoring (box, class) candidates of each image, sorted.

    Takes the ``pool_boxes`` boxes with the highest best-class score, then
    the ``pool_candidates`` best (box, class) pairs among them. Every pair
    left out scores at most ``excluded_max`` (the best score of the first box
    left out, or the first pair left out), so greedy NMS over the pool makes
    the same decisions as over everything down to that score.

    Args:
      boxes: [B, N, 4] shared or [B, N, C, 4] per-class boxes.
      scores: [B, N, C].
      pool_boxes: P (Python int), clipped to N.
      pool_candidates: M (Python int), clipped to P * C.

    Returns:
      cand_scores [B, M] sorted descending, cand_boxes [B, M, 4],
      cand_classes [B, M] int32, excluded_max [B] (-inf when nothing is left
      out).
    """
    batch = tf.shape(scores)[0]
    num_boxes, num_classes = scores.shape[1], scores.shape[2]
    pool_boxes = min(int(pool_boxes), num_boxes)
    num_pairs = pool_boxes * num_classes
    pool_candidates = min(int(pool_candidates), num_pairs)
    excluded_max = tf.fill([batch], tf.constant(float("-inf"), scores.dtype))
    if pool_boxes < num_boxes:
        # One extra box tells the best score of the boxes left out.
        box_best, box_idx = tf.math.top_k(tf.reduce_max(scores, axis=-1), k=pool_boxes + 1)
        excluded_max = box_best[:, pool_boxes]
        box_idx = box_idx[:, :pool_boxes]  # [B, P]
        pool_scores = tf.gather(scores, box_idx, batch_dims=1)  # [B, P, C]
    else:
        box_idx = None
        pool_scores = scores
    flat = tf.reshape(pool_scores, [batch, num_pairs])
    if pool_candidates < num_pairs:
        cand_scores, flat_idx = tf.math.top_k(flat, k=pool_candidates + 1)
        excluded_max = tf.maximum(excluded_max, cand_scores[:, pool_candidates])
        cand_scores, flat_idx = cand_scores[:, :pool_candidates], flat_idx[:, :pool_candidates]
    else:
        cand_scores, flat_idx = tf.math.top_k(flat, k=num_pairs)
    cand_classes = flat_idx % num_classes
    box_row = flat_idx // num_classes
    if box_idx is not None:
        box_row = tf.gather(box_idx, box_row, batch_dims=1)
    if boxes.shape.rank == 4:
        cand_boxes = tf.gather_nd(boxes, tf.stack([box_row, cand_classes], axis=-1), batch_dims=1)
    else:
        cand_boxes = tf.gather(boxes, box_row, batch_dims=1)
    return cand_scores, cand_boxes, cand_classes, excluded_max


# Which search decided a batched_nms result (see _batched_nms): pools are
# numbered from 0 (the first one); the search of every candidate is -1.
SEARCH_ALL = -1
# Each wider pool aims at this many times more pairs than the one before...
WIDER_POOL_FACTOR = 8
# ... and there are at most this many of them before searching everything.
MAX_WIDER_POOLS = 2
# Pairs sampled per image to estimate a wider pool's score cutoff.
CUTOFF_SAMPLE = 32768


def _cutoff_candidates(boxes, scores, cutoff, size):
    """The (box, class) candidates scoring above a cutoff, sorted, in a fixed buffer.

    Selecting by a cutoff is one vectorised pass over the scores; only the
    selected candidates are sorted, so it costs far less than a top-k over
    all B x N x C pairs. Pairs above the cutoff that do not fit in ``size``
    are left out and raise ``excluded_max`` accordingly, so the result stays
    a valid (if then less useful) pool.

    Args:
      boxes: [B, N, 4] shared or [B, N, C, 4] per-class boxes.
      scores: [B, N, C].
      cutoff: [B]; pairs scoring at most this are left out.
      size: S (Python int), the buffer size per image.

    Returns:
      cand_scores [B, S] sorted descending (-inf padded), cand_boxes
      [B, S, 4], cand_classes [B, S] int32, excluded_max [B].
    """
    # Static where known: XLA needs the segment count at compile time.
    batch = scores.shape[0] if scores.shape[0] is not None else tf.shape(scores)[0]
    where = tf.where(scores > cutoff[:, None, None])  # [n, 3] (image, box, class), images in order
    image = tf.cast(where[:, 0], tf.int32)
    values = tf.gather_nd(scores, where)  # [n]
    counts = tf.math.unsorted_segment_sum(tf.ones_like(image), image, batch)  # [B]
    slot = tf.range(tf.shape(image)[0]) - tf.gather(tf.cumsum(counts, exclusive=True), image)
    # Overflow goes to a spare slot S, which keeps the best score left out.
    index = tf.stack([image, tf.minimum(slot, size)], axis=-1)  # [n, 2]
    buffer = tf.tensor_scatter_nd_max(
        tf.fill([batch, size + 1], tf.constant(float("-inf"), scores.dtype)), index, values)
    excluded_max = tf.maximum(cutoff, buffer[:, size])
    # Sort by score, then look the boxes and classes up by pair number
    # (n, one past the last, for the padding).
    pair = tf.tensor_scatter_nd_update(tf.fill([batch, size + 1], tf.shape(image)[0]), index,
                                       tf.range(tf.shape(image)[0]))[:, :size]
    cand_scores, order = tf.math.top_k(buffer[:, :size], k=size)
    pair = tf.gather(pair, order, batch_dims=1)  # [B, S]
    pair_boxes = tf.gather_nd(boxes, where if boxes.shape.rank == 4 else where[:, :2])  # [n, 4]
    cand_boxes = tf.gather(tf.pad(pair_boxes, [[0, 1], [0, 0]]), pair)
    cand_classes = tf.gather(tf.pad(tf.cast(where[:, 2], tf.int32), [[0, 1]]), pair)
    return cand_scores, cand_boxes, cand_classes, excluded_max


def _sample_stride(num_pairs, num_classes):
    """Stride of a sample of about CUTOFF_SAMPLE pairs out of the flattened
    [N * C] pairs; coprime with C so that every class is sampled."""
    stride = max(1, num_pairs // CUTOFF_SAMPLE)
    while math.gcd(stride, num_classes) != 1:
        stride += 1
    return stride


def _wider_candidates(boxes, scores, target, floor):
    """A pool of about ``target`` best pairs per image, at most ``2 * target``.

    The cutoff is estimated from a strided sample of the pairs (its
    ``target / stride``-th best score): cheap, and only the speed depends on
    the estimate, never the exactness (see :func:`_cutoff_candidates`).

    Args:
      boxes: [B, N, 4] or [B, N, C, 4].
      scores: [B, N, C], N and C static.
      target: T (Python int).
      floor: scalar; the cutoff is never below it (the score threshold:
        pairs at or below it are never kept, so leaving them out is free).

    Returns:
      as :func:`_cutoff_candidates` with S = 2T.
    """
    num_pairs = scores.shape[1] * scores.shape[2]
    stride = _sample_stride(num_pairs, scores.shape[2])
    sample = tf.reshape(scores, [tf.shape(scores)[0], num_pairs])[:, ::stride]  # [B, ~L / stride]
    rank = min(max(target // stride, 1), sample.shape[1])
    cutoff = tf.reduce_min(tf.math.top_k(sample, k=rank, sorted=False)[0], axis=-1)  # the rank-th best
    return _cutoff_candidates(boxes, scores, tf.maximum(cutoff, floor), 2 * target)


def _batched_nms(boxes, scores, max_output_size_per_class=100, max_total_size=100, iou_threshold=0.5,
                 score_threshold=float("-inf"), candidate_pool=None, tile_size=DEFAULT_TILE_SIZE):
    """:func:`batched_nms` plus which search decided it.

    Returns:
      (the ``batched_nms`` dict, scalar int32: the index of the pool whose
      search was exact, 0 for the first one, or ``SEARCH_ALL``).
    """
    boxes = tf.convert_to_tensor(boxes)
    if not boxes.dtype.is_floating:
        boxes = tf.cast(boxes, tf.float32)
    scores = tf.cast(scores, boxes.dtype)
    if boxes.shape.rank == 4 and boxes.shape[2] == 1:
        boxes = boxes[:, :, 0, :]
    if scores.shape.rank != 3 or scores.shape[1] is None or scores.shape[2] is None:
        raise ValueError(f"batched_nms: scores must be [B, N, C] with static N and C, got {scores.shape}")
    num_boxes, num_classes = scores.shape[1], scores.shape[2]
    num_pairs = num_boxes * num_classes
    out = int(max_total_size)
    per_class = min(int(max_output_size_per_class), out)
    score_threshold = tf.cast(score_threshold, scores.dtype)

    def search(pool):
        """Greedy NMS over a pool; also whether it is the exact answer."""
        cand_scores, cand_boxes, cand_classes, excluded_max = pool
        num_valid = tf.reduce_sum(tf.cast(cand_scores > score_threshold, tf.int32), axis=1)
        keep_pos, num_kept = _greedy_nms_sorted_xla(
            cand_boxes, cand_classes, num_valid, iou_threshold, out,
            max_per_class=per_class, num_classes=num_classes, tile_size=tile_size)
        det_scores = _gather_kept(cand_scores, keep_pos, 0)
        # Exact when nothing left out could have come before the last
        # decision: the K-th kept box (strictly: a tie might have come
        # first), or with fewer kept, the score threshold (scores at it are
        # never kept).
        if out:
            full = num_kept >= out
            decided = tf.reduce_all(
                tf.where(full, excluded_max < det_scores[:, -1], excluded_max <= score_threshold))
        else:
            decided = tf.constant(True)
        result = (_gather_kept(cand_boxes, keep_pos, 0), det_scores,
                  _gather_kept(cand_classes, keep_pos, PAD_CLASS), num_kept)
        return result, decided

    if candidate_pool is None:
        candidate_pool = max(1024, 8 * out)
    candidate_pool = int(candidate_pool)
    # The pools, cheapest first; each is searched only when the one before
    # could have missed something, the last is every candidate.
    pools = []
    if 0 < candidate_pool < num_pairs:
        pools.append(lambda: _pool_candidates(boxes, scores, candidate_pool, candidate_pool))
        target = candidate_pool
        for _ in range(MAX_WIDER_POOLS):
            target *= WIDER_POOL_FACTOR
            if 2 * target >= num_pairs:
                break
            pools.append(lambda target=target: _wider_candidates(boxes, scores, target, score_threshold))
    pools.append(lambda: _pool_candidates(boxes, scores, num_boxes, num_pairs))

    def attempt(level):
        result, decided = search(pools[level]())
        if level == len(pools) - 1:
            return result + (SEARCH_ALL,)
        return tf.cond(decided, lambda: result + (level,), lambda: attempt(level + 1))

    det_boxes, det_scores, det_classes, num_kept, level = attempt(0)
    outputs = {"boxes": det_boxes, "scores": det_scores, "classes": det_classes, "num_detections": num_kept}
    return outputs, tf.convert_to_tensor(level, tf.int32)


def batched_nms(boxes, scores, max_output_size_per_class=100, max_total_size=100, iou_threshold=0.5,
                score_threshold=float("-inf"), candidate_pool=None, tile_size=DEFAULT_TILE_SIZE):
    """Per-class NMS over a batch, padded to a fixed number of detections.

    The same detections as ``tf.image.combined_non_max_suppression`` (with
    ``clip_boxes=False``) on inputs with distinct scores: per class, greedy
    NMS keeps at most ``max_output_size_per_class`` boxes scoring above
    ``score_threshold``; of all classes' kept boxes the ``max_total_size``
    best are returned by descending score.

    A first pass searches only a pool of likely candidates (the best pairs
    of the best boxes). When a left-out candidate could have changed the
    result for some image (a dense crowd: many objects, each with many
    duplicates), pools ``WIDER_POOL_FACTOR`` times wider each, selected by a
    score cutoff, are searched, and when they are not enough either, every
    candidate; so the answer is always exact and the pools only decide the
    speed.

    Args:
      boxes: [B, N, 4] xyxy shared by all classes, or [B, N, C, 4] per class
        (a class axis of 1 is shared).
      scores: [B, N, C], N and C static.
      max_output_size_per_class: per-class cap (Python int).
      max_total_size: K, detections per image (Python int).
      iou_threshold: same-class IoU above which a box is suppressed.
      score_threshold: scores at or below it are never kept.
      candidate_pool: M, the number of boxes and of (box, class) pairs
        searched in the first pass (default ``max(1024, 8 * K)``); 0 searches
        everything at once.
      tile_size: candidates resolved together (speed only).

    Returns:
      dict with ``boxes`` [B, K, 4] (0 padded), ``scores`` [B, K] (0 padded),
      ``classes`` [B, K] int32 (``PAD_CLASS`` padded), ``num_detections``
      [B] int32.
    """
    return _batched_nms(boxes, scores, max_output_size_per_class, max_total_size, iou_threshold,
                        score_threshold, candidate_pool, tile_size)[0]
