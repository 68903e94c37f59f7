"""The shapes dataset: a synthetic detection dataset written to disk as real files.

Every image shows 1 to ``MAX_OBJECTS`` filled circles, squares and
triangles (rotated at random) in random colours on a noisy, textured
background; colour says nothing about the class. A shape's box side is
``MIN_SIZE`` to ``MAX_SIZE`` of the image side. Shapes may overlap, but a
shape is only placed if every shape under it keeps at least
``1 - MAX_HIDDEN`` of its pixels visible.

Boxes are exact and follow the VOC convention (the extent of the *visible*
object): shapes are drawn without anti-aliasing (``cv2.LINE_8``) into an
instance map, and a box is the continuous-edge extent of the pixels where
that shape is on top, so a shape whose visible pixels span columns 10..19
has ``x1 = 10, x2 = 20``. JPEG compression then blurs edges by a pixel or
so; the boxes refer to the drawn pixels.

Image ``i`` (1-based) is drawn from ``np.random.default_rng([seed, i])``
alone, so a dataset is identical byte for byte on every run (with the same
OpenCV build, whose JPEG encoder writes the bytes), and a larger dataset
with the same seed starts with the smaller one's images.
"""

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import cv2
import numpy as np

from detect.data.coco import ANNOTATIONS_DIR as COCO_ANNOTATIONS_DIR
from detect.data.coco import IMAGES_DIR as COCO_IMAGES_DIR
from detect.data.coco import write_coco
from detect.data.records import Record
from detect.data.voc import IMAGES_DIR as VOC_IMAGES_DIR
from detect.data.voc_writer import write_voc
from detect.data.yolo_txt import IMAGES_DIR as YOLO_IMAGES_DIR
from detect.data.yolo_txt import LABELS_DIR as YOLO_LABELS_DIR
from detect.data.yolo_txt import format_yolo_labels, write_yolo_yaml
from detect.errors import InputError
from detect.outputs import remove_stale_temporaries, temporary_sibling

SHAPES_CLASSES = ("circle", "square", "triangle")
CIRCLE, SQUARE, TRIANGLE = range(3)
FORMATS = ("voc", "coco", "yolo")
SPLITS = ("train", "val")

MAX_OBJECTS = 8
MIN_SIZE = 0.08  # of the image side: box side of the whole shape
MAX_SIZE = 0.5
MAX_HIDDEN = 0.5  # most of a shape's pixels that later shapes may cover
BACKGROUND = -1  # instance-map value of pixels no shape covers
JPEG_QUALITY = 95
MARKER = ".shapes.json"  # parameters of a finished dataset; written last
VERSION = 1  # bump when the drawing changes, so ensure_shapes regenerates

_PLACEMENT_TRIES = 20  # per object; a shape that never fits is left out
_COLOUR_CANDIDATES = 8
_NOISE_SIGMA = 6.0
_SUBPIXEL_BITS = 4  # polygon vertices in 1/16 pixel
# Gaussian noise by table look-up of random bytes (the 256 quantiles of
# N(0, sigma)), several times faster than drawing normals per pixel; split
# into its positive and negative parts for saturating uint8 arithmetic.
_NOISE = np.round([NormalDist(0, _NOISE_SIGMA).inv_cdf((i + 0.5) / 256) for i in range(256)])
_NOISE_UP = np.clip(_NOISE, 0, None).astype(np.uint8)
_NOISE_DOWN = np.clip(-_NOISE, 0, None).astype(np.uint8)


@dataclass(frozen=True)
class ShapesImage:
    """One rendered image and its ground truth.

    Attributes:
      image: [S, S, 3] uint8 BGR, before JPEG compression.
      boxes: [N, 4] float32 xyxy, extent of each shape's visible pixels.
      classes: [N] int32 indices into ``SHAPES_CLASSES``.
      full_boxes: [N, 4] float32 xyxy, extent of each whole shape (before
        later shapes covered parts of it).
      areas: [N] int32 pixel count of each whole shape.
      instances: [S, S] int16, the index of the shape drawn on top at each
        pixel, ``BACKGROUND`` where none; ``boxes[k]`` is the extent of
        ``instances == k``.
      colours: [N, 3] uint8 BGR fill colour of each shape.
    """

    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    full_boxes: np.ndarray
    areas: np.ndarray
    instances: np.ndarray
    colours: np.ndarray


