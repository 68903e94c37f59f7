"""Resizing that records what it did, so boxes can be mapped back exactly.

Every resize here is "scale each axis, then pad at the top-left":

    network_xy = original_xy * scale + pad

and is stored per image as ``transform = [scale_y, scale_x, pad_y, pad_x]``
(float32). The scale is the *realised* one, ``new_size / old_size`` after
rounding the new size to whole pixels, so with continuous pixel edges (a box
covers ``x1 <= x < x2``) the boxes follow the pixels exactly and
``unmap_boxes(map_boxes(b, t), t) == b`` up to float rounding.

Two layouts:

* letterbox (YOLO): the longer side becomes ``size``, the aspect ratio is
  kept, and the rest of the ``size x size`` square is padded evenly on both
  sides with ``PAD_VALUE``;
* shortest side (Faster R-CNN): the shorter side becomes ``min_side`` unless
  that makes the longer side exceed ``max_side``. Nothing is padded here:
  the input pipeline pads each batch at the bottom and right to the batch's
  own extent (``detect.data.pipeline``), so the pad offsets are zero and the
  image keeps the top-left corner.

The numpy/OpenCV functions run inside the augmentation step; the ``*_tf``
twins run in the tf.data graph when augmentation is off. Both use the same
size arithmetic (``_round_half_up``), so they agree on sizes and transforms.
TensorFlow is imported only by the ``*_tf`` functions.
"""

import math

import cv2
import numpy as np

# Letterbox padding grey, the value YOLO implementations use (114 / 255).
PAD_VALUE = 114

# Resizes that shrink an image below this factor filter it (area / antialias) first.
AREA_BELOW = 0.5


def _round_half_up(x):
    # Python's round() goes half-to-even; the graph side uses floor(x + 0.5), so do that here too.
    return int(math.floor(x + 0.5))


def letterbox_geometry(height, width, size):
    """Output size and transform of a letterbox resize.

    Args:
      height, width: input image size in pixels.
      size: side of the square output.

    Returns:
      (new_height, new_width, transform): the size the image is resized to
      before padding, and ``[scale_y, scale_x, pad_y, pad_x]`` float32 [4].
    """
    scale = min(size / height, size / width)
    new_h = min(size, max(1, _round_half_up(height * scale)))
    new_w = min(size, max(1, _round_half_up(width * scale)))
    pad_y, pad_x = (size - new_h) // 2, (size - new_w) // 2
    return new_h, new_w, np.array([new_h / height, new_w / width, pad_y, pad_x], np.float32)


def shortest_side_geometry(height, width, min_side, max_side):
    """Output size and transform of a shortest-side resize (no padding offsets).

    The shorter side becomes ``min_side`` unless the longer one would then
    exceed ``max_side``; then the longer side becomes ``max_side``.

    Returns:
      (new_height, new_width, transform) as in ``letterbox_geometry``, with
      ``pad_y = pad_x = 0``.
    """
    scale = min(min_side / min(height, width), max_side / max(height, width))
    new_h = min(max_side, max(1, _round_half_up(height * scale)))
    new_w = min(max_side, max(1, _round_half_up(width * scale)))
    return new_h, new_w, np.array([new_h / height, new_w / width, 0.0, 0.0], np.float32)


def map_boxes(boxes, transform):
    """Maps original-image boxes into the network input.

    Args:
      boxes: [..., N, 4] xyxy original-image pixels (numpy or tf).
      transform: [..., 4] ``[scale_y, scale_x, pad_y, pad_x]``.

    Returns:
      [..., N, 4] xyxy network-input pixels, same kind as ``boxes``.
    """
    boxes, scale, pad = _xyxy_scale_and_pad(boxes, transform)
    return boxes * scale + pad


