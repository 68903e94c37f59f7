"""The input pipeline's augment-and-resize step: decoded images in, network-size images out.

Three ways, each giving the same element (image, boxes, ``transform``,
``original_size``; see ``detect.data.pipeline`` for the batch they become):

* ``image_augmenter``: per image, albumentations (``detect.data.augment``)
  and the resize in one ``tf.numpy_function``; the image is first fitted to
  the network size (``fit``), so augmenting is cheaper. It runs in the
  tf.data thread or, with ``workers``, in worker processes
  (``detect.data.augment_workers``).
* ``mixed_images``: mosaic and mixup (``detect.data.mosaic``). Images are
  fitted one by one, then cut into groups of ``MOSAIC_GROUP`` in stream
  order; every member gives one output, whose partners come from its group.
* ``graph_resizer``: augmentation off; the resize runs in the graph.

With a ``FitCache`` (``detect.data.fit_cache``), the first two keep each
fitted image they make and take the ones the cache served as they are
(element ``fitted``).

Python callbacks go through ``detect.data.python_calls``. OpenCV runs
single-threaded once an augmenting pipeline is built (``opencv_per_image``).
"""

import numpy as np
import tensorflow as tf

from detect.data import transforms
from detect.data.augment import ThreadLocalAugmenter
from detect.data.augment_workers import NO_FIT, fit_or_take, opencv_per_image, run_one, shared_pool
from detect.data.mosaic import GroupAugmenter
from detect.data.python_calls import CALLS
from detect.ops import PAD_CLASS

AUTOTUNE = tf.data.AUTOTUNE
# Images per mosaic group: an image's mosaic and mixup partners are drawn from its group.
MOSAIC_GROUP = 8


def _keeps(fit_cache, x):
    """Whether the fitted image of ``x`` should go into ``fit_cache`` (None: no cache)."""
    if fit_cache is None:
        return tf.constant(False)
    return tf.logical_and(tf.logical_not(x["fitted"]), fit_cache.has_room())


def _kept(fit_cache, x, keep, fitted, out):
    """``out`` once ``fitted`` went into ``fit_cache`` (when ``keep``)."""
    if fit_cache is None:
        return out
    done = tf.cond(keep, lambda: fit_cache.insert(x["key"], fitted, x["original_size"]), lambda: tf.constant(False))
    with tf.control_dependencies([done]):
        return dict(out, image=tf.identity(out["image"]))


def image_augmenter(cfg, geometry, workers=0, fit_cache=None):
    """The per-image step: ``run_one`` in the calling tf.data thread (``workers`` 0) or in the
    process's pool of ``workers`` processes (``detect.data.augment_workers``); the same output
    either way. With ``fit_cache``, fitted images are kept there and cached ones used."""
    opencv_per_image()
    letterbox = geometry["resize"] == "letterbox"
    out_shape = [geometry["image_size"], geometry["image_size"], 3] if letterbox else [None, None, 3]
    if workers:
        pool = shared_pool(workers)

        def run(image, boxes, classes, ignore, seed, min_side, fitted, original_size, keep_fit):
            return pool.run(cfg, geometry, image, boxes, classes, ignore, seed, min_side,
                            original_size if fitted else None, keep_fit)
    else:
        augmenter = ThreadLocalAugmenter(cfg)

        def run(image, boxes, classes, ignore, seed, min_side, fitted, original_size, keep_fit):
            return run_one(augmenter, geometry, image, boxes, classes, ignore, seed, min_side,
                           original_size if fitted else None, keep_fit)

    def on_close(image, boxes, classes, ignore, *_):
        # Exit has begun: nobody will read this; return the right types fast.
        side = geometry["image_size"] if letterbox else 1
        return (np.zeros((side, side, 3), np.uint8), boxes, classes, ignore, np.ones(4, np.float32), NO_FIT)

    wrapped = CALLS.wrap(run, on_close)

    def step(x, seed):
        min_side = x.get("min_side", tf.constant(geometry["min_side"], tf.int32))
        keep = _keeps(fit_cache, x)
        image, boxes, classes, ignore, transform, fitted = tf.numpy_function(
            wrapped, [x["image"], x["boxes"], x["classes"], x["ignore"], seed, min_side, x["fitted"],
                      x["original_size"], keep],
            [tf.uint8, tf.float32, tf.int32, tf.bool, tf.float32, tf.uint8], stateful=False)
        image = tf.ensure_shape(image, out_shape)
        out = {"name": x["name"], "image_id": x["image_id"],
               "image": image,  # uint8 until batched: a quarter of the bytes to copy
               "boxes": tf.ensure_shape(boxes, [None, 4]), "classes": tf.ensure_shape(classes, [None]),
               "ignore": tf.ensure_shape(ignore, [None]), "transform": tf.ensure_shape(transform, [4]),
               "original_size": x["original_size"]}
        return _kept(fit_cache, x, keep, tf.ensure_shape(fitted, [None, None, 3]), out)

    return step


