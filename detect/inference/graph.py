"""The end-to-end inference graph: uint8 images in, detections in original pixels out.

One function serves ``Detector``, the SavedModel's ``serving_default`` and
the benchmarks, so they give the same boxes:

    images uint8 [B, H, W, 3] (one size per call)
      -> / 255, the validation resize of the config (``letterbox_tf`` or
         ``resize_shortest_side_tf`` plus padding to ``size_divisor``),
         the same ops and arithmetic as the evaluation pipeline
      -> task.forward, task.postprocess (decoding, per-class NMS)
      -> boxes mapped back to the original pixels (``unmap_boxes``) and
         clipped to the image.

The images of a call share their size, so they share one transform: the
batch is resized at once. Letterboxed (YOLO) inputs have a static size after
the resize, so one trace serves every input size.
"""

import tensorflow as tf

from detect.data.transforms import letterbox_tf, pad_to_multiple_tf, resize_shortest_side_tf, unmap_boxes


def preprocess(images, data_cfg):
    """The validation resize of a config, on a batch of one size.

    Args:
      images: [B, H, W, 3] uint8 (or float in [0, 255]).
      data_cfg: the config's ``data`` section (``resize``, ``image_size``,
        ``min_side``, ``max_side``, ``size_divisor``).

    Returns:
      (network input [B, H', W', 3] float32 in [0, 1], image_hw [B, 2] int32
      the resized extent inside it, transform [B, 4] float32).
    """
    images = tf.cast(images, tf.float32) * (1.0 / 255.0)
    batch = tf.shape(images)[0]
    if data_cfg.resize == "letterbox":
        out, transform = letterbox_tf(images, data_cfg.image_size)
        extent = tf.constant([data_cfg.image_size, data_cfg.image_size], tf.int32)
    else:
        out, transform = resize_shortest_side_tf(images, data_cfg.min_side, data_cfg.max_side)
        extent = tf.shape(out)[1:3]
        out = pad_to_multiple_tf(out, data_cfg.size_divisor)  # as the pipeline pads each image
    image_hw = tf.tile(extent[None], [batch, 1])
    return out, image_hw, tf.tile(transform[None], [batch, 1])


def detect_images(task, data_cfg, images, score_threshold, iou_threshold, max_detections, class_mask=None):
    """Detections of a batch of same-size uint8 images, in their own pixels.

    Args:
      task: a registered task (``detect.models``): ``forward`` and
        ``postprocess`` of the engine's protocol.
      data_cfg: the config's ``data`` section.
      images: [B, H, W, 3] uint8.
      score_threshold, iou_threshold: scalars (tensors: no retrace per value).
      max_detections: K (Python int).
      class_mask: [C] float 1/0, or None for every class.

    Returns:
      dict: ``boxes`` [B, K, 4] float32 xyxy original pixels (clipped),
      ``scores`` [B, K] float32, ``classes`` [B, K] int32 (``PAD_CLASS`` in
      padded slots), ``num_detections`` [B] int32.
    """
    inputs, image_hw, transform = preprocess(images, data_cfg)
    batch = {"image": inputs, "image_hw": image_hw, "transform": transform}
    out = task.postprocess(task.forward(batch, training=False), image_hw, score_threshold=score_threshold,
                           iou_threshold=iou_threshold, max_detections=max_detections, class_mask=class_mask)
    original = tf.shape(images)[1:3]
    original_size = tf.tile(original[None], [tf.shape(images)[0], 1])
    boxes = unmap_boxes(out["boxes"], transform, original_size)
    valid = tf.range(max_detections)[None, :] < out["num_detections"][:, None]
    return {"boxes": tf.where(valid[..., None], boxes, 0.0), "scores": tf.cast(out["scores"], tf.float32),
            "classes": tf.cast(out["classes"], tf.int32), "num_detections": tf.cast(out["num_detections"], tf.int32)}
