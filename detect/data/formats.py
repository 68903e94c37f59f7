"""One entry point over the dataset readers and writers, for tools and configs.

``read_dataset`` picks the reader by format name; ``convert_dataset`` reads
and writes TFRecord shards or a COCO instances JSON. TensorFlow is imported
only when TFRecords are written.
"""

from pathlib import Path

from detect.data.coco import read_coco, write_coco
from detect.data.voc import VOC_CLASSES, read_voc, voc_class_names_in
from detect.data.yolo import read_yolo
from detect.errors import InputError

READ_FORMATS = ("voc", "coco", "yolo")
WRITE_FORMATS = ("tfrecord", "coco")
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
        (VOC: the 20 VOC classes if the annotations use only those, else the
        sorted names found; COCO: categories; YOLO: ``data.yaml``). COCO
        takes its classes from the JSON and rejects this argument.
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
        found = voc_class_names_in(root)
        class_names = VOC_CLASSES if set(found) <= set(VOC_CLASSES) else found
    return read_voc(root, split, class_names, allow_outside_root=allow_outside_root)


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


__all__ = ["COCO_JSON_TEMPLATE", "READ_FORMATS", "WRITE_FORMATS", "convert_dataset",
           "read_dataset"]
