"""Dataset checker: counts, box sizes and every problem of a detection dataset.

``check_dataset(source)`` reads a VOC root, a COCO JSON, a YOLO root or a
config YAML (any ``data.format``, read by the training run's rules: see
``check_config``) and returns a ``DatasetReport``: images and boxes per
split and class, a box-size histogram, and a list of ``Problem`` objects. It does not
stop at the first problem: for VOC each annotation file is parsed on its own
and its ``InputError`` becomes a reported problem. Only unusable input (a
path that does not exist, a split that is not there) raises ``InputError``.

Boxes are checked in our convention (``xyxy``, continuous edges, see
``detect.data.records``): ``x2 <= x1`` is degenerate; a box 1 pixel wide or
high is valid but reported as tiny, because annotation tools write such boxes
by a stray click (BCCD's README calls its two "zero-size": VOC
``xmin == xmax`` is one pixel wide in the devkit convention).

Importing this module does not import TensorFlow or OpenCV; checking a
config (whose loader builds on the model's config) or TFRecords does.
"""

import dataclasses
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from detect.data import voc
from detect.data.imagesize import SUFFIX_FORMATS, image_format, lacks_end_marker
from detect.data.paths import OutsideRootError, confined_path
from detect.data.records import Record
from detect.errors import InputError

# Problem kinds, in the order reports list them.
OUTSIDE_ROOT = "outside_root"
MISSING_IMAGE = "missing_image"
CORRUPT_IMAGE = "corrupt_image"
TRUNCATED_IMAGE = "truncated_image"
SIZE_MISMATCH = "size_mismatch"
MALFORMED_ANNOTATION = "malformed_annotation"
MISSING_ANNOTATION = "missing_annotation"
UNKNOWN_CLASS = "unknown_class"
DEGENERATE_BOX = "degenerate_box"
TINY_BOX = "tiny_box"
OUT_OF_BOUNDS_BOX = "out_of_bounds_box"
DUPLICATE_ID = "duplicate_id"
SPLIT_OVERLAP = "split_overlap"

TINY_BOX_PX = 1.0

PROBLEM_TITLES = {
    OUTSIDE_ROOT: "path outside the dataset root (refused by the readers)",
    MISSING_IMAGE: "missing image",
    CORRUPT_IMAGE: "corrupt image",
    TRUNCATED_IMAGE: "truncated image (usable: training decodes what is there and counts it as repaired)",
    SIZE_MISMATCH: "image size differs from the annotation",
    MALFORMED_ANNOTATION: "malformed annotation",
    MISSING_ANNOTATION: "image listed in a split without an annotation",
    UNKNOWN_CLASS: "unknown class",
    DEGENERATE_BOX: "degenerate box (x2 <= x1 or y2 <= y1)",
    TINY_BOX: f"tiny box (<= {TINY_BOX_PX:g} px)",
    OUT_OF_BOUNDS_BOX: "box outside the image",
    DUPLICATE_ID: "duplicate image id",
    SPLIT_OVERLAP: "image in two splits that should be disjoint",
}

# Upper edges of the box-size buckets, on sqrt(area) in pixels.
SIZE_BUCKET_EDGES = (16, 32, 64, 128, 256)
SIZE_BUCKETS = tuple(
    [f"<{SIZE_BUCKET_EDGES[0]}"]
    + [f"{lo}-{hi}" for lo, hi in zip(SIZE_BUCKET_EDGES[:-1], SIZE_BUCKET_EDGES[1:])]
    + [f">={SIZE_BUCKET_EDGES[-1]}"])

ALL_SPLITS = "all"  # split name when a VOC root has no ImageSets/Main files
UNION = "union"     # every image once, whatever splits list it


@dataclass(frozen=True)
class Problem:
    """One problem found in a dataset.

    Attributes:
      kind: one of the ``PROBLEM_TITLES`` keys, e.g. ``TINY_BOX``.
      source: the file the problem is in (annotation, image or split file).
      message: what is wrong and where in the file.
    """

    kind: str
    source: str
    message: str


@dataclass
class SplitSummary:
    """Images and boxes of one split (or of the union of splits).

    Attributes:
      images: number of distinct image ids listed.
      boxes: number of boxes of known classes on those images.
      boxes_per_class: {class name: number of boxes}, every class present.
    """

    images: int
    boxes: int
    boxes_per_class: Dict[str, int]


