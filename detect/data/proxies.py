"""Proxy datasets: small public detection datasets built from a fetched git snapshot into VOC.

A proxy is described by a folder (``configs/proxies/<name>/``, read by
``detect.data.proxy_source``): ``source.yaml`` (the repository, the commit,
the licence, where the files are, the classes) and the split files
``train.txt`` / ``val.txt`` / ``test.txt``. ``build_proxy`` takes every
file at the recorded commit straight from the repository's git directory
(``detect.data.git_snapshot``; never a work tree, never the network) and
writes the VOCdevkit layout ``detect.data.voc`` reads::

    out/JPEGImages/<stem>.<ext>       the image's bytes, unchanged
    out/Annotations/<stem>.xml        absolute pixel boxes (``voc_writer``)
    out/ImageSets/Main/<split>.txt    the proxy's split files
    out/proxy.json                    what was built from what (counts, commit, input hashes)

Source layouts (``layout`` in ``source.yaml``):

- ``yolo``: per source split an image folder and a label folder
  (``class cx cy w h`` normalised lines, ids into ``source_classes``);
- ``coco``: per source split an instances JSON (classes by category name)
  and the image folder its ``file_name``s are relative to;
- ``voc``: per source split an ``Annotations``-style folder of XML files
  and an image folder.

Annotations are read by the project's own readers, through
``detect.data.formats.read_dataset``: the needed files are written into a
temporary folder beside the output (``SnapshotFiles``), one folder per
source split in the layout the reader takes, and removed afterwards. The
readers make the boxes our continuous-edge ``xyxy`` pixels and own every
check of the annotation files. What is the proxy's own follows: images
paired with annotation files by file stem, ``class_map`` onto our classes,
Roboflow stems, duplicates, the image's size from its header (never the
annotation's), boxes clipped to it (a box left with no area dropped and
counted in ``proxy.json`` and the tool's summary), the splits.

Every bad input is an ``InputError`` naming the file (a file of the
repository as ``<git dir>@<commit 12>:<path>``): a commit the git
directory lacks, a missing file or blob (a snapshot leaves out files of
4 MiB and more), a Git LFS pointer instead of the content, what a reader
refuses in an annotation, a class the class list lacks, a split file
naming an image the source lacks (or missing one), counts that differ from
``source.yaml``'s ``expect``.
"""

import dataclasses
import hashlib
import json
import random
import re
import shutil
from pathlib import Path, PurePosixPath

import numpy as np
from detect.data.formats import read_dataset
from detect.data.git_snapshot import GitSnapshot, SnapshotFiles
from detect.data.imagesize import IMAGE_SUFFIXES, image_size
from detect.data.mosaic import clip_and_drop_labels, empty_labels
from detect.data.proxy_source import SPLITS, load_source, read_split_files
from detect.data.records import Record
from detect.data.voc import ANNOTATIONS_DIR, IMAGES_DIR, SPLITS_DIR, voc_class_names_in
from detect.data.voc_writer import voc_annotation_xml
from detect.data.yolo_txt import IMAGES_DIR as YOLO_IMAGES_DIR
from detect.data.yolo_txt import LABELS_DIR as YOLO_LABELS_DIR
from detect.errors import InputError
from detect.outputs import check_not_input, folder_kind, replaced_folder, write_text_atomic

MANIFEST = "proxy.json"
PROXY_KIND = "proxy"
# Roboflow export names: ``<original stem>_<ext>.rf.<hash>``.
_ROBOFLOW_STEM = re.compile(r"^(?P<stem>.+)_(?:jpe?g|png|bmp|webp)\.rf\.[0-9A-Za-z]+$", re.IGNORECASE)


# ---- items: one image, its annotation (read by the project's readers) and its source split ---------

@dataclasses.dataclass(frozen=True)
class Item:
    """One source image.

    Attributes:
      stem: its stem in the proxy (``Annotations/<stem>.xml``).
      split: the dataset's own split it comes from.
      image: repository path of the image.
      file: the image written out by ``SnapshotFiles`` (gone once its ``with`` block ends).
      annotation: repository path of its YOLO label, VOC XML or COCO JSON (None: no annotation file).
      record: what the format's reader made of the annotation (boxes in source pixels, the source's class
        names), or None for an image without one.
      key: what makes two items identical (blob ids; COCO: the image's blob and its boxes).
    """

    stem: str
    split: str
    image: str
    file: Path
    annotation: object = None
    record: object = None
    key: tuple = ()


def make_stem(file_name, rule):
    """The proxy stem of an image file name: its stem, or for ``roboflow`` the original before ``_jpg.rf.<hash>``."""
    stem = PurePosixPath(file_name).stem
    if rule == "roboflow":
        match = _ROBOFLOW_STEM.match(stem)
        if match:
            return match.group("stem")
    return stem


