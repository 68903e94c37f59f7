"""Shared timing and reporting of the benchmarks (``tools/benchmark.py``).

``median_seconds`` times any warm call. For the ops suite: an ``Impl`` is
one implementation of a row's step; ``measure`` / ``make_row`` time ours and
its references in alternation (first call, warm median, peak memory from the
allocator that serves each) into a ``Row``, which ``print_row`` prints.
"""

import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


def median_seconds(fn, repeats):
    """Median wall time of fn() after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def alternating_rounds(rounds_of, rounds):
    """Times ``{name: fn}`` side by side: one cold call of each, then ``rounds`` rounds in which each runs once,
    in turn, so load from other processes falls on all of them.

    Returns:
      ({name: cold seconds}, {name: [seconds of each warm round]}).
    """
    cold, timings = {}, {name: [] for name in rounds_of}
    for name, fn in rounds_of.items():
        start = time.perf_counter()
        fn()
        cold[name] = time.perf_counter() - start
    for _ in range(rounds):
        for name, fn in rounds_of.items():
            start = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - start)
    return cold, timings


# ---- side-by-side measurement (the ops suite's rows) -------------------------------

# Blocks below this size are left out of the CPU allocator's statistics
# (oneDNN's allocator, measured on TensorFlow 2.21); GPU allocators count all.
CPU_UNCOUNTED_BELOW = 256 * 1024


@dataclass
class Impl:
    """One implementation of a row's step.

    ``fn()`` runs the step once and returns its result on the host; ``memory``
    names the allocator that serves it (``"tf"`` or ``"numpy"``); ``repeats``
    caps the warm calls of a slow reference.
    """

    name: str
    fn: Callable[[], object]
    memory: str = "tf"
    repeats: int | None = None


@dataclass
class Measured:
    """What one implementation took in a row."""

    name: str
    cold_s: float  # first call of a fresh function: tracing and XLA compilation included
    warm_s: float  # median of the warm calls
    peak_bytes: int | None  # peak memory of one call above what was in use before it; None: not measurable
    memory: str  # how peak_bytes was measured
    agree: bool = True  # same result as ours (ours itself: True)


@dataclass
class Row:
    name: str
    ours: Measured
    refs: list
    notes: list = field(default_factory=list)
    info: dict = field(default_factory=dict)


def tf_memory_device():
    """The device whose allocator serves TensorFlow steps: GPU:0 if any, else CPU:0."""
    import tensorflow as tf

    return "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"


_TF_MEMORY_TRACKED = {}


def tf_memory_tracked(device):
    """Whether ``device``'s allocator keeps peak statistics (a 4 MiB step must show)."""
    if device not in _TF_MEMORY_TRACKED:
        import tensorflow as tf

        with tf.device(device):
            probe = tf.function(lambda: tf.reduce_sum(tf.random.uniform([1 << 20]) + 1.0))
        peak = tf_step_peak(lambda: probe().numpy(), device, check=False)
        _TF_MEMORY_TRACKED[device] = peak is not None and peak >= 4 << 20
    return _TF_MEMORY_TRACKED[device]


def tf_step_peak(fn, device, check=True):
    """Peak bytes TensorFlow's allocator on ``device`` holds during ``fn()``,
    above what it held before; None where it keeps no statistics."""
    import tensorflow as tf

    if check and not tf_memory_tracked(device):
        return None
    try:
        tf.config.experimental.reset_memory_stats(device)
        before = tf.config.experimental.get_memory_info(device)["current"]
        fn()
        return tf.config.experimental.get_memory_info(device)["peak"] - before
    except (ValueError, RuntimeError, tf.errors.OpError):
        return None


def numpy_step_peak(fn):
    """Peak bytes traced by tracemalloc during ``fn()`` (numpy reports its
    arrays to it), above what was traced before."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def memory_method(memory, device):
    if memory == "numpy":
        return "tracemalloc"
    return f"tf {device}"


def measure(impls, repeats):
    """First call, warm median and peak memory of each implementation.

    Warm calls go round the implementations in turn, so that load from
    other processes falls on all of them alike; the peak is taken on one
    more call, apart from the timed ones (tracemalloc slows numpy down).

    Args:
      impls: list of Impl; each ``fn`` is fresh (never called before).
      repeats: warm calls per implementation (at most ``Impl.repeats``).

    Returns:
      (list of Measured, list of the first calls' results).
    """
    device = tf_memory_device()
    results, cold = [], []
    for impl in impls:
        start = time.perf_counter()
        results.append(impl.fn())
        cold.append(time.perf_counter() - start)
    counts = [min(repeats, impl.repeats or repeats) for impl in impls]
    times = [[] for _ in impls]
    for round_ in range(max(counts)):
        for impl, count, runs in zip(impls, counts, times):
            if round_ < count:
                start = time.perf_counter()
                impl.fn()
                runs.append(time.perf_counter() - start)
    measured = []
    for impl, first, runs in zip(impls, cold, times):
        if impl.memory == "numpy":
            peak = numpy_step_peak(impl.fn)
        else:
            peak = tf_step_peak(impl.fn, device)
        measured.append(Measured(impl.name, first, float(np.median(runs)), peak, memory_method(impl.memory, device)))
    return measured, results


def make_row(name, impls, repeats, same):
    """Measures ``impls`` (ours first) and checks each reference's result
    against ours with ``same(ours_result, ref_result) -> bool``."""
    measured, results = measure(impls, repeats)
    for m, result in zip(measured[1:], results[1:]):
        m.agree = bool(same(results[0], result))
    return Row(name, measured[0], measured[1:])


def _format_peak(m):
    if m.peak_bytes is None:
        return "n/a"
    if m.memory.endswith("CPU:0") and m.peak_bytes < CPU_UNCOUNTED_BELOW:
        return f"< {CPU_UNCOUNTED_BELOW / 2**20:.2f} MiB"
    return f"{m.peak_bytes / 2**20:8.1f} MiB"


def _format_measured(m, ours=None):
    peak = _format_peak(m)
    line = (f"  {m.name:<46} cold {m.cold_s * 1e3:9.1f} ms | warm {m.warm_s * 1e3:9.2f} ms | "
            f"peak {peak:>12} ({m.memory})")
    if ours is not None:
        ratio = m.warm_s / ours.warm_s if ours.warm_s > 0 else float("inf")
        line += f" | x{ratio:7.2f} | {'same result' if m.agree else 'DIFFERENT RESULT'}"
    return line


def print_row(row):
    print(row.name, flush=True)
    print(_format_measured(row.ours))
    for ref in row.refs:
        print(_format_measured(ref, row.ours))
    for note in row.notes:
        print(f"  {note}")
    print(flush=True)