@dataclass
class DatasetReport:
    """What ``check_dataset`` found.

    Attributes:
      dataset: the path checked.
      format: "voc", "coco", "yolo", "tfrecord" or "shapes".
      class_names: classes in class-id order.
      classes_from: where the class list came from, in words.
      splits: {split name: SplitSummary}, in name order.
      union: SplitSummary over every image once.
      size_histogram: {class name: [count per SIZE_BUCKETS]} over the
        union's boxes by sqrt(area) in pixels (degenerate boxes count as 0).
      image_sizes: Counter {(width, height): images} of the decoded images.
      problems: every problem found, ordered by kind.
      notes: remarks that are not problems (what was not checked, ...).
      records: the union's ``Record`` objects (unknown-class boxes left
        out), for drawing; not part of the JSON.
    """

    dataset: str
    format: str
    class_names: Tuple[str, ...]
    classes_from: str
    splits: Dict[str, SplitSummary]
    union: SplitSummary
    size_histogram: Dict[str, List[int]]
    image_sizes: Counter
    problems: List[Problem]
    notes: List[str] = field(default_factory=list)
    records: List[Record] = field(default_factory=list, repr=False)

    @property
    def ok(self):
        """True when no problem was found."""
        return not self.problems

    def problems_by_kind(self):
        """{kind: [Problem, ...]} for the kinds that occur, in report order."""
        grouped = {}
        for problem in self.problems:
            grouped.setdefault(problem.kind, []).append(problem)
        return grouped


# ---- entry points -----------------------------------------------------------


def check_dataset(source, splits=None, class_names=None, image_dir=None, decode_images=True,
                  allow_outside_root=False, overrides=()):
    """Checks a dataset of any supported kind, chosen by what ``source`` is.

    Args:
      source: a VOC root (folder with ``Annotations/``), a COCO instances
        JSON, a YOLO root (folder with ``images/`` and ``labels/``) or a
        config YAML with a ``data:`` section.
      splits: split names to check; None for every split found (a config's
        own splits). Ignored for COCO (one JSON is one split).
      class_names: the dataset's classes in class-id order; None to take
        them from the config, the format's own list, or (VOC)
        ``voc.default_voc_classes``, which makes unknown classes impossible
        to detect.
      image_dir: COCO image folder.
      decode_images: decode every image (slow on large datasets); False
        only checks that the files exist.
      allow_outside_root: accept image paths that lead outside the dataset
        root instead of reporting them (``detect.data.paths``).
      overrides: for a config, ``key=value`` overrides (``--set``).

    Returns:
      ``DatasetReport``.

    Raises:
      InputError: unusable input (no such path, not a dataset, no such split).
    """
    path = Path(source)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    kwargs = dict(class_names=class_names, decode_images=decode_images,
                  allow_outside_root=allow_outside_root)
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return check_config(path, splits=splits, overrides=overrides, **kwargs)
    if path.is_file() and path.suffix.lower() == ".json":
        return check_coco(path, image_dir=image_dir, **kwargs)
    if path.is_dir() and voc.is_voc_root(path):
        return check_voc(path, splits=splits, **kwargs)
    if path.is_dir() and (path / "images").is_dir() and (path / "labels").is_dir():
        return check_yolo(path, splits=splits, **kwargs)
    raise InputError(path, "not a dataset: expected a VOC root (with Annotations/), a COCO JSON, "
                           "a YOLO root (with images/ and labels/) or a config YAML")