def collect_items(source, files):
    """Every image of the source with its annotation, one per stem.

    The images and annotations are written out (``files``, a ``SnapshotFiles``), one folder per source
    split in the layout its reader takes, and read with ``read_yolo``, ``read_voc`` or ``read_coco``.

    Returns:
      list of ``Item`` sorted by stem, and the number of duplicates dropped (``duplicates: identical``).

    Raises:
      InputError: naming the repository file: a missing folder or file, an annotation without an image, what
        the format's reader refuses, two different images under one stem.
    """
    items = []
    for index, split in enumerate(source.source_splits):
        read = _coco_items if source.layout == "coco" else _file_items
        items.extend(read(source, files, split, Path(f"split{index}")))
    by_stem, dropped = {}, 0
    for item in sorted(items, key=lambda i: (i.stem, i.image)):
        first = by_stem.get(item.stem)
        if first is None:
            by_stem[item.stem] = item
        elif source.duplicates == "identical" and first.key == item.key:
            dropped += 1
        else:
            rule = " (not byte-identical)" if source.duplicates == "identical" else ""
            raise InputError(files.snapshot.where(item.image), f"stem {item.stem!r} is also {first.image}{rule}; "
                                                               f"stems must be unique")
    return [by_stem[s] for s in sorted(by_stem)], dropped


def proxy_items(source, git_dir, beside):
    """``collect_items`` of the source at its commit, the files written beside ``beside`` and removed after.

    Returns:
      as ``collect_items``; the items' ``file`` no longer exists.
    """
    with GitSnapshot(git_dir, source.commit) as snapshot, SnapshotFiles(snapshot, beside) as files:
        return collect_items(source, files)


