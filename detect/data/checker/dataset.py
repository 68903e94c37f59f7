"""The dataset checker's entry points: any dataset path, or a config's loaded ``data`` section.

``check_dataset`` picks the per-format check by what its source is.
Configs are loaded by the caller: the data layer does not import the
training layer, whose config types a config YAML is loaded into, so
``check_dataset`` takes the loader as an argument and ``check_config``
takes the loaded ``data`` section.
"""

import dataclasses
from pathlib import Path

from detect.data import voc
from detect.data.checker.coco import check_coco, check_coco_splits
from detect.data.checker.tfrecord import check_tfrecord
from detect.data.checker.voc import check_voc
from detect.data.checker.yolo import check_yolo
from detect.data.formats import VOC_LAYOUT_FORMATS
from detect.errors import InputError


def check_dataset(source, splits=None, class_names=None, image_dir=None, decode_images=True,
                  allow_outside_root=False, overrides=(), load_config=None):
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
      overrides: for a config, ``key=value`` overrides (``--set``), passed
        to ``load_config``.
      load_config: for a config YAML, the function that loads it:
        ``load_config(path, overrides)`` returns the experiment config, whose
        ``data`` section is checked (``check_config``); training's
        ``detect.train.experiment.load_experiment`` validates every key and
        applies the overrides as ``tools/train.py`` does. Needed only for a
        config.

    Returns:
      ``DatasetReport``.

    Raises:
      InputError: unusable input (no such path, not a dataset, no such split,
        a config that does not load).
      ValueError: a config YAML without ``load_config``.
    """
    path = Path(source)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    kwargs = dict(class_names=class_names, decode_images=decode_images,
                  allow_outside_root=allow_outside_root)
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        if load_config is None:
            raise ValueError(f"{path}: checking a config YAML needs load_config, the function that loads "
                             f"it (e.g. detect.train.experiment.load_experiment)")
        return check_config(load_config(path, overrides).data, path, splits=splits, **kwargs)
    if path.is_file() and path.suffix.lower() == ".json":
        return check_coco(path, image_dir=image_dir, **kwargs)
    if path.is_dir() and voc.is_voc_root(path):
        return check_voc(path, splits=splits, **kwargs)
    if path.is_dir() and (path / "images").is_dir() and (path / "labels").is_dir():
        return check_yolo(path, splits=splits, **kwargs)
    raise InputError(path, "not a dataset: expected a VOC root (with Annotations/), a COCO JSON, "
                           "a YOLO root (with images/ and labels/) or a config YAML")


def check_config(data_cfg, path, splits=None, class_names=None, decode_images=True, allow_outside_root=False):
    """Checks the dataset of an experiment config, exactly as training reads it.

    The caller loads the config (``detect.train.experiment.load_experiment``
    validates every key and value and applies ``--set`` overrides) and
    passes its ``data`` section; the format, root, splits and class list
    come from ``detect.data.formats``, the dispatcher training and
    evaluation use. A ``shapes`` dataset is generated on first use, as
    training does.

    Args:
      data_cfg: the loaded config's ``data`` section (a ``DataConfig``).
      path: the config file, named in the report's first note.
      splits: overrides the config's train / val / test splits.
      class_names: overrides the config's class list.
      decode_images: see ``check_dataset``.
      allow_outside_root: also accept paths outside the root (the config's
        ``data.allow_outside_root`` counts too).

    Returns:
      ``DatasetReport``, with a first note naming the config.

    Raises:
      InputError: data that cannot be read at all (see
        ``check_data_config``).
    """
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
    if data_cfg.format in VOC_LAYOUT_FORMATS:
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