def check_voc(root, splits=None, class_names=None, decode_images=True, allow_outside_root=False):
    """Checks a VOC-layout dataset, every annotation file on its own.

    Args:
      root: dataset folder (``Annotations/``, ``JPEGImages/``,
        ``ImageSets/Main/``).
      splits: split names; None for every ``ImageSets/Main/*.txt`` (or every
        annotation file, as split ``"all"``, when there are none).
      class_names: classes in class-id order; None for the sorted names the
        annotations use.
      decode_images, allow_outside_root: see ``check_dataset``.

    Returns:
      ``DatasetReport``.

    Raises:
      InputError: ``root`` is not a VOC root, or a requested split file is
        missing.
    """
    root = Path(root)
    if not voc.is_voc_root(root):
        raise InputError(root, f"not a VOC dataset root: no {voc.ANNOTATIONS_DIR}/ folder")
    problems, notes = [], []
    annotations = root / voc.ANNOTATIONS_DIR
    if splits is None:
        splits = voc.voc_splits(root)
    else:
        for split in splits:
            if not (root / voc.SPLITS_DIR / f"{split}.txt").is_file():
                available = ", ".join(voc.voc_splits(root)) or "none"
                raise InputError(root / voc.SPLITS_DIR / f"{split}.txt",
                                 f"no such split file; available splits: {available}")
    if splits:
        split_ids = {split: _read_split_file(root / voc.SPLITS_DIR / f"{split}.txt", problems)
                     for split in splits}
    else:
        split_ids = {ALL_SPLITS: sorted(p.stem for p in annotations.glob("*.xml"))}
        notes.append(f"no split files in {voc.SPLITS_DIR}; checked every annotation file")

    # Each image once, whatever splits list it, so its problems are reported once.
    parsed = {}
    for split, ids in split_ids.items():
        split_file = root / voc.SPLITS_DIR / f"{split}.txt"
        for line_no, image_id in ids:
            if image_id in parsed:
                continue
            xml_path = annotations / f"{image_id}.xml"
            if not xml_path.is_file():
                parsed[image_id] = None
                problems.append(Problem(MISSING_ANNOTATION, str(split_file),
                                        f"line {line_no}: image id {image_id!r} has no "
                                        f"annotation file {xml_path}"))
                continue
            try:
                # One file at a time, so a bad file is reported instead of ending the check.
                parsed[image_id] = voc._parse_annotation(xml_path)
            except InputError as error:
                parsed[image_id] = None
                problems.append(Problem(MALFORMED_ANNOTATION, error.source, error.message))

    if class_names is None:
        # The readers' rule (voc.default_voc_classes) over every annotation file, as training sees it.
        found = {obj["name"] for ann in parsed.values() if ann for obj in ann["objects"]}
        for xml_path in annotations.glob("*.xml"):
            if xml_path.stem not in parsed:
                try:
                    found.update(obj["name"] for obj in voc._parse_annotation(xml_path)["objects"])
                except InputError:
                    pass  # not in a checked split: not this check's problem
        class_names = voc.default_voc_classes(found=found)
        classes_from = "the annotations (the 20 VOC classes if they use only those)"
        notes.append("classes are the names the annotations use; give the class list "
                     "(--classes or a config) to find unknown classes")
    else:
        classes_from = "given"
    class_names = tuple(class_names)
    class_index = {name: k for k, name in enumerate(class_names)}

    records = {}
    for image_id, ann in sorted(parsed.items()):
        if ann is None:
            continue
        xml_path = annotations / f"{image_id}.xml"
        boxes, classes, ignore, where = [], [], [], []
        for obj in ann["objects"]:
            k = class_index.get(obj["name"])
            if k is None:
                problems.append(Problem(UNKNOWN_CLASS, str(xml_path),
                                        f"{obj['where']}: unknown class {obj['name']!r}; "
                                        f"known classes: {', '.join(class_names)}"))
                continue
            boxes.append(voc.voc_box(obj["corners"]))
            classes.append(k)
            ignore.append(obj["difficult"])
            where.append(obj["where"])
        image_path = _confined(problems, voc.image_path, root, ann["filename"], xml_path, allow_outside_root)
        record = Record(image_id=image_id, height=ann["height"], width=ann["width"], boxes=boxes,
                        classes=classes, ignore=ignore, class_names=class_names, image_path=image_path)
        records[image_id] = (record, str(xml_path), where)

    _check_split_overlap(split_ids, root / voc.SPLITS_DIR, problems)
    in_splits = {image_id for ids in split_ids.values() for _, image_id in ids}
    orphans = sum(1 for p in annotations.glob("*.xml") if p.stem not in in_splits)
    if orphans:
        notes.append(f"{orphans} annotation file(s) are in none of the checked splits")
    split_keys = {split: [image_id for _, image_id in ids] for split, ids in split_ids.items()}
    return _finish(root, "voc", class_names, classes_from, split_keys, records, problems, notes,
                   decode_images)


def check_coco(json_path, image_dir=None, class_names=None, decode_images=True, allow_outside_root=False):
    """Checks a COCO instances JSON with ``detect.data.coco.read_coco``.

    Args:
      json_path: the instances JSON.
      image_dir: image folder; None for the reader's default.
      class_names: None to take the JSON's categories; else they must be
        these (``detect.data.formats.check_class_names``).
      decode_images, allow_outside_root: see ``check_dataset``.

    Returns:
      ``DatasetReport`` with one split named after the JSON file's stem.
    """
    json_path = Path(json_path)
    return check_coco_splits({json_path.stem: json_path}, image_dir=image_dir, class_names=class_names,
                             decode_images=decode_images, allow_outside_root=allow_outside_root)