def _fitter(geometry, fit_cache=None):
    """Mosaic / mixup, first step: each image resized to fit ``image_size`` (no padding) with ``fit``
    (or taken as the ``fit_cache`` served it)."""
    def run(image, boxes, fitted, original_size):
        fitted, boxes, t_fit = fit_or_take(image, boxes, geometry, geometry["min_side"],
                                           original_size if fitted else None)
        # Never hand back the input's own buffer (an image already at its fit size): tf.data owns it.
        fitted = fitted.copy() if np.shares_memory(fitted, image) else fitted
        return fitted, boxes.astype(np.float32), t_fit.astype(np.float32)

    def on_close(image, boxes, *_):
        return np.zeros((1, 1, 3), np.uint8), np.array(boxes, np.float32), np.ones(4, np.float32)

    wrapped = CALLS.wrap(run, on_close)

    def step(x, seed):
        image, boxes, t_fit = tf.numpy_function(wrapped, [x["image"], x["boxes"], x["fitted"], x["original_size"]],
                                                [tf.uint8, tf.float32, tf.float32], stateful=False)
        image = tf.ensure_shape(image, [None, None, 3])
        out = {"name": x["name"], "image_id": x["image_id"], "image": image, "hw": tf.shape(image)[:2],
               "boxes": tf.ensure_shape(boxes, [None, 4]), "classes": x["classes"], "ignore": x["ignore"],
               "num_boxes": tf.shape(x["classes"])[0], "fit": tf.ensure_shape(t_fit, [4]), "seed": seed,
               "original_size": x["original_size"]}
        return _kept(fit_cache, x, _keeps(fit_cache, x), image, out)

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
        # The own image's place: its fit, then the output's scale and offset (``detect.data.pipeline`` docstring).
        transform = np.array([[f[0] * o.scale[0], f[1] * o.scale[1], o.pad_y, o.pad_x] for f, o in zip(fits, outs)],
                             np.float32).reshape(-1, 4)
        return (np.stack([o.image for o in outs]), out_boxes, out_classes, out_ignore, count, transform)

    def on_close(images, hws, boxes, nums, classes, ignore, fits, seeds):
        g = len(seeds)
        return (np.zeros((g, size, size, 3), np.uint8), np.zeros((g, 1, 4), np.float32), np.zeros((g, 1), np.int32),
                np.zeros((g, 1), bool), np.zeros(g, np.int32), np.ones((g, 4), np.float32))

    wrapped = CALLS.wrap(run, on_close)

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


def mixed_images(ds, augment, geometry, deterministic, fit_cache=None):
    """Mosaic and mixup (``detect.data.mosaic``): (image, seed) elements in, augmented ``image_size`` squares out.

    Images are fitted one by one, then gathered in groups of ``MOSAIC_GROUP``
    in stream order (after the shuffle); each member gives one output, whose
    mosaic partners and mixup partner come from its group. So the epoch keeps
    its length, every image is decoded once, and the result depends only on
    the seed (with ``deterministic``, which fixes the groups).
    """
    size = geometry["image_size"]
    opencv_per_image()
    ds = ds.map(_fitter(geometry, fit_cache), num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    ds = ds.padded_batch(MOSAIC_GROUP)
    ds = ds.map(_group_augmenter(GroupAugmenter(augment, size), size), num_parallel_calls=AUTOTUNE,
                deterministic=deterministic)
    return ds.unbatch().map(_cut_boxes)


def graph_resizer(geometry):
    def step(x):
        image = tf.cast(x["image"], tf.float32) * (1.0 / 255.0)
        if geometry["resize"] == "letterbox":
            out, transform = transforms.letterbox_tf(image, geometry["image_size"])
        else:
            out, transform = transforms.resize_shortest_side_tf(image, x.get("min_side", geometry["min_side"]),
                                                                geometry["max_side"])
        return {"name": x["name"], "image_id": x["image_id"], "image": out,
                "boxes": transforms.map_boxes(x["boxes"], transform), "classes": x["classes"],
                "ignore": x["ignore"], "transform": transform, "original_size": x["original_size"]}

    return step
