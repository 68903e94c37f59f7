"""A proxy folder (``configs/proxies/<name>/``): its ``source.yaml`` and its split files.

``source.yaml`` names the repository, the commit, the licence, where the
images and annotations are, the classes and the split rule (every key:
``configs/proxies/README.md``); ``train.txt`` / ``val.txt`` / ``test.txt``
list image stems, one a line. ``load_source`` checks the one,
``read_split_files`` / ``write_split_files`` read and write the others;
``detect.data.proxies`` builds the dataset from them. Every fault is an
``InputError`` naming the file and the key.
"""

import dataclasses
import math
import re
from pathlib import Path

import yaml

from detect.errors import InputError
from detect.outputs import write_text_atomic

SOURCE_YAML = "source.yaml"
SPLITS = ("train", "val", "test")
LAYOUTS = ("yolo", "coco", "voc")
STEM_RULES = ("file", "roboflow")
DUPLICATE_RULES = ("error", "identical")
_SHA = re.compile(r"^[0-9a-f]{40}$")


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


def write_split_files(source, splits):
    """Writes the split files into the proxy folder; refuses to replace any that exist."""
    for split in SPLITS:
        path = source.split_file(split)
        if path.exists():
            raise InputError(path, "already exists; split files are never replaced (delete them to re-split)")
    for split in SPLITS:
        write_text_atomic(source.split_file(split), "".join(f"{stem}\n" for stem in splits[split]))


def proxy_folders(root):
    """The proxy folders under ``root`` (those holding a ``source.yaml``), sorted by name."""
    return sorted(p.parent for p in Path(root).glob(f"*/{SOURCE_YAML}"))


__all__ = ["DUPLICATE_RULES", "LAYOUTS", "SOURCE_YAML", "SPLITS", "STEM_RULES", "ProxySource", "SourceSplit",
           "load_source", "proxy_folders", "read_split_files", "write_split_files"]
