"""The band search of batched NMS: the next segments of the walk order.

Only the head of the walk order (see :mod:`detect.ops.nms`) is ever needed,
so the pairs are walked in *bands*, each a contiguous segment of the walk
order, found without sorting all B x N x C pairs:

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
  the walk order, and is walked in tiles (:func:`detect.ops.nms_greedy._walk`),
  continuing the kept set.
* The band's boxes get their bound anew: their best pair after the band
  (where the band was cut, at most the first pair left out).

Its own module: it decides only which pairs are walked next and in what
order; resolving them is :mod:`detect.ops.nms_greedy`'s, and running the
bands until every image is decided (the exactness argument) is
:mod:`detect.ops.nms`'s.
"""

import tensorflow as tf

from detect.ops.nms_greedy import _walk
from detect.ops.nms_xla import _xla_compiled

# Pairs sampled per image (the scores of every k-th box) to estimate lower edges.
EDGE_SAMPLE = 16384


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