def check_coco_splits(sources, image_dir=None, class_names=None, decode_images=True, allow_outside_root=False):
    """Checks COCO instances JSONs, one per split (a config's train / val / test).

    Each image entry with a bad size, ``bbox`` or ``area`` is one
    ``MALFORMED_ANNOTATION`` problem and counts as an image without boxes,
    as the training reader skips it; a structural fault (missing keys,
    unknown ids) or a ``file_name`` outside the image folder ends that
    file's check, with a note.

    Args:
      sources: {split name: JSON path}; a JSON named by two splits is read
        once and its images count once in the union.
      image_dir: the folder ``file_name`` is relative to (a config's
        ``data.root``); None for ``read_coco``'s default.
      class_names, decode_images, allow_outside_root: see ``check_coco``.

    Returns:
      ``DatasetReport``.

    Raises:
      InputError: categories other than ``class_names``, or JSONs whose
        categories differ from each other.
    """
    from detect.data.coco import read_coco  # Lazily: only COCO datasets need it (and pycocotools).
    from detect.data.formats import check_class_names

    problems, notes, records, split_keys, read = [], [], {}, {}, {}
    for split, json_path in sources.items():
        json_path = Path(json_path)
        if json_path not in read:
            skipped, keys = [], []
            try:
                found = read_coco(json_path, image_dir=image_dir, allow_outside_root=allow_outside_root,
                                  skipped=skipped)
            except InputError as error:
                kind = OUTSIDE_ROOT if isinstance(error, OutsideRootError) else MALFORMED_ANNOTATION
                problems.append(Problem(kind, error.source, error.message))
                notes.append(f"{json_path}: the COCO reader stops at a problem of the file as a whole "
                             f"(or a path outside the image folder); fix it and check again")
                found = []
            if found:
                if class_names is None:
                    class_names = found[0].class_names
                check_class_names(found[0].class_names, class_names, json_path)
            for record in found:
                key = (str(json_path), record.image_id)
                records[key] = (record, str(json_path), None)
                keys.append(key)
            for i, error in enumerate(skipped):
                problems.append(Problem(MALFORMED_ANNOTATION, error.source, error.message))
                keys.append((str(json_path), "<broken>", i))  # an image without a record
            read[json_path] = keys
        split_keys[split] = read[json_path]
    source = ", ".join(dict.fromkeys(map(str, sources.values())))
    return _finish(source, "coco", tuple(class_names or ()), "the JSON's categories", split_keys, records,
                   problems, notes, decode_images)


def check_tfrecord(sources, class_names=None, decode_images=True):
    """Checks TFRecord shards (``detect.data.tfrecord``), one file pattern per split.

    The records carry their image bytes, which are decoded and checked as
    files are; boxes are checked as for every format. A file that cannot be
    read is a ``MALFORMED_ANNOTATION`` problem and ends that file's check.

    Args:
      sources: {split name: folder, file or glob of shards}.
      class_names: None to take the class names the examples store; else
        they must be these.
      decode_images: see ``check_dataset``.

    Returns:
      ``DatasetReport``; images are keyed by their stored id.

    Raises:
      InputError: a pattern that matches no file, or class names other
        than ``class_names``.
    """
    from detect.data.formats import check_class_names
    from detect.data.tfrecord import read_tfrecords, tfrecord_files  # TensorFlow

    problems, notes, records, split_keys = [], [], {}, {}
    for split, pattern in sources.items():
        keys = split_keys[split] = []
        seen = set()
        for path in tfrecord_files(pattern):
            try:
                found = read_tfrecords(path)
            except InputError as error:
                problems.append(Problem(MALFORMED_ANNOTATION, error.source, error.message))
                continue
            for record in found:
                if class_names is None:
                    class_names = record.class_names
                check_class_names(record.class_names, class_names, path)
                if record.image_id in seen:
                    problems.append(Problem(DUPLICATE_ID, path, f"image id {record.image_id!r} is "
                                                                f"stored twice in split {split!r}"))
                    continue
                seen.add(record.image_id)
                keys.append(record.image_id)
                records.setdefault(record.image_id, (record, path, None))
    source = ", ".join(dict.fromkeys(map(str, sources.values())))
    return _finish(source, "tfrecord", tuple(class_names or ()), "the examples' class names", split_keys,
                   records, problems, notes, decode_images)


