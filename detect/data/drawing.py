"""Drawing boxes on images, to see at a glance whether a box format is right.

Importing this module does not import TensorFlow or OpenCV.
"""

import re
from pathlib import Path

import numpy as np

from detect.outputs import atomic_path

# BGR colours, one per class id (cycled); saturated so they stand out on pale images.
PALETTE = (
    (40, 40, 230), (230, 120, 0), (0, 170, 0), (0, 140, 255), (200, 0, 200),
    (170, 170, 0), (0, 0, 140), (140, 0, 0), (0, 100, 0), (80, 80, 80),
    (120, 60, 255), (255, 60, 120), (60, 200, 120), (0, 200, 200), (160, 80, 0),
    (80, 0, 160), (0, 80, 160), (160, 0, 80), (90, 160, 0), (30, 30, 30),
)


def draw_boxes(image, boxes, classes, class_names, ignore=None, scores=None):
    """Draws boxes and their class names on a copy of an image.

    Args:
      image: [H, W, 3] uint8 BGR.
      boxes: [N, 4] ``xyxy`` pixels, continuous edges (a box covers
        ``x1 <= x < x2``, so its last pixel column is ``x2 - 1``).
      classes: [N] int class ids indexing ``class_names``.
      class_names: sequence of str.
      ignore: [N] bool or None; ignored boxes get a "(ignore)" label.
      scores: [N] or None; detections get their score after the name.

    Returns:
      [H, W, 3] uint8 BGR, the image with the boxes drawn.
    """
    import cv2  # Lazily: keeps `import detect.data` light.

    canvas = np.ascontiguousarray(image).copy()
    height, width = canvas.shape[:2]
    thickness = max(1, round(min(height, width) / 400))
    font_scale = max(0.35, min(height, width) / 1200)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    ignore = np.zeros(len(boxes), bool) if ignore is None else np.asarray(ignore, bool)
    scores = [None] * len(boxes) if scores is None else np.asarray(scores, np.float32).reshape(-1)
    for box, k, ignored, score in zip(boxes, np.asarray(classes).reshape(-1), ignore, scores):
        color = PALETTE[int(k) % len(PALETTE)]
        x1, y1 = int(round(box[0])), int(round(box[1]))
        x2, y2 = int(round(box[2])) - 1, int(round(box[3])) - 1
        cv2.rectangle(canvas, (x1, y1), (max(x1, x2), max(y1, y2)), color, thickness)
        label = class_names[int(k)] + (" (ignore)" if ignored else "") + ("" if score is None else f" {score:.2f}")
        (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        # Label above the box, or inside it when the box touches the top edge.
        top = y1 - text_h - baseline if y1 - text_h - baseline >= 0 else y1
        cv2.rectangle(canvas, (x1, top), (x1 + text_w, top + text_h + baseline), color, cv2.FILLED)
        cv2.putText(canvas, label, (x1, top + text_h), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def write_examples(records, count, out_dir, seed=0):
    """Draws ``count`` records' ground truth and writes them as PNG files.

    The choice is a seeded shuffle of the records sorted by image id, so it
    is the same on every run and spread over the dataset; records whose
    image cannot be read are passed over.

    Args:
      records: sequence of ``Record``.
      count: how many images to write.
      out_dir: folder for the files (created).
      seed: seed of the shuffle.

    Returns:
      list of the written ``Path`` objects, at most ``count``.
    """
    import cv2  # Lazily: keeps `import detect.data` light.

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ordered = sorted(records, key=lambda r: str(r.image_id))
    written, names = [], set()
    for i in np.random.default_rng(seed).permutation(len(ordered)):
        if len(written) >= count:
            break
        record = ordered[i]
        image = _read_image(record, cv2)
        if image is None:
            continue
        drawn = draw_boxes(image, record.boxes, record.classes, record.class_names, record.ignore)
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(record.image_id)) or "image"
        while name in names:  # Two splits of a YOLO set may reuse a file stem.
            name += "_"
        names.add(name)
        # PNG: JPEG smears one-pixel coloured lines.
        path = out_dir / f"{name}.png"
        with atomic_path(path) as tmp:
            if not cv2.imwrite(str(tmp), drawn):
                raise OSError(f"{path}: cannot write")
        written.append(path)
    return written


def _read_image(record, cv2):
    """The record's image as [H, W, 3] uint8 BGR, or None if it cannot be read."""
    data = record.image_bytes
    if data is None and record.image_path is not None:
        try:
            data = Path(record.image_path).read_bytes()
        except OSError:
            return None
    if not data:
        return None
    # Ignore EXIF orientation, as the training pipeline's decoder does.
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
