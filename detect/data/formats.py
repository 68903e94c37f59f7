"""One entry point over the dataset readers and writers, for tools and configs.

Two ways in, one set of rules (default class lists, what a root and a split
mean per format):

- From a config's ``data`` section (``detect.train.experiment.DataConfig``,
  or anything with its attributes): ``prepare_dataset``,
  ``config_class_names``, ``config_splits``, ``split_source`` and
  ``load_split``. Training (``detect.train.data``), evaluation from a config
  (``detect.eval.predict``), ``tools/check_dataset.py`` (through
  ``detect.data.checker.check_config``) and ``tools/anchors.py`` all use
  these, so a config that trains also checks and evaluates.
- From a path and a format name: ``read_dataset`` (``tools/convert.py``,
  ``tools/anchors.py`` on a dataset folder).

``convert_dataset`` writes TFRecord shards or a COCO instances JSON.
TensorFlow is imported only for TFRecords.

What a config's ``root`` and splits mean:

========  ======================================  ==========================================
format    ``root``                                a split
========  ======================================  ==========================================
voc       the VOC folder                          ``ImageSets/Main/<split>.txt``
shapes    as voc; generated there on first use    ``train`` or ``val``
yolo      the YOLO folder                         ``images/<split>/``
coco      the image folder (``file_name`` is      an instances JSON relative to ``root``,
          relative to it)                         e.g. ``../annotations/instances_val.json``
tfrecord  the shard folder                        a file, folder or glob relative to ``root``
========  ======================================  ==========================================

A relative ``root`` is taken from the current directory; an absolute split
path is used as is.
"""

from pathlib import Path

from detect.data.coco import coco_class_names, read_coco, write_coco
from detect.data.voc import SPLITS_DIR, default_voc_classes, read_voc
from detect.data.yolo_txt import IMAGES_DIR as YOLO_IMAGES_DIR
from detect.data.yolo_txt import read_yolo, yolo_class_names
from detect.errors import InputError

READ_FORMATS = ("voc", "coco", "yolo")
CONFIG_FORMATS = ("voc", "coco", "yolo", "tfrecord", "shapes")
WRITE_FORMATS = ("tfrecord", "coco")
# data.format values stored as a VOC folder (the shapes generator writes VOC).
VOC_LAYOUT_FORMATS = ("voc", "shapes")
COCO_JSON_TEMPLATE = "annotations/instances_{split}.json"


def read_dataset(fmt, root, split=None, json_path=None, class_names=None, allow_outside_root=False):
    """Reads a dataset in any supported format.

    Args:
      fmt: ``"voc"``, ``"coco"`` or ``"yolo"``.
      root: dataset folder. For COCO, the folder of ``file_name`` paths
        when ``json_path`` is given (None: ``read_coco``'s default), else
        the folder holding ``annotations/instances_<split>.json``.
      split: split name (VOC ``ImageSets/Main/<split>.txt``, YOLO
        ``images/<split>/``, COCO ``instances_<split>.json``). Required for
        VOC; YOLO without it reads ``images/`` directly.
      json_path: COCO instances JSON.
      class_names: class list in class-id order; None for the dataset's own
        (VOC: ``default_voc_classes``; COCO: categories; YOLO:
        ``data.yaml``). COCO takes its classes from the JSON and rejects
        this argument.
      allow_outside_root: accept image paths that lead outside the
        dataset root (``detect.data.paths``); refused by default.

    Returns:
      list of ``Record``.

    Raises:
      InputError: bad arguments or bad data, naming the file.
    """
    if fmt not in READ_FORMATS:
        raise InputError(fmt, f"unknown dataset format; choose one of {', '.join(READ_FORMATS)}")
    if fmt == "coco":
        if class_names is not None:
            raise InputError(json_path or root, "COCO class names come from the JSON categories; "
                                                "do not pass class names")
        if json_path is None:
            if root is None or split is None:
                raise InputError(root, "COCO needs an annotation JSON, or a root and a split")
            json_path = Path(root) / COCO_JSON_TEMPLATE.format(split=split)
            return read_coco(json_path, allow_outside_root=allow_outside_root)
        return read_coco(json_path, image_dir=root, allow_outside_root=allow_outside_root)
    if root is None:
        raise InputError(fmt, "a dataset root is required")
    if fmt == "yolo":
        return read_yolo(root, split, class_names, allow_outside_root=allow_outside_root)
    if split is None:
        raise InputError(root, "a VOC split is required (ImageSets/Main/<split>.txt)")
    if class_names is None:
        class_names = default_voc_classes(root)
    return read_voc(root, split, class_names, allow_outside_root=allow_outside_root)


# ---- from a config's data section ----------------------------------------------


def dataset_root(data_cfg):
    """``data.root`` as a path (``~`` expanded; relative to the current directory)."""
    return Path(data_cfg.root).expanduser()


def prepare_dataset(data_cfg):
    """Generates the shapes dataset (VOC layout) when the config asks for it and it is absent."""
    if data_cfg.format == "shapes":
        from detect.data.shapes import ensure_shapes  # OpenCV drawing, only for shapes

        shapes = data_cfg.shapes
        ensure_shapes(dataset_root(data_cfg), "voc", num_images=shapes.num_images, size=shapes.image_size,
                      seed=shapes.seed)


def config_splits(data_cfg):
    """The config's splits, train / val / test, each once (test only when set).

    Returns:
      list of str.
    """
    splits = [data_cfg.train_split, data_cfg.val_split, data_cfg.test_split]
    return list(dict.fromkeys(str(s) for s in splits if s))