def check_yolo(root, splits=None, class_names=None, decode_images=True, allow_outside_root=False):
    """Checks a YOLO-txt dataset, every label file on its own.

    Args:
      root: dataset folder (``images/<split>/``, ``labels/<split>/``, class
        names in ``data.yaml`` or ``names.txt``).
      splits: split folder names; None for every folder under ``images/``
        (or ``images/`` itself, as split ``"all"``, when it has none).
      class_names: classes in class-id order; None for the dataset's own.
      decode_images, allow_outside_root: see ``check_dataset``.

    Returns:
      ``DatasetReport``.

    Raises:
      InputError: not a YOLO root, a requested split is missing, or no
        class names.
    """
    from detect.data import yolo_txt as yolo  # Lazily: only YOLO datasets need it.
    from detect.data.imagesize import image_size

    root = Path(root)
    if not yolo.is_yolo_root(root):
        raise InputError(root, f"not a YOLO dataset root: needs {yolo.IMAGES_DIR}/ and "
                               f"{yolo.LABELS_DIR}/ folders")
    available = yolo.yolo_splits(root)
    for split in splits or ():
        if split not in available:
            raise InputError(root / yolo.IMAGES_DIR / split,
                             f"no such split folder; available splits: {', '.join(available) or 'none'}")
    splits = splits or available or [None]
    classes_from = "the dataset's names file" if class_names is None else "given"
    class_names = tuple(yolo.yolo_class_names(root) if class_names is None else class_names)
    problems, notes, records, split_keys = [], [], {}, {}
    unlabelled = 0
    for split in splits:
        image_dir = root / yolo.IMAGES_DIR / (split or "")
        label_dir = root / yolo.LABELS_DIR / (split or "")
        # Split folders may nest; a root without split folders holds only images.
        files = image_dir.rglob("*") if split is not None else image_dir.iterdir()
        image_paths = {}
        for path in sorted(p for p in files if p.suffix.lower() in yolo.IMAGE_SUFFIXES and p.is_file()):
            image_id = path.relative_to(image_dir).with_suffix("").as_posix()
            if image_id in image_paths:
                problems.append(Problem(DUPLICATE_ID, str(path),
                                        f"image id {image_id!r} is also used by "
                                        f"{image_paths[image_id].name}; both would share one label file"))
                continue
            image_paths[image_id] = path
        labels = label_dir.rglob("*.txt") if split is not None else label_dir.glob("*.txt")
        for label_path in sorted(labels):
            if label_path.relative_to(label_dir).with_suffix("").as_posix() not in image_paths:
                problems.append(Problem(MISSING_IMAGE, str(label_path),
                                        f"label file without an image in {image_dir}"))
        keys = split_keys[ALL_SPLITS if split is None else split] = []
        for image_id, path in image_paths.items():
            keys.append(str(path))
            if str(path) in records:
                continue
            label_path = label_dir / f"{image_id}.txt"
            confined = [_confined(problems, confined_path, root, p.relative_to(root), p.parent,
                                  f"image {image_id!r}", allow_outside_root) for p in (path, label_path)]
            if None in confined:
                continue
            unlabelled += not label_path.is_file()
            try:
                # Any class id passes here, so an unknown one is reported as such below.
                classes, cxcywh = yolo.parse_yolo_labels(label_path, yolo.ANY_CLASS)
            except InputError as error:
                problems.append(Problem(MALFORMED_ANNOTATION, error.source, error.message))
                classes, cxcywh = np.zeros(0, np.int32), np.zeros((0, 4))
            try:
                height, width = image_size(path)
            except InputError as error:
                problems.append(Problem(CORRUPT_IMAGE, error.source, error.message))
                continue
            known = classes < len(class_names)
            for j in np.flatnonzero(~known):
                problems.append(Problem(UNKNOWN_CLASS, str(label_path),
                                        f"box[{j}]: class id {classes[j]} is not in "
                                        f"0..{len(class_names) - 1}; known classes: "
                                        f"{', '.join(class_names)}"))
            # As read_yolo: normalised centre and size to xyxy pixels.
            scale = np.array([width, height, width, height], np.float64)
            boxes = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2,
                                    cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1) * scale
            where = [f"box[{j}] ({class_names[classes[j]]})" for j in np.flatnonzero(known)]
            record = Record(image_id=image_id, height=height, width=width, boxes=boxes[known],
                            classes=classes[known], ignore=np.zeros(int(known.sum()), bool),
                            class_names=class_names, image_path=str(path))
            records[str(path)] = (record, str(label_path), where)
    if unlabelled:
        notes.append(f"{unlabelled} image(s) have no label file (kept as images without boxes)")
    return _finish(root, "yolo", class_names, classes_from, split_keys, records, problems, notes,
                   decode_images)


def check_config(path, splits=None, class_names=None, decode_images=True, allow_outside_root=False,
                 overrides=()):
    """Checks the dataset of an experiment config, exactly as training reads it.

    The config is loaded with ``detect.train.experiment.load_experiment``
    (every key and value validated, ``--set`` overrides applied), and its
    format, root, splits and class list come from
    ``detect.data.formats``, the dispatcher training and evaluation use. A
    ``shapes`` dataset is generated on first use, as training does.

    Args:
      path: the YAML file.
      splits: overrides the config's train / val / test splits.
      class_names: overrides the config's class list.
      decode_images: see ``check_dataset``.
      allow_outside_root: also accept paths outside the root (the config's
        ``data.allow_outside_root`` counts too).
      overrides: ``key=value`` strings, as ``tools/train.py --set``.

    Returns:
      ``DatasetReport``, with a first note naming the config.

    Raises:
      InputError: a config that does not load, or data that cannot be read
        at all (see ``check_data_config``).
    """
    # Lazily, and upwards: the config's types live with training (and build on the model's).
    from detect.train.experiment import load_experiment

    data_cfg = load_experiment(path, overrides).data
    if allow_outside_root and not data_cfg.allow_outside_root:
        data_cfg = dataclasses.replace(data_cfg, allow_outside_root=True)
    report = check_data_config(data_cfg, splits=splits, class_names=class_names, decode_images=decode_images)
    report.notes.insert(0, f"dataset from the 'data:' section of {path}")
    return report


