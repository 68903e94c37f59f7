"""Mosaic and mixup: training images made of several images (YOLOv4 / YOLOv5 / YOLOv8 style).

Mosaic. Four images, each already resized so that its longer side is the
network size ``S`` (the pipeline's fit step), go onto a ``2S x 2S`` canvas
filled with ``PAD_VALUE`` around a centre ``(cy, cx)`` drawn uniformly from
``[S/2, 3S/2]`` on each axis, the layout of Ultralytics' YOLOv5/v8:

    image 0: bottom-right corner at the centre (top-left quadrant)
    image 1: bottom-left corner at the centre  (top-right quadrant)
    image 2: top-right corner at the centre    (bottom-left quadrant)
    image 3: top-left corner at the centre     (bottom-right quadrant)

An image is at most ``S`` on a side, so it never crosses into another
quadrant; what crosses the canvas edge is cut. ``zoom_to_size`` then brings
the canvas to ``S x S``: a zoom about the canvas centre and a shift, the
scale/translate part of YOLOv5's ``random_perspective`` with its border of
``-S/2``. Without zoom and shift that is the centre crop ``[S/2, 3S/2)^2``,
which always holds the mosaic centre and so a part of all four images.

Boxes move with their images and stay unclipped through placement and
zoom; ``clip_and_drop_labels`` clips them once, to the final image, and
drops a box when less than ``min_visibility`` of its area is inside or when it is
narrower or lower than ``min_box_size`` (the rule of
``AugmentConfig.min_visibility`` / ``min_box_size``, which albumentations
applies). Visibility is thus judged against the whole object, not against
what an earlier step had left of it.

Mixup (Zhang et al. 2018, as YOLOv5 uses it): two images of one size are
blended, ``round(r * a + (1 - r) * b)`` with ``r ~ Beta(32, 32)`` (so ``r``
is 0.5 +- 0.06), and the boxes of both are kept, at full weight.

Labels travel as a tuple ``(boxes [N, 4] float32 xyxy pixels, classes [N]
int32, ignore [N] bool)``. The functions take their random draws as
arguments (``draw_*`` make them from a ``numpy.random.Generator``), so a
test can fix them. ``GroupAugmenter`` puts everything together for the
input pipeline (``detect.data.pipeline``).
"""

import dataclasses

import cv2
import numpy as np

from detect.data import transforms
from detect.data.augment import ThreadLocalAugmenter
from detect.data.transforms import PAD_VALUE

# YOLOv5's mixup ratio distribution: Beta(alpha, alpha) with alpha = 32.
MIXUP_ALPHA = 32.0
_EPS = 1e-6


def empty_labels():
    """Labels of no boxes: ([0, 4] float32, [0] int32, [0] bool)."""
    return np.zeros((0, 4), np.float32), np.zeros(0, np.int32), np.zeros(0, bool)


def concat_labels(labels):
    """Joins a list of label tuples into one tuple."""
    labels = list(labels) or [empty_labels()]
    return (np.concatenate([b for b, _, _ in labels]).astype(np.float32).reshape(-1, 4),
            np.concatenate([c for _, c, _ in labels]).astype(np.int32),
            np.concatenate([i for _, _, i in labels]).astype(bool))


def quadrant_offsets(sizes, centre):
    """Top-left corners of the four images on the canvas.

    Args:
      sizes: four ``(height, width)``, in quadrant order (module docstring).
      centre: ``(cy, cx)`` integer canvas pixels.

    Returns:
      [4, 2] int64 ``(top, left)``; may be negative (that part is cut).
    """
    (h0, w0), (h1, w1), (h2, w2), (h3, w3) = [(int(h), int(w)) for h, w in sizes]
    cy, cx = int(centre[0]), int(centre[1])
    return np.array([[cy - h0, cx - w0], [cy - h1, cx], [cy, cx - w2], [cy, cx]], np.int64)


def paste(canvas, image, top, left):
    """Copies ``image`` [h, w, C] into ``canvas`` [H, W, C] at ``(top, left)``, cutting what falls outside."""
    h, w = image.shape[:2]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, canvas.shape[0]), min(left + w, canvas.shape[1])
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] = image[y0 - top:y1 - top, x0 - left:x1 - left]
    return canvas


def place(images, labels, size, centre):
    """Puts four images on a ``2S x 2S`` canvas; boxes move along, unclipped.

    Args:
      images: four [h_k, w_k, 3] uint8, each side <= ``size``.
      labels: four label tuples, boxes in their image's pixels.
      size: ``S``.
      centre: ``(cy, cx)`` integers in ``[S/2, 3S/2]``.

    Returns:
      (canvas [2S, 2S, 3] uint8, labels with boxes [M, 4] in canvas pixels
      (not clipped), offsets [4, 2] ``(top, left)`` of each image).
    """
    canvas = np.full((2 * size, 2 * size, 3), PAD_VALUE, np.uint8)
    offsets = quadrant_offsets([im.shape[:2] for im in images], centre)
    moved = []
    for image, (boxes, classes, ignore), (top, left) in zip(images, labels, offsets):
        paste(canvas, image, int(top), int(left))
        moved.append((np.asarray(boxes, np.float32).reshape(-1, 4) + np.float32([left, top, left, top]),
                      classes, ignore))
    return canvas, concat_labels(moved), offsets


