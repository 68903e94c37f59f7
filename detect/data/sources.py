"""The input pipeline's sources: records or TFRecord shards in, decoded images out, bad input marked.

``source_elements`` turns a list of ``Record`` or TFRecord shards into a
dataset of elements to load and the steps that load one; ``isolated``
runs them per element. tf.data has no try/except, and a failing op ends
the epoch. So reading (or parsing the Example) and decoding each run in a
one-element dataset with ``ignore_errors()``, followed by a marker element
that is only produced when the step gave nothing. A missing or corrupt
image, or an unparseable Example, thus becomes a marked element
(``ok`` False, a ``reason`` from ``detect.data.bad_input``), decoding stays
in the graph, and the price is about 0.1 ms per image per step. A JPEG
that fails to decode gets a second try that recovers a truncated file
(``detect.data.decoding``): if at least ``MIN_DECODED_FRACTION`` of its
rows decode it is used and marked repaired. ``detect.data.bad_input``
reports marked and repaired elements.

Every element carries a ``key`` naming where its image comes from (its
place in the record list, or shard and index) and, once decoded, its
``original_size`` and ``fitted`` (False). With a ``FitCache``
(``detect.data.fit_cache``), ``isolated`` first looks the key up: a hit
skips reading and decoding and gives the cached image, already fitted to
the network size (``fitted`` True), with the annotation alone read.
"""

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from detect.data.bad_input import TRUNCATED_JPEG, UNDECODABLE_IMAGE, UNPARSEABLE_EXAMPLE, UNREADABLE_FILE
from detect.data.decoding import decode, decode_truncated_jpeg
from detect.data.fit_cache import UNCACHED, geometry_key
from detect.data.records import Record

AUTOTUNE = tf.data.AUTOTUNE
ISOLATION_CYCLE = max(4, os.cpu_count() or 1)  # images read and decoded at once


def source_elements(source, *, training, seed, input_context):
    """Elements to load and the ``(read, failed_read, decode, annotation)`` steps ``isolated`` takes.

    ``annotation`` reads an element without its image (for a cache hit)."""
    if isinstance(source, (list, tuple)) and source and all(isinstance(r, Record) for r in source):
        ds = _records_dataset(source)
        if input_context is not None:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        return ds, (_read_record, _failed_read, _decode_image, _record_annotation)
    if isinstance(source, (list, tuple)) and not source:
        raise ValueError("build_dataset: the source is an empty list")
    if isinstance(source, (list, tuple)) and any(isinstance(r, Record) for r in source):
        raise ValueError("build_dataset: a source list mixes Record objects with other items")
    from detect.data.tfrecord import parse_example, tfrecord_files

    patterns = [source] if isinstance(source, (str, Path)) else list(source)
    files = sorted({f for p in patterns for f in tfrecord_files(p)})
    ds = tf.data.Dataset.from_tensor_slices(files)
    per_file = input_context is not None and len(files) >= input_context.num_input_pipelines
    if per_file:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(_shard_examples, cycle_length=min(len(files), 4), block_length=1,
                       num_parallel_calls=AUTOTUNE, deterministic=True)
    if input_context is not None and not per_file:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    parse = _example_parser(parse_example)
    return ds, (parse, _failed_parse, _decode_image, parse)


def _records_dataset(records):
    lengths = [r.num_boxes for r in records]
    boxes = np.concatenate([r.boxes for r in records]).reshape(-1, 4)
    classes = np.concatenate([r.classes for r in records])
    ignore = np.concatenate([r.ignore for r in records])
    return tf.data.Dataset.from_tensor_slices({
        "key": [str(i) for i in range(len(records))],
        "name": [r.image_path or str(r.image_id) for r in records],
        "image_id": [str(r.image_id) for r in records],
        "path": [r.image_path or "" for r in records],
        "data": [b"" if r.image_path or r.image_bytes is None else r.image_bytes for r in records],
        "boxes": tf.RaggedTensor.from_row_lengths(boxes, lengths),
        "classes": tf.RaggedTensor.from_row_lengths(classes, lengths),
        "ignore": tf.RaggedTensor.from_row_lengths(ignore, lengths),
    })


def _shard_examples(path):
    return tf.data.TFRecordDataset(path).enumerate().map(
        lambda i, serialized: {"key": tf.strings.join([path, "#", tf.strings.as_string(i)]), "shard": path,
                               "index": i, "serialized": serialized})