def render_shapes_image(seed, index, size):
    """Draws image ``index`` of the dataset with ``seed``.

    Args:
      seed: dataset seed (non-negative int).
      index: image number (non-negative int; ``make_shapes`` uses 1..N).
      size: image side S in pixels (at least 32).

    Returns:
      ``ShapesImage``.
    """
    if size < 32:
        raise ValueError(f"shapes images must be at least 32 pixels, got {size}")
    rng = np.random.default_rng([seed, index])
    image = _background(rng, size)
    instances = np.full((size, size), BACKGROUND, np.int16)
    areas, visible, classes, colours, full_boxes = [], [], [], [], []
    target = int(rng.integers(1, MAX_OBJECTS + 1))
    for _ in range(target * _PLACEMENT_TRIES):
        if len(classes) == target:
            break
        k = int(rng.integers(len(SHAPES_CLASSES)))
        mask, (x0, y0) = _shape_mask(rng, k, size)
        # Views of the shape's window: the pixel work stays proportional to its size.
        window = (slice(y0, y0 + mask.shape[0]), slice(x0, x0 + mask.shape[1]))
        instances_in, image_in = instances[window], image[window]
        # Pixels of each earlier shape that this one would cover.
        covered = np.bincount(instances_in[mask] + 1, minlength=len(classes) + 1)[1:]
        remaining = np.asarray(visible, np.int64) - covered
        if np.any(remaining < (1 - MAX_HIDDEN) * np.asarray(areas)):
            continue
        colour = _pick_colour(rng, image_in[mask], np.asarray(colours)[covered > 0])
        image_in[mask] = colour
        instances_in[mask] = len(classes)
        visible = list(remaining) + [int(np.count_nonzero(mask))]
        areas.append(visible[-1])
        classes.append(k)
        colours.append(colour)
        full_boxes.append(np.add(_extent(mask), [x0, y0, x0, y0]))
    # Mild sensor noise over everything, so shapes are not perfectly flat;
    # saturating uint8 arithmetic clips at 0 and 255.
    noise = np.frombuffer(rng.bytes(image.size), np.uint8).reshape(image.shape)
    image = cv2.subtract(cv2.add(image, cv2.LUT(noise, _NOISE_UP)), cv2.LUT(noise, _NOISE_DOWN))
    boxes = [_extent(instances == k) for k in range(len(classes))]
    return ShapesImage(
        image=image,
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        classes=np.array(classes, np.int32),
        full_boxes=np.array(full_boxes, np.float32).reshape(-1, 4),
        areas=np.array(areas, np.int32),
        instances=instances,
        colours=np.array(colours, np.uint8).reshape(-1, 3),
    )