def clip_and_drop_labels(labels, height, width, min_visibility, min_box_size):
    """Clips boxes to a ``height x width`` image and drops the ones too little inside or too small.

    A box stays when it has positive area, at least ``min_visibility`` of
    its (unclipped) area is inside, and the clipped box is at least
    ``min_box_size`` pixels wide and high.

    Args:
      labels: (boxes [N, 4] xyxy, classes [N], ignore [N]).

    Returns:
      labels, boxes [M, 4] clipped, M <= N, in the input order.
    """
    boxes, classes, ignore = labels
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    clipped = np.clip(boxes, 0.0, np.float32([width, height, width, height]))
    w, h = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    keep = ((area > 0) & (w > 0) & (h > 0) & (w * h >= min_visibility * area * (1 - _EPS))
            & (w >= min_box_size - _EPS) & (h >= min_box_size - _EPS))
    return clipped[keep], np.asarray(classes, np.int32)[keep], np.asarray(ignore, bool)[keep]


def mosaic(images, labels, size, centre, min_visibility=0.25, min_box_size=2.0):
    """Four images on a ``2S x 2S`` canvas, boxes clipped to it and filtered (``clip_and_drop_labels``).

    Args:
      images: four [h_k, w_k, 3] uint8 (sides <= ``size``), quadrant order.
      labels: four label tuples.
      size: ``S``; centre: ``(cy, cx)`` (``draw_centre``).
      min_visibility, min_box_size: as in ``AugmentConfig``.

    Returns:
      (canvas [2S, 2S, 3] uint8, labels: boxes [M, 4] canvas pixels).
    """
    canvas, moved, _ = place(images, labels, size, centre)
    return canvas, clip_and_drop_labels(moved, 2 * size, 2 * size, min_visibility, min_box_size)


def zoom_to_size(image, boxes, size, zoom=1.0, shift=(0.0, 0.0)):
    """Zooms ``image`` about its centre and crops/pads it to ``size x size``; boxes follow, unclipped.

    The input's centre lands at ``(size / 2 + shift_y, size / 2 + shift_x)``.
    With continuous pixel edges (a box covers ``x1 <= x < x2``) the mapping is
    ``out = zoom * in + offset`` exactly.

    Args:
      image: [H, W, 3] uint8 (a mosaic canvas: ``2S x 2S``).
      boxes: [N, 4] xyxy pixels of ``image``.
      size: output side.
      zoom: scale factor (> 0).
      shift: ``(dy, dx)`` output pixels.

    Returns:
      (image [size, size, 3] uint8, boxes [N, 4] float32 (unclipped),
      (zoom, offset_y, offset_x)).
    """
    height, width = image.shape[:2]
    oy = size / 2 + shift[0] - zoom * height / 2
    ox = size / 2 + shift[1] - zoom * width / 2
    # OpenCV maps pixel centres (index i is the point i), edges are at i + 0.5: shift by 0.5 (zoom - 1).
    half = 0.5 * (zoom - 1.0)
    matrix = np.array([[zoom, 0.0, ox + half], [0.0, zoom, oy + half]], np.float64)
    if zoom == 1.0 and float(oy).is_integer() and float(ox).is_integer():
        out = paste(np.full((size, size, 3), PAD_VALUE, np.uint8), image, int(oy), int(ox))  # a plain crop
    else:
        out = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=(PAD_VALUE,) * 3)
    moved = np.asarray(boxes, np.float32).reshape(-1, 4) * np.float32(zoom) + np.float32([ox, oy, ox, oy])
    return out, moved.astype(np.float32), (float(zoom), float(oy), float(ox))


def mixup(image_a, labels_a, image_b, labels_b, ratio):
    """Blends two images of one size; keeps the boxes of both.

    Args:
      image_a, image_b: [H, W, 3] uint8.
      labels_a, labels_b: label tuples.
      ratio: weight of ``image_a`` (``draw_mixup_ratio``).

    Returns:
      (image [H, W, 3] uint8 = round(ratio * a + (1 - ratio) * b), labels of a then b).
    """
    blend = image_a.astype(np.float32) * np.float32(ratio) + image_b.astype(np.float32) * np.float32(1.0 - ratio)
    image = np.clip(np.floor(blend + 0.5), 0, 255).astype(np.uint8)
    return image, concat_labels([labels_a, labels_b])


# ---- random draws --------------------------------------------------------------------

def draw_centre(rng, size):
    """Mosaic centre ``(cy, cx)``: integers uniform in ``[S/2, 3S/2]``."""
    low, high = size // 2, 3 * size // 2
    return int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1))


