"""Proxy datasets: small public detection datasets built from a fetched git snapshot into VOC.

A proxy is described by a folder (``configs/proxies/<name>/``) holding
``source.yaml`` (the repository, the commit, the licence, where the files
are, the classes) and the split files ``train.txt`` / ``val.txt`` /
``test.txt`` (image stems, one a line). ``build_proxy`` reads every file
at the recorded commit straight from the repository's git directory (never
from a work tree, never over the network) and writes the VOCdevkit layout
``detect.data.voc`` reads::

    out/JPEGImages/<stem>.<ext>       the image's bytes, unchanged
    out/Annotations/<stem>.xml        absolute pixel boxes (``voc_writer``)
    out/ImageSets/Main/<split>.txt    the proxy's split files
    out/proxy.json                    what was built from what (counts, commit, input hashes)

Source layouts (``layout`` in ``source.yaml``):

- ``yolo``: per source split an image folder and a label folder
  (``class cx cy w h`` normalised lines, ids into ``source_classes``);
- ``coco``: per source split an instances JSON (``bbox`` = ``x y w h``
  pixels, classes by category name) and the image folder its
  ``file_name``s are relative to;
- ``voc``: per source split an ``Annotations``-style folder of XML files
  (1-based inclusive corners) and an image folder.

Boxes become our continuous-edge ``xyxy`` pixels (``x1 = (cx - w / 2) *
width`` for YOLO, ``x1 = x`` for COCO, ``x1 = xmin - 1`` for VOC), are
clipped to the image, and a box left with no area is dropped and counted
(``proxy.json``, the tool's summary). Image sizes come from the image
headers (``detect.data.imagesize.header_size``), never from the
annotations.

Every bad input is an ``InputError`` naming the file: a commit the git
directory lacks, a missing file or blob (a snapshot leaves out files of
4 MiB and more), a Git LFS pointer instead of an image, a malformed
annotation, a class the class list lacks, a split file naming an image the
source lacks (or missing one), counts that differ from ``source.yaml``'s
``expect``.
"""

import dataclasses
import hashlib
import json
import math
import random
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

import numpy as np
import yaml

from detect.data.imagesize import header_size
from detect.data.records import Record
from detect.data.voc import ANNOTATIONS_DIR, IMAGES_DIR, SPLITS_DIR, voc_box
from detect.data.voc_writer import voc_annotation_xml
from detect.errors import InputError
from detect.outputs import check_not_input, folder_kind, replaced_folder, write_text_atomic

SOURCE_YAML = "source.yaml"
MANIFEST = "proxy.json"
PROXY_KIND = "proxy"
SPLITS = ("train", "val", "test")
LAYOUTS = ("yolo", "coco", "voc")
STEM_RULES = ("file", "roboflow")
DUPLICATE_RULES = ("error", "identical")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
LFS_POINTER = b"version https://git-lfs"
# Roboflow export names: ``<original stem>_<ext>.rf.<hash>``.
_ROBOFLOW_STEM = re.compile(r"^(?P<stem>.+)_(?:jpe?g|png|bmp|webp)\.rf\.[0-9A-Za-z]+$", re.IGNORECASE)
_SHA = re.compile(r"^[0-9a-f]{40}$")
_VOC_CORNERS = ("xmin", "ymin", "xmax", "ymax")


# ---- source.yaml ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SourceSplit:
    """Where one of the dataset's own splits lies inside the repository.

    Attributes:
      name: the dataset's split name (``train``, ``valid``, ...).
      images: image folder (repository path).
      annotations: YOLO label folder, VOC XML folder, or COCO JSON file.
    """

    name: str
    images: str
    annotations: str


