"""detect.ops.gather.gather_or_fill against a numpy loop."""

import numpy as np
import pytest
import tensorflow as tf

from detect.ops import NO_MATCH, NO_SAMPLE, PAD_INDEX
from detect.ops.gather import gather_or_fill


def reference(values, index, fill):
    out = np.full(index.shape + values.shape[2:], fill, values.dtype)
    for b in range(index.shape[0]):
        for k in range(index.shape[1]):
            if index[b, k] >= 0:
                out[b, k] = values[b, index[b, k]]
    return out


@pytest.mark.parametrize("trailing", [(), (4,)])
def test_matches_numpy_with_every_sentinel(trailing):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2, 5) + trailing).astype(np.float32)
    index = np.array([[0, 4, PAD_INDEX, 2], [NO_MATCH, NO_SAMPLE, 3, 3]], np.int32)
    got = gather_or_fill(tf.constant(values), tf.constant(index), -7.0).numpy()
    np.testing.assert_array_equal(got, reference(values, index, -7.0))
    assert (got[0, 2] == -7.0).all() and (got[1, :2] == -7.0).all()


def test_empty_values_give_fill_under_xla():
    fn = tf.function(lambda v, i: gather_or_fill(v, i, 3), jit_compile=True)
    got = fn(tf.zeros([2, 0], tf.int32), tf.constant([[-1, -1], [-1, -1]], tf.int32)).numpy()
    np.testing.assert_array_equal(got, np.full((2, 2), 3, np.int32))