def draw_zoom(rng, cfg, size):
    """``(zoom, (dy, dx))`` for ``zoom_to_size``: with probability ``cfg.affine_prob`` a zoom in
    ``[1 - cfg.scale, 1 + cfg.scale]`` and a shift in ``[-cfg.translate, cfg.translate] * size``, else none."""
    if cfg.affine_prob <= 0 or rng.random() >= cfg.affine_prob:
        return 1.0, (0.0, 0.0)
    zoom = float(rng.uniform(1.0 - cfg.scale, 1.0 + cfg.scale))
    dy, dx = rng.uniform(-cfg.translate, cfg.translate, 2) * size
    return zoom, (float(dy), float(dx))


def draw_mixup_ratio(rng):
    """``r ~ Beta(32, 32)``, YOLOv5's mixup ratio."""
    return float(rng.beta(MIXUP_ALPHA, MIXUP_ALPHA))


# ---- the pipeline's group step ---------------------------------------------------------

@dataclasses.dataclass
class Output:
    """One augmented training image.

    Attributes:
      image: [S, S, 3] uint8.
      labels: (boxes [M, 4] xyxy output pixels, classes [M], ignore [M]).
      scale, pad_y, pad_x: where the element's own (fitted) image lies in
        ``image``: ``out = fitted * scale + pad`` (flips not included).
      mosaic, mixed: whether the output is a mosaic, a mixup.
    """

    image: np.ndarray
    labels: tuple
    scale: tuple
    pad_y: float
    pad_x: float
    mosaic: bool = False
    mixed: bool = False


class GroupAugmenter:
    """Mosaic / mixup / per-image augmentation over a group of fitted images.

    Each image of a group gives one output, drawn from a generator seeded by
    that image's seed (so the result does not depend on threads): with
    probability ``cfg.mosaic_prob`` a mosaic of it and three partners drawn
    from the rest of the group (in random quadrants), brought to ``S x S``
    (``draw_zoom``) and then flipped / colour-shifted by the
    albumentations steps that do not move the geometry; otherwise the
    image's plain augmentation (``ThreadLocalAugmenter``) and a letterbox
    to ``S``. Then, with probability ``cfg.mixup_prob``, a second output
    made the same way from another member of the group is blended in.

    Args:
      cfg: ``AugmentConfig``.
      size: ``S``.
    """

    def __init__(self, cfg, size):
        self.cfg = cfg
        self.size = size
        self._plain = ThreadLocalAugmenter(cfg)
        # After a mosaic, zoom_to_size has done the geometry: flip and colours only.
        self._after_mosaic = ThreadLocalAugmenter(dataclasses.replace(cfg, crop_prob=0.0, affine_prob=0.0))

    def __call__(self, images, labels, seeds):
        """Augments a group.

        Args:
          images: G fitted [h_k, w_k, 3] uint8, sides <= S.
          labels: G label tuples.
          seeds: G integers.

        Returns:
          list of G ``Output``.
        """
        outputs = []
        for i, seed in enumerate(seeds):
            rng = np.random.default_rng(int(seed) % (2 ** 64))
            out = self._one(images, labels, i, rng)
            if self.cfg.mixup_prob > 0 and rng.random() < self.cfg.mixup_prob:
                others = [k for k in range(len(images)) if k != i] or [i]
                other = self._one(images, labels, int(rng.choice(others)), rng)
                image, mixed = mixup(out.image, out.labels, other.image, other.labels, draw_mixup_ratio(rng))
                out = dataclasses.replace(out, image=image, labels=mixed, mixed=True)
            outputs.append(out)
        return outputs

    def _one(self, images, labels, i, rng):
        if self.cfg.mosaic_prob > 0 and rng.random() < self.cfg.mosaic_prob:
            return self._mosaic(images, labels, i, rng)
        image, boxes, classes, ignore = self._plain(images[i], *labels[i], int(rng.integers(2 ** 32)))
        image, boxes, t = transforms.letterbox(image, boxes, self.size)
        return Output(image, (boxes.astype(np.float32), classes, ignore), (float(t[0]), float(t[1])),
                      float(t[2]), float(t[3]))

    def _mosaic(self, images, labels, i, rng):
        others = [k for k in range(len(images)) if k != i] or [i]
        partners = rng.choice(others, 3, replace=len(others) < 3)
        members = np.concatenate([[i], partners])[rng.permutation(4)]
        own = int(np.flatnonzero(members == i)[0])
        canvas, moved, offsets = place([images[k] for k in members], [labels[k] for k in members], self.size,
                                       draw_centre(rng, self.size))
        zoom, shift = draw_zoom(rng, self.cfg, self.size)
        image, boxes, (zoom, oy, ox) = zoom_to_size(canvas, moved[0], self.size, zoom, shift)
        kept = clip_and_drop_labels((boxes, moved[1], moved[2]), self.size, self.size,
                                    self.cfg.min_visibility, self.cfg.min_box_size)
        image, boxes, classes, ignore = self._after_mosaic(image, *kept, int(rng.integers(2 ** 32)))
        top, left = offsets[own]
        return Output(image, (boxes, classes, ignore), (zoom, zoom), zoom * top + oy, zoom * left + ox, mosaic=True)
