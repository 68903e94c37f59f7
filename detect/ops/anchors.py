"""Reference anchors and anchor grids (Faster R-CNN conventions)."""

import tensorflow as tf


def generate_anchors(base_size=16, ratios=(0.5, 1.0, 2.0), scales=(8, 16, 32)):
    """The reference anchors of the original Faster R-CNN release.

    Reproduces py-faster-rcnn's ``generate_anchors`` value for value and in
    the same order (ratio-major, scale-minor), including its inclusive-pixel
    arithmetic (width = x2 - x1 + 1) and round-half-to-even rounding of the
    ratio widths. The defaults give the paper's 9 anchors, e.g. the first is
    (-84, -40, 99, 55).

    Args:
      base_size: side of the base (stride-sized) square anchor.
      ratios: height / width aspect ratios.
      scales: multipliers of the ratio-adjusted base anchor.

    Returns:
      [len(ratios) * len(scales), 4] float32 xyxy, centred on the first
      feature cell's centre ((base_size - 1) / 2).
    """
    ratios = tf.constant(ratios, tf.float64)
    scales = tf.constant(scales, tf.float64)
    size = float(base_size) * float(base_size)
    centre = 0.5 * (base_size - 1)
    # Ratio enumeration keeps the area (approximately) and rounds like numpy.
    ws = tf.round(tf.sqrt(size / ratios))
    hs = tf.round(ws * ratios)
    # Scale enumeration of each ratio anchor.
    ws = tf.reshape(ws[:, None] * scales[None, :], [-1])
    hs = tf.reshape(hs[:, None] * scales[None, :], [-1])
    anchors = tf.stack(
        [centre - 0.5 * (ws - 1), centre - 0.5 * (hs - 1), centre + 0.5 * (ws - 1), centre + 0.5 * (hs - 1)],
        axis=-1,
    )
    return tf.cast(anchors, tf.float32)


def anchor_grid(height, width, stride, base_anchors):
    """Tiles reference anchors over a feature map.

    The order matches a conv head's output ``[H, W, A * k]`` reshaped to
    ``[H * W * A, k]``: row-major over cells, then anchors within a cell.

    Args:
      height, width: feature-map size (ints or scalar tensors).
      stride: pixels between neighbouring cells.
      base_anchors: [A, 4] xyxy anchors of the cell at (0, 0).

    Returns:
      [H * W * A, 4] float32 xyxy.
    """
    base_anchors = tf.cast(tf.convert_to_tensor(base_anchors), tf.float32)
    stride = tf.cast(stride, tf.float32)
    shift_x = tf.cast(tf.range(width), tf.float32) * stride
    shift_y = tf.cast(tf.range(height), tf.float32) * stride
    sy, sx = tf.meshgrid(shift_y, shift_x, indexing="ij")  # [H, W]
    shifts = tf.stack([sx, sy, sx, sy], axis=-1)  # [H, W, 4]
    grid = shifts[:, :, None, :] + base_anchors[None, None, :, :]  # [H, W, A, 4]
    return tf.reshape(grid, [-1, 4])
