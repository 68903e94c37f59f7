"""YOLO txt datasets: reader into ``Record`` objects and label writers.

Layout (the common Ultralytics/Darknet one)::

    root/images/<split>/<name>.jpg|png|...
    root/labels/<split>/<name>.txt     one line per box: class cx cy w h
    root/data.yaml                     names: [a, b, ...] or {0: a, 1: b, ...}
    (or root/names.txt                 one class name per line)

Coordinates are normalised by the image width and height, so the reader
needs each image's size; it reads it from the file header
(``detect.data.imagesize``). An image without a label file, or with an
empty one, has no boxes; a missing label *folder* is an error. The folders of ``data.yaml``'s ``train``/``val``
keys are not followed: the layout above is assumed.
"""

import math
from pathlib import Path

import numpy as np
import yaml

from detect.data.imagesize import IMAGE_SUFFIXES, image_size
from detect.data.paths import confined_path
from detect.data.records import Record
from detect.errors import InputError, UnknownClassError

IMAGES_DIR = "images"
LABELS_DIR = "labels"
DATA_YAML = "data.yaml"
NAMES_TXT = "names.txt"
_FIELDS = 5  # class cx cy w h
ANY_CLASS = np.iinfo(np.int32).max  # ``parse_yolo_labels`` bound that accepts every class id


def is_yolo_root(path):
    """True if ``path`` has ``images/`` and ``labels/`` subfolders."""
    path = Path(path)
    return (path / IMAGES_DIR).is_dir() and (path / LABELS_DIR).is_dir()


def yolo_splits(root):
    """Names of the split folders under ``root/images`` (sorted)."""
    folder = Path(root) / IMAGES_DIR
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def read_yolo(root, split, class_names=None, allow_outside_root=False, skipped=None):
    """Reads one split of a YOLO txt dataset.

    Args:
      root: dataset folder (holds ``images/``, ``labels/`` and the names).
      split: split folder name, e.g. ``"train"``; None for images directly
        in ``images/`` (and labels in ``labels/``).
      class_names: classes in class-id order; None to read them from
        ``data.yaml`` or ``names.txt``.
      allow_outside_root: accept image and label files (symbolic links)
        that lead outside ``root`` (see ``detect.data.paths``).
      skipped: None to raise at the first broken image (a label line
        without 5 fields, a non-number, a non-finite value, an image whose
        size cannot be read); a list to leave such images out instead and
        append their ``InputError`` to it.

    Returns:
      list of ``Record`` sorted by ``image_id``, the image's path relative to
      the split folder without its suffix (``"000001"``, ``"sub/x"``).
      Boxes ``[N, 4]`` float32 xyxy pixels, ``x1 = (cx - w / 2) * width``;
      ``ignore`` all False; height and width from the image file.
      Coordinates outside ``[0, 1]`` and degenerate boxes are kept.

    Raises:
      InputError: naming the file (and line), for a missing image or label
        folder, no class names, a broken image or label file (unless
        ``skipped`` collects them), or a class id out of range (a wrong
        class list rather than a broken file).
      OutsideRootError: an image or label file that leads outside ``root``.
    """
    root = Path(root)
    if not (root / IMAGES_DIR).is_dir():
        raise InputError(root, f"not a YOLO dataset root: no {IMAGES_DIR}/ folder")
    image_dir = root / IMAGES_DIR if split is None else root / IMAGES_DIR / split
    label_dir = root / LABELS_DIR if split is None else root / LABELS_DIR / split
    if not image_dir.is_dir():
        available = ", ".join(yolo_splits(root)) or "none"
        raise InputError(image_dir, f"no such split folder; available splits: {available}")
    if not label_dir.is_dir():
        # Otherwise a wrong layout would silently read as a split of negatives.
        raise InputError(label_dir, "no such label folder (create it, empty, for a split "
                                    "without boxes)")
    class_names = tuple(yolo_class_names(root) if class_names is None else class_names)

    records, seen = [], {}
    for path in sorted(_image_files(image_dir, recursive=split is not None)):
        image_id = path.relative_to(image_dir).with_suffix("").as_posix()
        if image_id in seen:
            # Both images would share one label file.
            raise InputError(path, f"image id {image_id!r} is also used by {seen[image_id].name}")
        seen[image_id] = path
        where = f"image {image_id!r}"
        path = confined_path(root, path.relative_to(root), image_dir, where, allow_outside_root)
        label_path = confined_path(root, label_dir.relative_to(root) / f"{image_id}.txt", label_dir,
                                   f"{where}: label file", allow_outside_root)
        try:
            height, width = image_size(path)
            classes, cxcywh = parse_yolo_labels(label_path, len(class_names))
        except UnknownClassError:
            raise
        except InputError as error:
            if skipped is None:
                raise
            skipped.append(error)
            continue
        boxes = yolo_to_pixels(cxcywh, height, width)
        records.append(Record(
            image_id=image_id,
            height=height,
            width=width,
            boxes=boxes.astype(np.float32),
            classes=classes,
            ignore=np.zeros(len(classes), bool),
            class_names=class_names,
            image_path=str(path),
        ))
    return sorted(records, key=lambda r: r.image_id)


