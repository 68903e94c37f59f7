"""Checks of a YOLO-txt dataset: every label file on its own.

Label files are parsed by the YOLO reader's parser
(``detect.data.yolo_txt.parse_yolo_labels``) with any class id allowed, so
an id outside the class list is reported as an unknown class.
"""

from pathlib import Path

import numpy as np

from detect.data import yolo_txt as yolo
from detect.data.checker.finish import confined, finish_report
from detect.data.checker.report import (ALL_SPLITS, CORRUPT_IMAGE, DUPLICATE_ID, MALFORMED_ANNOTATION,
                                        MISSING_IMAGE, UNKNOWN_CLASS, Problem)
from detect.data.imagesize import image_size
from detect.data.paths import confined_path
from detect.data.records import Record
from detect.errors import InputError


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
        image_paths = _split_images(image_dir, split is not None, problems)
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
            kept = [confined(problems, confined_path, root, p.relative_to(root), p.parent,
                             f"image {image_id!r}", allow_outside_root) for p in (path, label_path)]
            if None in kept:
                continue
            unlabelled += not label_path.is_file()
            record = _record(image_id, path, label_path, class_names, problems)
            if record is not None:
                records[str(path)] = record
    if unlabelled:
        notes.append(f"{unlabelled} image(s) have no label file (kept as images without boxes)")
    return finish_report(root, "yolo", class_names, classes_from, split_keys, records, problems, notes,
                         decode_images)


def _split_images(image_dir, nested, problems):
    """{image id: image path} of one split folder, sorted; a repeated id is a problem.

    Split folders may nest (``nested``); a root without split folders holds
    only images.
    """
    files = image_dir.rglob("*") if nested else image_dir.iterdir()
    image_paths = {}
    for path in sorted(p for p in files if p.suffix.lower() in yolo.IMAGE_SUFFIXES and p.is_file()):
        image_id = path.relative_to(image_dir).with_suffix("").as_posix()
        if image_id in image_paths:
            problems.append(Problem(DUPLICATE_ID, str(path),
                                    f"image id {image_id!r} is also used by "
                                    f"{image_paths[image_id].name}; both would share one label file"))
            continue
        image_paths[image_id] = path
    return image_paths


def _record(image_id, path, label_path, class_names, problems):
    """(Record, label file, [where per box]) of one image, or None if its size cannot be read.

    A malformed label file is reported and leaves the image without boxes;
    boxes of unknown class ids are reported and left out.
    """
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
        return None
    known = classes < len(class_names)
    for j in np.flatnonzero(~known):
        problems.append(Problem(UNKNOWN_CLASS, str(label_path),
                                f"box[{j}]: class id {classes[j]} is not in "
                                f"0..{len(class_names) - 1}; known classes: "
                                f"{', '.join(class_names)}"))
    boxes = yolo.yolo_to_pixels(cxcywh, height, width)
    where = [f"box[{j}] ({class_names[classes[j]]})" for j in np.flatnonzero(known)]
    record = Record(image_id=image_id, height=height, width=width, boxes=boxes[known],
                    classes=classes[known], ignore=np.zeros(int(known.sum()), bool),
                    class_names=class_names, image_path=str(path))
    return record, str(label_path), where
