"""Checks of COCO instances JSONs, read by the COCO reader (``detect.data.coco.read_coco``)."""

from pathlib import Path

from detect.data.checker.finish import finish_report
from detect.data.checker.report import MALFORMED_ANNOTATION, OUTSIDE_ROOT, Problem
from detect.data.paths import OutsideRootError
from detect.errors import InputError


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
    return finish_report(source, "coco", tuple(class_names or ()), "the JSON's categories", split_keys,
                         records, problems, notes, decode_images)
