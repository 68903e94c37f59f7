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
Arrays cross in a file both processes map (``SharedArrays``, a memfd on
Linux): the sender copies each array in once, the receiver works on views
of it, and only a small pickled header goes over the socket. Sending the
pixels through the socket instead cost 2.2 to 2.5 ms of CPU per BCCD image
(parent and worker together, against 3 ms for the augmentation itself).

The pool is one per process and size, started on first use and shared by
every pipeline (a worker keeps one ``Compose`` per ``AugmentConfig``).
Workers are fresh interpreters (``python -c``), not forks (TensorFlow's
threads do not survive a fork) and not ``multiprocessing`` spawns (those
import the parent's main script, e.g. ``tools/train.py`` and TensorFlow
with it): they import this module and albumentations only, talk over a
socket pair, and end when the parent's end closes.
"""

import atexit
import mmap
import os
import pickle
import queue
import socket
import subprocess
import sys
import tempfile
import threading
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from detect.data import transforms


def fit_geometry(height, width, geometry, min_side):
    """(new_height, new_width, transform) of ``fit`` for an image of that size."""
    if geometry["resize"] == "letterbox":
        return transforms.letterbox_geometry(height, width, geometry["image_size"])
    return transforms.shortest_side_geometry(height, width, min_side, geometry["max_side"])


def fit(image, boxes, geometry, min_side):
    """Resizes (no padding) to the size the final resize would give; boxes follow."""
    new_h, new_w, t = fit_geometry(*image.shape[:2], geometry, min_side)
    return transforms.resize_image(image, new_h, new_w), boxes * t[[1, 0, 1, 0]], t


def fit_or_take(image, boxes, geometry, min_side, original_size=None):
    """``fit``; for an ``image`` fitted before (a ``FitCache`` hit, ``original_size`` its decoded
    (height, width)), the image as it is with its boxes and transform."""
    if original_size is None:
        return fit(image, boxes, geometry, min_side)
    new_h, new_w, t = fit_geometry(int(original_size[0]), int(original_size[1]), geometry, min_side)
    if image.shape[:2] != (new_h, new_w):
        raise ValueError(f"a cached image of {image.shape[:2]} is not the fit {(new_h, new_w)} of "
                         f"{tuple(original_size)}: the FitCache was filled at another geometry")
    return image, boxes * t[[1, 0, 1, 0]], t


# ``run_one``'s last output when no fitted image is asked for (one pixel: zero-size arrays handed back
# to ``tf.numpy_function`` have crashed the process at exit).
NO_FIT = np.zeros((1, 1, 3), np.uint8)


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


def run_one(augmenter, geometry, image, boxes, classes, ignore, seed, min_side, original_size=None,
            keep_fit=False):
    """One training image: fit to the network size, augment (cheaper there), then letterbox / resize.

    Args:
      original_size: None for an image as decoded; for one already fitted
        (a ``FitCache`` hit), the (height, width) it was decoded at.
      keep_fit: hand back the fitted image too (for the cache).

    Returns:
      (image uint8, boxes [M, 4] float32, classes [M] int32, ignore [M] bool,
      transform [4] float32: the original image's place in the output,
      the fitted image when ``keep_fit``, else ``NO_FIT``).
    """
    image, boxes, t_fit = fit_or_take(image, boxes, geometry, int(min_side), original_size)
    kept = image.copy() if keep_fit else NO_FIT  # a copy: what augments it must not change the cached pixels
    image, boxes, classes, ignore = augmenter(image, boxes, classes, ignore, seed)
    if geometry["resize"] == "letterbox":
        image, boxes, t = transforms.letterbox(image, boxes, geometry["image_size"])
    else:
        image, boxes, t = transforms.resize_shortest_side(image, boxes, int(min_side), geometry["max_side"])
    transform = np.array([t_fit[0] * t[0], t_fit[1] * t[1], t[2], t[3]], np.float32)
    return image, boxes.astype(np.float32), classes, ignore, transform, kept


# Arrays in the shared file start at multiples of this (a cache line; what SIMD loads like).
_ALIGN = 64
_FIRST_FILE_BYTES = 4 << 20  # a 640 x 480 image in and a 416 x 416 out, with room


def shared_file():
    """A new file for ``SharedArrays``: a memfd where there is one (Linux), else an unlinked temporary file."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("detect-augment", 0)
    with tempfile.TemporaryFile() as f:
        return os.dup(f.fileno())


