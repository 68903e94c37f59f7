"""Gathering by index lists that hold "no index" sentinels."""

import tensorflow as tf


def gather_or_fill(values, index, fill):
    """``values[b, index[b, k]]``, or ``fill`` where the index is negative.

    The index sentinels of ``detect.ops`` (``PAD_INDEX``, ``NO_MATCH``,
    ``NO_SAMPLE``) are all negative, so one rule covers lists from NMS, the
    matcher and the sampler alike.

    Args:
      values: [B, M, ...]; M may be 0 (every result is then ``fill``).
      index: [B, K] int32 into M, or negative.
      fill: scalar of ``values``' dtype.

    Returns:
      [B, K, ...].
    """
    # One extra row gives negative indices (and M == 0) something to read.
    pad_shape = tf.concat([tf.shape(values)[:1], [1], tf.shape(values)[2:]], axis=0)
    padded = tf.concat([values, tf.fill(pad_shape, tf.constant(fill, values.dtype))], axis=1)
    return tf.gather(padded, tf.where(index >= 0, index, tf.shape(values)[1]), batch_dims=1)
