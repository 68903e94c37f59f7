"""From a config's ``data`` section to records and class names."""

from pathlib import Path

from detect.errors import InputError


def dataset_root(data_cfg):
    return Path(data_cfg.root).expanduser()


def prepare_data(data_cfg):
    """Generates the shapes dataset when the config asks for it and it is absent."""
    if data_cfg.format == "shapes":
        from detect.data.shapes import ensure_shapes

        shapes = data_cfg.shapes
        ensure_shapes(dataset_root(data_cfg), "voc", num_images=shapes.num_images, size=shapes.image_size,
                      seed=shapes.seed)


def class_names_of(data_cfg):
    """The config's class list, else the format's default or the dataset's own."""
    if data_cfg.classes:
        return list(data_cfg.classes)
    root = dataset_root(data_cfg)
    if data_cfg.format == "shapes":
        from detect.data.shapes import SHAPES_CLASSES

        return list(SHAPES_CLASSES)
    if data_cfg.format == "voc":
        from detect.data.voc import VOC_CLASSES

        return list(VOC_CLASSES)  # the default; configs list their own
    if data_cfg.format == "yolo":
        from detect.data.yolo import yolo_class_names

        return list(yolo_class_names(root))
    if data_cfg.format == "coco":
        from detect.data.coco import read_coco

        records = read_coco(_coco_json(data_cfg, data_cfg.train_split), image_dir=root,
                            allow_outside_root=data_cfg.allow_outside_root, skipped=[])
        return list(records[0].class_names) if records else []
    if data_cfg.format == "tfrecord":
        from detect.data.tfrecord import read_tfrecords

        records = read_tfrecords(_pattern(data_cfg, data_cfg.train_split))
        return list(records[0].class_names) if records else []
    raise InputError("data.format", f"unknown format {data_cfg.format!r}")


def _coco_json(data_cfg, split):
    path = Path(split)
    return path if path.is_absolute() else dataset_root(data_cfg) / path


def _pattern(data_cfg, split):
    path = Path(split)
    return str(path if path.is_absolute() else dataset_root(data_cfg) / path)


def load_records(data_cfg, split, class_names, skipped=None):
    """The ``Record`` list of a split (a split name, COCO JSON or TFRecord pattern).

    Args:
      data_cfg: the ``data`` config section.
      split: the split to read.
      class_names: the class list.
      skipped: None to raise at the first broken annotation; a list to
        leave broken images out and append their ``InputError`` (the
        training run does this unless ``data.strict`` is set).

    Raises:
      InputError: unreadable data, a path outside the dataset root (unless
        ``data.allow_outside_root``), a split without images, or a split
        whose every image is broken.
    """
    found = [] if skipped is not None else None
    records = _read_split(data_cfg, split, class_names, found)
    if not records:
        source = _split_source(data_cfg, split)
        if found:
            raise InputError(source, f"every image of split {split!r} is broken ({len(found)} images); "
                                     f"the first: {found[0]}")
        raise InputError(source, f"split {split!r} has no images")
    if found:
        skipped.extend(found)
    return records


def _read_split(data_cfg, split, class_names, skipped):
    root = dataset_root(data_cfg)
    fmt = data_cfg.format
    outside = data_cfg.allow_outside_root
    if fmt in ("voc", "shapes"):
        from detect.data.voc import read_voc

        return read_voc(root, split, class_names=class_names, skip_unknown=data_cfg.skip_unknown,
                        allow_outside_root=outside, skipped=skipped)
    if fmt == "yolo":
        from detect.data.yolo import read_yolo

        return read_yolo(root, split, class_names=class_names, allow_outside_root=outside, skipped=skipped)
    if fmt == "coco":
        from detect.data.coco import read_coco

        return read_coco(_coco_json(data_cfg, split), image_dir=root, allow_outside_root=outside,
                         skipped=skipped)
    if fmt == "tfrecord":
        from detect.data.tfrecord import read_tfrecords

        return read_tfrecords(_pattern(data_cfg, split))
    raise InputError("data.format", f"unknown format {fmt!r}")


def _split_source(data_cfg, split):
    """The file or folder that defines a split, for messages."""
    if data_cfg.format in ("voc", "shapes"):
        from detect.data.voc import SPLITS_DIR

        return dataset_root(data_cfg) / SPLITS_DIR / f"{split}.txt"
    if data_cfg.format == "coco":
        return _coco_json(data_cfg, split)
    if data_cfg.format == "tfrecord":
        return _pattern(data_cfg, split)
    return dataset_root(data_cfg) / "images" / split
