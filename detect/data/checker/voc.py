"""Checks of a VOC-layout dataset: every annotation file on its own.

Annotations are parsed by the VOC reader's parser
(``detect.data.voc.parse_voc_annotation``), one file at a time, so a broken
file becomes a reported problem instead of ending the check.
"""

from pathlib import Path

from detect.data import voc
from detect.data.checker.finish import confined, finish_report
from detect.data.checker.report import (ALL_SPLITS, DUPLICATE_ID, MALFORMED_ANNOTATION, MISSING_ANNOTATION,
                                        SPLIT_OVERLAP, UNKNOWN_CLASS, Problem)
from detect.data.records import Record
from detect.errors import InputError


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
    split_ids = _split_ids(root, splits, problems, notes)
    parsed = _parse_listed(annotations, split_ids, root / voc.SPLITS_DIR, problems)
    if class_names is None:
        class_names = _annotation_class_names(annotations, parsed)
        classes_from = "the annotations (the 20 VOC classes if they use only those)"
        notes.append("classes are the names the annotations use; give the class list "
                     "(--classes or a config) to find unknown classes")
    else:
        classes_from = "given"
    class_names = tuple(class_names)
    records = _records(root, parsed, class_names, allow_outside_root, problems)

    _check_split_overlap(split_ids, root / voc.SPLITS_DIR, problems)
    in_splits = {image_id for ids in split_ids.values() for _, image_id in ids}
    orphans = sum(1 for p in annotations.glob("*.xml") if p.stem not in in_splits)
    if orphans:
        notes.append(f"{orphans} annotation file(s) are in none of the checked splits")
    split_keys = {split: [image_id for _, image_id in ids] for split, ids in split_ids.items()}
    return finish_report(root, "voc", class_names, classes_from, split_keys, records, problems, notes,
                         decode_images)


def _split_ids(root, splits, problems, notes):
    """{split: [(line number, image id)]} of the requested (or every) split.

    Without split files, every annotation file is one split ``"all"``.

    Raises:
      InputError: a requested split file is missing.
    """
    if splits is None:
        splits = voc.voc_splits(root)
    else:
        for split in splits:
            voc.split_file(root, split)
    if splits:
        return {split: _read_split_file(root / voc.SPLITS_DIR / f"{split}.txt", problems)
                for split in splits}
    notes.append(f"no split files in {voc.SPLITS_DIR}; checked every annotation file")
    return {ALL_SPLITS: [(None, stem) for stem in sorted(p.stem for p in (root / voc.ANNOTATIONS_DIR).glob("*.xml"))]}


def _parse_listed(annotations, split_ids, splits_dir, problems):
    """{image id: parsed annotation, or None if missing or malformed}, each listed image once.

    Each image is parsed once, whatever splits list it, so its problems are
    reported once.
    """
    parsed = {}
    for split, ids in split_ids.items():
        split_file = splits_dir / f"{split}.txt"
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
                parsed[image_id] = voc.parse_voc_annotation(xml_path)
            except InputError as error:
                parsed[image_id] = None
                problems.append(Problem(MALFORMED_ANNOTATION, error.source, error.message))
    return parsed


def _annotation_class_names(annotations, parsed):
    """The readers' class rule (``voc.default_voc_classes``) over every annotation file.

    As training sees it: the files of the checked splits (already parsed)
    and every other file in ``Annotations/``.
    """
    found = {obj["name"] for ann in parsed.values() if ann for obj in ann["objects"]}
    for xml_path in annotations.glob("*.xml"):
        if xml_path.stem not in parsed:
            try:
                found.update(obj["name"] for obj in voc.parse_voc_annotation(xml_path)["objects"])
            except InputError:
                pass  # not in a checked split: not this check's problem
    return voc.default_voc_classes(found=found)


def _records(root, parsed, class_names, allow_outside_root, problems):
    """{image id: (Record, annotation file, [where per box])} of the parsed annotations.

    Objects of unknown classes are left out of the records and reported; an
    image path outside the root is reported and leaves the record without
    an image.
    """
    annotations = root / voc.ANNOTATIONS_DIR
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
        image_path = confined(problems, voc.image_path, root, ann["filename"], xml_path, allow_outside_root)
        record = Record(image_id=image_id, height=ann["height"], width=ann["width"], boxes=boxes,
                        classes=classes, ignore=ignore, class_names=class_names, image_path=image_path)
        records[image_id] = (record, str(xml_path), where)
    return records


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