def make_shapes(out_dir, fmt="voc", num_images=1000, size=256, seed=0, val_fraction=0.2):
    """Writes a shapes dataset to disk.

    Images are ``{n:06d}.jpg`` (n = 1..num_images), JPEG quality 95; the
    last ``round(num_images * val_fraction)`` form the ``val`` split, the
    rest ``train``. Layouts, each readable by its reader with splits
    ``train`` and ``val``:

    - ``voc``: ``JPEGImages/``, ``Annotations/``, ``ImageSets/Main/{train,val}.txt``
      (``read_voc(root, split, SHAPES_CLASSES)``; ids ``"000001"``).
    - ``coco``: ``images/``, ``annotations/instances_{train,val}.json``
      (``read_coco(json)``; ids 1..N).
    - ``yolo``: ``images/{train,val}/``, ``labels/{train,val}/``, ``data.yaml``
      (``read_yolo(root, split)``; ids ``"000001"``).

    A marker file ``.shapes.json`` with the parameters is written last.

    Args:
      out_dir: dataset folder (created; existing files of the same names
        are overwritten).
      fmt: ``"voc"``, ``"coco"`` or ``"yolo"``.
      num_images: number of images (at least 1).
      size: image side in pixels (at least 32).
      seed: non-negative int; same seed, same bytes.
      val_fraction: share of images in the ``val`` split.

    Returns:
      ``Path`` of ``out_dir``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    if not 0 <= val_fraction <= 1:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    out_dir = Path(out_dir)
    num_val = int(round(num_images * val_fraction))
    digits = max(6, len(str(num_images)))
    splits = {"train": [], "val": []}
    folders = set()
    for n in range(1, num_images + 1):
        split = "train" if n <= num_images - num_val else "val"
        stem = f"{n:0{digits}d}"
        image_path = _image_path(out_dir, fmt, split, stem)
        sample = render_shapes_image(seed, n, size)
        if image_path.parent not in folders:
            image_path.parent.mkdir(parents=True, exist_ok=True)
            folders.add(image_path.parent)
        if not cv2.imwrite(str(image_path), sample.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f"{image_path}: cannot write image")
        splits[split].append(Record(
            image_id=n if fmt == "coco" else stem,
            height=size, width=size,
            boxes=sample.boxes, classes=sample.classes,
            ignore=np.zeros(len(sample.classes), bool),
            class_names=SHAPES_CLASSES, image_path=str(image_path)))
    for split, records in splits.items():
        _write_annotations(out_dir, fmt, split, records)
    params = _params(fmt, num_images, size, seed, val_fraction)
    counts = {s: len(r) for s, r in splits.items()}
    (out_dir / MARKER).write_text(json.dumps({**params, "images": counts}, indent=1) + "\n")
    return out_dir


def ensure_shapes(out_dir, fmt="voc", num_images=1000, size=256, seed=0, val_fraction=0.2):
    """Generates the dataset unless ``out_dir`` already holds it with these parameters.

    Generation goes to a temporary sibling folder that is renamed into
    place when complete, so an interrupted run leaves nothing half-written
    and concurrent callers do not clash. A folder whose marker shows other
    parameters (or an older generator) is replaced. Temporary siblings left
    by a killed run (``.NAME.tmp-PID``, ``.NAME.old-PID`` whose process no
    longer exists) are removed first; those of live processes are kept.

    Args:
      out_dir, fmt, num_images, size, seed, val_fraction: as ``make_shapes``.

    Returns:
      ``Path`` of ``out_dir``.

    Raises:
      InputError: ``out_dir`` exists, is not empty and is not a shapes
        dataset (no marker), so it is left alone.
    """
    out_dir = Path(out_dir)
    params = _params(fmt, num_images, size, seed, val_fraction)
    remove_stale_temporaries(out_dir)
    state = _marker_state(out_dir, params)
    if state == "current":
        return out_dir
    if state == "foreign":
        raise InputError(out_dir, f"exists and is not a shapes dataset (no {MARKER}); "
                                  f"choose another folder or remove it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(out_dir, "tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        make_shapes(tmp, fmt, num_images, size, seed, val_fraction)
        try:
            _move_into_place(tmp, out_dir, stale=state == "stale")
        except OSError:
            # Another process finished first; keep its copy if it is what we need.
            if _marker_state(out_dir, params) != "current":
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


# ---- drawing ------------------------------------------------------------------


def _background(rng, size):
    """[S, S, 3] uint8: colour blotches, grey texture and a few thin lines."""
    # uint8 OpenCV arithmetic throughout: it saturates, and it is fast.
    blotches = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    image = cv2.resize(blotches, (size, size), interpolation=cv2.INTER_CUBIC)
    cells = max(4, size // 8)
    texture = rng.integers(0, 256, (cells, cells), dtype=np.uint8)
    texture = cv2.resize(texture, (size, size), interpolation=cv2.INTER_LINEAR)
    texture = cv2.cvtColor(texture, cv2.COLOR_GRAY2BGR)
    strength = float(rng.uniform(0.15, 0.5))  # texture swing: +-strength * 128 levels
    image = cv2.addWeighted(image, 1.0, texture, strength, -128 * strength)
    for _ in range(int(rng.integers(0, 6))):
        p1, p2 = rng.integers(0, size, (2, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.line(image, (int(p1[0]), int(p1[1])), (int(p2[0]), int(p2[1])), colour,
                 int(rng.integers(1, 3)), cv2.LINE_AA)
    return image


def _shape_mask(rng, k, size):
    """One shape of class ``k``, wholly inside the image.

    Returns:
      ``(mask, (x0, y0))``: [h, w] bool mask of the shape's window and the
      window's top-left pixel in the image.
    """
    # Log-uniform sizes: as many small shapes as large ones, per octave.
    side = size * math.exp(rng.uniform(math.log(MIN_SIZE), math.log(MAX_SIZE)))
    if k == CIRCLE:
        radius = max(1, int(round((side - 1) / 2)))  # covers 2 * radius + 1 pixels
        x0, y0 = (int(v) for v in rng.integers(0, size - 2 * radius, 2))
        mask = np.zeros((2 * radius + 1, 2 * radius + 1), np.uint8)
        cv2.circle(mask, (radius, radius), radius, 1, cv2.FILLED, cv2.LINE_8)
        return mask.view(bool), (x0, y0)
    angle = rng.uniform(0, 2 * math.pi)
    if k == SQUARE:
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
    else:  # equilateral triangle on its circumcircle
        t = np.array([0, 2 * math.pi / 3, 4 * math.pi / 3])
        corners = np.stack([np.cos(t), np.sin(t)], axis=1)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    corners = corners @ rotation.T
    # Scale so the larger side of the shape's box is ``side`` pixels.
    corners *= (side - 1) / (corners.max(axis=0) - corners.min(axis=0)).max()
    low, high = corners.min(axis=0), corners.max(axis=0)
    # A margin of one pixel keeps the rounded outline inside the image.
    corners += rng.uniform(1 - low, size - 2 - high)
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
    points = np.round((corners - [x0, y0]) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [points], 1, cv2.LINE_8, _SUBPIXEL_BITS)
    return mask.view(bool), (int(x0), int(y0))


def _pick_colour(rng, under, covered_colours):
    """A random colour far from the background and shapes it is drawn over.

    Args:
      under: [P, 3] uint8 current pixels under the new shape.
      covered_colours: [M, 3] fill colours of the shapes it overlaps.
    """
    candidates = rng.integers(0, 256, (_COLOUR_CANDIDATES, 3)).astype(np.float32)
    references = np.concatenate([under.reshape(-1, 3).mean(axis=0, keepdims=True),
                                 np.asarray(covered_colours, np.float32).reshape(-1, 3)])
    distance = np.linalg.norm(candidates[:, None] - references[None], axis=-1).min(axis=1)
    return candidates[int(np.argmax(distance))].astype(np.uint8)


def _extent(mask):
    """Continuous-edge box ``[x1, y1, x2, y2]`` of a non-empty boolean mask."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    return [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]


