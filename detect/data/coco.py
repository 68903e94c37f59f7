"""COCO instances JSON: reader into ``Record`` objects and writer from them.

COCO boxes are ``[x, y, w, h]`` in absolute pixels with continuous edges, so
``xyxy = (x, y, x + w, y + h)`` with no offset (unlike VOC's 1-based
corners). Category ids may have gaps (COCO's 80 classes use ids 1..90); a
class id is the category's position in ascending category-id order and the
names are kept in that order. ``iscrowd`` becomes ``ignore``.
"""

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np

from detect.data.paths import confined_path
from detect.data.records import Record
from detect.errors import InputError
from detect.jsonfile import load_json
from detect.outputs import write_text_atomic

IMAGES_DIR = "images"
ANNOTATIONS_DIR = "annotations"


def read_coco(json_path, image_dir=None, drop_empty=False, allow_outside_root=False, skipped=None):
    """Reads a COCO instances JSON through pycocotools.

    Args:
      json_path: the instances JSON.
      image_dir: folder that ``file_name`` is relative to. None for the
        JSON's folder / ``images`` if that exists, else (for the usual
        ``root/annotations/x.json`` layout) the JSON's parent's ``images``
        if that exists, else the JSON's folder.
      drop_empty: leave out images without annotations; by default they
        are kept as negatives.
      allow_outside_root: accept a ``file_name`` that leads outside
        ``image_dir`` (see ``detect.data.paths``).
      skipped: None to raise at the first broken image entry (a width or
        height that is not a positive integer, an annotation whose bbox is
        not 4 finite numbers); a list to leave such images out instead and
        append one ``InputError`` per image to it. A file whose structure
        is broken (missing keys, duplicate or unknown ids) always raises.

    Returns:
      list of ``Record`` sorted by image id: ``image_id`` the COCO id,
      boxes ``[N, 4]`` float32 xyxy, classes ``[N]`` int32 indices into
      ``class_names`` (category names in ascending id order), ignore ``[N]``
      bool from ``iscrowd``, ``image_path = image_dir / file_name``.
      Degenerate boxes (zero or negative width) are kept as annotated.

    Raises:
      InputError: naming the file and the entry, for a missing or malformed
        file, a missing key, a duplicate id, an annotation on an unknown
        image or category, or a non-numeric or non-finite number.
      OutsideRootError: a ``file_name`` outside ``image_dir``.
    """
    json_path = Path(json_path)
    data = load_json(json_path)
    broken = validate_coco(data, json_path, collect=skipped is not None)
    if broken:
        skipped.extend(broken.values())
        data = dict(data, images=[i for i in data["images"] if i["id"] not in broken],
                    annotations=[a for a in data["annotations"] if a["image_id"] not in broken])
    coco = _index(data)
    image_dir = Path(image_dir) if image_dir is not None else default_image_dir(json_path)

    cat_ids = sorted(coco.getCatIds())
    class_index = {cat_id: k for k, cat_id in enumerate(cat_ids)}
    class_names = tuple(coco.cats[c]["name"] for c in cat_ids)
    image_ids = sorted(coco.getImgIds())  # validated: one kind of id

    records = []
    for image_id in image_ids:
        anns = coco.imgToAnns.get(image_id, [])
        if drop_empty and not anns:
            continue
        image = coco.imgs[image_id]
        path = confined_path(image_dir, image["file_name"], json_path,
                             f"image id {image_id!r}: file_name", allow_outside_root)
        xywh = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        # COCO's size ranges use the annotation's area (the segment's), w * h where absent,
        # exactly as detect.eval.loaders.load_coco_gt reads it.
        area = np.array([a["area"] if "area" in a else w * h for a, (w, h) in zip(anns, xywh[:, 2:])],
                        np.float64)
        records.append(Record(
            image_id=image_id,
            height=int(image["height"]),
            width=int(image["width"]),
            boxes=boxes.astype(np.float32),
            classes=np.array([class_index[a["category_id"]] for a in anns], np.int32),
            ignore=np.array([bool(a.get("iscrowd", 0)) for a in anns], bool),
            class_names=class_names,
            image_path=str(path),
            area=area,
        ))
    return records


def coco_class_names(json_path):
    """The class names of a COCO instances JSON (category names in ascending id order).

    Validates the whole file (``validate_coco``) without indexing it, so a
    config's class list costs one parse, not a read of every image entry.
    """
    json_path = Path(json_path)
    data = load_json(json_path)
    validate_coco(data, json_path, collect=True)
    cats = sorted(data["categories"], key=lambda c: c["id"])
    return tuple(c["name"] for c in cats)


