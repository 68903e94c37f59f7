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
letterbox only; ``detect.data.mosaic``, wired in ``detect.data.augment_stages``):
each image is first fitted to ``image_size``, then the stream is cut into groups of
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

Bad input. A missing or corrupt image, an unparseable Example and a broken
annotation are skipped, and a truncated JPEG whose rows mostly decode is
repaired and used, each with a warning and a count in a ``SkipCounter``;
with ``strict=True`` each is an ``InputError``. Reading and decoding stay in
the graph (``detect.data.sources``); the counter, ``pipeline_stats()`` and
``input_errors()`` are in ``detect.data.bad_input``. Boxes beyond
``max_boxes`` are dropped with a counted warning; clipped and degenerate
boxes are counted. With ``cache=True`` skips are reported in the first
epoch only.

Exit. Every Python callback of the pipeline goes through
``detect.data.python_calls``, so that tf.data threads are idle when the
interpreter shuts down; tools should still drop their iterators before
exiting.

Modules: ``sources`` (records / shards to decoded images), ``bad_input``
(checks and the counter), ``augment_stages`` (augment and resize each
image), ``batching`` (pad, batch-level stages), ``batch`` (reading a batch,
TensorFlow only); this module assembles them.
"""

import tensorflow as tf

from detect.data.augment_stages import graph_resizer, image_augmenter, mixed_images
from detect.data.augment_workers import AUTO, resolve_workers, usable_cores
from detect.data.bad_input import boxes_fixer, pipeline_stats, reporter
from detect.data.batching import multiscaler, padder, to_float
from detect.data.sources import ISOLATION_CYCLE, failed_decode, isolated, recover_truncated, source_elements

AUTOTUNE = tf.data.AUTOTUNE
RESIZE_MODES = ("letterbox", "shortest_side")

# Salt of the per-image ``min_sides`` stream, so that it is independent of the
# augmentation seeds that a stream with the plain ``seed`` gives.
_MIN_SIDES_SALT = 0x6D696E


def build_dataset(source, *, training, batch_size, image_size=416, max_boxes=100, augment=None,
                  multiscale_sizes=None, multiscale_every=10, resize="letterbox", min_side=600,
                  max_side=1000, size_divisor=32, min_sides=(), shuffle_buffer=1024, seed=0,
                  deterministic=False, cache=False, strict=False, drop_remainder=None, counter=None,
                  input_context=None, augment_workers=AUTO, fit_cache=None):
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
      augment_workers: processes that run the per-image augmentation
        (``detect.data.augment_workers``; the output is the same as in
        tf.data's threads): ``AUTO`` (-1) one per usable core when there
        are at least 2, 0 none (tf.data's threads), or a count. Mosaic /
        mixup run in the threads.
      fit_cache: a ``detect.data.fit_cache.FitCache`` to keep fitted images
        in for later epochs (pass the same one to each epoch's pipeline),
        or None. Used when training with ``augment`` and no ``min_sides``;
        batches are the same with it as without.

    Returns:
      ``tf.data.Dataset`` of batch dicts.

    Raises:
      ValueError: bad arguments. InputError: no TFRecord files match.
    """
    min_sides = _check_arguments(training=training, batch_size=batch_size, max_boxes=max_boxes, augment=augment,
                                 multiscale_sizes=multiscale_sizes, resize=resize, min_side=min_side,
                                 max_side=max_side, size_divisor=size_divisor, min_sides=min_sides)
    counter = pipeline_stats() if counter is None else counter
    drop_remainder = training if drop_remainder is None else drop_remainder

    geometry = dict(resize=resize, image_size=image_size, min_side=min_side, max_side=max_side)
    # Fitted images are what augmentation starts from; per-image min_sides would fit each image anew.
    fit_cache = fit_cache if training and augment is not None and not min_sides else None
    ds = _checked_images(source, training=training, seed=seed, shuffle_buffer=shuffle_buffer, cache=cache,
                         strict=strict, counter=counter, deterministic=deterministic, input_context=input_context,
                         fit_cache=fit_cache, geometry=geometry)
    workers = resolve_workers(augment_workers)
    workers = workers if training and augment is not None and not augment.mixes_images else 0  # where they work
    ds = _network_images(ds, geometry, training=training, augment=augment, min_sides=min_sides, seed=seed,
                         deterministic=deterministic, workers=workers, fit_cache=fit_cache)
    ds = _batches(ds, batch_size=batch_size, max_boxes=max_boxes, counter=counter, resize=resize,
                  size_divisor=size_divisor, drop_remainder=drop_remainder, deterministic=deterministic)
    if multiscale_sizes is not None:
        sizes = _multiscale_sizes(list(multiscale_sizes), multiscale_every, seed)
        # Always in order, or batches would leave their size group.
        ds = tf.data.Dataset.zip(ds, sizes).map(multiscaler(image_size), num_parallel_calls=AUTOTUNE,
                                                deterministic=True)
    ds = ds.prefetch(AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = deterministic
    if workers:
        # A thread that handed its image to a worker waits without using a core: one more thread
        # per worker keeps the cores busy (2 cores, BCCD: 278 -> 330 images/s, benchmark.py data --naive).
        options.threading.private_threadpool_size = usable_cores() + workers
    return ds.with_options(options)


def _check_arguments(*, training, batch_size, max_boxes, augment, multiscale_sizes, resize, min_side, max_side,
                     size_divisor, min_sides):
    """Raises ``ValueError`` for ``build_dataset`` arguments that do not fit; returns ``min_sides`` as a list of int."""
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
    return min_sides


def _checked_images(source, *, training, seed, shuffle_buffer, cache, strict, counter, deterministic, input_context,
                    fit_cache=None, geometry=None):
    """Decoded images that passed the checks (``detect.data.sources``, ``detect.data.bad_input``);
    with ``fit_cache``, the ones it holds come fitted from there."""
    ds, loaders = source_elements(source, training=training, seed=seed, input_context=input_context)
    if training and not cache:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(isolated(*loaders, recover_truncated, failed_decode, fit_cache=fit_cache, geometry=geometry),
                       cycle_length=ISOLATION_CYCLE, block_length=1, num_parallel_calls=AUTOTUNE,
                       deterministic=deterministic)
    ds = ds.map(reporter(counter, strict)).filter(lambda x: x["ok"])
    ds = ds.map(boxes_fixer(counter), num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if cache:
        ds = ds.cache("" if cache is True else str(cache))
        if training:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return ds


def _network_images(ds, geometry, *, training, augment, min_sides, seed, deterministic, workers=0, fit_cache=None):
    """Each image augmented (when training with ``augment``) or just resized (``detect.data.augment_stages``)."""
    if min_sides:
        # Per image, before the resize: the pick travels with its image whatever the map order.
        ds = tf.data.Dataset.zip(ds, _min_side_picks(min_sides, seed)).map(lambda x, m: dict(x, min_side=m))
    if training and augment is not None:
        # A per-image seed from a seeded stream: reproducible whatever the thread
        # scheduling, and different every epoch.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, seeds)
        if augment.mixes_images:
            ds = mixed_images(ds, augment, geometry, deterministic, fit_cache)
        else:
            ds = ds.map(image_augmenter(augment, geometry, workers, fit_cache),
                        num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    else:
        ds = ds.map(graph_resizer(geometry), num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    return ds


def _batches(ds, *, batch_size, max_boxes, counter, resize, size_divisor, drop_remainder, deterministic):
    """Boxes padded to ``max_boxes``, images batched and made float32 (``detect.data.batching``)."""
    divisor = size_divisor if resize == "shortest_side" else None
    ds = ds.map(padder(max_boxes, counter, divisor), num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if resize == "letterbox":
        ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE,
                      deterministic=deterministic)
    else:
        # Images differ in size: pad each batch to its largest (already divisor-rounded) image, with zeros.
        ds = ds.padded_batch(batch_size, drop_remainder=drop_remainder)
    if ds.element_spec["image"].dtype == tf.uint8:
        ds = ds.map(lambda b: to_float(b, compiled=resize == "letterbox"), num_parallel_calls=AUTOTUNE,
                    deterministic=deterministic)
    return ds


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


def _min_side_picks(min_sides, seed):
    """Endless per-image ``min_side``: a seeded random pick from ``min_sides``, fresh (still seeded) each epoch."""
    sides = tf.constant(min_sides, tf.int32)
    picks = tf.data.Dataset.random(seed=seed ^ _MIN_SIDES_SALT, rerandomize_each_iteration=True)
    return picks.map(lambda r: sides[tf.math.floormod(r, len(min_sides))])


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
