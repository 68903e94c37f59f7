"""Sharded TFRecord files of ``tf.train.Example``: writer, graph parser, reader.

One Example per image. Feature keys (the schema; ``parse_example`` is the
one place that reads it):

=================  ===========  =============================================
key                type         value
=================  ===========  =============================================
``image/encoded``  bytes        the image file's bytes as stored (not re-encoded)
``image/id``       bytes        ``str(image_id)``, UTF-8
``image/height``   int64        image height in pixels
``image/width``    int64        image width in pixels
``boxes``          float list   N * 4 values, ``xyxy`` pixels, row by row
``classes``        int64 list   N class ids
``ignore``         int64 list   N flags, 1 = ignore (difficult, crowd)
``class_names``    bytes list   the dataset's class names, UTF-8
``area``           bytes        N float64, little-endian: each object's area
                                for COCO's size ranges (``Record.area``);
                                absent in older files: the box area
=================  ===========  =============================================

``area`` is raw float64 rather than a float list because a float list is
float32, and COCO's small / medium / large ranges must see the very area
that ``tools/eval.py`` reads from the JSON.

Files are ``{prefix}-{i:05d}-of-{n:05d}.tfrecord`` with a ``{prefix}.json``
sidecar holding the class names, counts and the shard list.
"""

import contextlib
import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from detect.data.records import Record
from detect.errors import InputError
from detect.outputs import atomic_path, write_json_atomic

SUFFIX = ".tfrecord"
AREA_DTYPE = np.dtype("<f8")

_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/id": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "boxes": tf.io.VarLenFeature(tf.float32),
    "classes": tf.io.VarLenFeature(tf.int64),
    "ignore": tf.io.VarLenFeature(tf.int64),
}


def write_tfrecords(records, out_dir, num_shards=8, prefix="data"):
    """Writes records as sharded TFRecord files plus a JSON sidecar.

    Records go to shards in contiguous runs, so reading the shards in name
    order gives the records back in their original order. Shards from an
    earlier run with the same prefix but another shard count are removed,
    so a folder never mixes two writes.

    Args:
      records: ``Record`` objects sharing one class list; each needs
        ``image_bytes`` or a readable ``image_path``.
      out_dir: output folder (created).
      num_shards: number of files; at most one per record (at least one).
      prefix: file name prefix.

    Returns:
      list of the shard paths (str), in order.

    Raises:
      InputError: an image file is missing or unreadable.
      ValueError: records with different class lists.
    """
    records = list(records)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    class_names = records[0].class_names if records else ()
    num_shards = max(1, min(int(num_shards), len(records)))
    paths = [out_dir / f"{prefix}-{i:05d}-of-{num_shards:05d}{SUFFIX}" for i in range(num_shards)]

    shards, class_counts = [], np.zeros(len(class_names), np.int64)
    # Every shard goes to a temporary sibling first; all are renamed into place only once all are
    # written, so a failure leaves an earlier conversion with this prefix whole.
    with contextlib.ExitStack() as renames:
        for path, chunk in zip(paths, np.array_split(np.arange(len(records)), num_shards)):
            num_boxes = 0
            with tf.io.TFRecordWriter(str(renames.enter_context(atomic_path(path)))) as writer:
                for i in chunk:
                    record = records[i]
                    if record.class_names != class_names:
                        raise ValueError(f"write_tfrecords: record {record.image_id!r} has classes "
                                         f"{record.class_names}, expected {class_names}")
                    writer.write(record_to_example(record).SerializeToString())
                    num_boxes += record.num_boxes
                    class_counts += np.bincount(record.classes, minlength=len(class_names))
            shards.append({"file": path.name, "images": len(chunk), "boxes": num_boxes})
    _remove_stale_shards(out_dir, prefix, keep=paths)
    sidecar = {
        "class_names": list(class_names),
        "images": len(records),
        "boxes": int(sum(s["boxes"] for s in shards)),
        "boxes_per_class": dict(zip(class_names, class_counts.tolist())),
        "shards": shards,
    }
    write_json_atomic(out_dir / f"{prefix}.json", sidecar, indent=1)
    return [str(p) for p in paths]


