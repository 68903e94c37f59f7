"""Elementwise regression losses."""

import tensorflow as tf


def smooth_l1(pred, target, beta=1.0):
    """Elementwise smooth-L1 (Huber divided by beta) loss.

    ``0.5 * d**2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 * beta``, with
    ``d = pred - target``. The Fast R-CNN paper's sigma form is
    ``beta = 1 / sigma**2`` (sigma = 3 in the RPN of py-faster-rcnn gives
    beta = 1/9). ``beta = 0`` is plain L1.

    Args:
      pred, target: broadcastable float tensors, e.g. [..., 4] box deltas.
      beta: non-negative transition point.

    Returns:
      The elementwise loss, broadcast shape of the inputs (not reduced).
    """
    pred = tf.convert_to_tensor(pred)
    if not pred.dtype.is_floating:
        pred = tf.cast(pred, tf.float32)
    target = tf.cast(target, pred.dtype)
    if beta < 0:
        raise ValueError(f"smooth_l1: beta must be >= 0, got {beta}")
    diff = tf.abs(pred - target)
    if beta == 0:
        return diff
    return tf.where(diff < beta, 0.5 * tf.square(diff) / beta, diff - 0.5 * beta)
