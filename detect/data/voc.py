"""Pascal VOC reader: the VOCdevkit layout into ``Record`` objects.

Layout::

    root/Annotations/<id>.xml
    root/JPEGImages/<filename>
    root/ImageSets/Main/<split>.txt   (one image id per line)

VOC corners are 1-based and inclusive: a box with ``xmin = 1, xmax = 10``
covers pixels 1..10, ten pixels. We use continuous edges, so it becomes
``x1 = xmin - 1 = 0, x2 = xmax = 10``: the width is the devkit's
``xmax - xmin + 1`` and IoU computed on our boxes equals the devkit's.
"""

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from detect.data.paths import confined_path
from detect.data.records import Record
from detect.errors import InputError, UnknownClassError

# The 20 Pascal VOC classes in the devkit's order (class id = position).
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle",
    "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

ANNOTATIONS_DIR = "Annotations"
IMAGES_DIR = "JPEGImages"
SPLITS_DIR = Path("ImageSets") / "Main"

_CORNER_TAGS = ("xmin", "ymin", "xmax", "ymax")


def is_voc_root(path):
    """True if ``path`` is a folder with an ``Annotations/`` subfolder."""
    return (Path(path) / ANNOTATIONS_DIR).is_dir()


def voc_splits(root):
    """Names of the splits in ``root/ImageSets/Main`` (sorted)."""
    folder = Path(root) / SPLITS_DIR
    return sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []


def read_voc(root, split, class_names=None, skip_unknown=False, allow_outside_root=False, skipped=None):
    """Reads one split of a VOC-layout dataset.

    Args:
      root: dataset folder (holds ``Annotations/``, ``JPEGImages/``,
        ``ImageSets/Main/``).
      split: split name, e.g. ``"trainval"``; ``ImageSets/Main/<split>.txt``
        lists its image ids.
      class_names: the dataset's classes in class-id order; None for
        ``VOC_CLASSES``.
      skip_unknown: drop objects whose class is not in ``class_names``
        instead of raising.
      allow_outside_root: accept a ``<filename>`` that leads outside
        ``root`` (see ``detect.data.paths``).
      skipped: None to raise at the first broken annotation file (missing,
        malformed XML, a missing or non-numeric field); a list to leave such
        images out instead and append their ``InputError`` to it.

    Returns:
      list of ``Record``, in the split file's order. Boxes are ``[N, 4]``
      float32 ``xyxy`` with continuous edges (see the module docstring);
      ``ignore`` is VOC's ``difficult``; height and width come from
      ``<size>``. Degenerate boxes are kept as annotated.

    Raises:
      InputError: naming the file and the entry, for a missing root or
        split file, a broken annotation file (unless ``skipped`` collects
        them), or an unknown class (listing the known ones), which is a
        wrong class list rather than a broken file.
      OutsideRootError: a ``<filename>`` outside the root.
    """
    root = Path(root)
    class_names = tuple(VOC_CLASSES if class_names is None else class_names)
    class_index = _class_index(class_names, root)
    records = []
    for image_id in read_split(root, split):
        xml_path = root / ANNOTATIONS_DIR / f"{image_id}.xml"
        try:
            ann = parse_voc_annotation(xml_path)
        except InputError as error:
            if skipped is None:
                raise
            skipped.append(error)
            continue
        boxes, classes, ignore = [], [], []
        for obj in ann["objects"]:
            k = class_index.get(obj["name"])
            if k is None:
                if skip_unknown:
                    continue
                raise UnknownClassError(xml_path, f"{obj['where']}: unknown class {obj['name']!r}; "
                                           f"known classes: {', '.join(class_names)}")
            boxes.append(voc_box(obj["corners"]))
            classes.append(k)
            ignore.append(obj["difficult"])
        records.append(Record(
            image_id=image_id,
            height=ann["height"],
            width=ann["width"],
            boxes=np.array(boxes, np.float32).reshape(-1, 4),
            classes=np.array(classes, np.int32),
            ignore=np.array(ignore, bool),
            class_names=class_names,
            image_path=str(image_path(root, ann["filename"], xml_path, allow_outside_root)),
        ))
    return records


