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
        from detect.data.yolo import read_yolo

        return list(read_yolo(root, data_cfg.train_split)[0].class_names)
    if data_cfg.format == "coco":
        from detect.data.coco import read_coco

        records = read_coco(_coco_json(data_cfg, data_cfg.train_split), image_dir=root)
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


def load_records(data_cfg, split, class_names):
    """The ``Record`` list of a split (a split name, COCO JSON or TFRecord pattern)."""
    root = dataset_root(data_cfg)
    fmt = data_cfg.format
    if fmt in ("voc", "shapes"):
        from detect.data.voc import read_voc

        return read_voc(root, split, class_names=class_names, skip_unknown=data_cfg.skip_unknown)
    if fmt == "yolo":
        from detect.data.yolo import read_yolo

        return read_yolo(root, split, class_names=class_names)
    if fmt == "coco":
        from detect.data.coco import read_coco

        return read_coco(_coco_json(data_cfg, split), image_dir=root)
    if fmt == "tfrecord":
        from detect.data.tfrecord import read_tfrecords

        return read_tfrecords(_pattern(data_cfg, split))
    raise InputError("data.format", f"unknown format {fmt!r}")
