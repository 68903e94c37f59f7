"""Training augmentation with albumentations, box-aware.

``AugmentConfig`` holds a probability and a strength for each augmentation
(defaults in the spirit of YOLO's): random crop that keeps every box,
scale/translate, horizontal flip, HSV shifts, brightness/contrast and blur.
``build_augmenter`` turns it into an ``albumentations.Compose`` whose boxes
are ``pascal_voc`` (our ``xyxy`` pixels) with ``classes`` and ``ignore`` as
label fields, so boxes that fall (mostly) outside the image are dropped
together with their labels.

The config also holds the probabilities of mosaic and mixup, which need
several images at once and live in ``detect.data.mosaic`` (off by default),
and ``close_mosaic``, the last epochs without them (``for_epoch``).

The pipeline calls ``augment`` from ``tf.numpy_function`` on several threads
at once; ``ThreadLocalAugmenter`` gives every thread its own ``Compose`` and
seeds it per image, so the result depends only on the image and its seed,
not on thread scheduling.
"""

import dataclasses
import threading
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

from detect.config import FieldError, bounded, check_fields
from detect.data.transforms import PAD_VALUE


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and strengths of the training augmentations.

    A probability (in [0, 1]) of 0 leaves that augmentation out of the
    pipeline.

    Attributes:
      crop_prob: probability of a random crop that keeps every box whole.
      crop_erosion: how far (fraction of the box union, in [0, 1]) the crop
        may cut into the union of the boxes; 0 keeps all boxes complete.
      affine_prob: probability of a random zoom and shift.
      scale: zoom factor drawn from ``[1 - scale, 1 + scale]``; in [0, 1).
      translate: shift drawn from ``[-translate, translate]`` of the image
        size; in [0, 1].
      flip_prob: probability of a horizontal flip.
      hsv_prob: probability of an HSV shift.
      hue_shift, saturation_shift, value_shift: the largest shifts (hue in
        degrees, in [0, 180]; the others in 0..255 units, in [0, 255]).
      brightness_contrast_prob: probability of a brightness/contrast change.
      brightness, contrast: the largest relative changes, in [0, 1].
      blur_prob: probability of a box blur.
      blur_max_kernel: largest blur kernel (odd, >= 3).
      min_visibility: a box keeps its place only if at least this fraction
        (in [0, 1]) of its area is still in the image after cropping/shifting.
      min_box_size: boxes narrower or lower than this (pixels, >= 0) after
        augmentation are dropped.
      mosaic_prob: probability (in [0, 1]) that a training image becomes a
        mosaic of itself and three other images (``detect.data.mosaic``;
        letterbox only). 0 (the default) leaves the pipeline as it was.
      mixup_prob: probability (in [0, 1]) that a training image (mosaic or
        not) is blended with a second one, ratio ~ Beta(32, 32), keeping
        the boxes of both.
      close_mosaic: mosaic and mixup are off for the last this many epochs
        of ``train.epochs`` (>= 0; 0 = never off), as the YOLOv5/v8 recipes
        do (``for_epoch``).
    """

    crop_prob: float = bounded(0.2, ge=0, le=1)
    crop_erosion: float = bounded(0.0, ge=0, le=1)
    affine_prob: float = bounded(1.0, ge=0, le=1)
    scale: float = bounded(0.5, ge=0, lt=1)  # 1 - scale is the smallest zoom, so it must stay > 0
    translate: float = bounded(0.1, ge=0, le=1)
    flip_prob: float = bounded(0.5, ge=0, le=1)
    hsv_prob: float = bounded(0.8, ge=0, le=1)
    hue_shift: float = bounded(5.0, ge=0, le=180)
    saturation_shift: float = bounded(40.0, ge=0, le=255)
    value_shift: float = bounded(30.0, ge=0, le=255)
    brightness_contrast_prob: float = bounded(0.2, ge=0, le=1)
    brightness: float = bounded(0.2, ge=0, le=1)
    contrast: float = bounded(0.2, ge=0, le=1)
    blur_prob: float = bounded(0.05, ge=0, le=1)
    blur_max_kernel: int = bounded(5, ge=3)
    min_visibility: float = bounded(0.25, ge=0, le=1)
    min_box_size: float = bounded(2.0, ge=0)
    mosaic_prob: float = bounded(0.0, ge=0, le=1)
    mixup_prob: float = bounded(0.0, ge=0, le=1)
    close_mosaic: int = bounded(0, ge=0)

    def __post_init__(self):
        check_fields(self)
        if self.blur_max_kernel % 2 == 0:
            raise FieldError("blur_max_kernel", f"must be odd, got {self.blur_max_kernel}")

    @property
    def mixes_images(self):
        """Whether mosaic or mixup is on (the pipeline then augments groups of images)."""
        return self.mosaic_prob > 0 or self.mixup_prob > 0

    def for_epoch(self, epoch, epochs):
        """The config for 0-based ``epoch`` of ``epochs``: mosaic and mixup off in the last ``close_mosaic``."""
        if self.close_mosaic > 0 and epoch >= epochs - self.close_mosaic and self.mixes_images:
            return dataclasses.replace(self, mosaic_prob=0.0, mixup_prob=0.0)
        return self


def build_augmenter(cfg=None, seed=None):
    """The albumentations pipeline an ``AugmentConfig`` describes.

    Geometric steps come first (crop, zoom/shift, flip), then the colour
    steps. Images are uint8 ``[H, W, 3]``; the output size equals the input
    size except after a crop.

    Args:
      cfg: ``AugmentConfig``; None for the defaults.
      seed: seed of the ``Compose``'s random generators; None for fresh entropy.

    Returns:
      ``albumentations.Compose`` called as
      ``aug(image=..., bboxes=[N, 4] xyxy, classes=[N], ignore=[N])``.
    """
    cfg = AugmentConfig() if cfg is None else cfg
    steps = []
    if cfg.crop_prob > 0:
        steps.append(A.BBoxSafeRandomCrop(erosion_rate=cfg.crop_erosion, p=cfg.crop_prob))
    if cfg.affine_prob > 0 and (cfg.scale > 0 or cfg.translate > 0):
        steps.append(A.Affine(scale=(1.0 - cfg.scale, 1.0 + cfg.scale),
                              translate_percent=(-cfg.translate, cfg.translate),
                              keep_ratio=True, border_mode=cv2.BORDER_CONSTANT, fill=PAD_VALUE,
                              p=cfg.affine_prob))
    if cfg.flip_prob > 0:
        steps.append(A.HorizontalFlip(p=cfg.flip_prob))
    if cfg.hsv_prob > 0:
        steps.append(A.HueSaturationValue(hue_shift_limit=cfg.hue_shift, sat_shift_limit=cfg.saturation_shift,
                                          val_shift_limit=cfg.value_shift, p=cfg.hsv_prob))
    if cfg.brightness_contrast_prob > 0:
        steps.append(A.RandomBrightnessContrast(brightness_limit=cfg.brightness, contrast_limit=cfg.contrast,
                                                p=cfg.brightness_contrast_prob))
    if cfg.blur_prob > 0:
        steps.append(A.Blur(blur_limit=(3, cfg.blur_max_kernel), p=cfg.blur_prob))
    bbox_params = A.BboxParams(format="pascal_voc", label_fields=["classes", "ignore"],
                               min_visibility=cfg.min_visibility, min_width=cfg.min_box_size,
                               min_height=cfg.min_box_size, clip=True, filter_invalid_bboxes=True,
                               # Clip and filter once at the end, not after every step: 15% faster,
                               # and visibility is then judged on the final boxes.
                               check_each_transform=False)
    return A.Compose(steps, bbox_params=bbox_params, seed=seed)


def augment(compose, image, boxes, classes, ignore):
    """Runs an augmenter on one image and its boxes.

    Args:
      compose: from ``build_augmenter``.
      image: [H, W, 3] uint8.
      boxes: [N, 4] float32 xyxy pixels inside the image, non-degenerate.
      classes: [N] int32; ignore: [N] bool.

    Returns:
      (image [H', W', 3] uint8, boxes [M, 4] float32, classes [M] int32,
      ignore [M] bool), M <= N.
    """
    out = compose(image=image, bboxes=boxes, classes=classes, ignore=ignore)
    out_boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
    return (out["image"], out_boxes, np.asarray(out["classes"], np.int32).reshape(-1),
            np.asarray(out["ignore"], bool).reshape(-1))


class ThreadLocalAugmenter:
    """One ``Compose`` per thread, reseeded per image for reproducible output.

    Args:
      cfg: ``AugmentConfig``.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self._local = threading.local()

    def __call__(self, image, boxes, classes, ignore, seed):
        """``augment`` with the thread's ``Compose`` seeded by ``seed`` (int)."""
        compose = getattr(self._local, "compose", None)
        if compose is None:
            compose = self._local.compose = build_augmenter(self.cfg)
        compose.set_random_seed(int(seed) % (2 ** 32))
        return augment(compose, image, boxes, classes, ignore)
