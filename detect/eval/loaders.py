"""Ground truth and detections from files, validated, as flat numpy arrays.

Ground truth comes from a COCO instances JSON (checked by
``detect.data.coco.validate_coco``, the training reader's validator), a
VOC-layout dataset or any reader's ``Record`` list; detections from a COCO
results JSON (a list of ``{"image_id", "category_id", "bbox": [x, y, w, h],
"score"}``). Every problem is an ``InputError`` that names the file and the
offending entry.

Detection files can hold hundreds of thousands of entries, so the
detection loaders pull each field out with one comprehension, convert it
with one ``np.array`` call and validate it vectorised; the slow per-entry
walk runs only to describe an entry after a bulk step has failed.
"""

import os
from itertools import repeat
from pathlib import Path

import numpy as np

from detect.data.coco import json_excerpt, json_type_name, validate_coco
from detect.data.voc import default_voc_classes, read_voc, voc_splits
from detect.errors import InputError
from detect.jsonfile import load_json
from detect.eval.types import DetectionRows, GroundTruth

# Split evaluated when none is given, in order of preference.
DEFAULT_VOC_SPLITS = ("test", "val")


# ---- COCO -------------------------------------------------------------------


def load_coco_gt(source, name=None):
    """Loads a COCO instances JSON.

    Images are sorted by id (pycocotools visits ``sorted(getImgIds())``) and
    categories by id; a class index is the category's position in that order.

    The file is checked by ``detect.data.coco.validate_coco``, the validator
    the training reader uses too, so a fault reads the same here and there;
    evaluation does not need the images, so their ``file_name`` and size are
    not required. On top of it a box with a negative width or height is
    refused, which no evaluator scores sensibly.

    Args:
      source: path of the JSON file, or the already-loaded dict.
      name: what messages call already-loaded data (default ``<memory>``).

    Returns:
      ``GroundTruth`` with ``area`` from each annotation's ``area`` (``w * h``
      where absent) and ``ignore`` = ``iscrowd``.

    Raises:
      InputError: malformed JSON, missing keys, duplicate ids, an annotation
        on an unknown image or category, a negative or non-finite number.
    """
    data, src = _read_json(source, name)
    validate_coco(data, src, images=False)
    images, anns, cats = data["images"], data["annotations"], data["categories"]
    image_ids = sorted(image["id"] for image in images)
    order = sorted(range(len(cats)), key=lambda j: cats[j]["id"])

    def label(i):
        return f"annotations[{i}] (id {json_excerpt(anns[i]['id'])})"

    image_index = _lookup([a["image_id"] for a in anns], {k: i for i, k in enumerate(image_ids)},
                          src, label, "image_id", "is not in 'images'")
    classes = _lookup([a["category_id"] for a in anns], {cats[j]["id"]: k for k, j in enumerate(order)},
                      src, label, "category_id", "is not in 'categories'")
    boxes = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
    _check_sizes(boxes, src, label)
    has_area = np.fromiter(("area" in a for a in anns), bool, count=len(anns))
    area = np.array([a.get("area", 0.0) for a in anns], np.float64)
    return GroundTruth(
        image_ids=image_ids,
        class_names=[cats[j]["name"] for j in order],
        category_ids=[cats[j]["id"] for j in order],
        image_index=image_index,
        classes=classes,
        boxes_xywh=boxes,
        area=np.where(has_area, area, boxes[:, 2] * boxes[:, 3]),
        ignore=np.array([bool(a.get("iscrowd", 0)) for a in anns], bool),
        source=src,
    )


def load_coco_dets(source, gt, name=None):
    """Loads a COCO results JSON against COCO ground truth.

    Args:
      source: path of the JSON file, or the already-loaded list.
      gt: the ``GroundTruth`` the detections refer to.
      name: what messages call already-loaded data (default ``<memory>``).

    Returns:
      ``DetectionRows`` in file order (score ties are broken by file order, as
      pycocotools does). An empty list gives empty detections.

    Raises:
      InputError: malformed JSON, not a list, a missing field, an image or
        category the ground truth lacks, a negative width or height, a
        non-finite score or coordinate; the message names the ``[index]``.
    """
    category_index = {c: k for k, c in enumerate(gt.category_ids)}
    return _load_dets(source, name, gt, category_index, "is not a category id of the ground truth")


# ---- VOC --------------------------------------------------------------------