@dataclasses.dataclass(frozen=True)
class ProxySource:
    """A proxy's ``source.yaml``: see ``configs/proxies/README.md`` for every key.

    Attributes:
      folder: the proxy folder (``source.yaml`` and the split files).
      name, repository, commit, licence, licence_file, layout: as the file has them.
      source_splits: tuple of ``SourceSplit``.
      source_classes: YOLO: the dataset's class names in id order.
      classes: our class names in id order.
      class_map: source class name -> our name, or None to drop that class.
      stem: ``file`` or ``roboflow`` (how an image's stem is made from its file name).
      duplicates: ``error`` or ``identical`` (byte-identical image and annotation under one stem kept once).
      split: ``{"mode": "source", "map": {source split: our split}}`` or
        ``{"mode": "seeded", "seed": int, "fractions": {...}, "keep_test": source split or None}``.
      expect: ``{"images": int, "boxes": int}`` checked after a build (either may be absent).
    """

    folder: Path
    name: str
    repository: str
    commit: str
    licence: str
    licence_file: str
    layout: str
    source_splits: tuple
    source_classes: tuple
    classes: tuple
    class_map: dict
    stem: str
    duplicates: str
    split: dict
    expect: dict

    @property
    def path(self):
        return self.folder / SOURCE_YAML

    def split_file(self, split):
        return self.folder / f"{split}.txt"

    def target_class(self, source_name, where):
        """Our class id for a source class name, None when ``class_map`` drops it."""
        name = self.class_map.get(source_name, source_name)
        if name is None:
            return None
        if name not in self.classes:
            raise InputError(where, f"class {source_name!r} is not in {self.path}'s classes {list(self.classes)} "
                                    f"(map it in class_map, or to null to drop it)")
        return self.classes.index(name)


_REQUIRED = ("name", "repository", "commit", "licence", "licence_file", "layout", "sources", "classes", "split")
_OPTIONAL = ("title", "url", "licence_note", "source_classes", "class_map", "stem", "duplicates", "expect",
             "notes", "dropped")


def load_source(folder):
    """Reads and checks ``folder/source.yaml``.

    Returns:
      ``ProxySource``.

    Raises:
      InputError: naming the file and the key.
    """
    folder = Path(folder)
    path = folder / SOURCE_YAML
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "no such file (a proxy folder holds source.yaml and its split files)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise InputError(path, f"cannot read: {' '.join(str(error).split())}") from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a mapping of keys")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise InputError(path, f"unknown key(s) {unknown}; valid: {sorted(_REQUIRED + _OPTIONAL)}")
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise InputError(path, f"missing key(s) {missing}")

    def text(key):
        value = data[key]
        if not isinstance(value, str) or not value.strip():
            raise InputError(path, f"{key}: expected a non-empty string, got {value!r}")
        return value.strip()

    commit = text("commit")
    if not _SHA.match(commit):
        raise InputError(path, f"commit: expected a full 40-character commit id, got {commit!r}")
    layout = text("layout")
    if layout not in LAYOUTS:
        raise InputError(path, f"layout: {layout!r} is not one of {list(LAYOUTS)}")
    classes = _names(data["classes"], path, "classes")
    source_classes = _names(data["source_classes"], path, "source_classes") if "source_classes" in data else ()
    if layout == "yolo" and not source_classes:
        raise InputError(path, "source_classes: a YOLO source needs the dataset's class names in id order")
    class_map = data.get("class_map") or {}
    if not isinstance(class_map, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in class_map.items()):
        raise InputError(path, "class_map: expected a mapping of source class name to our name or null")
    stem = data.get("stem", "file")
    if stem not in STEM_RULES:
        raise InputError(path, f"stem: {stem!r} is not one of {list(STEM_RULES)}")
    duplicates = data.get("duplicates", "error")
    if duplicates not in DUPLICATE_RULES:
        raise InputError(path, f"duplicates: {duplicates!r} is not one of {list(DUPLICATE_RULES)}")
    sources = data["sources"]
    if not isinstance(sources, list) or not sources:
        raise InputError(path, "sources: expected a list of {split, images, annotations}")
    source_splits = []
    for i, entry in enumerate(sources):
        if not isinstance(entry, dict) or set(entry) != {"split", "images", "annotations"} or not all(
                isinstance(v, str) and v for v in entry.values()):
            raise InputError(path, f"sources[{i}]: expected exactly the string keys split, images, annotations")
        source_splits.append(SourceSplit(entry["split"], entry["images"].strip("/"), entry["annotations"].strip("/")))
    names = [s.name for s in source_splits]
    if len(set(names)) != len(names):
        raise InputError(path, f"sources: split names repeat: {names}")
    split = _split_rule(data["split"], path, names)
    expect = data.get("expect") or {}
    if not isinstance(expect, dict) or not all(k in ("images", "boxes") and isinstance(v, int) and v >= 0
                                               for k, v in expect.items()):
        raise InputError(path, "expect: expected {images: N, boxes: N} (non-negative integers)")
    return ProxySource(folder=folder, name=text("name"), repository=text("repository"), commit=commit,
                       licence=text("licence"), licence_file=text("licence_file"), layout=layout,
                       source_splits=tuple(source_splits), source_classes=source_classes, classes=classes,
                       class_map=dict(class_map), stem=stem, duplicates=duplicates, split=split, expect=expect)


