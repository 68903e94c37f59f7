"""Per-image augmentation in worker processes, out of the GIL's reach.

albumentations spends most of an image's time in Python (argument checks,
small numpy steps), so tf.data's threads take turns on the GIL: on 2 cores
the augment step did 1.14x the work of one thread with two, and the
pipeline kept 1.46 of 2 cores busy (BCCD, ``tools/benchmark.py data
--naive``). Here each tf.data thread hands its image to a worker process
over a pipe and waits with the GIL released.

A worker computes what the in-thread step computes (``run_one``: fit,
``ThreadLocalAugmenter``'s seeded ``Compose``, letterbox or shortest-side
resize), so for the same image and seed the output is the same to the bit.
Arrays cross the pipe as raw bytes with a small pickled header.

The pool is one per process and size, started on first use and shared by
every pipeline (a worker keeps one ``Compose`` per ``AugmentConfig``).
Workers are fresh interpreters (``python -c``), not forks (TensorFlow's
threads do not survive a fork) and not ``multiprocessing`` spawns (those
import the parent's main script, e.g. ``tools/train.py`` and TensorFlow
with it): they import this module and albumentations only, talk over a
socket pair, and end when the parent's end closes.
"""

import atexit
import os
import pickle
import queue
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from detect.data import transforms


def fit(image, boxes, geometry, min_side):
    """Resizes (no padding) to the size the final resize would give; boxes follow."""
    h, w = image.shape[:2]
    if geometry["resize"] == "letterbox":
        new_h, new_w, t = transforms.letterbox_geometry(h, w, geometry["image_size"])
    else:
        new_h, new_w, t = transforms.shortest_side_geometry(h, w, min_side, geometry["max_side"])
    return transforms.resize_image(image, new_h, new_w), boxes * t[[1, 0, 1, 0]], t


def opencv_per_image():
    """Turns OpenCV's own thread pool off (process-wide), for the augmentation callbacks.

    tf.data's parallel map already runs one image per thread; OpenCV's pool
    on top splits each resize and warp across the same cores and its workers
    spin while they wait: 9.6 -> 7.0 ms of CPU per BCCD image measured in
    the augment stage (``tools/benchmark.py data --naive``). Pixels do not
    change: OpenCV splits rows between workers, each row computed alike.
    """
    import cv2

    cv2.setNumThreads(0)


def run_one(augmenter, geometry, image, boxes, classes, ignore, seed, min_side):
    """One training image: fit to the network size, augment (cheaper there), then letterbox / resize.

    Returns:
      (image uint8, boxes [M, 4] float32, classes [M] int32, ignore [M] bool,
      transform [4] float32: the original image's place in the output).
    """
    image, boxes, t_fit = fit(image, boxes, geometry, int(min_side))
    image, boxes, classes, ignore = augmenter(image, boxes, classes, ignore, seed)
    if geometry["resize"] == "letterbox":
        image, boxes, t = transforms.letterbox(image, boxes, geometry["image_size"])
    else:
        image, boxes, t = transforms.resize_shortest_side(image, boxes, int(min_side), geometry["max_side"])
    transform = np.array([t_fit[0] * t[0], t_fit[1] * t[1], t[2], t[3]], np.float32)
    return image, boxes.astype(np.float32), classes, ignore, transform


def _send_arrays(conn, header, arrays):
    arrays = [np.ascontiguousarray(a) for a in arrays]
    conn.send_bytes(pickle.dumps((header, [(a.dtype.str, a.shape) for a in arrays])))
    for a in arrays:
        conn.send_bytes(memoryview(a).cast("B") if a.size else b"")  # bytes, not rows; no cast of an empty view


def _recv_arrays(conn):
    """What ``_send_arrays`` sent: (header, writable arrays received in place)."""
    header, specs = pickle.loads(conn.recv_bytes())
    arrays = []
    for dtype, shape in specs:
        array = np.empty(shape, np.dtype(dtype))
        if array.size:
            conn.recv_bytes_into(memoryview(array).cast("B"))
        else:
            conn.recv_bytes()
        arrays.append(array)
    return header, arrays


