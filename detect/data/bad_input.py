"""Bad input in the input pipeline: the reasons, ``SkipCounter``, strict errors, the check stages.

An image the pipeline cannot use (``detect.data.sources`` turns a missing or
corrupt file, an unparseable Example or an undecodable image into a marked
element instead of an error), a truncated JPEG used after a repair, and an
image whose annotation is broken (non-finite coordinates, negative class
ids) go to a Python callback that runs only for them (``reporter``): it
logs a warning naming the file (for TFRecords ``shard[image_id]``, or
``shard[record i]`` when even the id is unreadable) and counts it in a
``SkipCounter`` (skipped or repaired); with ``strict=True`` it raises
``InputError`` instead, keeps it as the counter's ``fatal``, and the
iterator fails with a ``tf.errors.InvalidArgumentError``; iterate inside
``input_errors()`` to get the one-line ``InputError`` back. Boxes beyond
``max_boxes`` are dropped with a counted warning (``detect.data.batching``);
clipped and degenerate boxes are counted (``boxes_fixer``). The training
loop reads ``pipeline_stats()`` (or its own counter) at the end of an epoch
and resets it.
"""

import contextlib
import logging
import threading

import tensorflow as tf

from detect.data.python_calls import after, callback
from detect.errors import InputError

# Why an image was skipped; the reason strings appear in warnings and in the counter.
UNREADABLE_FILE = "cannot read the image file"
UNDECODABLE_IMAGE = "cannot decode the image (truncated, corrupt or not an image)"
UNPARSEABLE_EXAMPLE = "cannot parse the Example"
BROKEN_ANNOTATION = "broken annotation (non-finite box coordinates or negative class id)"
# Why an image was repaired (used, with a warning) rather than skipped.
TRUNCATED_JPEG = "truncated JPEG; the rows that decode are used, the rest is grey"

_MAX_NAMES = 100  # skipped-file names kept for the summary

# The input pipeline's warnings, under the logger name callers know them by.
log = logging.getLogger("detect.data.pipeline")


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


def reporter(counter, strict):
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
                       lambda: callback(report, [x["name"], reason, ok], on_close=lambda *a: False))
        out = dict(x, ok=ok)
        del out["repaired"], out["reason"]
        return after(flag, out)

    return step


def boxes_fixer(counter):
    """Clips boxes to the image and drops degenerate ones (counted, no warning)."""
    def count(clipped, degenerate):
        counter.fixed_boxes(int(clipped), int(degenerate))
        return False

    def step(x):
        # The decoded size: a cached image (``detect.data.fit_cache``) is already fitted, its boxes are not.
        shape = tf.cast(x["original_size"], tf.float32)
        limit = tf.stack([shape[1], shape[0], shape[1], shape[0]])
        boxes = tf.clip_by_value(x["boxes"], 0.0, limit)
        clipped = tf.reduce_any(tf.not_equal(boxes, x["boxes"]), axis=1)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        num_clipped = tf.reduce_sum(tf.cast(clipped & keep, tf.int32))
        num_degenerate = tf.reduce_sum(tf.cast(tf.logical_not(keep), tf.int32))
        flag = tf.cond(num_clipped + num_degenerate > 0,
                       lambda: callback(count, [num_clipped, num_degenerate]),
                       lambda: tf.constant(False))
        out = {"image_id": x["image_id"], "name": x["name"], "image": x["image"], "key": x["key"],
               "original_size": x["original_size"], "fitted": x["fitted"],
               "boxes": tf.boolean_mask(boxes, keep), "classes": tf.boolean_mask(x["classes"], keep),
               "ignore": tf.boolean_mask(x["ignore"], keep)}
        return after(flag, out)

    return step
