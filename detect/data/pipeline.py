"""tf.data input pipeline: records or TFRecord shards in, padded batches out.

    ds = build_dataset(read_voc(root, "train"), training=True, batch_size=16,
                       augment=AugmentConfig(), multiscale_sizes=range(320, 609, 32))

Stages, per image: read the file (or parse the Example) and decode the image
in the graph; check it (see "Bad input" below); clip boxes to the image and
drop degenerate ones; then either augment + resize in one
``tf.numpy_function`` (albumentations and OpenCV; OpenCV releases the GIL, so
parallel calls overlap) or, with augmentation off, resize in the graph; pad
the boxes to ``max_boxes`` (shortest side: and the image at the bottom and
right to a multiple of ``size_divisor``). Then batch, optionally resize whole batches for
multi-scale training, and prefetch. Every parallel stage uses AUTOTUNE.

A batch is a dict:

    image          [B, H, W, 3] float32 in [0, 1]
    image_hw       [B, 2] int32 (height, width) of each image's valid part of ``image``
    boxes          [B, max_boxes, 4] float32 xyxy network-input pixels, 0-padded
    classes        [B, max_boxes] int32, PAD_CLASS (-1) beyond num_boxes
    ignore         [B, max_boxes] bool, False-padded
    num_boxes      [B] int32
    image_id       [B] string
    transform      [B, 4] float32 [scale_y, scale_x, pad_y, pad_x]
    original_size  [B, 2] int32 (height, width) of the decoded image

Letterbox (YOLO): ``H = W = S``, ``image_size`` or the multi-scale size of
that batch (``multiscale_sizes``, one size per ``multiscale_every``
batches), a static shape; the grey bars belong to the input, so
``image_hw`` is the whole square ``[S, S]`` (where the content lies follows
from ``transform``).

Shortest side (Faster R-CNN): each image is resized so its shorter side is
``min_side`` (or a per-image pick from ``min_sides``) unless its longer
side would exceed ``max_side``, and is not padded on its own. Each batch is
padded (``padded_batch``, in the graph) to its own largest height and
width, each rounded up to a multiple of ``size_divisor``, so ``H`` and
``W`` vary from batch to batch (static shape ``[B, None, None, 3]``; at
most ``max_side`` rounded up). Image ``i`` lies in the top-left
``image_hw[i]`` corner, which is ``round(original_size[i] * scale)``; the
rest is 0. Anchor filtering, proposal clipping and unmapping read
``image_hw``.
The ``min_sides`` pick is per image, as in the Faster R-CNN recipes
(detectron2's ``ResizeShortestEdge``, torchvision's
``GeneralizedRCNNTransform``): every batch mixes scales, and the pick is
made where the image is resized, without having to know which batch the
image will land in (parallel maps may reorder images). The price is a
little more padding when a batch mixes small and large picks. The picks
come from a stream seeded by ``seed`` (``min_side_schedule``), apart from
the augmentation seeds, and fresh each epoch.

Either way ``transforms.unmap_boxes(boxes, transform)`` maps network-input
boxes back to original pixels; with augmentation on, ``transform``
describes the resize only.

Mosaic and mixup (``augment.mosaic_prob`` / ``mixup_prob`` > 0; training,
letterbox only; ``detect.data.mosaic``): each image is first fitted to
``image_size`` (``_fit``), then the stream is cut into groups of
``MOSAIC_GROUP`` images and every member gives one output: a mosaic of it
and three partners from its group, or its plain augmentation, possibly
blended with a second such image. The epoch keeps its length, each image is
read and decoded once, and a seed gives the same mosaics again
(``deterministic=True`` fixes the groups). For an output that is a mosaic,
``transform`` and ``original_size`` describe the element's own image (one of
the four pieces): its resize, its place on the canvas and the zoom (no
flip), valid for that piece only; the other pieces and a mixup's second
image are not recorded, so ``unmap_boxes`` has no meaning for such a batch.
Only training batches can be mosaics, and evaluation builds its own
``training=False`` pipeline, which never mixes images.

Bad input. tf.data has no try/except, and a failing op ends the epoch.
So reading (or parsing the Example) and decoding each run in a one-element
dataset with ``ignore_errors()``, followed by a marker element that is only
produced when the step gave nothing. A missing or corrupt image, or an
unparseable Example, thus becomes a marked element, decoding stays in the
graph, and the price is about 0.1 ms per image per step. A JPEG that fails
to decode gets a second try that recovers a truncated file
(``detect.data.decoding``): if at least ``MIN_DECODED_FRACTION`` of its
rows decode it is used and marked repaired. Marked elements, repaired
images, and images whose annotation is broken (non-finite coordinates,
negative class ids), go to a Python callback that runs only for them: it
logs a warning naming the file (for TFRecords ``shard[image_id]``, or
``shard[record i]`` when even the id is unreadable) and counts it in a
``SkipCounter`` (skipped or repaired); with ``strict=True`` it raises
``InputError`` instead, keeps it as the counter's ``fatal``, and the
iterator fails with a ``tf.errors.InvalidArgumentError``; iterate inside
``input_errors()`` to get the one-line ``InputError`` back. Boxes beyond ``max_boxes`` are dropped with a counted
warning; clipped and degenerate boxes are counted. The training loop reads
``pipeline_stats()`` (or its own counter) at the end of an epoch and resets
it. With ``cache=True`` skips are reported in the first epoch only.

Exit. A tf.data thread that is inside (or about to enter) a Python callback
while the interpreter shuts down aborts the process ("terminate called
without an active exception") or hangs it. Every callback here goes through
``_PythonCalls``; an ``atexit`` hook makes pending callbacks return at once
and waits until no callback has run for a moment, so the pipeline's buffers
are full and its threads idle before Python finalises. Tools should still
drop their iterators before exiting.
"""