def unmap_boxes(boxes, transform, original_size=None):
    """Maps network-input boxes (e.g. predictions) back to original-image pixels.

    Args:
      boxes: [..., N, 4] xyxy network-input pixels (numpy or tf).
      transform: [..., 4] ``[scale_y, scale_x, pad_y, pad_x]`` as the
        pipeline recorded it.
      original_size: optional [..., 2] ``(height, width)``; when given, the
        result is clipped to the original image.

    Returns:
      [..., N, 4] xyxy original-image pixels, same kind as ``boxes``.
    """
    boxes, scale, pad = _xyxy_scale_and_pad(boxes, transform)
    out = (boxes - pad) / scale
    if original_size is None:
        return out
    if _is_tensor(out):
        import tensorflow as tf

        size = tf.cast(original_size, out.dtype)
        limit = tf.stack([size[..., 1], size[..., 0], size[..., 1], size[..., 0]], axis=-1)
        return tf.clip_by_value(out, tf.zeros_like(out), _expand_like(limit, out))
    size = np.asarray(original_size, np.float32)
    limit = np.stack([size[..., 1], size[..., 0], size[..., 1], size[..., 0]], axis=-1)
    return np.clip(out, 0.0, _expand_like(limit, out))


def letterbox(image, boxes, size, pad_value=PAD_VALUE):
    """Letterboxes an image (numpy, OpenCV) and moves its boxes along.

    Args:
      image: [H, W, C] uint8.
      boxes: [N, 4] xyxy pixels of ``image``.
      size: side of the square output.
      pad_value: fill value of the padding.

    Returns:
      (image [size, size, C] uint8, boxes [N, 4] float32, transform [4]).
    """
    new_h, new_w, transform = letterbox_geometry(image.shape[0], image.shape[1], size)
    out = resize_image(image, new_h, new_w)
    pad_y, pad_x = int(transform[2]), int(transform[3])
    out = cv2.copyMakeBorder(out, pad_y, size - new_h - pad_y, pad_x, size - new_w - pad_x,
                             cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    return out, map_boxes(np.asarray(boxes, np.float32), transform), transform


def resize_shortest_side(image, boxes, min_side, max_side):
    """Shortest-side resize (numpy, OpenCV), unpadded, and its boxes moved along.

    Args:
      image: [H, W, C] uint8.
      boxes: [N, 4] xyxy pixels of ``image``.
      min_side, max_side: target shorter side and cap on the longer side.

    Returns:
      (image [new_h, new_w, C] uint8 with the size ``shortest_side_geometry``
      gives, boxes [N, 4] float32, transform [4] with zero pad offsets).
    """
    new_h, new_w, transform = shortest_side_geometry(image.shape[0], image.shape[1], min_side, max_side)
    out = resize_image(image, new_h, new_w)
    return out, map_boxes(np.asarray(boxes, np.float32), transform), transform


def letterbox_tf(image, size, pad_value=PAD_VALUE / 255.0):
    """Letterbox in the graph: the ``letterbox`` twin for the no-augmentation path.

    Args:
      image: [H, W, 3] float32 (any range; ``pad_value`` is in the same
        range), or [B, H, W, 3]: a batch of images of one size, which share
        the transform (``detect.inference`` resizes whole batches this way).
      size: side of the square output (Python int).

    Returns:
      (image [size, size, 3] (or [B, size, size, 3]) float32, transform [4] float32).
    """
    import tensorflow as tf

    height, width = _hw_float(image)
    scale = tf.minimum(size / height, size / width)
    new_h = tf.clip_by_value(tf.floor(height * scale + 0.5), 1.0, float(size))
    new_w = tf.clip_by_value(tf.floor(width * scale + 0.5), 1.0, float(size))
    pad_y, pad_x = tf.floor((size - new_h) / 2), tf.floor((size - new_w) / 2)
    out = _resize_tf(image, new_h, new_w, scale)
    out = _pad_to(out, pad_y, pad_x, size, pad_value)
    return out, tf.stack([new_h / height, new_w / width, pad_y, pad_x])


def resize_shortest_side_tf(image, min_side, max_side):
    """Shortest-side resize in the graph, unpadded: the ``resize_shortest_side`` twin.

    Args:
      image: [H, W, 3] float32, or [B, H, W, 3] (one size, one transform).
      min_side: Python int or int scalar tensor (a per-image multi-scale pick).
      max_side: Python int.

    Returns:
      (image [new_h, new_w, 3] (or [B, new_h, new_w, 3]) float32, transform
      [4] float32 with zero pad offsets).
    """
    import tensorflow as tf

    height, width = _hw_float(image)
    min_side = tf.cast(min_side, tf.float32)
    scale = tf.minimum(min_side / tf.minimum(height, width), max_side / tf.maximum(height, width))
    new_h = tf.clip_by_value(tf.floor(height * scale + 0.5), 1.0, float(max_side))
    new_w = tf.clip_by_value(tf.floor(width * scale + 0.5), 1.0, float(max_side))
    out = _resize_tf(image, new_h, new_w, scale)
    return out, tf.stack([new_h / height, new_w / width, 0.0, 0.0])


def pad_to_multiple_tf(image, divisor):
    """Zeros at the bottom and right up to a multiple of ``divisor``: the
    shortest-side layout's padding (the transform is unchanged).

    Args:
      image: [H, W, C] or [B, H, W, C].
      divisor: Python int or int scalar tensor.

    Returns:
      [..., ceil(H / d) * d, ceil(W / d) * d, C].
    """
    import tensorflow as tf

    extra = tf.math.floormod(-tf.shape(image)[-3:-1], divisor)
    leading = [[0, 0]] * (image.shape.rank - 3)
    return tf.pad(image, leading + [[0, extra[0]], [0, extra[1]], [0, 0]])


def rescale_transform(transform, factor):
    """The transform after the network input is resized once more by ``factor``.

    Used by batch-level multi-scale: a uniform resize of the whole square
    multiplies both the scales and the pad offsets.

    Args:
      transform: [..., 4]; factor: scalar or [...] broadcastable.
    """
    return transform * factor


def resize_image(image, new_h, new_w):
    """Resizes [H, W, C] uint8 to [new_h, new_w, C] with OpenCV.

    Bilinear, except when shrinking by more than ``AREA_BELOW``, where
    bilinear would alias and area averaging is worth its cost (7x slower).
    """
    if image.shape[0] == new_h and image.shape[1] == new_w:
        return image
    strong_shrink = new_h < image.shape[0] * AREA_BELOW and new_w < image.shape[1] * AREA_BELOW
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if strong_shrink else cv2.INTER_LINEAR)