def worker_main(fd):
    """A worker's loop on socket ``fd``: (config, geometry, seed, min_side) and arrays in, ``run_one``'s
    arrays out, until the other end closes."""
    from detect.data.augment import ThreadLocalAugmenter

    conn = Connection(fd)
    opencv_per_image()
    augmenters = {}
    while True:
        try:
            (cfg, geometry, seed, min_side), arrays = _recv_arrays(conn)
        except (EOFError, OSError):
            return
        try:
            augmenter = augmenters.get(cfg)
            if augmenter is None:
                augmenter = augmenters[cfg] = ThreadLocalAugmenter(cfg)
            out = run_one(augmenter, geometry, *arrays, seed, min_side)
        except Exception as error:  # noqa: BLE001 -- handed back and raised in the caller
            conn.send_bytes(pickle.dumps((error, [])))
            continue
        _send_arrays(conn, None, out)


class WorkerPool:
    """``size`` worker processes; ``run`` blocks the calling thread (GIL released) until one answers.

    Args:
      size: number of processes (>= 1).
    """

    def __init__(self, size):
        self.size = size
        self._idle = queue.Queue()
        self.processes = []  # every worker started, for CPU accounting (``worker_cpu_seconds``)
        for _ in range(size):
            self._idle.put(self._start())

    def _start(self):
        """A new worker process; returns (our end of its socket pair, the ``Popen``)."""
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        # The worker imports ``detect`` from where this process found it (installed or not).
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        process = subprocess.Popen(
            [sys.executable, "-c", f"from detect.data.augment_workers import worker_main; worker_main({theirs.fileno()})"],
            pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        theirs.close()
        self.processes.append(process)
        return Connection(ours.detach()), process

    def run(self, cfg, geometry, image, boxes, classes, ignore, seed, min_side):
        """``run_one`` in a worker, with a ``ThreadLocalAugmenter(cfg)`` there.

        Raises:
          what ``run_one`` raised in the worker; ``RuntimeError`` if the
          worker died (it is replaced, so the pool keeps its size).
        """
        conn, process = worker = self._idle.get()
        try:
            _send_arrays(conn, (cfg, geometry, int(seed), int(min_side)), (image, boxes, classes, ignore))
            error, arrays = _recv_arrays(conn)
        except BaseException as failure:
            # Half a message may be in the pipe: this worker cannot be trusted again.
            conn.close()
            process.kill()
            process.wait()
            worker = self._start()
            raise RuntimeError(f"augmentation worker {process.pid} failed: {failure!r}") from failure
        finally:
            self._idle.put(worker)
        if error is not None:
            raise error
        return tuple(arrays)

    def close(self):
        """Ends the idle workers (all of them once no call is in flight)."""
        while True:
            try:
                conn, process = self._idle.get_nowait()
            except queue.Empty:
                return
            conn.close()  # the worker reads EOF and returns
            try:
                process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding ``detect``
AUTO = -1  # ``augment_workers``: one worker per usable core when there are at least 2, else none
_POOLS = {}
_POOLS_LOCK = threading.Lock()


def usable_cores():
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers):
    """``augment_workers`` as a count: ``AUTO`` becomes ``usable_cores()`` (0 on one core, where
    processes would only add copying), others stay."""
    if workers == AUTO:
        cores = usable_cores()
        return cores if cores >= 2 else 0
    if workers < 0:
        raise ValueError(f"augment_workers={workers}; expected {AUTO} (auto), 0 (tf.data's threads) or a count")
    return int(workers)


def shared_pool(size):
    """The process's ``WorkerPool`` of ``size`` workers, started on first use and then shared."""
    with _POOLS_LOCK:
        if size not in _POOLS:
            if not _POOLS:
                # Registered after multiprocessing's own exit hook, so it runs first: the pipeline's
                # callbacks drain (``detect.data.python_calls``) before any worker goes away.
                atexit.register(_close_shared_pools)
            _POOLS[size] = WorkerPool(size)
        return _POOLS[size]


def worker_cpu_seconds():
    """CPU seconds (user + system) the shared pools' live workers used so far; Linux only (0 elsewhere)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0.0
    for pool in list(_POOLS.values()):
        for process in list(pool.processes):
            try:
                fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def _close_shared_pools():
    from detect.data.python_calls import CALLS

    CALLS.drain()
    for pool in _POOLS.values():
        pool.close()