import atexit
import contextlib
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from detect.data import transforms
from detect.data.augment import ThreadLocalAugmenter
from detect.data.decoding import MIN_DECODED_FRACTION, decode, decode_truncated_jpeg
from detect.data.mosaic import GroupAugmenter
from detect.data.records import Record
from detect.errors import InputError
from detect.ops import PAD_CLASS  # the project's one padding class (re-exported here for callers)

AUTOTUNE = tf.data.AUTOTUNE
RESIZE_MODES = ("letterbox", "shortest_side")

# Why an image was skipped; the reason strings appear in warnings and in the counter.
UNREADABLE_FILE = "cannot read the image file"
UNDECODABLE_IMAGE = "cannot decode the image (truncated, corrupt or not an image)"
UNPARSEABLE_EXAMPLE = "cannot parse the Example"
BROKEN_ANNOTATION = "broken annotation (non-finite box coordinates or negative class id)"
# Why an image was repaired (used, with a warning) rather than skipped.
TRUNCATED_JPEG = "truncated JPEG; the rows that decode are used, the rest is grey"

_MAX_NAMES = 100  # skipped-file names kept for the summary
_ISOLATION_CYCLE = max(4, os.cpu_count() or 1)  # images read and decoded at once
# Salt of the per-image ``min_sides`` stream, so that it is independent of the
# augmentation seeds that a stream with the plain ``seed`` gives.
_MIN_SIDES_SALT = 0x6D696E
# Images per mosaic group: an image's mosaic and mixup partners are drawn from its group.
MOSAIC_GROUP = 8

log = logging.getLogger(__name__)