def check_data_config(data_cfg, splits=None, class_names=None, decode_images=True):
    """Checks the dataset a config's ``data`` section names (see ``check_config``).

    Args:
      data_cfg: a ``DataConfig`` (or anything with its attributes).
      splits: split names (for COCO JSONs, for TFRecords patterns, as the
        config writes them); None for the config's own.
      class_names: None for ``detect.data.formats.config_class_names``.
      decode_images: see ``check_dataset``.

    Returns:
      ``DatasetReport`` whose split names are the config's split values,
      as ``detect.train.data.load_records`` takes them.
    """
    from detect.data import formats

    formats.prepare_dataset(data_cfg)
    if class_names is None:
        class_names, classes_from = formats.config_class_names(data_cfg)
    else:
        classes_from = "given"
    splits = list(splits) if splits else formats.config_splits(data_cfg)
    root = formats.dataset_root(data_cfg)
    kwargs = dict(class_names=class_names, decode_images=decode_images)
    outside = data_cfg.allow_outside_root
    if data_cfg.format in ("voc", "shapes"):
        report = check_voc(root, splits=splits, allow_outside_root=outside, **kwargs)
    elif data_cfg.format == "yolo":
        report = check_yolo(root, splits=splits, allow_outside_root=outside, **kwargs)
    elif data_cfg.format == "coco":
        sources = {split: formats.split_source(data_cfg, split) for split in splits}
        report = check_coco_splits(sources, image_dir=root, allow_outside_root=outside, **kwargs)
    else:
        sources = {split: formats.split_source(data_cfg, split) for split in splits}
        report = check_tfrecord(sources, **kwargs)
    report.format = data_cfg.format
    report.classes_from = classes_from
    return report


# ---- shared checks ----------------------------------------------------------


def _confined(problems, resolve, *args):
    """``str(resolve(*args))``, or None with an ``OUTSIDE_ROOT`` problem if it leaves the root."""
    try:
        return str(resolve(*args))
    except OutsideRootError as error:
        problems.append(Problem(OUTSIDE_ROOT, error.source, error.message))
        return None


def _finish(source, fmt, class_names, classes_from, split_keys, records, problems, notes,
            decode_images):
    """Image and box checks over ``records``, counts, and the report.

    Args:
      split_keys: {split: [record key, ...]} (keys of ``records``; a key
        without a record, from an unreadable annotation, counts as an image
        with no boxes).
      records: {key: (Record, annotation source, [where per box] or None)}.
    """
    items = list(records.values())
    sizes = _check_images([record for record, _, _ in items], decode_images, problems, notes)
    for (record, ann_source, where), size in zip(items, sizes):
        _check_boxes(record, ann_source, where, size, problems)

    def summary(keys):
        counts = np.zeros(len(class_names), np.int64)
        for key in keys:
            if key in records:
                counts += np.bincount(records[key][0].classes, minlength=len(class_names))
        return SplitSummary(images=len(keys), boxes=int(counts.sum()),
                            boxes_per_class={n: int(c) for n, c in zip(class_names, counts)})

    split_summaries = {split: summary(set(keys)) for split, keys in sorted(split_keys.items())}
    union_keys = {key for keys in split_keys.values() for key in keys}
    order = {kind: i for i, kind in enumerate(PROBLEM_TITLES)}
    problems.sort(key=lambda p: order[p.kind])  # Stable: within a kind, discovery order.
    return DatasetReport(
        dataset=str(source),
        format=fmt,
        class_names=tuple(class_names),
        classes_from=classes_from,
        splits=split_summaries,
        union=summary(union_keys),
        size_histogram=_size_histogram([record for record, _, _ in items], class_names),
        image_sizes=Counter(size for size in sizes if size is not None),
        problems=problems,
        notes=notes,
        records=[record for record, _, _ in items],
    )


def _read_split_file(path, problems):
    """[(line number, image id)] of a split file; repeated ids become problems."""
    ids = []
    for line_no, image_id, earlier in voc.split_entries(path):
        if earlier is not None:
            problems.append(Problem(DUPLICATE_ID, str(path),
                                    f"line {line_no}: image id {image_id!r} already listed on line {earlier}"))
            continue
        ids.append((line_no, image_id))
    return ids