def default_image_dir(json_path):
    """The image folder ``read_coco`` uses when none is given (see there)."""
    folder = Path(json_path).parent
    if (folder / IMAGES_DIR).is_dir():
        return folder / IMAGES_DIR
    if folder.name == ANNOTATIONS_DIR and (folder.parent / IMAGES_DIR).is_dir():
        return folder.parent / IMAGES_DIR
    return folder


def records_to_coco(records, class_names=None, image_root=None):
    """A COCO instances dict from records, e.g. to score VOC or YOLO data with COCO metrics.

    Args:
      records: ``Record`` objects sharing one ``class_names``.
      class_names: the class list; None for the records' own (required
        when ``records`` is empty).
      image_root: ``file_name`` is the image path relative to this folder;
        None for the file's base name. Records without a path get
        ``"<image_id>.jpg"``.

    Returns:
      dict with ``images`` (``id`` = the record's ``image_id`` as is, so VOC
      and YOLO stems stay strings, which pycocotools and our evaluator
      accept; ``file_name``, ``width``, ``height``), ``categories`` (ids
      ``1..C`` in class order) and ``annotations`` (ids ``1..M``, ``bbox``
      xywh, ``area`` the record's (COCO's field, else the box area),
      ``iscrowd`` from ``ignore``). Numbers are the shortest decimals that
      round-trip the float32 values (an area that is no float32, such as a
      segment's area read from COCO, is written in full).

    Raises:
      ValueError: records with different class lists, or no class list.
    """
    records = list(records)
    if class_names is None:
        if not records:
            raise ValueError("records_to_coco: no records and no class_names")
        class_names = records[0].class_names
    class_names = tuple(class_names)
    images, annotations = [], []
    for record in records:
        if record.class_names != class_names:
            raise ValueError(f"records_to_coco: record {record.image_id!r} has classes "
                             f"{record.class_names}, expected {class_names}")
        images.append({
            "id": _plain(record.image_id),
            "file_name": _file_name(record, image_root),
            "width": int(record.width),
            "height": int(record.height),
        })
        wh = record.boxes[:, 2:] - record.boxes[:, :2]
        xywh = np.concatenate([record.boxes[:, :2], wh], axis=1).astype(np.float32)
        for box, k, crowd, a in zip(xywh, record.classes, record.ignore, record.area):
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": _plain(record.image_id),
                "category_id": int(k) + 1,
                "bbox": [_short_float(v) for v in box],
                "area": _short_area(a),
                "iscrowd": int(crowd),
            })
    categories = [{"id": k + 1, "name": name, "supercategory": "none"}
                  for k, name in enumerate(class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_coco(records, path, class_names=None, image_root=None):
    """Writes ``records_to_coco(records, ...)`` to ``path`` atomically (folders created); returns the path."""
    path = Path(path)
    write_text_atomic(path, json.dumps(records_to_coco(records, class_names, image_root)))
    return path


# ---- validation ---------------------------------------------------------------


def validate_coco(data, src, collect=False, images=True):
    """Checks every field the reader, the evaluator and pycocotools' index use.

    The one validator of COCO instances JSON: ``read_coco`` (training,
    checking, conversion) and ``detect.eval.loaders.load_coco_gt``
    (evaluation) both call it, so a fault gets the same message everywhere.
    Each message names the first bad entry (``annotations[3] (id 7): ...``).

    Args:
      data: the parsed JSON.
      src: its path, for messages.
      collect: return the broken image entries (bad size, bad bbox, bad
        area) instead of raising at the first; structural problems (missing
        keys, duplicate or unknown ids, a bad ``iscrowd``) still raise.
      images: also check each image's ``file_name``, ``width`` and
        ``height``, which reading the images needs; False for evaluation
        ground truth, which uses only the ids.

    Returns:
      {image id: InputError} of the broken images (empty unless ``collect``).

    Raises:
      InputError: the first fault (with ``collect``, the first structural one).
    """
    broken = {}

    def image_problem(image_id, message):
        error = InputError(src, message)
        if not collect:
            raise error
        broken.setdefault(image_id, error)

    if not isinstance(data, dict):
        raise InputError(src, f"expected a JSON object with 'images', 'annotations' and "
                              f"'categories', got {json_type_name(data)}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise InputError(src, f"missing key {key!r}")
        if not isinstance(data[key], list):
            raise InputError(src, f"{key!r} must be a list, got {json_type_name(data[key])}")

    image_ids = _ids(data["images"], "images", src, str_ok=True)
    try:
        sorted(image_ids)  # pycocotools and our evaluator visit images in sorted id order
    except TypeError:
        raise InputError(src, "images: ids mix numbers and strings; they cannot be sorted") from None
    for i, image in enumerate(data["images"] if images else ()):
        where = f"images[{i}] (id {json_excerpt(image['id'])})"
        name = _get(image, "file_name", src, where)
        if not isinstance(name, str) or not name:
            raise InputError(src, f"{where}: file_name must be a non-empty string")
        for key in ("width", "height"):
            value = _get(image, key, src, where)
            valid = _is_number(value) and _finite(value) and value > 0
            if not valid or value != int(value):
                image_problem(image["id"], f"{where}: {key} must be a positive integer, got {json_excerpt(value)}")

    cat_ids = _ids(data["categories"], "categories", src, str_ok=False)
    names = {}
    for i, cat in enumerate(data["categories"]):
        where = f"categories[{i}] (id {cat['id']})"
        name = _get(cat, "name", src, where)
        if not isinstance(name, str):
            raise InputError(src, f"{where}: name must be a string, got {json_excerpt(name)}")
        if name in names:
            # Outputs are keyed by name, so two classes cannot share one.
            raise InputError(src, f"{where}: name {name!r} is also used by "
                                  f"categories[{names[name]}]")
        names[name] = i

    _ids(data["annotations"], "annotations", src, str_ok=True)
    image_set, cat_set = set(image_ids), set(cat_ids)
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}] (id {json_excerpt(ann['id'])})"
        image_id = _get(ann, "image_id", src, where)
        if not _hashable(image_id) or image_id not in image_set:
            raise InputError(src, f"{where}: image_id {json_excerpt(image_id)} is not in 'images'")
        cat_id = _get(ann, "category_id", src, where)
        if not _hashable(cat_id) or cat_id not in cat_set:
            raise InputError(src, f"{where}: category_id {json_excerpt(cat_id)} is not in 'categories'")
        bbox = _get(ann, "bbox", src, where)
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
            image_problem(image_id, f"{where}: bbox must be a list of 4 numbers, got {json_excerpt(bbox)}")
        elif not all(map(_finite, bbox)):
            image_problem(image_id, f"{where}: bbox is not finite ({bbox})")
        if "area" in ann:
            area = ann["area"]
            if not _is_number(area):
                image_problem(image_id, f"{where}: area must be a number, got {json_excerpt(area)}")
            elif not _finite(area):
                image_problem(image_id, f"{where}: area is not finite ({area})")
            elif area < 0:
                image_problem(image_id, f"{where}: area is negative ({area:g})")
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1) or isinstance(crowd, bool):
            raise InputError(src, f"{where}: iscrowd must be 0 or 1, got {json_excerpt(crowd)}")
    return broken