def _names(value, path, key):
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise InputError(path, f"{key}: expected a non-empty list of names")
    if len(set(value)) != len(value):
        raise InputError(path, f"{key}: names repeat: {value}")
    return tuple(value)


def _split_rule(rule, path, source_names):
    if not isinstance(rule, dict) or rule.get("mode") not in ("source", "seeded"):
        raise InputError(path, "split: expected {mode: source, map: {...}} or {mode: seeded, seed: N, ...}")
    if rule["mode"] == "source":
        mapping = rule.get("map")
        if set(rule) != {"mode", "map"} or not isinstance(mapping, dict) or set(mapping) != set(source_names) \
                or not set(mapping.values()) <= set(SPLITS):
            raise InputError(path, f"split.map: expected every source split {source_names} mapped to one of "
                                   f"{list(SPLITS)}")
        return {"mode": "source", "map": dict(mapping)}
    fractions = rule.get("fractions")
    keep_test = rule.get("keep_test")
    if not set(rule) <= {"mode", "seed", "fractions", "keep_test"} or not isinstance(rule.get("seed"), int) \
            or not isinstance(fractions, dict) or set(fractions) != set(SPLITS) \
            or not all(isinstance(v, (int, float)) and v >= 0 for v in fractions.values()) \
            or not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-6) \
            or (keep_test is not None and keep_test not in source_names):
        raise InputError(path, f"split: seeded mode takes seed (int), fractions {{train, val, test}} summing to 1 "
                               f"and optionally keep_test (one of {source_names})")
    return {"mode": "seeded", "seed": rule["seed"], "fractions": dict(fractions), "keep_test": keep_test}


# ---- the git directory ------------------------------------------------------------------------