def split_source(data_cfg, split):
    """The file, folder or pattern that defines a split (see the module docstring).

    Returns:
      ``Path`` (VOC split file, YOLO image folder, COCO JSON) or, for
      TFRecords, the pattern as str.
    """
    _check_format(data_cfg)
    root = dataset_root(data_cfg)
    if data_cfg.format in VOC_LAYOUT_FORMATS:
        return root / SPLITS_DIR / f"{split}.txt"
    if data_cfg.format == "yolo":
        return root / YOLO_IMAGES_DIR / split
    path = Path(split).expanduser()
    path = path if path.is_absolute() else root / path
    return str(path) if data_cfg.format == "tfrecord" else path


def config_class_names(data_cfg):
    """The class list a config trains with, and where it came from.

    ``data.classes`` when set; else the format's own: the shapes classes,
    ``default_voc_classes`` for VOC, ``data.yaml`` / ``names.txt`` for YOLO,
    the categories of the training JSON for COCO, the class names stored in
    the training TFRecords.

    Returns:
      (list of str, where they came from in words).
    """
    _check_format(data_cfg)
    if data_cfg.classes:
        return list(data_cfg.classes), "data.classes"
    fmt, root = data_cfg.format, dataset_root(data_cfg)
    if fmt == "shapes":
        from detect.data.shapes import SHAPES_CLASSES

        return list(SHAPES_CLASSES), "the shapes dataset"
    if fmt == "voc":
        return default_voc_classes(root), "the annotations (the 20 VOC classes if they use only those)"
    if fmt == "yolo":
        return list(yolo_class_names(root)), "the dataset's names file"
    source = split_source(data_cfg, data_cfg.train_split)
    if fmt == "coco":
        return list(coco_class_names(source)), f"the categories of {source}"
    from detect.data.tfrecord import tfrecord_class_names  # TensorFlow

    return list(tfrecord_class_names(source)), f"the examples of {source}"


def load_split(data_cfg, split, class_names, skipped=None):
    """The ``Record`` list of one split of a config's dataset.

    Args:
      data_cfg: the ``data`` config section.
      split: the split to read (a name, COCO JSON or TFRecord pattern; see
        the module docstring).
      class_names: the class list (``config_class_names``).
      skipped: None to raise at the first broken annotation; a list to
        leave broken images out and append their ``InputError`` (the
        training run does this unless ``data.strict`` is set).

    Returns:
      list of ``Record``, at least one.

    Raises:
      InputError: unreadable data, a path outside the dataset root (unless
        ``data.allow_outside_root``), COCO categories or TFRecord class
        names other than ``class_names``, a split without images, or a
        split whose every image is broken.
    """
    found = [] if skipped is not None else None
    records = _read_split(data_cfg, split, class_names, found)
    if not records:
        source = split_source(data_cfg, split)
        if found:
            raise InputError(source, f"every image of split {split!r} is broken ({len(found)} images); "
                                     f"the first: {found[0]}")
        raise InputError(source, f"split {split!r} has no images")
    if found:
        skipped.extend(found)
    return records


def check_class_names(found, class_names, source):
    """Raises unless a dataset's own class list (COCO, TFRecord) is ``class_names``.

    Such formats store class ids against their own list, so another list
    would silently rename every class.
    """
    found, class_names = tuple(found), tuple(class_names)
    if found != class_names:
        raise InputError(source, f"the dataset's classes ({', '.join(found)}) differ from the class list "
                                 f"({', '.join(class_names)}); list them in this order in data.classes, "
                                 f"or leave data.classes out")


def _read_split(data_cfg, split, class_names, skipped):
    fmt, root = data_cfg.format, dataset_root(data_cfg)
    outside = data_cfg.allow_outside_root
    source = split_source(data_cfg, split)
    if fmt in VOC_LAYOUT_FORMATS:
        return read_voc(root, split, class_names=class_names, skip_unknown=data_cfg.skip_unknown,
                        allow_outside_root=outside, skipped=skipped)
    if fmt == "yolo":
        return read_yolo(root, split, class_names=class_names, allow_outside_root=outside, skipped=skipped)
    if fmt == "coco":
        records = read_coco(source, image_dir=root, allow_outside_root=outside, skipped=skipped)
    else:
        from detect.data.tfrecord import read_tfrecords  # TensorFlow

        records = read_tfrecords(source)
    if records:
        check_class_names(records[0].class_names, class_names, source)
    return records


def _check_format(data_cfg):
    if data_cfg.format not in CONFIG_FORMATS:
        raise InputError("data.format", f"unknown format {data_cfg.format!r}; choose one of "
                                        f"{', '.join(CONFIG_FORMATS)}")


def convert_dataset(records, to, out, num_shards=8, prefix="data"):
    """Writes records as TFRecord shards or as a COCO instances JSON.

    Args:
      records: ``Record`` objects.
      to: ``"tfrecord"`` (``out`` is a folder; see ``write_tfrecords``) or
        ``"coco"`` (``out`` is the JSON file; ``file_name`` is each image's
        base name).
      out: output folder or file.
      num_shards, prefix: TFRecord sharding.

    Returns:
      list of the paths written (str).
    """
    if to not in WRITE_FORMATS:
        raise InputError(to, f"unknown output format; choose one of {', '.join(WRITE_FORMATS)}")
    if to == "coco":
        if not records:
            raise InputError(out, "no images to write")
        return [str(write_coco(records, out))]
    from detect.data.tfrecord import write_tfrecords  # TensorFlow only when needed

    return write_tfrecords(records, out, num_shards=num_shards, prefix=prefix)


__all__ = ["COCO_JSON_TEMPLATE", "CONFIG_FORMATS", "READ_FORMATS", "WRITE_FORMATS", "check_class_names",
           "config_class_names", "config_splits", "convert_dataset", "dataset_root", "load_split",
           "prepare_dataset", "read_dataset", "split_source"]