def _file_items(source, files, split, dest):
    """A YOLO or VOC source split: images paired with label or XML files by file stem, as the readers pair them."""
    snapshot = files.snapshot
    images = [p for p in snapshot.files_under(split.images) if PurePosixPath(p).suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise InputError(snapshot.where(split.images), "no images in this folder at this commit")
    suffix = ".txt" if source.layout == "yolo" else ".xml"
    annotations = {PurePosixPath(p).stem: p for p in snapshot.files_under(split.annotations)
                   if p.endswith(suffix)}
    if not annotations and not any(p.startswith(split.annotations.rstrip("/") + "/") for p in snapshot.tree):
        raise InputError(snapshot.where(split.annotations), "no such annotation folder at this commit")
    orphans = sorted(set(annotations) - {PurePosixPath(p).stem for p in images})
    if orphans:
        raise InputError(snapshot.where(annotations[orphans[0]]), f"annotation without an image in {split.images} "
                                                                 f"({len(orphans)} such file(s))")
    # The reader's layout, files numbered (any repository file name reads; messages name the repository file).
    # An image without an annotation file has no boxes: YOLO's reader reads it so, VOC's is not asked.
    yolo = source.layout == "yolo"
    root = files.root / dest
    image_dir, annotation_dir = (YOLO_IMAGES_DIR, YOLO_LABELS_DIR) if yolo else (IMAGES_DIR, ANNOTATIONS_DIR)
    for folder in (image_dir, annotation_dir, SPLITS_DIR):
        (root / folder).mkdir(parents=True)
    written, annotated = [], []
    for n, image in enumerate(images):
        name = f"{n:06d}"
        file = files.write(dest / image_dir / f"{name}{PurePosixPath(image).suffix}", image)
        annotation = annotations.get(PurePosixPath(image).stem)
        if annotation is not None:
            files.write(dest / annotation_dir / f"{name}{suffix}", annotation)
            annotated.append(name)
        written.append((name, image, file, annotation))
    with files.named():
        if yolo:
            records = read_dataset("yolo", root, class_names=source.source_classes)
        else:
            (root / SPLITS_DIR / f"{dest}.txt").write_text("".join(f"{name}\n" for name in annotated))
            # Every class the files name (class_map decides); <filename> is unused (pairing is by file stem).
            records = read_dataset("voc", root, str(dest), class_names=voc_class_names_in(root, str(dest)),
                                   allow_outside_root=True)
    by_name = {record.image_id: record for record in records}
    items = []
    for name, image, file, annotation in written:
        key = (snapshot.blob(image), snapshot.blob(annotation) if annotation else None)
        items.append(Item(make_stem(image, source.stem), split.name, image, file, annotation=annotation,
                          record=by_name.get(name), key=key))
    return items


def _coco_items(source, files, split, dest):
    """A COCO source split: ``read_coco`` on the JSON; each ``file_name`` is looked up under ``split.images``."""
    snapshot = files.snapshot
    json_file = files.write(dest / PurePosixPath(split.annotations).name, split.annotations)
    # read_coco only joins file_name to this folder; the image is looked up in the repository's tree.
    image_dir = files.root / dest / "file_names"
    with files.named():
        records = read_dataset("coco", image_dir, json_path=json_file, allow_outside_root=True)
    items = []
    for n, record in enumerate(records):
        try:
            relative = Path(record.image_path).relative_to(image_dir).as_posix()
        except ValueError:
            raise InputError(snapshot.where(split.annotations), f"image id {record.image_id!r}: file_name "
                                                                f"{record.image_path!r} is an absolute path") from None
        image = f"{split.images}/{relative}"
        file = files.write(dest / "images" / f"{n:06d}{PurePosixPath(image).suffix}", image)
        names = tuple(record.class_names[k] for k in record.classes)
        key = (snapshot.blob(image), record.boxes.tobytes(), names, record.ignore.tobytes())
        items.append(Item(make_stem(image, source.stem), split.name, image, file, annotation=split.annotations,
                          record=record, key=key))
    return items


# ---- an item into the proxy's record ---------------------------------------------------------------

def item_record(source, files, item):
    """The ``Record`` of one item in our classes, clipped to the image, and the number of boxes dropped.

    The size is the image's own (``image_size``, from its header), never the annotation's. Boxes of a class
    ``class_map`` maps to null are left out; boxes with no area inside the image are dropped and counted
    (``detect.data.mosaic.clip_and_drop_labels`` with no visibility or size limit).

    Returns:
      ``(Record, dropped_boxes)``; ``Record.image_path`` is the output file name.
    """
    with files.named():
        height, width = image_size(item.file)
    where = files.snapshot.where(item.annotation or item.image)
    record = item.record
    names = [record.class_names[k] for k in record.classes] if record is not None else []
    classes = [source.target_class(name, where) for name in names]
    mapped = np.array([k is not None for k in classes], bool)
    labels = empty_labels() if record is None else (
        record.boxes[mapped], np.array([k for k in classes if k is not None], np.int32), record.ignore[mapped])
    boxes, kept_classes, ignore = clip_and_drop_labels(labels, height, width, min_visibility=0.0, min_box_size=0.0)
    suffix = PurePosixPath(item.image).suffix.lower()
    result = Record(image_id=item.stem, height=height, width=width, boxes=boxes, classes=kept_classes,
                    ignore=ignore, class_names=source.classes, image_path=f"{item.stem}{suffix}")
    return result, int(mapped.sum()) - len(boxes)


# ---- the split files against the source --------------------------------------------------------

def check_splits(source, items, splits):
    """Every item in exactly one split file, no unknown stem, each in the split its source split maps to.

    Raises:
      InputError: naming the split file and the stem.
    """
    by_stem = {item.stem: item for item in items}
    seen = {}
    for split, stems in splits.items():
        for stem in stems:
            if stem not in by_stem:
                raise InputError(source.split_file(split), f"stem {stem!r} is not an image of the source "
                                                           f"at {source.commit[:12]}")
            if stem in seen:
                raise InputError(source.split_file(split), f"stem {stem!r} is also in {seen[stem]}.txt")
            seen[stem] = split
            if source.split["mode"] == "source" and source.split["map"][by_stem[stem].split] != split:
                expected = source.split["map"][by_stem[stem].split]
                raise InputError(source.split_file(split), f"stem {stem!r} comes from the source's "
                                                           f"{by_stem[stem].split!r} split, which maps to {expected}")
            if source.split["mode"] == "seeded" and source.split["keep_test"] is not None \
                    and (by_stem[stem].split == source.split["keep_test"]) != (split == "test"):
                raise InputError(source.split_file(split), f"stem {stem!r}: the source's "
                                                           f"{source.split['keep_test']!r} split is the test split")
    missing = sorted(set(by_stem) - set(seen))
    if missing:
        raise InputError(source.folder, f"{len(missing)} image(s) of the source are in no split file, "
                                        f"e.g. {missing[0]!r}")


def propose_splits(source, items):
    """The split files' content for ``source.split``: ``{split: [stems]}`` (stems sorted within a split).

    ``source`` mode maps each source split; ``seeded`` mode shuffles (``random.Random(seed)``) the stems
    that are not in ``keep_test`` and cuts them by ``fractions`` (the test share is taken from the whole
    dataset, less what ``keep_test`` already holds).
    """
    rule = source.split
    splits = {split: [] for split in SPLITS}
    if rule["mode"] == "source":
        for item in items:
            splits[rule["map"][item.split]].append(item.stem)
        return splits
    kept = [i.stem for i in items if rule["keep_test"] is not None and i.split == rule["keep_test"]]
    kept_set = set(kept)
    rest = sorted(i.stem for i in items if i.stem not in kept_set)
    random.Random(rule["seed"]).shuffle(rest)
    total = len(items)
    n_test = max(0, round(rule["fractions"]["test"] * total) - len(kept))
    n_val = round(rule["fractions"]["val"] * total)
    splits["test"] = sorted(kept + rest[:n_test])
    splits["val"] = sorted(rest[n_test:n_test + n_val])
    splits["train"] = sorted(rest[n_test + n_val:])
    return splits


# ---- the build -----------------------------------------------------------------------------------

def _input_hash(source):
    digest = hashlib.sha256()
    for path in [source.path, *(source.split_file(s) for s in SPLITS)]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def built_manifest(out):
    """The ``proxy.json`` of a folder ``build_proxy`` wrote, or None."""
    if folder_kind(out) != PROXY_KIND:
        return None
    try:
        return json.loads((Path(out) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def build_proxy(folder, git_dir, out, tool, overwrite=False, rebuild=False, log=None):
    """Builds one proxy's VOC layout from a git directory.

    ``out`` is checked before anything is read (new, empty, or a proxy this
    tool built; any other folder needs ``overwrite``; never inside an input),
    built in a temporary sibling and swapped in when complete, so a failure
    leaves an earlier build untouched. A build of the same inputs
    (``source.yaml``, the split files) is kept as it is unless ``rebuild``.

    Args:
      folder: the proxy folder (``source.yaml``, split files).
      git_dir: the repository's git directory.
      out: the dataset folder to write.
      tool: the writing tool, for the folder marker and messages.
      overwrite: replace a folder this tool did not build.
      rebuild: build again even if ``out`` holds a build of the same inputs.
      log: ``fn(str)`` for progress lines, or None.

    Returns:
      the manifest dict (``proxy.json``), with ``"skipped": True`` when an up-to-date build was kept.

    Raises:
      InputError: any bad input, named (see the module docstring).
    """
    source = load_source(folder)
    git_dir, out = Path(git_dir), Path(out)
    _check_out(out, git_dir, source.folder)
    splits = read_split_files(source)
    inputs = _input_hash(source)
    existing = built_manifest(out)
    if existing is not None and existing.get("inputs_sha256") == inputs and not rebuild:
        return dict(existing, skipped=True)
    with GitSnapshot(git_dir, source.commit) as snapshot:
        snapshot.blob(source.licence_file)  # the licence the source.yaml names is there
        with replaced_folder(out, PROXY_KIND, tool, "--out", overwrite=overwrite,
                             inputs=[git_dir, source.folder]) as tmp, SnapshotFiles(snapshot, out) as files:
            items, duplicates = collect_items(source, files)
            check_splits(source, items, splits)
            boxes = dropped = 0
            per_class = [0] * len(source.classes)
            for sub in (IMAGES_DIR, ANNOTATIONS_DIR, SPLITS_DIR):
                (tmp / sub).mkdir(parents=True, exist_ok=True)
            for n, item in enumerate(items, start=1):
                record, lost = item_record(source, files, item)
                shutil.copyfile(item.file, tmp / IMAGES_DIR / record.image_path)
                (tmp / ANNOTATIONS_DIR / f"{item.stem}.xml").write_text(voc_annotation_xml(record))
                boxes += record.num_boxes
                dropped += lost
                for k in record.classes:
                    per_class[k] += 1
                if log is not None and n % 200 == 0:
                    log(f"  {n}/{len(items)} images")
            for split, stems in splits.items():
                (tmp / SPLITS_DIR / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
            counts = {"images": len(items), "boxes": boxes}
            for key, value in source.expect.items():
                if counts[key] != value:
                    raise InputError(source.path, f"expect.{key} is {value}, the build has {counts[key]} "
                                                  f"(another commit or layout?); nothing was written")
            manifest = {
                "name": source.name, "repository": source.repository, "commit": source.commit,
                "licence": source.licence, "licence_file": source.licence_file, "layout": source.layout,
                "classes": list(source.classes), "images": len(items), "boxes": boxes,
                "boxes_per_class": dict(zip(source.classes, per_class)),
                "splits": {split: len(stems) for split, stems in splits.items()},
                "duplicate_images_dropped": duplicates, "boxes_dropped_no_area": dropped,
                "inputs_sha256": inputs,
            }
            write_text_atomic(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _check_out(out, git_dir, folder):
    """Refuses an output inside the git directory or the proxy folder, existing or not, or one holding them."""
    check_not_input(out, [git_dir, folder], "--out")
    resolved = out.resolve()
    for source in (git_dir, folder):
        if source.resolve() in resolved.parents:
            raise InputError(out, f"--out is inside an input of this command ({source}); outputs never go "
                                  f"there: choose another --out")


__all__ = ["Item", "build_proxy", "built_manifest", "check_splits", "collect_items", "item_record", "make_stem",
           "propose_splits", "proxy_items"]