def record_to_example(record):
    """The ``tf.train.Example`` of one record (schema in the module docstring)."""
    image = record.image_bytes
    if image is None:
        if record.image_path is None:
            raise InputError(f"image {record.image_id}",
                             "record has neither image bytes nor a path")
        try:
            image = Path(record.image_path).read_bytes()
        except FileNotFoundError:
            raise InputError(record.image_path, "image file not found") from None
        except OSError as error:
            raise InputError(record.image_path,
                             f"cannot read image: {error.strerror or error}") from None
    feature = {
        "image/encoded": _bytes([image]),
        "image/id": _bytes([str(record.image_id).encode()]),
        "image/height": _int64([record.height]),
        "image/width": _int64([record.width]),
        "boxes": tf.train.Feature(float_list=tf.train.FloatList(value=record.boxes.reshape(-1))),
        "classes": _int64(record.classes),
        "ignore": _int64(record.ignore.astype(np.int64)),
        "class_names": _bytes([name.encode() for name in record.class_names]),
        "area": _bytes([record.area.astype(AREA_DTYPE).tobytes()]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def parse_example(serialized):
    """Parses one serialized Example; works in graph mode (``tf.data`` ``map``).

    Args:
      serialized: scalar string tensor.

    Returns:
      dict of tensors: ``image_bytes`` string scalar (still encoded),
      ``image_id`` string scalar, ``height`` and ``width`` int32 scalars,
      ``boxes`` [N, 4] float32 xyxy pixels, ``classes`` [N] int32,
      ``ignore`` [N] bool.
    """
    parsed = tf.io.parse_single_example(serialized, _FEATURES)
    return {
        "image_bytes": parsed["image/encoded"],
        "image_id": parsed["image/id"],
        "height": tf.cast(parsed["image/height"], tf.int32),
        "width": tf.cast(parsed["image/width"], tf.int32),
        "boxes": tf.reshape(tf.sparse.to_dense(parsed["boxes"]), [-1, 4]),
        "classes": tf.cast(tf.sparse.to_dense(parsed["classes"]), tf.int32),
        "ignore": tf.sparse.to_dense(parsed["ignore"]) != 0,
    }


def tfrecord_files(pattern_or_dir):
    """Sorted TFRecord paths from a folder (its ``*.tfrecord``), a file or a glob pattern.

    Raises:
      InputError: nothing matches.
    """
    source = str(pattern_or_dir)
    path = Path(source)
    if path.is_dir():
        # Hidden names are temporaries of a write in progress (or killed), not shards.
        files = sorted(str(p) for p in path.glob(f"*{SUFFIX}") if not p.name.startswith("."))
    elif path.is_file():
        files = [source]
    else:
        files = sorted(tf.io.gfile.glob(source))
    if not files:
        raise InputError(source, "no TFRecord files found")
    return files


def read_tfrecords(pattern):
    """Reads TFRecord files back into records (for round trips, checks and training).

    Args:
      pattern: anything ``tfrecord_files`` accepts.

    Returns:
      list of ``Record`` in file order, with ``image_bytes`` set, ``image_id``
      the stored string, ``class_names`` and ``area`` from each Example.

    Raises:
      InputError: no files match, or a file is not a readable TFRecord file.
    """
    records = []
    for path in tfrecord_files(pattern):
        dataset = tf.data.TFRecordDataset(path).map(lambda s: (s, parse_example(s)))
        try:
            for serialized, example in dataset.as_numpy_iterator():
                features = tf.train.Example.FromString(serialized).features.feature
                records.append(Record(
                    image_id=example["image_id"].decode(),
                    height=int(example["height"]),
                    width=int(example["width"]),
                    boxes=example["boxes"],
                    classes=example["classes"],
                    ignore=example["ignore"],
                    class_names=tuple(n.decode() for n in features["class_names"].bytes_list.value),
                    image_bytes=example["image_bytes"],
                    area=_area(features, len(example["classes"])),
                ))
        except (tf.errors.OpError, ValueError) as error:
            message = getattr(error, "message", str(error)).splitlines()[0]
            raise InputError(path, f"record {len(records)}: cannot read: {message}") from None
    return records


def tfrecord_class_names(pattern):
    """The class names stored in the first Example of the first file (``tfrecord_files`` order).

    Raises:
      InputError: no files, or the files hold no Example.
    """
    files = tfrecord_files(pattern)
    try:
        for serialized in tf.data.TFRecordDataset(files).take(1).as_numpy_iterator():
            names = tf.train.Example.FromString(serialized).features.feature["class_names"]
            return tuple(n.decode() for n in names.bytes_list.value)
    except tf.errors.OpError as error:
        raise InputError(files[0], f"record 0: cannot read: {error.message.splitlines()[0]}") from None
    raise InputError(pattern, "the TFRecord files hold no examples")


def _area(features, num_boxes):
    """``Record.area`` from an Example's ``area`` feature; None (the box area) when absent."""
    if "area" not in features or not features["area"].bytes_list.value:
        return None
    area = np.frombuffer(features["area"].bytes_list.value[0], AREA_DTYPE)
    if len(area) != num_boxes:
        raise ValueError(f"area holds {len(area)} values for {num_boxes} boxes")
    return area.astype(np.float64)


def _remove_stale_shards(out_dir, prefix, keep):
    pattern = re.compile(re.escape(prefix) + r"-\d{5}-of-\d{5}" + re.escape(SUFFIX) + "$")
    keep = {p.name for p in keep}
    for path in out_dir.iterdir():
        if pattern.match(path.name) and path.name not in keep:
            path.unlink()


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _int64(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


__all__ = ["SUFFIX", "parse_example", "read_tfrecords", "record_to_example", "tfrecord_class_names",
           "tfrecord_files", "write_tfrecords"]
