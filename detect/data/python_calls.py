"""Python callbacks from tf.data threads that cannot abort the process at exit.

A tf.data thread that is inside (or about to enter) a Python callback
(``tf.numpy_function``) while the interpreter shuts down aborts the process
("terminate called without an active exception") or hangs it. Every
callback of the input pipeline (``detect.data.pipeline``) goes through
``CALLS``; an ``atexit`` hook makes pending callbacks return at once and
waits until no callback has run for a moment, so the pipeline's buffers are
full and its threads idle before Python finalises. Tools should still drop
their iterators before exiting.
"""

import atexit
import threading
import time

import tensorflow as tf


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


CALLS = _PythonCalls()
atexit.register(CALLS.drain)


def callback(fn, args, on_close=None):
    """Calls Python ``fn(*args)`` -> bool from the graph (rare paths only)."""
    return tf.numpy_function(CALLS.wrap(fn, on_close), args, tf.bool, stateful=True)


def after(flag, x):
    """``x`` with a control dependency on ``flag``, so the callback behind it runs."""
    with tf.control_dependencies([flag]):
        return {k: tf.identity(v) for k, v in x.items()}
