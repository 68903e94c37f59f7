"""Fitted training images kept in memory from one epoch to the next, within a byte budget.

Training augments each image after fitting it to the network size
(``augment_workers.fit``: a resize, no randomness), and reading, decoding
and fitting an image give the same pixels every epoch. So the first epoch
keeps each fitted image, with the size it was decoded at, in a table keyed
by where the image comes from (``key``: its place in the record list, or
its shard and index) and the fit's geometry; later epochs take it from
there and skip reading, decoding and fitting. The table is looked up per
element where the image would be read, after the shuffle, so the order of
the elements and every seed stay as they were: batches are the same to the
bit with and without the cache (tests/test_fit_cache.py).

What is not kept: images repaired from a truncated file (read and reported
again every epoch, as without the cache) and anything once the budget is
spent (first come, first kept; parallel inserts may overrun it by a few
images). A fitted 416-letterbox image is at most 416 x 416 x 3 bytes
(519 KB), so a few hundred photos of any size fit in a few hundred MB;
their decoded originals (36 MB each at 12 megapixels) would not.

One ``FitCache`` serves one list of records or one set of shards at one
geometry, for as long as it lives: ``detect.train.run`` makes one per run
and passes it to every epoch's ``build_dataset``.
"""

import tensorflow as tf

# ``key`` of an element that must not be cached (a repaired image): never inserted, never found.
UNCACHED = ""


class FitCache:
    """The table of fitted images (module docstring).

    Args:
      budget_bytes: most bytes of fitted pixels to keep (> 0).
    """

    def __init__(self, budget_bytes):
        if budget_bytes <= 0:
            raise ValueError(f"FitCache budget_bytes={budget_bytes}; must be > 0 (pass no cache instead)")
        self.budget_bytes = int(budget_bytes)
        # On the CPU, where tf.data runs, whatever device a strategy would pick.
        with tf.device("/cpu:0"):
            # TensorFlow's mutable tables take int64 keys with string values: the key's 64-bit hash
            # indexes them, and the key itself is kept to tell a hash collision from a hit.
            self._tables = {name: tf.lookup.experimental.MutableHashTable(tf.int64, dtype, default_value=default)
                            for name, dtype, default in (("image", tf.string, ""), ("key", tf.string, ""),
                                                         ("height", tf.int64, 0), ("width", tf.int64, 0))}
            self._used = tf.Variable(0, dtype=tf.int64, trainable=False, name="fit_cache_bytes")

    @property
    def used_bytes(self):
        return int(self._used.numpy())

    def __len__(self):
        return int(self._tables["image"].size().numpy())

    def lookup(self, key):
        """In the graph: (hit bool, fitted image [h, w, 3] uint8 (0 x 0 on a miss), decoded size [2] int32)."""
        index = _index(key)
        value = self._tables["image"].lookup(index)
        hit = tf.logical_and(key != UNCACHED, tf.reshape(self._tables["key"].lookup(index) == key, []))
        image = tf.cond(hit, lambda: tf.io.parse_tensor(value, tf.uint8), lambda: tf.zeros([0, 0, 3], tf.uint8))
        size = tf.reshape(tf.stack([self._tables["height"].lookup(index), self._tables["width"].lookup(index)]), [2])
        return hit, tf.ensure_shape(image, [None, None, 3]), tf.ensure_shape(tf.cast(size, tf.int32), [2])

    def has_room(self):
        """In the graph: whether another image may still be kept."""
        return self._used.read_value() < self.budget_bytes

    def insert(self, key, image, original_size):
        """In the graph: keeps ``image`` (fitted, uint8) under ``key`` if there is room and no other key
        holds its hash; returns whether it did."""
        index = _index(key)
        nbytes = tf.cast(tf.size(image), tf.int64)
        size = tf.cast(original_size, tf.int64)

        def keep():
            # The key last: a lookup that sees it finds the image and size too.
            with tf.control_dependencies([self._tables["image"].insert(index, tf.io.serialize_tensor(image)),
                                          self._tables["height"].insert(index, size[0]),
                                          self._tables["width"].insert(index, size[1])]):
                with tf.control_dependencies([self._tables["key"].insert(index, key)]):
                    return tf.identity(self._used.assign_add(nbytes) > 0)

        free = tf.logical_and(key != UNCACHED, self._tables["key"].lookup(index) == "")
        room = tf.logical_and(free, self._used.read_value() + nbytes <= self.budget_bytes)
        return tf.cond(room, keep, lambda: tf.constant(False))


def _index(key):
    return tf.strings.to_hash_bucket_fast(key, 2 ** 63 - 1)


def geometry_key(key, geometry):
    """The table key of element ``key`` fitted with ``geometry`` (``augment_workers.fit``'s dict): one
    image may be fitted at several geometries in one cache; a repaired image stays ``UNCACHED``."""
    if geometry["resize"] == "letterbox":
        fit = f"@letterbox{geometry['image_size']}"
    else:
        fit = f"@shortest{geometry['min_side']},{geometry['max_side']}"
    return tf.where(key == UNCACHED, UNCACHED, tf.strings.join([key, fit]))