def resolve_voc_split(root, split=None):
    """The split to evaluate: ``split``, else ``test``, else ``val``.

    Raises:
      InputError: when ``split`` is None and neither default exists.
    """
    if split is not None:
        return split
    available = voc_splits(root)
    for name in DEFAULT_VOC_SPLITS:
        if name in available:
            return name
    raise InputError(Path(root) / "ImageSets" / "Main",
                     f"no {' or '.join(DEFAULT_VOC_SPLITS)} split; choose one of: "
                     f"{', '.join(available) or 'none found'}")


def load_voc_gt(root, split=None, class_names=None, skip_unknown=False, allow_outside_root=False):
    """Loads one split of a VOC-layout dataset as ground truth.

    Args:
      root: dataset folder.
      split: split name; None for ``test``, falling back to ``val``.
      class_names: class list; None for ``detect.data.voc.default_voc_classes``
        (the 20 VOC classes when every name in ``Annotations/`` is one of
        them, else the sorted names), the rule training uses too.
      skip_unknown: drop objects of classes outside ``class_names``.
      allow_outside_root: accept image paths that leave ``root`` (a config's
        ``data.allow_outside_root``), as training does.

    Returns:
      ``GroundTruth``: image ids are the file stems, sorted; boxes are our
      continuous edges (``detect.data.voc.voc_box``: ``x = xmin - 1``,
      ``w = xmax - xmin + 1``) in xywh; ``ignore`` = difficult; ``area`` =
      box area (0 for degenerate boxes).
    """
    split = resolve_voc_split(root, split)
    if class_names is None:
        class_names = default_voc_classes(root)
    records = read_voc(root, split, class_names, skip_unknown, allow_outside_root=allow_outside_root)
    return records_ground_truth(records, class_names, source=str(root))


def records_ground_truth(records, class_names, source="<records>"):
    """Ground truth from ``Record`` objects (any reader's), for the formats without a GT file.

    Args:
      records: ``Record`` list; ``boxes`` [N, 4] xyxy, ``classes`` [N],
        ``ignore`` [N], ``area`` [N] each.
      class_names: the class list the records' class ids index.
      source: name for messages.

    Returns:
      ``GroundTruth`` with images sorted by id (as the COCO evaluator visits
      them), category ids ``0..C-1``, boxes in xywh float64 computed from
      the float32 corners, ``area`` = ``Record.area``, ``ignore`` as is.
    """
    try:
        records = sorted(records, key=lambda r: r.image_id)
    except TypeError:
        raise InputError(source, "image ids mix numbers and strings; they cannot be sorted") from None
    counts = [r.num_boxes for r in records]
    boxes = np.concatenate([r.boxes for r in records] or [np.zeros((0, 4), np.float32)])
    boxes = boxes.astype(np.float64)
    return GroundTruth(
        image_ids=[r.image_id for r in records],
        class_names=list(class_names),
        category_ids=list(range(len(class_names))),
        image_index=np.repeat(np.arange(len(records), dtype=np.int32), counts),
        classes=np.concatenate([r.classes for r in records] or [np.zeros(0, np.int32)]),
        boxes_xywh=np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1),
        area=np.concatenate([r.area for r in records] or [np.zeros(0)]),
        ignore=np.concatenate([r.ignore for r in records] or [np.zeros(0, bool)]),
        source=source,
    )


def load_voc_dets(source, gt, name=None):
    """Loads a COCO-style results JSON against VOC (or ``records_ground_truth``) ground truth.

    ``image_id`` is the annotation file's stem (the record's id); ``category_id``
    is the class name or its index in ``gt.class_names``; ``bbox`` is
    ``[x, y, w, h]`` in our continuous edges, i.e. devkit corners become
    ``x = xmin - 1``, ``w = xmax - xmin + 1`` (``detect.data.voc.voc_box``).

    Args:
      source: path of the JSON file, or the already-loaded list.
      gt: VOC or records ``GroundTruth``.
      name: what messages call already-loaded data (default ``<memory>``).

    Returns:
      ``DetectionRows`` in file order. Raises ``InputError`` as
      ``load_coco_dets`` does.
    """
    category_index = {name: k for k, name in enumerate(gt.class_names)}
    category_index.update((k, k) for k in range(len(gt.class_names)))
    return _load_dets(source, name, gt, category_index, "is neither a class name nor a class index "
                                                  "of the ground truth")


# ---- shared -----------------------------------------------------------------


def _load_dets(source, name, gt, category_index, unknown_category):
    data, src = _read_json(source, name)
    if not isinstance(data, list):
        raise InputError(src, f"expected a JSON list of detections, got {json_type_name(data)}")
    if not data:
        return DetectionRows.empty(src)

    def label(i):
        return f"[{i}]"

    fields = _detection_fields(data, src, label, ("image_id", "category_id", "bbox", "score"))
    image_index = _lookup(fields["image_id"], {k: i for i, k in enumerate(gt.image_ids)},
                          src, label, "image_id", f"is not an image of the ground truth ({gt.source})")
    classes = _lookup(fields["category_id"], category_index, src, label, "category_id",
                      unknown_category)
    return DetectionRows(image_index, classes, fields["bbox"], fields["score"], src)


