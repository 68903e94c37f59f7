"""The XLA switch of the NMS walks: compiled with XLA, or traced as plain ops.

Its own module because both the single-class tile walk
(:mod:`detect.ops.nms_greedy`) and the band steps of batched NMS
(:mod:`detect.ops.nms_banded`) are compiled through it, and neither owns it.
"""

import contextlib
import threading

import tensorflow as tf

# Whether the XLA-compiled pieces below are traced as plain TensorFlow ops (per thread).
_PLAIN = threading.local()


def _xla_compiled(fn):
    """``fn`` compiled with XLA, or traced as plain ops inside ``without_xla()``.

    The walks are while loops of small ops, several times faster under XLA
    even when the caller is not compiled; but a graph that holds an
    XLA-compiled function needs XLA's JIT wherever it runs (TensorFlow
    Serving on CPU runs without it by default), so exports trace without.
    """
    compiled = tf.function(fn, jit_compile=True, autograph=False)

    def call(*args, **kwargs):
        return fn(*args, **kwargs) if getattr(_PLAIN, "on", False) else compiled(*args, **kwargs)

    return call


@contextlib.contextmanager
def without_xla():
    """Within it (in this thread), ``nms`` and ``batched_nms`` trace as plain
    TensorFlow ops: the same algorithm without the XLA-compiled functions,
    for graphs that must run where XLA's JIT is off (SavedModel exports).
    """
    previous = getattr(_PLAIN, "on", False)
    _PLAIN.on = True
    try:
        yield
    finally:
        _PLAIN.on = previous