def _ids(entries, section, src, str_ok):
    """The entries' ids in order; each entry must be an object with a unique id."""
    seen = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InputError(src, f"{section}[{i}]: expected an object, got {json_type_name(entry)}")
        value = _get(entry, "id", src, f"{section}[{i}]")
        if not (_is_int(value) or (str_ok and isinstance(value, str))):
            kind = "an integer or a string" if str_ok else "an integer"
            raise InputError(src, f"{section}[{i}]: id must be {kind}, got {json_excerpt(value)}")
        if value in seen:
            raise InputError(src, f"{section}[{i}]: duplicate id {value!r} "
                                  f"(also {section}[{seen[value]}])")
        seen[value] = i
    return list(seen)


def _get(entry, key, src, where):
    if key not in entry:
        raise InputError(src, f"{where}: missing key {key!r}")
    return entry[key]


def _index(data):
    """A pycocotools ``COCO`` over validated data, without its progress prints."""
    from pycocotools.coco import COCO  # pulls in its C extension only when reading COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value):
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float64
        return False


def _hashable(value):
    return isinstance(value, (int, float, str))


def json_type_name(value):
    """How a JSON value's type reads in a message ("an object", "a list", ...)."""
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__)


def json_excerpt(value, limit=60):
    """A JSON value as the file shows it, cut to ``limit`` characters."""
    text = json.dumps(value) if isinstance(value, (dict, list, str, type(None))) else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---- writing ------------------------------------------------------------------


def _plain(value):
    """A JSON-serialisable id: numpy integers become int."""
    return int(value) if isinstance(value, np.integer) else value


def _short_float(value):
    # The shortest decimal that reads back as the same float32, so 10.1 stays 10.1.
    return float(np.format_float_positional(np.float32(value), unique=True, trim="0"))


def _short_area(value):
    # A float32 value (box areas of whole or 1/2^k pixels) as its short decimal; any other
    # float64 (a segment's area read from COCO) as is, so it reads back bit for bit.
    value = float(value)
    return _short_float(value) if float(np.float32(value)) == value else value


def _file_name(record, image_root):
    if record.image_path is None:
        return f"{record.image_id}.jpg"
    path = Path(record.image_path)
    if image_root is None:
        return path.name
    try:
        return path.relative_to(image_root).as_posix()
    except ValueError:
        raise ValueError(f"records_to_coco: image {path} is not under {image_root}") from None


__all__ = ["coco_class_names", "default_image_dir", "read_coco", "records_to_coco", "validate_coco",
           "write_coco"]