def _check_sizes(boxes, src, label):
    """Refuses a negative width or height in [N, 4] xywh boxes, naming the first."""
    bad_w = boxes[:, 2] < 0
    bad = np.flatnonzero(bad_w | (boxes[:, 3] < 0))
    if bad.size:
        i = bad[0]
        side = "width" if bad_w[i] else "height"
        raise InputError(src, f"{label(i)}: bbox {side} is negative ({boxes[i, 2 + (side == 'height')]:g})")


def _detection_fields(entries, src, label, keys):
    """Columns of ``keys`` from a list of dicts; ``bbox`` and ``score`` as validated arrays."""
    fields = {key: _column(entries, key, src, label) for key in keys}
    if "bbox" in fields:
        boxes = _numbers(fields["bbox"], 4, src, label, "bbox")
        _check_finite(boxes, src, label, "bbox")
        _check_sizes(boxes, src, label)
        fields["bbox"] = boxes
    if "score" in fields:
        scores = _numbers(fields["score"], None, src, label, "score")
        _check_finite(scores, src, label, "score")
        fields["score"] = scores
    return fields


def _read_json(source, name=None):
    """Parsed JSON and a name for messages; a non-path source is returned as is, called ``name``."""
    if not isinstance(source, (str, os.PathLike)):
        return source, "<memory>" if name is None else str(name)
    return load_json(source), str(source)


def _column(entries, key, src, label):
    """``[e[key] for e in entries]``, or an InputError naming the first bad entry."""
    try:
        return [e[key] for e in entries]
    except (KeyError, TypeError, IndexError):
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise InputError(src, f"{label(i)}: expected an object, got {json_type_name(entry)}") from None
            if key not in entry:
                raise InputError(src, f"{label(i)}: missing key {key!r}") from None
        raise


def _numbers(values, width, src, label, name):
    """float64 array [N] (``width`` None) or [N, width] of JSON numbers.

    Strings, booleans and nulls are rejected rather than coerced, which is
    why the array is built without a dtype first.
    """
    shape = (len(values),) if width is None else (len(values), width)
    if not values:
        return np.zeros(shape)
    try:
        array = np.array(values)
        ok = array.dtype.kind in "iuf" and array.shape == shape
    except (ValueError, TypeError):  # ragged lists
        ok = False
    if ok:
        return array.astype(np.float64, copy=False)
    for i, value in enumerate(values):
        items = [value] if width is None else value
        if (width is not None and (not isinstance(value, list) or len(value) != width)) or \
                not all(_is_number(v) for v in items):
            expected = "a number" if width is None else f"a list of {width} numbers"
            raise InputError(src, f"{label(i)}: {name} must be {expected}, got {json_excerpt(value)}")
    try:  # every entry is numeric: integers beyond int64 made the first attempt fail
        return np.array(values, np.float64)
    except OverflowError:
        raise InputError(src, f"{name}: a number is too large for float64") from None


def _check_finite(array, src, label, name):
    bad = ~np.isfinite(array)
    rows = np.flatnonzero(bad if bad.ndim == 1 else bad.any(axis=1))
    if rows.size:
        i = rows[0]
        value = array[i] if array.ndim == 1 else array[i].tolist()
        raise InputError(src, f"{label(i)}: {name} is not finite ({value})")


def _lookup(values, mapping, src, label, name, unknown):
    """int32 indices of ``values`` in ``mapping``; InputError for the first unknown one."""
    get = mapping.get
    try:
        index = np.fromiter(map(get, values, repeat(-1)), np.int64, count=len(values))
    except TypeError:  # an unhashable value (list, dict)
        index = np.array([get(v, -1) if _is_hashable(v) else -1 for v in values], np.int64)
    bad = np.flatnonzero(index < 0)
    if bad.size:
        i = bad[0]
        raise InputError(src, f"{label(i)}: {name} {json_excerpt(values[i])} {unknown}")
    return index.astype(np.int32)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_hashable(value):
    try:
        hash(value)
    except TypeError:
        return False
    return True


__all__ = ["DEFAULT_VOC_SPLITS", "load_coco_dets", "load_coco_gt", "load_voc_dets", "load_voc_gt",
           "records_ground_truth", "resolve_voc_split"]