class SkipCounter:
    """Counts what the pipeline skipped or changed; thread-safe.

    Read it at the end of an epoch (``summary()``, ``as_dict()``), then
    ``reset()``. With a prefetching or repeated dataset, counts near an
    epoch boundary may belong to the next epoch's first images.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self):
        """Zeroes every count."""
        with self._lock:
            self.skipped = {}  # reason -> images
            self.skipped_names = []
            self.repaired = {}  # reason -> images
            self.repaired_names = []
            self.truncated_images = 0
            self.truncated_boxes = 0
            self.clipped_boxes = 0
            self.degenerate_boxes = 0

        # The InputError a strict pipeline stopped on; tf.data reports it as an
        # OpError, and ``input_errors`` turns that back into this one line.
        self.fatal = None

    @property
    def num_skipped(self):
        return sum(self.skipped.values())

    @property
    def num_repaired(self):
        return sum(self.repaired.values())

    def as_dict(self):
        """The counts as a plain dict (a copy)."""
        with self._lock:
            return {"skipped": dict(self.skipped), "skipped_names": list(self.skipped_names),
                    "repaired": dict(self.repaired), "repaired_names": list(self.repaired_names),
                    "truncated_images": self.truncated_images, "truncated_boxes": self.truncated_boxes,
                    "clipped_boxes": self.clipped_boxes, "degenerate_boxes": self.degenerate_boxes}

    def summary(self):
        """One line for an end-of-epoch log."""
        d = self.as_dict()

        def listed(names):
            text = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            return f" ({text})" if text else ""

        return (f"input pipeline: {sum(d['skipped'].values())} images skipped{listed(d['skipped_names'])}; "
                f"{sum(d['repaired'].values())} repaired{listed(d['repaired_names'])}; "
                f"{d['truncated_boxes']} boxes beyond max_boxes dropped "
                f"in {d['truncated_images']} images; {d['clipped_boxes']} boxes clipped to the image; "
                f"{d['degenerate_boxes']} degenerate boxes dropped")

    # The methods below are called from tf.data threads.

    def skip(self, name, reason, strict):
        """Counts a skipped image; with ``strict`` raises ``InputError`` (and keeps it as ``fatal``)."""
        if strict:
            self.fatal = InputError(name, reason)
            raise self.fatal
        log.warning("skipping %s: %s", name, reason)
        with self._lock:
            self.skipped[reason] = self.skipped.get(reason, 0) + 1
            if len(self.skipped_names) < _MAX_NAMES:
                self.skipped_names.append(name)

    def repair(self, name, reason, strict):
        """Counts an image used after a repair; with ``strict`` it is an error like a skip.

        ``reason`` may end in a detail in parentheses (how much decoded);
        the count is kept per reason without it.
        """
        if strict:
            self.fatal = InputError(name, f"{reason}; data.strict refuses repaired images")
            raise self.fatal
        log.warning("repaired %s: %s", name, reason)
        kind = reason.split(" (")[0]
        with self._lock:
            self.repaired[kind] = self.repaired.get(kind, 0) + 1
            if len(self.repaired_names) < _MAX_NAMES:
                self.repaired_names.append(name)

    def truncate(self, name, num_boxes, max_boxes):
        log.warning("%s: %d boxes, more than max_boxes = %d; dropping the last %d",
                    name, num_boxes, max_boxes, num_boxes - max_boxes)
        with self._lock:
            self.truncated_images += 1
            self.truncated_boxes += num_boxes - max_boxes

    def fixed_boxes(self, clipped, degenerate):
        with self._lock:
            self.clipped_boxes += clipped
            self.degenerate_boxes += degenerate


_DEFAULT_COUNTER = SkipCounter()


def pipeline_stats():
    """The ``SkipCounter`` that datasets built without their own counter share."""
    return _DEFAULT_COUNTER


@contextlib.contextmanager
def input_errors(counter=None):
    """Re-raises a strict pipeline's failure as the ``InputError`` that caused it.

    tf.data can only report an exception raised inside the pipeline as a
    ``tf.errors.OpError`` with a long message; iterate a strict dataset
    inside this context to get the one-line error instead.
    """
    counter = _DEFAULT_COUNTER if counter is None else counter
    counter.fatal = None
    try:
        yield
    except tf.errors.OpError:
        if counter.fatal is not None:
            raise counter.fatal from None
        raise


class _PythonCalls:
    """Tracks Python callbacks made from tf.data threads, for a clean exit (module docstring)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.in_flight = 0
        self.last_call = 0.0
        self.closing = False

    def wrap(self, fn, on_close=None):
        """``fn`` with bookkeeping; after exit began it returns ``on_close()`` instead."""

        def wrapped(*args):
            with self._lock:
                self.in_flight += 1
                self.last_call = time.monotonic()
            try:
                if self.closing and on_close is not None:
                    return on_close(*args)
                return fn(*args)
            finally:
                with self._lock:
                    self.in_flight -= 1
                    self.last_call = time.monotonic()

        return wrapped

    def drain(self, quiet_s=0.25, timeout_s=5.0):
        """Waits until no callback ran for ``quiet_s`` (at most ``timeout_s``)."""
        self.closing = True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                idle = self.in_flight == 0 and time.monotonic() - self.last_call > quiet_s
            if idle:
                return True
            time.sleep(0.01)
        return False


_CALLS = _PythonCalls()
atexit.register(_CALLS.drain)


def batch_image_hw(batch):
    """The batch's ``image_hw`` [B, 2] int32, or the full image size for batches without one."""
    if "image_hw" in batch:
        return batch["image_hw"]
    shape = tf.shape(batch["image"])
    return tf.tile(shape[1:3][None], [shape[0], 1])