# VOC's 1-based inclusive corners minus this are our continuous edges (see the module docstring).
_CORNER_OFFSET = np.array([1.0, 1.0, 0.0, 0.0])


def voc_box(corners):
    """Our continuous-edge box from VOC's 1-based inclusive corners.

    Args:
      corners: ``(xmin, ymin, xmax, ymax)`` as a VOC file has them, or an
        [N, 4] array of them.

    Returns:
      ``(x1, y1, x2, y2)`` = ``(xmin - 1, ymin - 1, xmax, ymax)`` (a tuple of
      floats for one box, an [N, 4] float64 array for many).
    """
    array = np.asarray(corners, np.float64) - _CORNER_OFFSET
    return tuple(array.tolist()) if array.ndim == 1 else array


def voc_corners(boxes):
    """The inverse of ``voc_box``: VOC corners from our continuous-edge boxes.

    Args:
      boxes: [N, 4] (or [4]) ``xyxy`` continuous edges.

    Returns:
      [N, 4] (or [4]) float64 ``(xmin, ymin, xmax, ymax)`` = ``(x1 + 1, y1 + 1, x2, y2)``.
    """
    return np.asarray(boxes, np.float64) + _CORNER_OFFSET


def default_voc_classes(root=None, found=None):
    """The class list of a VOC dataset whose config or caller gives none.

    The one rule every path uses (training, evaluation, the checker,
    conversion, anchors): the 20 ``VOC_CLASSES`` in devkit order when every
    name the annotations use is one of them, else the sorted names found.
    All of ``Annotations/`` is read, so class ids do not depend on the split;
    a broken file is passed over here (the readers and the checker report it).

    Args:
      root: dataset folder; its ``Annotations/*.xml`` are read.
      found: the names the annotations use, when the caller has them
        already (then ``root`` is not read).

    Returns:
      list of str.
    """
    if found is None:
        _check_root(Path(root))
        found = set()
        for path in sorted((Path(root) / ANNOTATIONS_DIR).glob("*.xml")):
            try:
                found.update(obj["name"] for obj in parse_voc_annotation(path)["objects"])
            except InputError:
                continue
    found = sorted(set(found))
    return list(VOC_CLASSES) if set(found) <= set(VOC_CLASSES) else found


def image_path(root, filename, xml_path, allow_outside_root=False):
    """``root/JPEGImages/<filename>``, refused if it leaves ``root`` (``detect.data.paths``)."""
    return confined_path(root, Path(IMAGES_DIR) / filename, xml_path, "<filename>", allow_outside_root)


def voc_class_names_in(root, split=None):
    """Sorted class names that a VOC dataset's annotations use.

    Args:
      root: dataset folder.
      split: only the images of this split; None for every file in
        ``Annotations/``.

    Returns:
      sorted list of str.
    """
    root = Path(root)
    if split is None:
        _check_root(root)
        paths = sorted((root / ANNOTATIONS_DIR).glob("*.xml"))
    else:
        paths = [root / ANNOTATIONS_DIR / f"{i}.xml" for i in read_split(root, split)]
    names = set()
    for path in paths:
        names.update(obj["name"] for obj in parse_voc_annotation(path)["objects"])
    return sorted(names)


def read_split(root, split):
    """Image ids listed in ``root/ImageSets/Main/<split>.txt``, in file order.

    Only the first word of a line counts, so the per-class files
    (``<class>_<split>.txt``, "id  1") work too.
    """
    root = Path(root)
    _check_root(root)
    path = split_file(root, split)
    ids = []
    for line_no, image_id, earlier in split_entries(path):
        if earlier is not None:
            # A repeated id would count its boxes twice in evaluation.
            raise InputError(path, f"line {line_no}: image id {image_id!r} already listed on line {earlier}")
        ids.append(image_id)
    return ids