def _is_tensor(x):
    return type(x).__module__.startswith("tensorflow")


def _expand_like(per_image, boxes):
    """Inserts the box axis into a per-image [..., 4] value when boxes are [..., N, 4]."""
    ndim = len(boxes.shape)
    if len(per_image.shape) == ndim - 1:
        return per_image[..., None, :]
    return per_image


def _xyxy_scale_and_pad(boxes, transform):
    if _is_tensor(boxes) or _is_tensor(transform):
        import tensorflow as tf

        t = tf.cast(transform, tf.float32)
        scale = tf.stack([t[..., 1], t[..., 0], t[..., 1], t[..., 0]], axis=-1)
        pad = tf.stack([t[..., 3], t[..., 2], t[..., 3], t[..., 2]], axis=-1)
        boxes = tf.cast(boxes, tf.float32)
    else:
        boxes = np.asarray(boxes, np.float32)
        t = np.asarray(transform, np.float32)
        scale = t[..., [1, 0, 1, 0]]
        pad = t[..., [3, 2, 3, 2]]
    return boxes, _expand_like(scale, boxes), _expand_like(pad, boxes)


def _resize_tf(image, new_h, new_w, scale):
    import tensorflow as tf

    size = tf.cast(tf.stack([new_h, new_w]), tf.int32)
    # The same filtering rule as resize_image: antialias only for strong shrinking.
    return tf.cond(scale < AREA_BELOW, lambda: tf.image.resize(image, size, antialias=True),
                   lambda: tf.image.resize(image, size))


def _hw_float(image):
    """(height, width) float32 of [H, W, C] or [B, H, W, C]."""
    import tensorflow as tf

    shape = tf.cast(tf.shape(image), tf.float32)
    return shape[-3], shape[-2]


def _pad_to(image, pad_y, pad_x, size, value):
    import tensorflow as tf

    shape = tf.shape(image)
    top, left = tf.cast(pad_y, tf.int32), tf.cast(pad_x, tf.int32)
    paddings = [[top, size - shape[-3] - top], [left, size - shape[-2] - left], [0, 0]]
    batch = [] if image.shape.rank == 3 else [image.shape[0]]
    out = tf.pad(image, [[0, 0]] * len(batch) + paddings, constant_values=value)
    return tf.ensure_shape(out, batch + [size, size, image.shape[-1]])
