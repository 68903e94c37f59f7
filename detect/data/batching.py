"""The input pipeline's batch end: boxes padded per image, and the stages on whole batches.

``padder`` pads each image's boxes to ``max_boxes`` (and, for shortest-side
resizing, the image to a multiple of the network's stride) before
batching; ``to_float`` turns a uint8 batch into float32 in [0, 1];
``multiscaler`` resizes a letterbox batch to its multi-scale size. The
batch layout is in ``detect.data.pipeline``; ``detect.data.batch`` reads it.
"""

import tensorflow as tf

from detect.data import transforms
from detect.data.python_calls import callback
from detect.ops import PAD_CLASS


def padder(max_boxes, counter, size_divisor=None):
    """Pads the boxes to ``max_boxes``; with ``size_divisor``, the image at the bottom/right to a multiple of it."""
    def warn(name, num_boxes):
        counter.truncate(name.decode("utf-8", "replace"), int(num_boxes), max_boxes)
        return False

    def step(x):
        n = tf.shape(x["classes"])[0]
        flag = tf.cond(n > max_boxes, lambda: callback(warn, [x["name"], n]), lambda: tf.constant(False))
        keep = tf.minimum(n, max_boxes)
        pad = max_boxes - keep
        with tf.control_dependencies([flag]):
            boxes = tf.pad(x["boxes"][:keep], [[0, pad], [0, 0]])
        image_hw = tf.shape(x["image"], out_type=tf.int32)[:2]
        image = x["image"] if size_divisor is None else transforms.pad_to_multiple_tf(x["image"], size_divisor)
        return {
            "image": image,
            "image_hw": image_hw,
            "boxes": tf.ensure_shape(boxes, [max_boxes, 4]),
            "classes": tf.ensure_shape(tf.pad(x["classes"][:keep], [[0, pad]], constant_values=PAD_CLASS),
                                       [max_boxes]),
            "ignore": tf.ensure_shape(tf.pad(x["ignore"][:keep], [[0, pad]]), [max_boxes]),
            "num_boxes": keep,
            "image_id": x["image_id"],
            "transform": x["transform"],
            "original_size": tf.cast(x["original_size"], tf.int32),
        }

    return step


def _unit_float(image):
    return tf.cast(image, tf.float32) * (1.0 / 255.0)


# One pass over the batch instead of two (cast, then scale): 16 x 416 x 416 x 3 on 2 cores, 5.6 -> 3.1 ms
# of CPU in a tf.data map. The same two exact float32 steps, so the same bits. Compiled once per batch
# shape: for batches of one shape (letterbox) only.
_unit_float_xla = tf.function(_unit_float, jit_compile=True)


def to_float(batch, compiled=False):
    """``batch`` with its uint8 ``image`` as float32 in [0, 1]; ``compiled``: with XLA (fixed shapes only)."""
    return dict(batch, image=(_unit_float_xla if compiled else _unit_float)(batch["image"]))


def multiscaler(base_size):
    def step(batch, size):
        factor = tf.cast(size, tf.float32) / base_size
        image = tf.cond(size == base_size, lambda: batch["image"],
                        lambda: tf.image.resize(batch["image"], tf.stack([size, size]), antialias=True))
        # A uniform resize of the square scales boxes, scales and pad offsets alike.
        return dict(batch, image=image, boxes=batch["boxes"] * factor,
                    transform=transforms.rescale_transform(batch["transform"], factor),
                    image_hw=tf.fill(tf.shape(batch["image_hw"]), size))

    return step