def split_file(root, split):
    """``root/ImageSets/Main/<split>.txt``, which must exist.

    Raises:
      InputError: no such file (the message lists the splits there are).
    """
    path = Path(root) / SPLITS_DIR / f"{split}.txt"
    if not path.is_file():
        available = ", ".join(voc_splits(root)) or "none"
        raise InputError(path, f"no such split file; available splits: {available}")
    return path


def split_entries(path):
    """The entries of a split file, with repeats marked.

    Args:
      path: ``ImageSets/Main/<split>.txt``.

    Returns:
      list of (line number, image id, line of an earlier listing of the
      same id or None); blank lines are skipped.
    """
    entries, seen = [], {}
    for line_no, line in enumerate(Path(path).read_text().splitlines(), start=1):
        words = line.split()
        if words:
            entries.append((line_no, words[0], seen.get(words[0])))
            seen.setdefault(words[0], line_no)
    return entries


def _check_root(root):
    if not is_voc_root(root):
        raise InputError(root, f"not a VOC dataset root: no {ANNOTATIONS_DIR}/ folder")


def _class_index(class_names, source):
    index = {}
    for k, name in enumerate(class_names):
        if name in index:
            raise InputError(source, f"class name {name!r} is listed twice in the class list")
        index[name] = k
    return index


def parse_voc_annotation(path):
    """Parses and validates one VOC annotation file: the one VOC parser.

    ``read_voc``, the class-list helpers and the dataset checker
    (``detect.data.checker``) all read annotations through it, so they
    accept and refuse the same files.

    Args:
      path: ``Annotations/<id>.xml`` (a ``Path``).

    Returns:
      dict: ``filename`` (``<filename>``; ``<id>.jpg`` when missing, ``.jpg``
      added when it has no suffix), ``height`` and ``width`` (int, from
      ``<size>``), ``objects``: list of dicts with ``name``, ``difficult``
      (bool; a missing or empty ``<difficult>`` is False), ``corners``
      (``(xmin, ymin, xmax, ymax)`` floats as written: pass them to
      ``voc_box``) and ``where`` (``"object[i] (name)"``, for messages).

    Raises:
      InputError: naming the file (and object) for a missing file,
        malformed XML, or a missing or non-numeric field.
    """
    if not path.is_file():
        raise InputError(path, "annotation file not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        line, column = error.position
        raise InputError(path, f"malformed XML at line {line}, column {column}") from None
    width = _number(root, "size/width", path, "")
    height = _number(root, "size/height", path, "")
    filename_node = root.find("filename")
    filename = (filename_node.text or "").strip() if filename_node is not None else ""
    if not filename:
        filename = f"{path.stem}.jpg"
    elif not Path(filename).suffix:
        filename += ".jpg"
    objects = []
    for i, node in enumerate(root.findall("object")):
        where = f"object[{i}]"
        name = _text(node, "name", path, where)
        where = f"object[{i}] ({name})"
        difficult_node = node.find("difficult")
        # Many VOC-style exports omit <difficult>; the devkit's meaning is 0 then.
        difficult = 0.0
        if difficult_node is not None and (difficult_node.text or "").strip():
            difficult = _number(node, "difficult", path, where)
        corners = tuple(_number(node, f"bndbox/{tag}", path, where) for tag in _CORNER_TAGS)
        objects.append({"name": name, "difficult": difficult != 0, "corners": corners,
                        "where": where})
    return {"filename": filename, "height": int(height), "width": int(width), "objects": objects}


def _text(node, tag, path, where):
    child = node.find(tag)
    text = (child.text or "").strip() if child is not None else ""
    if not text:
        raise InputError(path, f"{where + ': ' if where else ''}missing <{tag}>")
    return text


def _number(node, tag, path, where):
    text = _text(node, tag, path, where)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(path, f"{where + ': ' if where else ''}<{tag}> is {text!r}, not a number")
    return value