def _check_split_overlap(split_ids, folder, problems):
    """Reports splits that share images without one containing the other.

    ``trainval`` holding ``train`` is by design; ``train`` and ``val`` sharing
    a few images is a leak.
    """
    sets = {split: {image_id for _, image_id in ids} for split, ids in split_ids.items()}
    names = sorted(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = sets[a] & sets[b]
            if common and not (sets[a] <= sets[b] or sets[b] <= sets[a]):
                examples = ", ".join(repr(x) for x in sorted(common)[:3])
                problems.append(Problem(SPLIT_OVERLAP, str(folder / f"{b}.txt"),
                                        f"{len(common)} image id(s) also in {a}.txt, e.g. {examples}"))


def _check_images(records, decode_images, problems, notes):
    """Checks every record's image; returns [(width, height) or None] per record."""
    def inspect(record):
        """(size or None, Problem or None, content format if the file name says another)."""
        if record.image_bytes is not None:
            return (_decoded_size(record.image_bytes, str(record.image_id), record) if decode_images
                    else (None, None)) + (None,)
        if record.image_path is None:
            return None, None, None
        path = Path(record.image_path)
        if not path.is_file():
            return None, Problem(MISSING_IMAGE, str(path), f"image of {record.image_id!r} not found"), None
        if not decode_images:
            return None, None, None
        try:
            data = path.read_bytes()
        except OSError as error:
            return None, Problem(CORRUPT_IMAGE, str(path), f"cannot read: {error.strerror or error}"), None
        content = image_format(data)
        named = SUFFIX_FORMATS.get(path.suffix.lower())
        mismatch = content if content is not None and named is not None and content != named else None
        return _decoded_size(data, str(path), record) + (mismatch,)

    # OpenCV decodes without the GIL, so threads use every core.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(inspect, records))
    if any(r.image_path is None and r.image_bytes is None for r in records):
        notes.append("some records name no image; their images were not checked")
    if not decode_images:
        notes.append("images were not decoded: corrupt images and sizes were not checked")
    sizes, misnamed = [], []
    for record, (size, problem, mismatch) in zip(records, results):
        if problem is not None:
            problems.append(problem)
        if mismatch is not None:
            misnamed.append(f"{Path(record.image_path).name} is {mismatch.upper()}")
        sizes.append(size)
    if misnamed:
        examples = ", ".join(misnamed[:5]) + (", ..." if len(misnamed) > 5 else "")
        notes.append(f"{len(misnamed)} image(s) are in another format than their file name says "
                     f"({examples}); they are decoded by content, so training is not affected")
    return sizes


def _decoded_size(data, source, record):
    """((width, height), None) of an encoded image, or (None, Problem).

    A truncated JPEG is judged as the pipeline judges it
    (``detect.data.decoding``): usable if enough of it decodes, which is
    reported as ``TRUNCATED_IMAGE`` rather than ``CORRUPT_IMAGE``.
    """
    import cv2  # Lazily: keeps `import detect.data` light.

    if not data:
        return None, Problem(CORRUPT_IMAGE, source, f"image of {record.image_id!r} is an empty file")
    # IMREAD_UNCHANGED ignores EXIF orientation, as tf.io.decode_image does.
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    size = None if image is None else (image.shape[1], image.shape[0])
    truncated = None
    if image_format(data) == "jpeg" and (image is None or lacks_end_marker(data)):
        from detect.data.decoding import MIN_DECODED_FRACTION, inspect_truncated_jpeg  # TensorFlow, rarely

        truncated = inspect_truncated_jpeg(data)
    if truncated is not None and truncated[1] is not None:
        fraction, size = truncated
        if fraction < MIN_DECODED_FRACTION:
            return None, Problem(CORRUPT_IMAGE, source,
                                 f"image of {record.image_id!r} is a truncated JPEG of which only "
                                 f"{fraction:.0%} of the rows decode (at least {MIN_DECODED_FRACTION:.0%} "
                                 f"needed); training skips it")
        problem = Problem(TRUNCATED_IMAGE, source,
                          f"image of {record.image_id!r} is a truncated JPEG; {fraction:.0%} of its rows "
                          f"decode, the rest is grey")
        return size, _size_problem(size, source, record) or problem
    if image is None or truncated is not None:
        return None, Problem(CORRUPT_IMAGE, source,
                             f"image of {record.image_id!r} cannot be decoded (damaged or not an image)")
    return size, _size_problem(size, source, record)


def _size_problem(size, source, record):
    width, height = size
    if (width, height) != (record.width, record.height):
        return Problem(SIZE_MISMATCH, source, f"the annotation says {record.width} x {record.height} (w x h), "
                                              f"the image is {width} x {height}")
    return None


def _check_boxes(record, source, where, image_size, problems):
    """Degenerate, tiny and out-of-bounds boxes of one record.

    Bounds are the decoded image's size when known (the pixels the boxes
    are drawn on), else the annotation's.
    """
    boxes = record.boxes
    if not len(boxes):
        return
    width, height = image_size if image_size is not None else (record.width, record.height)
    box_w = boxes[:, 2] - boxes[:, 0]
    box_h = boxes[:, 3] - boxes[:, 1]
    degenerate = (box_w <= 0) | (box_h <= 0)
    tiny = ~degenerate & ((box_w <= TINY_BOX_PX) | (box_h <= TINY_BOX_PX))
    known_size = width > 0 and height > 0
    outside = (boxes[:, 0] < 0) | (boxes[:, 1] < 0)
    if known_size:
        outside |= (boxes[:, 2] > width) | (boxes[:, 3] > height)
    for j in np.flatnonzero(degenerate | tiny | outside):
        name = record.class_names[record.classes[j]]
        label = where[j] if where is not None else f"image {record.image_id!r} box[{j}] ({name})"
        corners = ", ".join(f"{v:g}" for v in boxes[j])
        shape = f"{box_w[j]:g} x {box_h[j]:g} px box [{corners}] (xyxy)"
        if degenerate[j]:
            problems.append(Problem(DEGENERATE_BOX, source, f"{label}: {shape}"))
        elif tiny[j]:
            problems.append(Problem(TINY_BOX, source, f"{label}: {shape}"))
        if outside[j]:
            bounds = f"{width} x {height}" if known_size else "the image"
            problems.append(Problem(OUT_OF_BOUNDS_BOX, source, f"{label}: {shape} outside {bounds}"))


def _size_histogram(records, class_names):
    """{class name: counts per SIZE_BUCKETS}, by sqrt(area) in pixels."""
    counts = np.zeros((len(class_names), len(SIZE_BUCKETS)), np.int64)
    for record in records:
        if not len(record.boxes):
            continue
        wh = np.clip(record.boxes[:, 2:] - record.boxes[:, :2], 0, None)
        bucket = np.searchsorted(SIZE_BUCKET_EDGES, np.sqrt(wh[:, 0] * wh[:, 1]), side="right")
        np.add.at(counts, (record.classes, bucket), 1)
    return {name: counts[k].tolist() for k, name in enumerate(class_names)}


# ---- output -----------------------------------------------------------------


def format_report(report, max_listed=20):
    """The report as readable text.

    Args:
      report: a ``DatasetReport``.
      max_listed: problems listed per kind; 0 lists all.

    Returns:
      str, several lines, no trailing newline.
    """
    names = list(report.class_names)
    lines = [f"Dataset: {report.dataset} ({report.format.upper()})",
             f"Classes ({len(names)}, from {report.classes_from}): {', '.join(names) or 'none'}", ""]

    rows = [(split, s) for split, s in report.splits.items()] + [(f"{UNION} of splits", report.union)]
    first = max([len("split")] + [len(r[0]) for r in rows])
    widths = [max(len(n), 6) for n in names]
    lines.append(f"{'split':<{first}}  {'images':>7}  {'boxes':>7}  "
                 + "  ".join(f"{n:>{w}}" for n, w in zip(names, widths)))
    for split, s in rows:
        lines.append(f"{split:<{first}}  {s.images:>7}  {s.boxes:>7}  "
                     + "  ".join(f"{s.boxes_per_class[n]:>{w}}" for n, w in zip(names, widths)))

    if report.image_sizes:
        common = ", ".join(f"{w}x{h} ({n})" for (w, h), n in report.image_sizes.most_common(5))
        more = len(report.image_sizes) - 5
        lines += ["", f"Image sizes (w x h): {common}" + (f", and {more} more sizes" if more > 0 else "")]

    lines += ["", f"Box sizes, sqrt(area) in px, {UNION} of splits:"]
    first = max([len("class"), len("all")] + [len(n) for n in names])
    widths = [max(len(b), 6) for b in SIZE_BUCKETS]
    lines.append(f"{'class':<{first}}  " + "  ".join(f"{b:>{w}}" for b, w in zip(SIZE_BUCKETS, widths)))
    total = np.zeros(len(SIZE_BUCKETS), np.int64)
    for name in names:
        counts = report.size_histogram[name]
        total += counts
        lines.append(f"{name:<{first}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(counts, widths)))
    lines.append(f"{'all':<{first}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(total.tolist(), widths)))

    lines += ["", f"Problems: {len(report.problems)}" if report.problems else "Problems: none"]
    for kind, problems in report.problems_by_kind().items():
        lines.append(f"  {PROBLEM_TITLES[kind]}: {len(problems)}")
        shown = problems if max_listed <= 0 else problems[:max_listed]
        lines += [f"    {p.source}: {p.message}" for p in shown]
        if len(shown) < len(problems):
            lines.append(f"    ... and {len(problems) - len(shown)} more")
    if report.notes:
        lines += ["", "Notes:"] + [f"  {note}" for note in report.notes]
    return "\n".join(lines)


def report_to_json(report):
    """The report as JSON-ready dict (everything ``format_report`` shows, all problems)."""
    def summary(s):
        return {"images": s.images, "boxes": s.boxes, "boxes_per_class": dict(s.boxes_per_class)}

    return {
        "dataset": report.dataset,
        "format": report.format,
        "classes": list(report.class_names),
        "classes_from": report.classes_from,
        "splits": {split: summary(s) for split, s in report.splits.items()},
        UNION: summary(report.union),
        "image_sizes": [{"width": w, "height": h, "images": n}
                        for (w, h), n in report.image_sizes.most_common()],
        "box_size_buckets": list(SIZE_BUCKETS),
        "box_size_histogram": dict(report.size_histogram),
        "num_problems": len(report.problems),
        "problems": {kind: [{"source": p.source, "message": p.message} for p in problems]
                     for kind, problems in report.problems_by_kind().items()},
        "notes": list(report.notes),
    }