def yolo_to_pixels(boxes_cxcywh, height, width):
    """YOLO's normalised centre and size to ``xyxy`` pixels of a ``height x width`` image.

    Args:
      boxes_cxcywh: [N, 4] normalised (cx, cy, w, h).

    Returns:
      [N, 4] float64 xyxy pixels, ``x1 = (cx - w / 2) * width``.
    """
    scale = np.array([width, height, width, height], np.float64)
    return np.concatenate([boxes_cxcywh[:, :2] - boxes_cxcywh[:, 2:] / 2,
                           boxes_cxcywh[:, :2] + boxes_cxcywh[:, 2:] / 2], axis=1) * scale


def parse_yolo_labels(path, num_classes):
    """Reads one label file.

    Args:
      path: the ``.txt`` file; a missing file means no boxes.
      num_classes: class ids must be in ``0 .. num_classes - 1``.

    Returns:
      ``(classes [N] int32, boxes_cxcywh [N, 4] float64 normalised)``.

    Raises:
      InputError: naming the file and line number of a bad line;
        ``UnknownClassError`` for a class id out of range.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return np.zeros(0, np.int32), np.zeros((0, 4))
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(path, f"cannot read label file: {error}") from None
    classes, boxes = [], []
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != _FIELDS:
            raise InputError(path, f"line {line_no}: expected {_FIELDS} fields "
                                   f"'class cx cy w h', got {len(fields)}")
        k = _class_id(fields[0], path, line_no)
        if not 0 <= k < num_classes:
            raise UnknownClassError(path, f"line {line_no}: class {k} is out of range "
                                   f"0..{num_classes - 1}")
        values = []
        for name, text_value in zip(("cx", "cy", "w", "h"), fields[1:]):
            try:
                value = float(text_value)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise InputError(path, f"line {line_no}: {name} is {text_value!r}, "
                                       f"not a finite number")
            values.append(value)
        classes.append(k)
        boxes.append(values)
    return np.array(classes, np.int32), np.array(boxes, np.float64).reshape(-1, 4)


def yolo_class_names(root):
    """Class names from ``root/data.yaml`` (``names``) or ``root/names.txt``.

    Raises:
      InputError: neither file exists, or the names are malformed.
    """
    root = Path(root)
    yaml_path = root / DATA_YAML
    if yaml_path.is_file():
        return _names_from_yaml(yaml_path)
    txt_path = root / NAMES_TXT
    if txt_path.is_file():
        names = [line.strip() for line in txt_path.read_text().splitlines() if line.strip()]
        if not names:
            raise InputError(txt_path, "no class names")
        return _unique(names, txt_path)
    raise InputError(root, f"no class names: neither {DATA_YAML} nor {NAMES_TXT} exists "
                           f"(or pass class_names)")


def format_yolo_labels(boxes, classes, height, width):
    """Label-file text for one image.

    Args:
      boxes: [N, 4] xyxy pixels.
      classes: [N] class ids.
      height, width: image size the coordinates are normalised by.

    Returns:
      str, one ``class cx cy w h`` line per box (8 significant digits, well
      below a thousandth of a pixel for images up to 10,000 pixels).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scale = np.array([width, height, width, height], np.float64)
    cxcywh = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2,
                             boxes[:, 2:] - boxes[:, :2]], axis=1) / scale
    return "".join(f"{int(k)} " + " ".join(f"{v:.8g}" for v in row) + "\n"
                   for k, row in zip(classes, cxcywh))


def write_yolo_yaml(root, class_names, splits=("train", "val")):
    """Writes ``root/data.yaml`` naming the split folders and the classes; returns its path."""
    path = Path(root) / DATA_YAML
    data = {"path": ".", **{s: f"{IMAGES_DIR}/{s}" for s in splits},
            "nc": len(class_names), "names": list(class_names)}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _image_files(folder, recursive):
    paths = folder.rglob("*") if recursive else folder.iterdir()
    return [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]


def _class_id(text, path, line_no):
    try:
        return int(text)
    except ValueError:
        pass
    try:  # some exporters write "3.0"
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value == int(value)):
        raise InputError(path, f"line {line_no}: class is {text!r}, not an integer")
    return int(value)


def _names_from_yaml(path):
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(path, f"malformed YAML{where}") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        if set(names) != set(range(len(names))):
            raise InputError(path, f"names: keys must be the class ids 0..{len(names) - 1}, "
                                   f"got {', '.join(map(repr, names))}")
        names = [names[k] for k in range(len(names))]
    if not isinstance(names, list) or not names:
        raise InputError(path, "missing or empty 'names' (a list, or a dict from class id to name)")
    names = [str(n) for n in names]
    nc = data.get("nc")
    if nc is not None and nc != len(names):
        raise InputError(path, f"nc is {nc} but 'names' lists {len(names)} classes")
    return _unique(names, path)


def _unique(names, path):
    seen = set()
    for name in names:
        if name in seen:
            raise InputError(path, f"class name {name!r} is listed twice")
        seen.add(name)
    return names


__all__ = ["format_yolo_labels", "is_yolo_root", "parse_yolo_labels", "read_yolo",
           "write_yolo_yaml", "yolo_class_names", "yolo_splits"]