class GitSnapshot:
    """Files of one commit read from a git directory (bare or ``.git``), through one ``git cat-file --batch``.

    Args:
      git_dir: the git directory (``fetch`` gives ``/work/.mirror/<owner>+<name>/repo``).
      commit: the full commit id.

    Raises:
      InputError: not a git directory, or the commit is not in it.
    """

    def __init__(self, git_dir, commit):
        self.git_dir = Path(git_dir)
        self.commit = commit
        if not self.git_dir.is_dir():
            raise InputError(self.git_dir, "no such git directory")
        probe = self._git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}", check=False)
        if probe.returncode != 0:
            if self._git("rev-parse", "--git-dir", check=False).returncode != 0:
                raise InputError(self.git_dir, "not a git directory")
            raise InputError(self.git_dir, f"commit {commit} is not in this git directory (another repository, "
                                           f"or a snapshot older than the commit: fetch it again)")
        self._batch = None
        self._tree = None

    def _git(self, *args, check=True):
        return subprocess.run(["git", "--git-dir", str(self.git_dir), *args], capture_output=True, check=check)

    def where(self, path):
        """How messages name a file: ``<git dir>@<commit 12>:<path>``."""
        return f"{self.git_dir}@{self.commit[:12]}:{path}"

    @property
    def tree(self):
        """``{path: blob id}`` of every file at the commit."""
        if self._tree is None:
            listing = self._git("ls-tree", "-r", "-z", "--full-tree", self.commit).stdout.decode("utf-8", "replace")
            tree = {}
            for entry in listing.split("\0"):
                if not entry:
                    continue
                meta, path = entry.split("\t", 1)
                _mode, kind, blob = meta.split()
                if kind == "blob":
                    tree[path] = blob
            self._tree = tree
        return self._tree

    def files_under(self, folder):
        """Sorted repository paths of the files directly inside ``folder``."""
        prefix = folder.rstrip("/") + "/"
        return sorted(p for p in self.tree if p.startswith(prefix) and "/" not in p[len(prefix):])

    def blob(self, path):
        """The blob id of ``path``; ``InputError`` if the commit has no such file."""
        try:
            return self.tree[path]
        except KeyError:
            raise InputError(self.where(path), "no such file at this commit") from None

    def read(self, path):
        """The bytes of ``path`` at the commit.

        Raises:
          InputError: no such file, or its blob is missing from the snapshot.
        """
        blob = self.blob(path)
        if self._batch is None:
            self._batch = subprocess.Popen(["git", "--git-dir", str(self.git_dir), "cat-file", "--batch"],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._batch.stdin.write(f"{blob}\n".encode())
        self._batch.stdin.flush()
        header = self._batch.stdout.readline().decode().split()
        if len(header) != 3 or header[1] != "blob":
            raise InputError(self.where(path), "its blob is missing from this snapshot (fetch leaves out files "
                                               "of 4 MiB and more)")
        data = self._batch.stdout.read(int(header[2]))
        self._batch.stdout.read(1)  # the newline after the content
        return data

    def close(self):
        if self._batch is not None:
            self._batch.stdin.close()
            self._batch.wait()
            self._batch = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- items: one image, its annotation and its source split ----------------------------------------

@dataclasses.dataclass(frozen=True)
class Item:
    """One source image.

    Attributes:
      stem: its stem in the proxy (``Annotations/<stem>.xml``).
      split: the dataset's own split it comes from.
      image: repository path of the image.
      annotation: repository path of its YOLO label or VOC XML file (None: none, or COCO).
      coco_image: COCO: ``(json path, image entry)``.
      key: what makes two items identical (blob ids).
    """

    stem: str
    split: str
    image: str
    annotation: object = None
    coco_image: object = None
    key: tuple = ()


def make_stem(file_name, rule):
    """The proxy stem of an image file name: its stem, or for ``roboflow`` the original before ``_jpg.rf.<hash>``."""
    stem = PurePosixPath(file_name).stem
    if rule == "roboflow":
        match = _ROBOFLOW_STEM.match(stem)
        if match:
            return match.group("stem")
    return stem


def collect_items(source, snapshot):
    """Every image of the source with its annotation, one per stem.

    Returns:
      list of ``Item`` sorted by stem, and the number of duplicates dropped (``duplicates: identical``).

    Raises:
      InputError: a missing folder, an annotation without an image, two different images under one stem.
    """
    items = []
    for split in source.source_splits:
        if source.layout == "coco":
            items.extend(_coco_items(source, snapshot, split))
        else:
            items.extend(_file_items(source, snapshot, split))
    by_stem, dropped = {}, 0
    for item in sorted(items, key=lambda i: (i.stem, i.image)):
        first = by_stem.get(item.stem)
        if first is None:
            by_stem[item.stem] = item
        elif source.duplicates == "identical" and first.key == item.key:
            dropped += 1
        else:
            rule = " (not byte-identical)" if source.duplicates == "identical" else ""
            raise InputError(snapshot.where(item.image), f"stem {item.stem!r} is also {first.image}{rule}; "
                                                         f"stems must be unique")
    return [by_stem[s] for s in sorted(by_stem)], dropped


def _file_items(source, snapshot, split):
    images = [p for p in snapshot.files_under(split.images) if PurePosixPath(p).suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise InputError(snapshot.where(split.images), "no images in this folder at this commit")
    suffix = ".txt" if source.layout == "yolo" else ".xml"
    annotations = {PurePosixPath(p).stem: p for p in snapshot.files_under(split.annotations)
                   if p.endswith(suffix)}
    if not annotations and not any(p.startswith(split.annotations.rstrip("/") + "/") for p in snapshot.tree):
        raise InputError(snapshot.where(split.annotations), "no such annotation folder at this commit")
    items, used = [], set()
    for image in images:
        file_stem = PurePosixPath(image).stem
        annotation = annotations.get(file_stem)
        used.add(file_stem)
        key = (snapshot.blob(image), snapshot.blob(annotation) if annotation else None)
        items.append(Item(make_stem(image, source.stem), split.name, image, annotation=annotation, key=key))
    orphans = sorted(set(annotations) - used)
    if orphans:
        raise InputError(snapshot.where(annotations[orphans[0]]), f"annotation without an image in {split.images} "
                                                                 f"({len(orphans)} such file(s))")
    return items


def _coco_items(source, snapshot, split):
    where = snapshot.where(split.annotations)
    data = _json(snapshot.read(split.annotations), where)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise InputError(where, "not a COCO instances file: no 'images' list")
    annotations = data.get("annotations", [])
    categories = data.get("categories", [])
    if not isinstance(annotations, list) or not isinstance(categories, list):
        raise InputError(where, "'annotations' and 'categories' must be lists")
    names = {}
    for i, category in enumerate(categories):
        if not isinstance(category, dict) or "id" not in category or not isinstance(category.get("name"), str):
            raise InputError(where, f"categories[{i}]: expected an object with id and name")
        names[category["id"]] = category["name"]
    per_image = {}
    for i, annotation in enumerate(annotations):
        if not isinstance(annotation, dict) or "image_id" not in annotation:
            raise InputError(where, f"annotations[{i}]: expected an object with image_id")
        per_image.setdefault(annotation["image_id"], []).append((i, annotation))
    items, ids = [], set()
    for i, image in enumerate(images):
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            raise InputError(where, f"images[{i}]: expected an object with id and file_name")
        if image["id"] in ids:
            raise InputError(where, f"images[{i}]: id {image['id']!r} repeats")
        ids.add(image["id"])
        path = f"{split.images}/{image['file_name']}"
        entry = {"image": image, "annotations": per_image.get(image["id"], []), "categories": names}
        key = (snapshot.blob(path), json.dumps([a for _, a in entry["annotations"]], sort_keys=True, default=str))
        items.append(Item(make_stem(path, source.stem), split.name, path, coco_image=(split.annotations, entry),
                          key=key))
    unknown = sorted(set(per_image) - ids, key=str)
    if unknown:
        raise InputError(where, f"annotations refer to image id {unknown[0]!r}, which 'images' lacks")
    return items


def _json(data, where):
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise InputError(where, f"not valid JSON: {error}") from None


# ---- annotations into boxes --------------------------------------------------------------------

def yolo_boxes(text, where, height, width, source_classes):
    """YOLO label text into ``(boxes [N, 4] float64 xyxy px, source class names)``.

    ``x1 = (cx - w / 2) * width``, ``x2 = (cx + w / 2) * width`` (y likewise), as ``detect.data.yolo_txt`` reads.
    """
    boxes, names = [], []
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise InputError(where, f"line {line_no}: expected 5 fields 'class cx cy w h', got {len(fields)}")
        try:
            k = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise InputError(where, f"line {line_no}: {line.strip()!r} is not 'class cx cy w h' numbers") from None
        if not all(math.isfinite(v) for v in (cx, cy, w, h)):
            raise InputError(where, f"line {line_no}: {line.strip()!r} has a non-finite number")
        if not 0 <= k < len(source_classes):
            raise InputError(where, f"line {line_no}: class {k} is out of range 0..{len(source_classes) - 1} "
                                    f"(source_classes {list(source_classes)})")
        boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
        names.append(source_classes[k])
    return np.array(boxes, np.float64).reshape(-1, 4), names


def voc_boxes(data, where):
    """VOC XML bytes into ``(boxes [N, 4] float64 xyxy px, class names, difficult [N] bool)``; corners via ``voc_box``."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as error:
        raise InputError(where, f"not valid XML: {error}") from None
    boxes, names, difficult = [], [], []
    for j, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if not name or box is None:
            raise InputError(where, f"object {j}: needs <name> and <bndbox>")
        corners = []
        for tag in _VOC_CORNERS:
            value = box.findtext(tag)
            try:
                corners.append(float(value))
            except (TypeError, ValueError):
                raise InputError(where, f"object {j} ({name}): <{tag}> is {value!r}, not a number") from None
            if not math.isfinite(corners[-1]):
                raise InputError(where, f"object {j} ({name}): <{tag}> is {value!r}, not a finite number")
        boxes.append(voc_box(corners))
        names.append(name)
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    return np.array(boxes, np.float64).reshape(-1, 4), names, np.array(difficult, bool)


def coco_boxes(entry, where):
    """A COCO image's annotations into ``(boxes [N, 4] float64 xyxy px, class names, iscrowd [N] bool)``."""
    boxes, names, crowd = [], [], []
    for i, annotation in entry["annotations"]:
        bbox = annotation.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(
                isinstance(v, (int, float)) and math.isfinite(v) for v in bbox):
            raise InputError(where, f"annotations[{i}]: bbox {bbox!r} is not 4 finite numbers [x, y, w, h]")
        if annotation.get("category_id") not in entry["categories"]:
            raise InputError(where, f"annotations[{i}]: category_id {annotation.get('category_id')!r} is not in "
                                    f"'categories'")
        x, y, w, h = bbox
        boxes.append([x, y, x + w, y + h])
        names.append(entry["categories"][annotation["category_id"]])
        crowd.append(bool(annotation.get("iscrowd", 0)))
    return np.array(boxes, np.float64).reshape(-1, 4), names, np.array(crowd, bool)


def clip_boxes(boxes, height, width):
    """Clips ``boxes`` [N, 4] xyxy to the image; returns ``(clipped, keep [N] bool)`` (keep: positive area left)."""
    clipped = boxes.copy()
    clipped[:, 0::2] = np.clip(clipped[:, 0::2], 0, width)
    clipped[:, 1::2] = np.clip(clipped[:, 1::2], 0, height)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped, keep


def item_record(source, snapshot, item, data=None):
    """The ``Record`` of one item (boxes in our classes, clipped) and the number of boxes dropped.

    Args:
      data: the image's bytes if already read.

    Returns:
      ``(Record, dropped_boxes, image_bytes)``; ``Record.image_path`` is the output file name.
    """
    where_image = snapshot.where(item.image)
    data = snapshot.read(item.image) if data is None else data
    if data.startswith(LFS_POINTER):
        raise InputError(where_image, "is a Git LFS pointer, not an image (the snapshot lacks LFS content)")
    size = header_size(data)
    if size is None:
        raise InputError(where_image, "not a readable image (no PNG, JPEG, GIF, BMP or WebP header)")
    height, width = size
    if source.layout == "coco":
        json_path, entry = item.coco_image
        where = snapshot.where(json_path)
        boxes, names, ignore = coco_boxes(entry, where)
    elif item.annotation is None:
        where, boxes, names, ignore = where_image, np.zeros((0, 4)), [], np.zeros(0, bool)
    else:
        where = snapshot.where(item.annotation)
        raw = snapshot.read(item.annotation)
        if source.layout == "yolo":
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(where, "not a UTF-8 text file") from None
            boxes, names = yolo_boxes(text, where, height, width, source.source_classes)
            ignore = np.zeros(len(names), bool)
        else:
            boxes, names, ignore = voc_boxes(raw, where)
    classes = [source.target_class(name, where) for name in names]
    mapped = np.array([k is not None for k in classes], bool)
    boxes, keep = clip_boxes(boxes, height, width)
    keep &= mapped
    dropped = int(np.sum(mapped & ~keep))
    suffix = PurePosixPath(item.image).suffix.lower()
    record = Record(image_id=item.stem, height=height, width=width, boxes=boxes[keep].astype(np.float32),
                    classes=np.array([k for k, m in zip(classes, keep) if m], np.int32), ignore=ignore[keep],
                    class_names=source.classes, image_path=f"{item.stem}{suffix}")
    return record, dropped, data


# ---- split files ---------------------------------------------------------------------------------

def read_split_files(source):
    """``{split: [stems]}`` from the proxy's split files (all three must exist)."""
    splits = {}
    for split in SPLITS:
        path = source.split_file(split)
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            raise InputError(path, "no such split file (make_proxy.py --write-splits writes them)") from None
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(path, f"cannot read: {error}") from None
        stems = [line.strip() for line in lines if line.strip()]
        if len(set(stems)) != len(stems):
            raise InputError(path, f"stem {next(s for s in stems if stems.count(s) > 1)!r} is listed twice")
        splits[split] = stems
    return splits


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


def write_split_files(source, splits):
    """Writes the split files into the proxy folder; refuses to replace any that exist."""
    for split in SPLITS:
        path = source.split_file(split)
        if path.exists():
            raise InputError(path, "already exists; split files are never replaced (delete them to re-split)")
    for split in SPLITS:
        write_text_atomic(source.split_file(split), "".join(f"{stem}\n" for stem in splits[split]))


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
        items, duplicates = collect_items(source, snapshot)
        check_splits(source, items, splits)
        by_stem = {item.stem: item for item in items}
        boxes = dropped = 0
        per_class = [0] * len(source.classes)
        with replaced_folder(out, PROXY_KIND, tool, "--out", overwrite=overwrite,
                             inputs=[git_dir, source.folder]) as tmp:
            for sub in (IMAGES_DIR, ANNOTATIONS_DIR, SPLITS_DIR):
                (tmp / sub).mkdir(parents=True, exist_ok=True)
            for n, stem in enumerate(sorted(by_stem), start=1):
                record, lost, data = item_record(source, snapshot, by_stem[stem])
                (tmp / IMAGES_DIR / record.image_path).write_bytes(data)
                (tmp / ANNOTATIONS_DIR / f"{stem}.xml").write_text(voc_annotation_xml(record))
                boxes += record.num_boxes
                dropped += lost
                for k in record.classes:
                    per_class[k] += 1
                if log is not None and n % 200 == 0:
                    log(f"  {n}/{len(by_stem)} images")
            for split, stems in splits.items():
                (tmp / SPLITS_DIR / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
            counts = {"images": len(by_stem), "boxes": boxes}
            for key, value in source.expect.items():
                if counts[key] != value:
                    raise InputError(source.path, f"expect.{key} is {value}, the build has {counts[key]} "
                                                  f"(another commit or layout?); nothing was written")
            manifest = {
                "name": source.name, "repository": source.repository, "commit": source.commit,
                "licence": source.licence, "licence_file": source.licence_file, "layout": source.layout,
                "classes": list(source.classes), "images": len(by_stem), "boxes": boxes,
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


def proxy_folders(root):
    """The proxy folders under ``root`` (those holding a ``source.yaml``), sorted by name."""
    return sorted(p.parent for p in Path(root).glob(f"*/{SOURCE_YAML}"))


def mirror_git_dir(mirrors, repository):
    """The git directory ``fetch`` made for ``owner/name`` under ``mirrors``: ``owner+name/repo`` or ``owner+name``.

    Raises:
      InputError: neither exists (the line names the fetch to run).
    """
    base = Path(mirrors) / repository.replace("/", "+")
    for candidate in (base / "repo", base):
        if (candidate / "objects").is_dir() or (candidate / "HEAD").is_file():
            return candidate
    raise InputError(base, f"no git directory of {repository} here (fetch github:{repository} first)")


__all__ = ["GitSnapshot", "Item", "ProxySource", "build_proxy", "built_manifest", "check_splits", "clip_boxes",
           "coco_boxes", "collect_items", "item_record", "load_source", "make_stem", "mirror_git_dir",
           "propose_splits", "proxy_folders", "read_split_files", "voc_boxes", "write_split_files", "yolo_boxes"]