def _read(key, name, image_id, data, boxes, classes, ignore, ok=True, reason=""):
    return {"key": key, "name": name, "image_id": image_id, "data": data, "boxes": boxes, "classes": classes,
            "ignore": ignore, "ok": tf.constant(ok), "reason": tf.constant(reason),
            "repaired": tf.constant(False)}


def _read_record(x):
    data = tf.cond(x["path"] != "", lambda: tf.io.read_file(x["path"]), lambda: x["data"])
    return _read(x["key"], x["name"], x["image_id"], data, x["boxes"], x["classes"], x["ignore"])


def _record_annotation(x):
    return _read(x["key"], x["name"], x["image_id"], "", x["boxes"], x["classes"], x["ignore"])


def _failed_read(x):
    return _read(x["key"], x["name"], x["image_id"], "", tf.zeros([0, 4]), tf.zeros([0], tf.int32),
                 tf.zeros([0], tf.bool), ok=False, reason=UNREADABLE_FILE)


def _example_parser(parse_example):
    def parse(x):
        ex = parse_example(x["serialized"])
        name = tf.strings.join([x["shard"], "[", ex["image_id"], "]"])
        return _read(x["key"], name, ex["image_id"], ex["image_bytes"], ex["boxes"], ex["classes"], ex["ignore"])

    return parse


def _failed_parse(x):
    name = tf.strings.join([x["shard"], "[record ", tf.strings.as_string(x["index"]), "]"])
    return _read(x["key"], name, name, "", tf.zeros([0, 4]), tf.zeros([0], tf.int32), tf.zeros([0], tf.bool),
                 ok=False, reason=UNPARSEABLE_EXAMPLE)


def _with_image(x, image, fitted=False, **changes):
    """``x`` with ``image`` in place of its encoded bytes."""
    size = tf.ensure_shape(tf.shape(image)[:2], [2])
    out = dict(x, image=image, original_size=size, fitted=tf.constant(fitted), **changes)
    del out["data"]
    return out


def _decode_image(x):
    """Swaps the encoded bytes for the [H, W, 3] uint8 image."""
    return _with_image(x, decode(x["data"]))


def recover_truncated(x):
    """``_decode_image`` for a truncated JPEG, marked repaired (and never cached); fails if too little decodes."""
    image, fraction = decode_truncated_jpeg(x["data"])
    reason = tf.strings.join([TRUNCATED_JPEG, " (", tf.strings.as_string(tf.round(fraction * 100), precision=0),
                              "% of the rows decode)"])
    return _with_image(x, image, repaired=tf.constant(True), reason=reason, key=tf.constant(UNCACHED))


def failed_decode(x):
    return _with_image(x, tf.zeros([0, 0, 3], tf.uint8), ok=tf.logical_and(x["ok"], False),
                       reason=tf.where(x["ok"], UNDECODABLE_IMAGE, x["reason"]))


def isolated(read, failed_read, decode, annotation, recover, failed_decode, fit_cache=None, geometry=None):
    """Per element: read then decode (else recover); a failing step yields its marker instead of an error.

    With ``fit_cache`` (and the fit's ``geometry``), an element found there
    is its ``annotation`` with the cached image, ``fitted`` and its
    ``original_size``; its ``key`` becomes the table's key either way.
    """
    def one(x):
        single = tf.data.Dataset.from_tensors(x)
        read_ok = single.map(read).ignore_errors()
        # Each fallback is evaluated only when the step before it produced nothing.
        decoded = (read_ok.map(decode).ignore_errors()
                   .concatenate(read_ok.map(recover).ignore_errors())
                   .concatenate(read_ok.map(failed_decode)).take(1))
        return decoded.concatenate(single.map(failed_read).map(failed_decode)).take(1)

    if fit_cache is None:
        return one

    def cached_or_one(x):
        key = geometry_key(x["key"], geometry)
        hit, image, size = fit_cache.lookup(key)
        x = dict(x, key=key)

        def served():
            return tf.data.Dataset.from_tensors(dict(_with_image(annotation(x), image, fitted=True), original_size=size))

        # Only the branch taken is built: a hit reads its annotation alone, a miss is read as without a cache.
        return tf.cond(hit, served, lambda: one(x))

    return cached_or_one