def build_dataset(source, *, training, batch_size, image_size=416, max_boxes=100, augment=None,
                  multiscale_sizes=None, multiscale_every=10, resize="letterbox", min_side=600,
                  max_side=1000, size_divisor=32, min_sides=(), shuffle_buffer=1024, seed=0,
                  deterministic=False, cache=False, strict=False, drop_remainder=None, counter=None,
                  input_context=None):
    """Builds the batched detection input pipeline (batch layout in the module docstring).

    Args:
      source: a list of ``Record`` (``image_path`` or ``image_bytes`` set),
        or TFRecord shards: a folder, file, glob pattern or list of them
        (``detect.data.tfrecord`` schema).
      training: shuffle, augment (if ``augment``) and use fresh random
        augmentations each epoch; False gives the fixed validation pipeline.
      batch_size: images per batch (per replica under ``distribute_dataset``).
      image_size: letterbox side ``S``.
      max_boxes: boxes per image after padding; extra boxes are dropped with
        a counted warning.
      augment: ``AugmentConfig``, or None for no augmentation. Used only when
        ``training``; its mosaic / mixup need ``resize="letterbox"``.
      multiscale_sizes: letterbox only; sizes (e.g. ``range(320, 609, 32)``)
        to resize whole batches to, a new one every ``multiscale_every``
        batches, chosen by ``seed``. Images are letterboxed to ``image_size``
        first.
      multiscale_every: batches per multi-scale size.
      resize: ``"letterbox"`` (square ``image_size``) or ``"shortest_side"``
        (``min_side`` / ``max_side``; each batch padded to its own extent).
      min_side, max_side: shortest-side only: the shorter side becomes
        ``min_side`` unless the longer would exceed ``max_side``
        (``1 <= min_side <= max_side``).
      size_divisor: shortest-side only: the batch's height and width are
        rounded up to a multiple of it (the network's coarsest stride);
        1 = no rounding. Ignored for letterbox.
      min_sides: shortest-side only: multi-scale; each image draws its
        ``min_side`` from these (each ``<= max_side``), a seeded pick per
        image (``min_side_schedule``); empty or None = always ``min_side``.
        Applied whenever given, like ``multiscale_sizes``: pass it for
        training only.
      shuffle_buffer: shuffle buffer size (elements) when training.
      seed: seed of the shuffle, the augmentations and the multi-scale sizes
        (``multiscale_sizes`` or ``min_sides``).
      deterministic: keep element order fixed across runs (slower; tests).
      cache: True keeps the decoded, checked images in memory (H*W*3 bytes
        each) so later epochs skip reading and decoding; a string caches to
        files with that prefix. Shuffling then happens after the cache, so
        the shuffle buffer holds decoded images too.
      strict: raise on a bad image or annotation instead of skipping it.
      drop_remainder: drop a last partial batch; defaults to ``training``.
      counter: ``SkipCounter`` to report to; None for ``pipeline_stats()``.
      input_context: ``tf.distribute.InputContext``; shards the input by
        pipeline (``distribute_dataset`` passes it).

    Returns:
      ``tf.data.Dataset`` of batch dicts.

    Raises:
      ValueError: bad arguments. InputError: no TFRecord files match.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize={resize!r}; expected one of {', '.join(RESIZE_MODES)}")
    if multiscale_sizes is not None and resize != "letterbox":
        raise ValueError("multiscale_sizes works with resize='letterbox' only; use min_sides for shortest_side")
    min_sides = [int(m) for m in min_sides or ()]
    if min_sides and resize != "shortest_side":
        raise ValueError("min_sides works with resize='shortest_side' only; use multiscale_sizes for letterbox")
    if batch_size < 1 or max_boxes < 1:
        raise ValueError(f"batch_size={batch_size}, max_boxes={max_boxes}; both must be >= 1")
    if resize == "shortest_side":
        if not (1 <= min_side <= max_side) or size_divisor < 1 or not all(1 <= m <= max_side for m in min_sides):
            raise ValueError(f"min_side={min_side}, max_side={max_side}, size_divisor={size_divisor}, "
                             f"min_sides={min_sides}; need 1 <= min_side(s) <= max_side and size_divisor >= 1")
    if training and augment is not None and augment.mixes_images and resize != "letterbox":
        raise ValueError("mosaic_prob / mixup_prob work with resize='letterbox' only")
    counter = _DEFAULT_COUNTER if counter is None else counter
    drop_remainder = training if drop_remainder is None else drop_remainder

    ds, loaders = _source(source, training=training, seed=seed, input_context=input_context)
    if training and not cache:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(_isolated(*loaders, _recover_truncated, _failed_decode), cycle_length=_ISOLATION_CYCLE, block_length=1,
                       num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    ds = ds.map(_reporter(counter, strict)).filter(lambda x: x["ok"])
    ds = ds.map(_boxes_fixer(counter), num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if cache:
        ds = ds.cache("" if cache is True else str(cache))
        if training:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)

    geometry = dict(resize=resize, image_size=image_size, min_side=min_side, max_side=max_side)
    if min_sides:
        # Per image, before the resize: the pick travels with its image whatever the map order.
        ds = tf.data.Dataset.zip(ds, _min_side_picks(min_sides, seed)).map(lambda x, m: dict(x, min_side=m))
    if training and augment is not None:
        # A per-image seed from a seeded stream: reproducible whatever the thread
        # scheduling, and different every epoch.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, seeds)
        if augment.mixes_images:
            ds = _mixed_images(ds, augment, geometry, deterministic)
        else:
            ds = ds.map(_augmenter(ThreadLocalAugmenter(augment), geometry),
                        num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    else:
        ds = ds.map(_graph_resizer(geometry), num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    divisor = size_divisor if resize == "shortest_side" else None
    ds = ds.map(_padder(max_boxes, counter, divisor), num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if resize == "letterbox":
        ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE,
                      deterministic=deterministic)
    else:
        # Images differ in size: pad each batch to its largest (already divisor-rounded) image, with zeros.
        ds = ds.padded_batch(batch_size, drop_remainder=drop_remainder)
    if ds.element_spec["image"].dtype == tf.uint8:
        ds = ds.map(_to_float, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if multiscale_sizes is not None:
        sizes = _multiscale_sizes(list(multiscale_sizes), multiscale_every, seed)
        # Always in order, or batches would leave their size group.
        ds = tf.data.Dataset.zip(ds, sizes).map(_multiscaler(image_size), num_parallel_calls=AUTOTUNE,
                                                deterministic=True)
    ds = ds.prefetch(AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options)


def multiscale_schedule(num_batches, sizes, every, seed):
    """The multi-scale sizes ``build_dataset`` gives the first ``num_batches`` batches of its first epoch.

    Returns:
      list of int, one per batch; constant over each run of ``every`` batches.
    """
    return [int(s) for s in _multiscale_sizes(list(sizes), every, seed).take(num_batches)]


def min_side_schedule(num_images, min_sides, seed):
    """The ``min_side`` each of the first ``num_images`` images gets from ``build_dataset(min_sides=...)``.

    In the order the images reach the resize (the source order without
    shuffling, skipped images left out), in the first epoch; later epochs
    draw fresh picks.

    Returns:
      list of int, each one of ``min_sides``.
    """
    return [int(m) for m in _min_side_picks([int(m) for m in min_sides], seed).take(num_images)]


def distribute_dataset(strategy, make_fn, global_batch_size):
    """Per-replica datasets under a ``tf.distribute.Strategy``.

    Args:
      strategy: the strategy.
      make_fn: ``make_fn(batch_size, input_context) -> tf.data.Dataset``,
        e.g. ``lambda b, ctx: build_dataset(src, training=True, batch_size=b,
        input_context=ctx)``. It gets the per-replica batch size.
      global_batch_size: batch size summed over replicas.

    Returns:
      ``tf.distribute.DistributedDataset``.
    """
    def dataset_fn(input_context):
        return make_fn(input_context.get_per_replica_batch_size(global_batch_size), input_context)

    return strategy.distribute_datasets_from_function(dataset_fn)


# ---- sources ----------------------------------------------------------------------

def _source(source, *, training, seed, input_context):
    """Elements to load and ``(read, failed_read, decode)`` for ``_isolated``."""
    if isinstance(source, (list, tuple)) and source and all(isinstance(r, Record) for r in source):
        ds = _records_dataset(source)
        if input_context is not None:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        return ds, (_read_record, _failed_read, _decode_image)
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
    return ds, (_example_parser(parse_example), _failed_parse, _decode_image)


def _records_dataset(records):
    lengths = [r.num_boxes for r in records]
    boxes = np.concatenate([r.boxes for r in records]).reshape(-1, 4)
    classes = np.concatenate([r.classes for r in records])
    ignore = np.concatenate([r.ignore for r in records])
    return tf.data.Dataset.from_tensor_slices({
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
        lambda i, serialized: {"shard": path, "index": i, "serialized": serialized})


def _read(name, image_id, data, boxes, classes, ignore, ok=True, reason=""):
    return {"name": name, "image_id": image_id, "data": data, "boxes": boxes, "classes": classes,
            "ignore": ignore, "ok": tf.constant(ok), "reason": tf.constant(reason),
            "repaired": tf.constant(False)}


def _read_record(x):
    data = tf.cond(x["path"] != "", lambda: tf.io.read_file(x["path"]), lambda: x["data"])
    return _read(x["name"], x["image_id"], data, x["boxes"], x["classes"], x["ignore"])


def _failed_read(x):
    return _read(x["name"], x["image_id"], "", tf.zeros([0, 4]), tf.zeros([0], tf.int32),
                 tf.zeros([0], tf.bool), ok=False, reason=UNREADABLE_FILE)


def _example_parser(parse_example):
    def parse(x):
        ex = parse_example(x["serialized"])
        name = tf.strings.join([x["shard"], "[", ex["image_id"], "]"])
        return _read(name, ex["image_id"], ex["image_bytes"], ex["boxes"], ex["classes"], ex["ignore"])

    return parse


def _failed_parse(x):
    name = tf.strings.join([x["shard"], "[record ", tf.strings.as_string(x["index"]), "]"])
    return _read(name, name, "", tf.zeros([0, 4]), tf.zeros([0], tf.int32), tf.zeros([0], tf.bool),
                 ok=False, reason=UNPARSEABLE_EXAMPLE)


def _decode_image(x):
    """Swaps the encoded bytes for the [H, W, 3] uint8 image."""
    out = dict(x, image=decode(x["data"]))
    del out["data"]
    return out


def _recover_truncated(x):
    """``_decode_image`` for a truncated JPEG, marked repaired; fails if too little decodes."""
    image, fraction = decode_truncated_jpeg(x["data"])
    reason = tf.strings.join([TRUNCATED_JPEG, " (", tf.strings.as_string(tf.round(fraction * 100), precision=0),
                              "% of the rows decode)"])
    out = dict(x, image=image, repaired=tf.constant(True), reason=reason)
    del out["data"]
    return out


def _failed_decode(x):
    out = dict(x, image=tf.zeros([0, 0, 3], tf.uint8), ok=tf.logical_and(x["ok"], False),
               reason=tf.where(x["ok"], UNDECODABLE_IMAGE, x["reason"]))
    del out["data"]
    return out


def _isolated(read, failed_read, decode, recover, failed_decode):
    """Per element: read then decode (else recover); a failing step yields its marker instead of an error."""
    def one(x):
        single = tf.data.Dataset.from_tensors(x)
        read_ok = single.map(read).ignore_errors()
        # Each fallback is evaluated only when the step before it produced nothing.
        decoded = (read_ok.map(decode).ignore_errors()
                   .concatenate(read_ok.map(recover).ignore_errors())
                   .concatenate(read_ok.map(failed_decode)).take(1))
        return decoded.concatenate(single.map(failed_read).map(failed_decode)).take(1)

    return one


# ---- per-image stages --------------------------------------------------------------

def _callback(fn, args, on_close=None):
    """Calls Python ``fn(*args)`` -> bool from the graph (rare paths only)."""
    return tf.numpy_function(_CALLS.wrap(fn, on_close), args, tf.bool, stateful=True)


def _after(flag, x):
    """``x`` with a control dependency on ``flag``, so the callback behind it runs."""
    with tf.control_dependencies([flag]):
        return {k: tf.identity(v) for k, v in x.items()}


def _reporter(counter, strict):
    def report(name, reason, ok):
        report_to = counter.repair if ok else counter.skip
        report_to(name.decode("utf-8", "replace"), reason.decode(), strict)
        return False

    def step(x):
        broken = tf.logical_not(tf.logical_and(tf.reduce_all(tf.math.is_finite(x["boxes"])),
                                               tf.reduce_all(x["classes"] >= 0)))
        reason = tf.where(x["ok"] & broken, BROKEN_ANNOTATION, x["reason"])
        ok = x["ok"] & tf.logical_not(broken)
        flag = tf.cond(ok & tf.logical_not(x["repaired"]), lambda: tf.constant(False),
                       lambda: _callback(report, [x["name"], reason, ok], on_close=lambda *a: False))
        out = dict(x, ok=ok)
        del out["repaired"], out["reason"]
        return _after(flag, out)

    return step


def _boxes_fixer(counter):
    """Clips boxes to the image and drops degenerate ones (counted, no warning)."""
    def count(clipped, degenerate):
        counter.fixed_boxes(int(clipped), int(degenerate))
        return False

    def step(x):
        shape = tf.cast(tf.shape(x["image"]), tf.float32)
        limit = tf.stack([shape[1], shape[0], shape[1], shape[0]])
        boxes = tf.clip_by_value(x["boxes"], 0.0, limit)
        clipped = tf.reduce_any(tf.not_equal(boxes, x["boxes"]), axis=1)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        num_clipped = tf.reduce_sum(tf.cast(clipped & keep, tf.int32))
        num_degenerate = tf.reduce_sum(tf.cast(tf.logical_not(keep), tf.int32))
        flag = tf.cond(num_clipped + num_degenerate > 0,
                       lambda: _callback(count, [num_clipped, num_degenerate]),
                       lambda: tf.constant(False))
        out = {"image_id": x["image_id"], "name": x["name"], "image": x["image"],
               "boxes": tf.boolean_mask(boxes, keep), "classes": tf.boolean_mask(x["classes"], keep),
               "ignore": tf.boolean_mask(x["ignore"], keep)}
        return _after(flag, out)

    return step


def _fit(image, boxes, geometry, min_side):
    """Resizes (no padding) to the size the final resize would give; boxes follow."""
    h, w = image.shape[:2]
    if geometry["resize"] == "letterbox":
        new_h, new_w, t = transforms.letterbox_geometry(h, w, geometry["image_size"])
    else:
        new_h, new_w, t = transforms.shortest_side_geometry(h, w, min_side, geometry["max_side"])
    return transforms.resize_image(image, new_h, new_w), boxes * t[[1, 0, 1, 0]], t


def _augmenter(augmenter, geometry):
    letterbox = geometry["resize"] == "letterbox"
    out_shape = [geometry["image_size"], geometry["image_size"], 3] if letterbox else [None, None, 3]

    def run(image, boxes, classes, ignore, seed, min_side):
        # Augment at network resolution (cheaper), then letterbox / resize what the crop left.
        image, boxes, t_fit = _fit(image, boxes, geometry, int(min_side))
        image, boxes, classes, ignore = augmenter(image, boxes, classes, ignore, seed)
        if letterbox:
            image, boxes, t = transforms.letterbox(image, boxes, geometry["image_size"])
        else:
            image, boxes, t = transforms.resize_shortest_side(image, boxes, int(min_side), geometry["max_side"])
        transform = np.array([t_fit[0] * t[0], t_fit[1] * t[1], t[2], t[3]], np.float32)
        return image, boxes.astype(np.float32), classes, ignore, transform

    def on_close(image, boxes, classes, ignore, seed, min_side):
        # Exit has begun: nobody will read this; return the right types fast.
        side = geometry["image_size"] if letterbox else 1
        return (np.zeros((side, side, 3), np.uint8), boxes, classes, ignore, np.ones(4, np.float32))

    wrapped = _CALLS.wrap(run, on_close)

    def step(x, seed):
        min_side = x.get("min_side", tf.constant(geometry["min_side"], tf.int32))
        image, boxes, classes, ignore, transform = tf.numpy_function(
            wrapped, [x["image"], x["boxes"], x["classes"], x["ignore"], seed, min_side],
            [tf.uint8, tf.float32, tf.int32, tf.bool, tf.float32], stateful=False)
        image = tf.ensure_shape(image, out_shape)
        return {"name": x["name"], "image_id": x["image_id"],
                "image": image,  # uint8 until batched: a quarter of the bytes to copy
                "boxes": tf.ensure_shape(boxes, [None, 4]), "classes": tf.ensure_shape(classes, [None]),
                "ignore": tf.ensure_shape(ignore, [None]), "transform": tf.ensure_shape(transform, [4]),
                "original_size": tf.shape(x["image"])[:2]}

    return step


def _fitter(geometry):
    """Mosaic / mixup, first step: each image resized to fit ``image_size`` (no padding) with ``_fit``."""
    def run(image, boxes):
        fitted, boxes, t_fit = _fit(image, boxes, geometry, geometry["min_side"])
        # Never hand back the input's own buffer (an image already at its fit size): tf.data owns it.
        fitted = fitted.copy() if np.shares_memory(fitted, image) else fitted
        return fitted, boxes.astype(np.float32), t_fit.astype(np.float32)

    def on_close(image, boxes):
        return np.zeros((1, 1, 3), np.uint8), np.array(boxes, np.float32), np.ones(4, np.float32)

    wrapped = _CALLS.wrap(run, on_close)

    def step(x, seed):
        image, boxes, t_fit = tf.numpy_function(wrapped, [x["image"], x["boxes"]],
                                                [tf.uint8, tf.float32, tf.float32], stateful=False)
        image = tf.ensure_shape(image, [None, None, 3])
        return {"name": x["name"], "image_id": x["image_id"], "image": image, "hw": tf.shape(image)[:2],
                "boxes": tf.ensure_shape(boxes, [None, 4]), "classes": x["classes"], "ignore": x["ignore"],
                "num_boxes": tf.shape(x["classes"])[0], "fit": tf.ensure_shape(t_fit, [4]), "seed": seed,
                "original_size": tf.shape(x["image"])[:2]}

    return step


def _group_augmenter(augmenter, size):
    """Mosaic / mixup, second step: a padded group of fitted images -> as many augmented ``size`` squares."""
    def run(images, hws, boxes, nums, classes, ignore, fits, seeds):
        fitted = [images[k, :hws[k, 0], :hws[k, 1]] for k in range(len(seeds))]
        labels = [(boxes[k, :nums[k]], classes[k, :nums[k]], ignore[k, :nums[k]]) for k in range(len(seeds))]
        outs = augmenter(fitted, labels, seeds)
        count = np.array([len(o.labels[1]) for o in outs], np.int32)
        # At least one (padding) slot: a zero-size array handed back to tf.numpy_function
        # crashed the process (seen at exit), so none is ever returned.
        most = max(int(count.max(initial=0)), 1)
        out_boxes = np.zeros((len(outs), most, 4), np.float32)
        out_classes = np.full((len(outs), most), PAD_CLASS, np.int32)
        out_ignore = np.zeros((len(outs), most), bool)
        for k, o in enumerate(outs):
            out_boxes[k, :count[k]], out_classes[k, :count[k]], out_ignore[k, :count[k]] = o.labels
        # The own image's place: its fit, then the output's scale and offset (module docstring).
        transform = np.array([[f[0] * o.scale[0], f[1] * o.scale[1], o.pad_y, o.pad_x] for f, o in zip(fits, outs)],
                             np.float32).reshape(-1, 4)
        return (np.stack([o.image for o in outs]), out_boxes, out_classes, out_ignore, count, transform)

    def on_close(images, hws, boxes, nums, classes, ignore, fits, seeds):
        g = len(seeds)
        return (np.zeros((g, size, size, 3), np.uint8), np.zeros((g, 1, 4), np.float32), np.zeros((g, 1), np.int32),
                np.zeros((g, 1), bool), np.zeros(g, np.int32), np.ones((g, 4), np.float32))

    wrapped = _CALLS.wrap(run, on_close)

    def step(g):
        image, boxes, classes, ignore, count, transform = tf.numpy_function(
            wrapped, [g["image"], g["hw"], g["boxes"], g["num_boxes"], g["classes"], g["ignore"], g["fit"], g["seed"]],
            [tf.uint8, tf.float32, tf.int32, tf.bool, tf.int32, tf.float32], stateful=False)
        return {"name": g["name"], "image_id": g["image_id"], "image": tf.ensure_shape(image, [None, size, size, 3]),
                "boxes": tf.ensure_shape(boxes, [None, None, 4]), "classes": tf.ensure_shape(classes, [None, None]),
                "ignore": tf.ensure_shape(ignore, [None, None]), "count": tf.ensure_shape(count, [None]),
                "transform": tf.ensure_shape(transform, [None, 4]), "original_size": g["original_size"]}

    return step


def _cut_boxes(x):
    n = x.pop("count")
    return dict(x, boxes=x["boxes"][:n], classes=x["classes"][:n], ignore=x["ignore"][:n])


def _mixed_images(ds, augment, geometry, deterministic):
    """Mosaic and mixup (``detect.data.mosaic``): (image, seed) elements in, augmented ``image_size`` squares out.

    Images are fitted one by one, then gathered in groups of ``MOSAIC_GROUP``
    in stream order (after the shuffle); each member gives one output, whose
    mosaic partners and mixup partner come from its group. So the epoch keeps
    its length, every image is decoded once, and the result depends only on
    the seed (with ``deterministic``, which fixes the groups).
    """
    size = geometry["image_size"]
    ds = ds.map(_fitter(geometry), num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    ds = ds.padded_batch(MOSAIC_GROUP)
    ds = ds.map(_group_augmenter(GroupAugmenter(augment, size), size), num_parallel_calls=AUTOTUNE,
                deterministic=deterministic)
    return ds.unbatch().map(_cut_boxes)


def _graph_resizer(geometry):
    def step(x):
        image = tf.cast(x["image"], tf.float32) * (1.0 / 255.0)
        if geometry["resize"] == "letterbox":
            out, transform = transforms.letterbox_tf(image, geometry["image_size"])
        else:
            out, transform = transforms.resize_shortest_side_tf(image, x.get("min_side", geometry["min_side"]),
                                                                geometry["max_side"])
        return {"name": x["name"], "image_id": x["image_id"], "image": out,
                "boxes": transforms.map_boxes(x["boxes"], transform), "classes": x["classes"],
                "ignore": x["ignore"], "transform": transform, "original_size": tf.shape(x["image"])[:2]}

    return step


def _padder(max_boxes, counter, size_divisor=None):
    """Pads the boxes to ``max_boxes``; with ``size_divisor``, the image at the bottom/right to a multiple of it."""
    def warn(name, num_boxes):
        counter.truncate(name.decode("utf-8", "replace"), int(num_boxes), max_boxes)
        return False

    def step(x):
        n = tf.shape(x["classes"])[0]
        flag = tf.cond(n > max_boxes, lambda: _callback(warn, [x["name"], n]), lambda: tf.constant(False))
        keep = tf.minimum(n, max_boxes)
        pad = max_boxes - keep
        with tf.control_dependencies([flag]):
            boxes = tf.pad(x["boxes"][:keep], [[0, pad], [0, 0]])
        image_hw = tf.shape(x["image"], out_type=tf.int32)[:2]
        image = x["image"] if size_divisor is None else transforms.pad_to_multiple_tf(x["image"], size_divisor)
        return {
            "image": image,
            "image_hw": image_hw,
            "boxes": tf.ensure_shape(boxes, [max_boxes, 4]),
            "classes": tf.ensure_shape(tf.pad(x["classes"][:keep], [[0, pad]], constant_values=PAD_CLASS),
                                       [max_boxes]),
            "ignore": tf.ensure_shape(tf.pad(x["ignore"][:keep], [[0, pad]]), [max_boxes]),
            "num_boxes": keep,
            "image_id": x["image_id"],
            "transform": x["transform"],
            "original_size": tf.cast(x["original_size"], tf.int32),
        }

    return step


def _min_side_picks(min_sides, seed):
    """Endless per-image ``min_side``: a seeded random pick from ``min_sides``, fresh (still seeded) each epoch."""
    sides = tf.constant(min_sides, tf.int32)
    picks = tf.data.Dataset.random(seed=seed ^ _MIN_SIDES_SALT, rerandomize_each_iteration=True)
    return picks.map(lambda r: sides[tf.math.floormod(r, len(min_sides))])


# ---- batch stages ------------------------------------------------------------------

def _to_float(batch):
    return dict(batch, image=tf.cast(batch["image"], tf.float32) * (1.0 / 255.0))


def _multiscale_sizes(sizes, every, seed):
    """Endless per-batch sizes: a seeded random pick from ``sizes``, held for ``every`` batches.

    A fresh (still seeded) sequence each time the dataset is iterated, so
    epochs differ; groups start again at the start of each epoch.
    """
    if not sizes or every < 1:
        raise ValueError(f"multiscale_sizes={sizes!r}, multiscale_every={every!r}; need sizes and every >= 1")
    sizes_t = tf.constant(sizes, tf.int32)
    picks = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return picks.flat_map(
        lambda r: tf.data.Dataset.from_tensors(sizes_t[tf.math.floormod(r, len(sizes))]).repeat(every))


def _multiscaler(base_size):
    def step(batch, size):
        factor = tf.cast(size, tf.float32) / base_size
        image = tf.cond(size == base_size, lambda: batch["image"],
                        lambda: tf.image.resize(batch["image"], tf.stack([size, size]), antialias=True))
        # A uniform resize of the square scales boxes, scales and pad offsets alike.
        return dict(batch, image=image, boxes=batch["boxes"] * factor,
                    transform=transforms.rescale_transform(batch["transform"], factor),
                    image_hw=tf.fill(tf.shape(batch["image_hw"]), size))

    return step
