"""The reference input pipeline of ``tools/benchmark.py data --naive``: what a user writes by hand.

A plain ``tf.data`` loop over the same TFRecord shards as ours: parse,
``decode_jpeg``, shuffle, one ``tf.numpy_function`` per image that runs an
albumentations ``Compose`` (built once, shared by the threads) and a cv2
letterbox, boxes padded to ``max_boxes``, batch, float32 in [0, 1],
prefetch; every map with ``AUTOTUNE``. The transforms and probabilities are
``detect.data.augment.build_augmenter``'s, written out here from the same
``AugmentConfig`` so the two do the same work per image; what differs is
only the plumbing (ours: bad-input isolation and reporting, augmenting at
network resolution, per-image seeds). Benchmark only: nothing in ``detect``
uses it.
"""

import albumentations as A
import cv2
import numpy as np
import tensorflow as tf

from detect.data.transforms import PAD_VALUE

AUTOTUNE = tf.data.AUTOTUNE

_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "boxes": tf.io.VarLenFeature(tf.float32),
    "classes": tf.io.VarLenFeature(tf.int64),
}


def naive_compose(cfg):
    """The albumentations steps of ``cfg`` (an ``AugmentConfig`` without mosaic / mixup), in our order;
    a step whose probability is 0 is left out, as ours leaves it out."""
    steps = [
        A.BBoxSafeRandomCrop(erosion_rate=cfg.crop_erosion, p=cfg.crop_prob),
        A.Affine(scale=(1.0 - cfg.scale, 1.0 + cfg.scale), translate_percent=(-cfg.translate, cfg.translate),
                 keep_ratio=True, border_mode=cv2.BORDER_CONSTANT, fill=PAD_VALUE, p=cfg.affine_prob),
        A.HorizontalFlip(p=cfg.flip_prob),
        A.HueSaturationValue(hue_shift_limit=cfg.hue_shift, sat_shift_limit=cfg.saturation_shift,
                             val_shift_limit=cfg.value_shift, p=cfg.hsv_prob),
        A.RandomBrightnessContrast(brightness_limit=cfg.brightness, contrast_limit=cfg.contrast,
                                   p=cfg.brightness_contrast_prob),
        A.Blur(blur_limit=(3, cfg.blur_max_kernel), p=cfg.blur_prob),
    ]
    no_motion = cfg.scale == 0 and cfg.translate == 0
    steps = [t for t in steps if t.p > 0 and not (isinstance(t, A.Affine) and no_motion)]
    return A.Compose(steps, bbox_params=A.BboxParams(format="pascal_voc", label_fields=["classes"], min_visibility=cfg.min_visibility,
                                min_width=cfg.min_box_size, min_height=cfg.min_box_size, clip=True))


def naive_dataset(files, cfg, *, batch_size=16, image_size=416, max_boxes=100, seed=0):
    """The hand-written loop (module docstring) over TFRecord ``files``.

    Returns:
      ``tf.data.Dataset`` of dicts: ``image`` [B, S, S, 3] float32,
      ``boxes`` [B, max_boxes, 4] float32 xyxy, ``classes`` [B, max_boxes] int32 (-1 pads).
    """
    compose = naive_compose(cfg)

    def augment(image, boxes, classes):
        out = compose(image=image, bboxes=boxes, classes=classes)
        image = out["image"]
        boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
        h, w = image.shape[:2]
        scale = min(image_size / h, image_size / w)
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        top, left = (image_size - new_h) // 2, (image_size - new_w) // 2
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        canvas = np.full((image_size, image_size, 3), PAD_VALUE, np.uint8)
        canvas[top:top + new_h, left:left + new_w] = resized
        boxes = boxes * np.float32(scale) + np.array([left, top, left, top], np.float32)
        return canvas, boxes, np.asarray(out["classes"], np.int32).reshape(-1)

    def parse(serialized):
        x = tf.io.parse_single_example(serialized, _FEATURES)
        image = tf.io.decode_jpeg(x["image/encoded"], channels=3)
        return image, tf.reshape(tf.sparse.to_dense(x["boxes"]), [-1, 4]), tf.cast(
            tf.sparse.to_dense(x["classes"]), tf.int32)

    def augmented(image, boxes, classes):
        image, boxes, classes = tf.numpy_function(augment, [image, boxes, classes],
                                                  [tf.uint8, tf.float32, tf.int32])
        n = tf.minimum(tf.shape(classes)[0], max_boxes)
        pad = max_boxes - n
        return {"image": tf.ensure_shape(image, [image_size, image_size, 3]),
                "boxes": tf.ensure_shape(tf.pad(boxes[:n], [[0, pad], [0, 0]]), [max_boxes, 4]),
                "classes": tf.ensure_shape(tf.pad(classes[:n], [[0, pad]], constant_values=-1), [max_boxes])}

    ds = tf.data.TFRecordDataset(files, num_parallel_reads=AUTOTUNE)
    ds = ds.map(parse, num_parallel_calls=AUTOTUNE)
    ds = ds.shuffle(1024, seed=seed)
    ds = ds.map(augmented, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(lambda b: dict(b, image=tf.cast(b["image"], tf.float32) / 255.0), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)
