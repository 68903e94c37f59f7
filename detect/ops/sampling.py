"""Fixed-size balanced sampling of positive and negative anchors."""

import tensorflow as tf

from detect.ops.matching import NEGATIVE, POSITIVE

# Index value of an empty sample slot (not enough candidates).
NO_SAMPLE = -1


def _as_seed(seed):
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
    return tf.cast(seed, tf.int64)


def sample_balanced(labels, num_samples, positive_fraction=0.5, seed=0):
    """Samples a fixed number of anchors: positives first, negatives fill up.

    At most ``floor(num_samples * positive_fraction)`` positives are drawn,
    uniformly at random without replacement; negatives fill the remaining
    slots. The result has a static size (top-k over random priorities, no
    Python loop), so it compiles under XLA; the same seed gives the same
    sample.

    Args:
      labels: [..., N] int labels: ``POSITIVE`` (1), ``NEGATIVE`` (0) and
        anything else (e.g. ``IGNORE``, -1) is never sampled.
      num_samples: output size S (Python int).
      positive_fraction: largest share of positives.
      seed: int or shape [2] int seed of the stateless random generator.

    Returns:
      [..., S] int32 indices into N: the sampled positives, then the sampled
      negatives, then ``NO_SAMPLE`` (-1) where candidates ran out.
    """
    labels = tf.convert_to_tensor(labels)
    num_samples = int(num_samples)
    max_pos = int(num_samples * positive_fraction)
    is_pos = tf.equal(labels, POSITIVE)
    is_neg = tf.equal(labels, NEGATIVE)
    n = tf.shape(labels)[-1]
    # Candidates never exceed N; top_k needs k <= N, so pad with non-candidates.
    pad = tf.maximum(num_samples - n, 0)
    paddings = tf.concat([tf.zeros([tf.rank(labels) - 1, 2], tf.int32), [[0, pad]]], axis=0)
    is_pos = tf.pad(is_pos, paddings)
    is_neg = tf.pad(is_neg, paddings)
    # An explicit algorithm: the automatic choice differs under XLA.
    priority = tf.random.stateless_uniform(tf.shape(is_pos), _as_seed(seed), alg="philox")
    # Non-candidates get priority -1 and sort after every candidate.
    pos_prio, pos_idx = tf.math.top_k(tf.where(is_pos, priority, -1.0), k=num_samples)
    neg_prio, neg_idx = tf.math.top_k(tf.where(is_neg, priority, -1.0), k=num_samples)

    num_pos = tf.minimum(tf.reduce_sum(tf.cast(pos_prio >= 0.0, tf.int32), -1, keepdims=True), max_pos)
    num_neg = tf.minimum(
        tf.reduce_sum(tf.cast(neg_prio >= 0.0, tf.int32), -1, keepdims=True), num_samples - num_pos
    )
    slot = tf.range(num_samples)
    # Slot s holds positive s, else negative s - num_pos, else nothing.
    neg_slot = tf.clip_by_value(slot - num_pos, 0, num_samples - 1)
    neg_for_slot = tf.gather(neg_idx, neg_slot, batch_dims=labels.shape.rank - 1)
    indices = tf.where(
        slot < num_pos,
        pos_idx,
        tf.where(slot < num_pos + num_neg, neg_for_slot, NO_SAMPLE),
    )
    return tf.cast(indices, tf.int32)