# ---- files --------------------------------------------------------------------


def _image_path(root, fmt, split, stem):
    if fmt == "voc":
        return root / VOC_IMAGES_DIR / f"{stem}.jpg"
    if fmt == "coco":
        return root / COCO_IMAGES_DIR / f"{stem}.jpg"
    return root / YOLO_IMAGES_DIR / split / f"{stem}.jpg"


def _write_annotations(root, fmt, split, records):
    if fmt == "voc":
        write_voc(records, root, split)
    elif fmt == "coco":
        write_coco(records, root / COCO_ANNOTATIONS_DIR / f"instances_{split}.json",
                   class_names=SHAPES_CLASSES, image_root=root / COCO_IMAGES_DIR)
    else:
        label_dir = root / YOLO_LABELS_DIR / split
        label_dir.mkdir(parents=True, exist_ok=True)
        (root / YOLO_IMAGES_DIR / split).mkdir(parents=True, exist_ok=True)
        for r in records:
            text = format_yolo_labels(r.boxes, r.classes, r.height, r.width)
            (label_dir / f"{r.image_id}.txt").write_text(text)
        write_yolo_yaml(root, SHAPES_CLASSES, SPLITS)


def _move_into_place(tmp, out_dir, stale):
    """Renames ``tmp`` to ``out_dir``, replacing a stale dataset or an empty folder."""
    if stale:
        old = temporary_sibling(out_dir, "old")
        out_dir.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    elif out_dir.is_dir():
        out_dir.rmdir()  # only an empty folder gets here; rmdir refuses anything else
    tmp.rename(out_dir)


def _params(fmt, num_images, size, seed, val_fraction):
    return {"generator": "detect.data.shapes", "version": VERSION, "format": fmt,
            "num_images": int(num_images), "size": int(size), "seed": int(seed),
            "val_fraction": float(val_fraction), "class_names": list(SHAPES_CLASSES)}


def _marker_state(out_dir, params):
    """``"absent"`` (no folder or an empty one), ``"current"``, ``"stale"`` or ``"foreign"``."""
    if not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return "absent"
    try:
        marker = json.loads((out_dir / MARKER).read_text())
    except (OSError, ValueError):
        return "foreign"
    if not isinstance(marker, dict) or marker.get("generator") != params["generator"]:
        return "foreign"
    return "current" if all(marker.get(k) == v for k, v in params.items()) else "stale"


__all__ = ["BACKGROUND", "FORMATS", "MAX_HIDDEN", "MAX_OBJECTS", "MAX_SIZE", "MIN_SIZE",
           "SHAPES_CLASSES", "ShapesImage", "ensure_shapes", "make_shapes", "render_shapes_image"]
