"""Runs an op eagerly, in tf.function and under XLA and checks they agree."""

import numpy as np
import tensorflow as tf


def _to_numpy(result):
    return tf.nest.map_structure(lambda t: np.asarray(t), result)


def assert_same_compiled(fn, *args, atol=1e-5):
    """Asserts eager == tf.function == tf.function(jit_compile=True) outputs.

    Returns the eager result (as numpy) so tests can also check its values.
    """
    eager = _to_numpy(fn(*args))
    for jit in (False, True):
        compiled = _to_numpy(tf.function(fn, jit_compile=jit)(*args))
        tf.nest.assert_same_structure(eager, compiled)
        for e, c in zip(tf.nest.flatten(eager), tf.nest.flatten(compiled)):
            assert e.shape == c.shape, (jit, e.shape, c.shape)
            if np.issubdtype(e.dtype, np.floating):
                np.testing.assert_allclose(c, e, atol=atol, rtol=1e-5, err_msg=f"jit_compile={jit}")
            else:
                np.testing.assert_array_equal(c, e, err_msg=f"jit_compile={jit}")
    return eager