class SharedArrays:
    """Arrays laid out in a file that two processes map, named by a small header.

    The file only grows (either side may grow it; the other maps the new
    size when a header says so). Views handed out by ``read`` stay valid
    until the next ``write`` over the same bytes: the caller copies what it
    keeps.

    Args:
      fd: the file (from ``shared_file``), owned by this object.
    """

    def __init__(self, fd):
        self.fd = fd
        self._map = None
        self.size = 0

    def _cover(self, size):
        """Maps at least ``size`` bytes, growing the file if it is smaller."""
        if size > self.size:
            if os.fstat(self.fd).st_size < size:
                os.ftruncate(self.fd, size)
            # A new map; the old one is unmapped once the last view into it is gone.
            self._map = mmap.mmap(self.fd, size)
            self.size = size
        return self._map

    def write(self, arrays, start=0):
        """Copies ``arrays`` in from byte ``start`` on; returns (specs for ``read``, the end offset)."""
        specs, offset = [], start
        for a in arrays:
            offset = -(-offset // _ALIGN) * _ALIGN
            specs.append((a.dtype.str, a.shape, offset))
            offset += a.nbytes
        buffer = self._cover(offset if offset <= self.size else max(offset, 2 * self.size, _FIRST_FILE_BYTES))
        for a, (_, _, at) in zip(arrays, specs):
            if a.size:
                np.frombuffer(buffer, a.dtype, a.size, at).reshape(a.shape)[...] = a
        return specs, offset

    def read(self, specs, file_size):
        """Views of the arrays ``specs`` name, in a file now ``file_size`` bytes long."""
        buffer = self._cover(file_size)
        return [np.frombuffer(buffer, np.dtype(dtype), int(np.prod(shape)), at).reshape(shape)
                if np.prod(shape) else np.empty(shape, np.dtype(dtype)) for dtype, shape, at in specs]

    def close(self):
        self._map = None
        os.close(self.fd)


def _send(conn, shared, header, arrays, start=0):
    """``arrays`` into ``shared`` from ``start`` on, their names and ``header`` over ``conn``."""
    specs, _ = shared.write([np.ascontiguousarray(a) for a in arrays], start)
    conn.send_bytes(pickle.dumps((header, specs, shared.size)))


def _receive(conn, shared):
    """What ``_send`` sent: (header, views into ``shared``, the end offset of the last array)."""
    header, specs, file_size = pickle.loads(conn.recv_bytes())
    end = max((at + int(np.prod(shape)) * np.dtype(dtype).itemsize for dtype, shape, at in specs), default=0)
    return header, shared.read(specs, file_size), end


def worker_main(fd, shared_fd):
    """A worker's loop on socket ``fd`` and shared file ``shared_fd``: (config, geometry, seed, min_side,
    original_size, keep_fit) and arrays in, ``run_one``'s arrays out (after the input's bytes), until the
    other end closes."""
    from detect.data.augment import ThreadLocalAugmenter

    conn, shared = Connection(fd), SharedArrays(shared_fd)
    opencv_per_image()
    augmenters = {}
    while True:
        try:
            (cfg, geometry, seed, min_side, original_size, keep_fit), arrays, end = _receive(conn, shared)
        except (EOFError, OSError):
            return
        try:
            augmenter = augmenters.get(cfg)
            if augmenter is None:
                augmenter = augmenters[cfg] = ThreadLocalAugmenter(cfg)
            out = run_one(augmenter, geometry, *arrays, seed, min_side, original_size, keep_fit)
        except Exception as error:  # noqa: BLE001 -- handed back and raised in the caller
            conn.send_bytes(pickle.dumps((error, [], shared.size)))
            continue
        # After the input: an output may be a view of it.
        _send(conn, shared, None, out, start=end)
        del arrays, out


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
        """A new worker process; returns ((our end of its socket pair, the shared file), the ``Popen``)."""
        ours, theirs = socket.socketpair()
        shared_fd = shared_file()
        env = dict(os.environ)
        # The worker imports ``detect`` from where this process found it (installed or not).
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        process = subprocess.Popen(
            [sys.executable, "-c", "from detect.data.augment_workers import worker_main; "
             f"worker_main({theirs.fileno()}, {shared_fd})"],
            pass_fds=[theirs.fileno(), shared_fd], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        theirs.close()
        self.processes.append(process)
        return (Connection(ours.detach()), SharedArrays(shared_fd)), process

    def run(self, cfg, geometry, image, boxes, classes, ignore, seed, min_side, original_size=None,
            keep_fit=False):
        """``run_one`` in a worker, with a ``ThreadLocalAugmenter(cfg)`` there.

        Raises:
          what ``run_one`` raised in the worker; ``RuntimeError`` if the
          worker died (it is replaced, so the pool keeps its size).
        """
        (conn, shared), process = worker = self._idle.get()
        try:
            size = None if original_size is None else tuple(int(v) for v in original_size)
            header = (cfg, geometry, int(seed), int(min_side), size, bool(keep_fit))
            _send(conn, shared, header, (image, boxes, classes, ignore))
            error, views, _ = _receive(conn, shared)
            arrays = [v.copy() for v in views]  # the next call writes over the views
            del views
        except BaseException as failure:
            # Half a message may be in the pipe: this worker cannot be trusted again.
            conn.close()
            shared.close()
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
                (conn, shared), process = self._idle.get_nowait()
            except queue.Empty:
                return
            conn.close()  # the worker reads EOF and returns
            shared.close()
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
