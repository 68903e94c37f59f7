"""Box geometry: format conversion, area, clipping, IoU and the box coder.

Boxes are ``xyxy`` in absolute pixels, float32, unless a name says otherwise.
Every function accepts tensors or numpy arrays, broadcasts over leading
dimensions, and runs unchanged eagerly, in ``tf.function`` and under XLA.
"""

import math

import tensorflow as tf

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")

# Largest log-scale delta that decode applies, as in Faster R-CNN / Detectron:
# exp() of anything larger overflows quickly and never helps a real box.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def _as_float(boxes):
    boxes = tf.convert_to_tensor(boxes)
    if not boxes.dtype.is_floating:
        boxes = tf.cast(boxes, tf.float32)
    return boxes


def convert_boxes(boxes, src, dst):
    """Converts boxes between ``xyxy``, ``xywh`` (COCO) and ``cxcywh``.

    Args:
      boxes: [..., 4] in format ``src``.
      src, dst: one of ``BOX_FORMATS``.

    Returns:
      [..., 4] in format ``dst``, same dtype.
    """
    for name, fmt in (("src", src), ("dst", dst)):
        if fmt not in BOX_FORMATS:
            raise ValueError(f"convert_boxes: {name}={fmt!r} is not one of {BOX_FORMATS}")
    boxes = _as_float(boxes)
    if src == dst:
        return tf.identity(boxes)
    a, b, c, d = tf.unstack(boxes, axis=-1)
    if src == "xywh":
        x1, y1, x2, y2 = a, b, a + c, b + d
    elif src == "cxcywh":
        x1, y1, x2, y2 = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
    else:
        x1, y1, x2, y2 = a, b, c, d
    if dst == "xyxy":
        out = (x1, y1, x2, y2)
    elif dst == "xywh":
        out = (x1, y1, x2 - x1, y2 - y1)
    else:
        out = ((x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1)
    return tf.stack(out, axis=-1)


def box_area(boxes):
    """Area of ``xyxy`` boxes; degenerate (inverted) boxes have area 0.

    Args:
      boxes: [..., 4] xyxy.

    Returns:
      [...] areas.
    """
    boxes = _as_float(boxes)
    w = tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    h = tf.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    return w * h


def clip_boxes(boxes, height, width):
    """Clips ``xyxy`` boxes to the image rectangle [0, width] x [0, height].

    Args:
      boxes: [..., 4] xyxy.
      height, width: scalars, or tensors broadcastable to ``boxes[..., 0]``
        (e.g. [B, 1] for per-image sizes).

    Returns:
      [..., 4] clipped boxes.
    """
    boxes = _as_float(boxes)
    height = tf.cast(height, boxes.dtype)
    width = tf.cast(width, boxes.dtype)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    x1 = tf.clip_by_value(x1, 0.0, width)
    x2 = tf.clip_by_value(x2, 0.0, width)
    y1 = tf.clip_by_value(y1, 0.0, height)
    y2 = tf.clip_by_value(y2, 0.0, height)
    return tf.stack([x1, y1, x2, y2], axis=-1)


def iou(boxes1, boxes2):
    """Pairwise intersection over union of two sets of ``xyxy`` boxes.

    Padded (all-zero) and zero-area boxes have IoU 0 with everything, never
    NaN. Leading dimensions broadcast, so ``[B, N, 4]`` x ``[B, M, 4]`` gives
    ``[B, N, M]``; empty sets give empty results.

    Args:
      boxes1: [..., N, 4] xyxy.
      boxes2: [..., M, 4] xyxy.

    Returns:
      [..., N, M] IoU in [0, 1].
    """
    boxes1 = _as_float(boxes1)
    boxes2 = tf.cast(_as_float(boxes2), boxes1.dtype)
    a = boxes1[..., :, None, :]
    b = boxes2[..., None, :, :]
    inter_w = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    inter_h = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = inter_w * inter_h
    union = box_area(a) + box_area(b) - inter
    # A zero union means both boxes are empty; their IoU is defined as 0.
    return tf.math.divide_no_nan(inter, union)


IOU_KINDS = ("iou", "giou", "diou", "ciou")


def aligned_iou(boxes1, boxes2, kind="iou"):
    """IoU, GIoU, DIoU or CIoU of boxes paired element by element.

    Unlike ``iou`` (all pairs), box i of one set meets only box i of the
    other; this is what a box-regression loss needs (``1 - aligned_iou``).

    - GIoU (Rezatofighi et al. 2019): ``IoU - (C - U) / C``, C the area of
      the smallest enclosing box, U the union.
    - DIoU (Zheng et al. 2020): ``IoU - rho^2 / c^2``, rho the distance of
      the centres, c the diagonal of the enclosing box.
    - CIoU (same paper): DIoU ``- alpha * v``, with
      ``v = 4 / pi^2 * (atan(w2 / h2) - atan(w1 / h1))^2`` and
      ``alpha = v / (1 - IoU + v)``; alpha is a constant for the gradient,
      as in the paper.

    Degenerate pairs (zero union or zero enclosing box) give 0 terms, never
    NaN.

    Args:
      boxes1: [..., 4] xyxy.
      boxes2: [..., 4] xyxy, broadcastable against ``boxes1``.
      kind: one of ``IOU_KINDS``.

    Returns:
      [...] values in [-1, 1] (IoU in [0, 1]).
    """
    if kind not in IOU_KINDS:
        raise ValueError(f"kind must be one of {IOU_KINDS}, got {kind!r}")
    a = _as_float(boxes1)
    b = tf.cast(_as_float(boxes2), a.dtype)
    inter_w = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    inter_h = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = inter_w * inter_h
    union = box_area(a) + box_area(b) - inter
    overlap = tf.math.divide_no_nan(inter, union)
    if kind == "iou":
        return overlap
    enclose_w = tf.maximum(a[..., 2], b[..., 2]) - tf.minimum(a[..., 0], b[..., 0])
    enclose_h = tf.maximum(a[..., 3], b[..., 3]) - tf.minimum(a[..., 1], b[..., 1])
    if kind == "giou":
        enclose = enclose_w * enclose_h
        return overlap - tf.math.divide_no_nan(enclose - union, enclose)
    centre_dx = 0.5 * (a[..., 0] + a[..., 2] - b[..., 0] - b[..., 2])
    centre_dy = 0.5 * (a[..., 1] + a[..., 3] - b[..., 1] - b[..., 3])
    distance = tf.math.divide_no_nan(tf.square(centre_dx) + tf.square(centre_dy),
                                     tf.square(enclose_w) + tf.square(enclose_h))
    if kind == "diou":
        return overlap - distance
    # atan(w / h) written as atan2 so that a zero height gives pi / 2, not NaN.
    angle_a = tf.atan2(a[..., 2] - a[..., 0], a[..., 3] - a[..., 1])
    angle_b = tf.atan2(b[..., 2] - b[..., 0], b[..., 3] - b[..., 1])
    aspect = (4.0 / math.pi ** 2) * tf.square(angle_b - angle_a)
    alpha = tf.stop_gradient(tf.math.divide_no_nan(aspect, 1.0 - overlap + aspect))
    return overlap - distance - alpha * aspect


def encode_boxes(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    """Faster R-CNN box deltas ``(tx, ty, tw, th)`` of boxes relative to anchors.

    ``tx = wx * (x - xa) / wa``, ``tw = ww * log(w / wa)`` on box centres and
    sizes (continuous ``xyxy``: width is ``x2 - x1``).

    Args:
      boxes: [..., 4] xyxy targets; must have positive width and height.
      anchors: [..., 4] xyxy, broadcastable to ``boxes``.
      weights: (wx, wy, ww, wh) multipliers, e.g. (10, 10, 5, 5) for the
        second stage of Faster R-CNN in Detectron.

    Returns:
      [..., 4] deltas.
    """
    boxes = _as_float(boxes)
    anchors = tf.cast(_as_float(anchors), boxes.dtype)
    wx, wy, ww, wh = weights
    ax, ay, aw, ah = tf.unstack(convert_boxes(anchors, "xyxy", "cxcywh"), axis=-1)
    bx, by, bw, bh = tf.unstack(convert_boxes(boxes, "xyxy", "cxcywh"), axis=-1)
    return tf.stack(
        [wx * (bx - ax) / aw, wy * (by - ay) / ah, ww * tf.math.log(bw / aw), wh * tf.math.log(bh / ah)],
        axis=-1,
    )


def decode_boxes(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0), clip=DEFAULT_SCALE_CLAMP):
    """Inverse of :func:`encode_boxes`: applies deltas to anchors.

    Args:
      deltas: [..., 4] (tx, ty, tw, th).
      anchors: [..., 4] xyxy, broadcastable to ``deltas``.
      weights: the same (wx, wy, ww, wh) used to encode.
      clip: upper bound on the log-scale deltas ``tw / ww`` and ``th / wh``
        (default ``log(1000 / 16)``) so exp() cannot overflow; None disables.

    Returns:
      [..., 4] xyxy boxes.
    """
    deltas = _as_float(deltas)
    anchors = tf.cast(_as_float(anchors), deltas.dtype)
    wx, wy, ww, wh = weights
    ax, ay, aw, ah = tf.unstack(convert_boxes(anchors, "xyxy", "cxcywh"), axis=-1)
    dx = deltas[..., 0] / wx
    dy = deltas[..., 1] / wy
    dw = deltas[..., 2] / ww
    dh = deltas[..., 3] / wh
    if clip is not None:
        dw = tf.minimum(dw, clip)
        dh = tf.minimum(dh, clip)
    cx = dx * aw + ax
    cy = dy * ah + ay
    w = tf.exp(dw) * aw
    h = tf.exp(dh) * ah
    return convert_boxes(tf.stack([cx, cy, w, h], axis=-1), "cxcywh", "xyxy")
