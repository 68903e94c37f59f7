#!/usr/bin/env python
"""Side-by-side benchmarks: ours against a reference, in one process.

    python tools/benchmark.py ops [--repeats 7]
    python tools/benchmark.py eval [--images 5000]
    python tools/benchmark.py train --config configs/yolo_shapes.yaml [--steps 20] [--rounds 5] [--stage NAME] [--set ...]
    python tools/benchmark.py data [--repeats 5] [--config configs/yolo_bccd.yaml]
    python tools/benchmark.py infer --config configs/yolov3_coco.yaml [--weights W] [--precision bfloat16]

Each line prints the median wall time of ours and of the reference, the
speed ratio (reference / ours, > 1 means we are faster) and whether the two
agree on the result. Timings are of warmed-up, already-traced functions on
inputs already in memory.

The ops suite prints, for ours and for every reference of a row, the first
call (tracing and XLA compilation included), the median warm call, and the
peak memory of one call measured by the allocator that serves it
(TensorFlow's for TensorFlow code, tracemalloc for numpy); ours and the
references are timed in alternation, so load from other processes falls on
both.
"""

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from detect.cli import exit_now  # noqa: E402


def median_seconds(fn, repeats):
    """Median wall time of fn() after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# ---- data ---------------------------------------------------------------------

def random_boxes(rng, n, size=1000.0):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(1, size / 5, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def detector_outputs(seed, batch=8, num_boxes=20000, num_classes=80, size=640.0):
    """Raw outputs shaped like a trained one-stage detector's, before NMS.

    Per image a few objects (Poisson, mean 8), about 3% of the boxes are
    jittered duplicates of them with high objectness and a dominant class,
    the rest are background boxes with low objectness and small class
    probabilities. Scores are objectness x class probability, so about 20k
    (box, class) pairs per image exceed 0.001, the usual threshold for mAP.

    Returns:
      boxes [B, N, 4] xyxy, scores [B, N, C].
    """
    rng = np.random.default_rng(seed)
    boxes = np.empty((batch, num_boxes, 4), np.float32)
    scores = np.empty((batch, num_boxes, num_classes), np.float32)
    for b in range(batch):
        n_obj = rng.poisson(7) + 1
        obj_wh = np.exp(rng.uniform(np.log(10), np.log(400), (n_obj, 2)))
        obj_ctr = rng.uniform(0, size, (n_obj, 2))
        obj_cls = rng.integers(0, num_classes, n_obj)
        boxes[b], scores[b] = _scene(rng, num_boxes, num_classes, size, obj_ctr, obj_wh, obj_cls, share=0.03,
                                     jitter=0.15, objectness=lambda owner: rng.beta(2, 2, num_boxes),
                                     own_logit=(2.0, 1.0))
    return boxes, scores


def _scene(rng, num_boxes, num_classes, size, obj_ctr, obj_wh, obj_cls, share, jitter, objectness, own_logit):
    """One image's raw boxes [N, 4] and scores [N, C] around given objects.

    A ``share`` of the boxes are duplicates of the objects (centre and size
    jittered by ``jitter`` of the object's size) scored ``objectness(owner)``
    with a class logit drawn from ``own_logit`` (mean, std) for the object's
    class; the rest are background boxes with low objectness.
    """
    rows = np.arange(num_boxes)
    near = rng.random(num_boxes) < share
    owner = rng.integers(0, len(obj_ctr), num_boxes)
    noise = rng.normal(0, jitter, (num_boxes, 4))
    ctr = np.where(near[:, None], obj_ctr[owner] + noise[:, :2] * obj_wh[owner],
                   rng.uniform(0, size, (num_boxes, 2)))
    wh = np.where(near[:, None], obj_wh[owner] * np.exp(noise[:, 2:]),
                  np.exp(rng.uniform(np.log(8), np.log(300), (num_boxes, 2))))
    boxes = np.concatenate([ctr - wh / 2, ctr + wh / 2], axis=1)
    obj = np.where(near, objectness(owner), rng.beta(0.5, 40, num_boxes))
    logits = rng.normal(-6.9, 1.5, (num_boxes, num_classes))
    own = logits[rows, obj_cls[owner]]
    logits[rows, obj_cls[owner]] = np.where(near, rng.normal(*own_logit, num_boxes), own)
    return boxes, obj[:, None] / (1 + np.exp(-logits))


def crowd_outputs(seed, batch=8, num_boxes=20000, num_classes=80, size=640.0, objects=(300, 500)):
    """Raw detector outputs on a dense crowd, where NMS has the most to do.

    Per image hundreds of people (uniform in ``objects``; 95% class 0) of
    12 to 60 px wide, packed so closely that neighbours overlap, and 60% of
    the boxes are tightly jittered duplicates of them (about 30 per person).
    A person's duplicates share its confidence (how visible it is), so the
    best-scoring pairs are mostly duplicates of the same few people: the
    ``max_total_size`` people kept lie far down the score order, beyond the
    first candidate pool of ``batched_nms``, whose exact fallback is then
    what gets timed. The rest are background boxes scored as in
    :func:`detector_outputs`.

    Returns:
      boxes [B, N, 4] xyxy, scores [B, N, C].
    """
    rng = np.random.default_rng(seed)
    boxes = np.empty((batch, num_boxes, 4), np.float32)
    scores = np.empty((batch, num_boxes, num_classes), np.float32)
    for b in range(batch):
        n_obj = int(rng.integers(objects[0], objects[1] + 1))
        obj_w = np.exp(rng.uniform(np.log(12), np.log(60), n_obj))
        obj_wh = np.stack([obj_w, obj_w * rng.uniform(1.0, 2.5, n_obj)], axis=1)  # upright people
        obj_ctr = rng.uniform(0, size, (n_obj, 2))
        obj_cls = np.where(rng.random(n_obj) < 0.95, 0, rng.integers(0, num_classes, n_obj))
        visibility = rng.beta(2, 2, n_obj)
        boxes[b], scores[b] = _scene(
            rng, num_boxes, num_classes, size, obj_ctr, obj_wh, obj_cls, share=0.6, jitter=0.06,
            objectness=lambda owner: visibility[owner] * (1 - 0.2 * rng.random(num_boxes)), own_logit=(3.0, 0.5))
    return boxes, scores


def coco_scale_dataset(seed, num_images=5000, num_classes=80, gt_per_image=7, dets_per_image=100):
    """A COCO-sized ground truth and result list, deterministic by seed.

    Per image a Poisson number of objects (mean 7) with log-uniform sizes
    from 6 to 400 px (a mix of small, medium and large; ``area`` is 80% of
    the box, like a mask's), 1% crowd; 100 detections: up to three jittered
    copies per object (15% with a wrong class), the rest random boxes, with
    true positives scoring higher on average.

    Returns:
      (gt dict in COCO instances format, list of COCO result dicts).
    """
    rng = np.random.default_rng(seed)
    frame = np.array([640.0, 480.0])
    images = [{"id": i + 1, "width": 640, "height": 480, "file_name": f"{i + 1:06d}.jpg"}
              for i in range(num_images)]
    categories = [{"id": c + 1, "name": f"class{c + 1}"} for c in range(num_classes)]
    annotations, results = [], []
    for image in images:
        n_gt = rng.poisson(gt_per_image)
        wh = np.exp(rng.uniform(np.log(6), np.log(400), (n_gt, 2)))
        xy = rng.uniform(0, 1, (n_gt, 2)) * (frame - wh).clip(1)
        cls = rng.integers(1, num_classes + 1, n_gt)
        crowd = rng.random(n_gt) < 0.01
        for k in range(n_gt):
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": int(cls[k]),
                                "bbox": [float(v) for v in (*xy[k], *wh[k])],
                                "area": float(wh[k, 0] * wh[k, 1] * 0.8), "iscrowd": int(crowd[k])})
        n_tp = min(dets_per_image, 3 * n_gt)
        owner = rng.integers(0, max(n_gt, 1), n_tp)
        jitter = rng.normal(0, 0.12, (n_tp, 4))
        if n_gt:
            boxes = np.concatenate([xy[owner] + jitter[:, :2] * wh[owner], wh[owner] * np.exp(jitter[:, 2:])], 1)
            labels = np.where(rng.random(n_tp) < 0.85, cls[owner], rng.integers(1, num_classes + 1, n_tp))
        else:
            boxes, labels, n_tp = np.zeros((0, 4)), np.zeros(0, int), 0
        n_fp = dets_per_image - n_tp
        fp_wh = np.exp(rng.uniform(np.log(6), np.log(400), (n_fp, 2)))
        fp_xy = rng.uniform(0, 1, (n_fp, 2)) * (frame - fp_wh).clip(1)
        boxes = np.concatenate([boxes, np.concatenate([fp_xy, fp_wh], 1)])
        labels = np.concatenate([labels, rng.integers(1, num_classes + 1, n_fp)])
        scores = np.concatenate([rng.beta(4, 2, n_tp), rng.beta(1, 6, n_fp)])
        for k in range(dets_per_image):
            results.append({"image_id": image["id"], "category_id": int(labels[k]),
                            "bbox": [float(v) for v in boxes[k]], "score": float(scores[k])})
    return {"images": images, "categories": categories, "annotations": annotations}, results


# ---- references -----------------------------------------------------------------

def numpy_iou(a, b):
    """Vectorised numpy IoU, the usual way it is written."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / np.maximum(union, 1e-12)


def numpy_roi_pool(features, rois, output_size, spatial_scale):
    """The original Caffe RoI max-pooling forward, vectorised over channels."""
    ph, pw = output_size
    _, height, width, channels = features.shape
    out = np.zeros((len(rois), ph, pw, channels), features.dtype)

    scale = np.float32(spatial_scale)

    def c_round(x):  # C round(): halves away from zero; x is a float32 product
        return int(np.copysign(np.floor(abs(float(x)) + 0.5), float(x)))

    for k, (b, x1, y1, x2, y2) in enumerate(rois.astype(np.float32)):
        sw, sh, ew, eh = (c_round(v * scale) for v in (x1, y1, x2, y2))
        # float32 bin sizes and edges, as the Caffe layer computes them
        bin_h = np.float32(max(eh - sh + 1, 1)) / np.float32(ph)
        bin_w = np.float32(max(ew - sw + 1, 1)) / np.float32(pw)
        for i in range(ph):
            hs = min(max(int(np.floor(np.float32(i) * bin_h)) + sh, 0), height)
            he = min(max(int(np.ceil(np.float32(i + 1) * bin_h)) + sh, 0), height)
            for j in range(pw):
                ws = min(max(int(np.floor(np.float32(j) * bin_w)) + sw, 0), width)
                we = min(max(int(np.ceil(np.float32(j + 1) * bin_w)) + sw, 0), width)
                if he > hs and we > ws:
                    out[k, i, j] = features[int(b), hs:he, ws:we].max(axis=(0, 1))
    return out


# ---- ops: measurement --------------------------------------------------------------

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


# ---- ops: rows --------------------------------------------------------------------

def tf_iou_formula(a, b):
    """:func:`numpy_iou`, op for op, in TensorFlow: [N, 4], [M, 4] -> [N, M]."""
    import tensorflow as tf

    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = tf.maximum(a[:, None, :2], b[None, :, :2])
    rb = tf.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = tf.maximum(rb - lt, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / tf.maximum(union, 1e-12)


def iou_row(repeats, n=5000, seed=0):
    """IoU of n x n boxes: ours against numpy, the same formula in plain
    TensorFlow (the fair reference) and under XLA (the memory-bandwidth
    limit: one fused pass writing the [n, n] result)."""
    import tensorflow as tf

    from detect import ops

    rng = np.random.default_rng(seed)
    a, b = random_boxes(rng, n), random_boxes(rng, n)
    ta, tb = tf.constant(a), tf.constant(b)
    ours = tf.function(ops.iou, jit_compile=True)
    plain = tf.function(tf_iou_formula, jit_compile=False)
    bare = tf.function(tf_iou_formula, jit_compile=True)
    impls = [Impl("ours: detect.ops.iou (XLA)", lambda: ours(ta, tb).numpy()),
             Impl("numpy (vectorised)", lambda: numpy_iou(a, b), memory="numpy"),
             Impl("plain TF: same formula, tf.function, no XLA", lambda: plain(ta, tb).numpy()),
             Impl("bare XLA: same formula, jit_compile=True", lambda: bare(ta, tb).numpy())]
    row = make_row(f"IoU {n} x {n}", impls, repeats, lambda x, y: np.allclose(x, y, atol=1e-6))
    row.notes.append(f"ours takes x{row.ours.warm_s / row.refs[2].warm_s:.2f} the time of the bare XLA formula "
                     f"(the memory-bandwidth limit)")
    return row


def nms_row(repeats, num_boxes=20000, max_output_size=1000, seed=1):
    """Single-class NMS against tf.image.non_max_suppression."""
    import tensorflow as tf

    from detect import ops

    boxes, scores = detector_outputs(seed, batch=1, num_boxes=num_boxes, num_classes=1)
    boxes, scores = tf.constant(boxes[0]), tf.constant(scores[0, :, 0])
    ours = tf.function(lambda b, s: ops.nms(b, s, 0.5, max_output_size))
    ref = tf.function(lambda b, s: tf.image.non_max_suppression(b, s, max_output_size, 0.5))

    def ours_step():
        idx, n = ours(boxes, scores)
        return idx.numpy()[: int(n)]

    impls = [Impl("ours: detect.ops.nms", ours_step),
             Impl("tf.image.non_max_suppression", lambda: ref(boxes, scores).numpy())]
    return make_row(f"NMS 1 class, {num_boxes // 1000}k boxes, keep <= {max_output_size}", impls, repeats,
                    np.array_equal)


def search_name(level):
    """What the band level that detect.ops.nms._batched_nms returns means."""
    from detect.ops.nms import SEARCH_ALL

    if level == 0:
        return "the first band"
    if level == SEARCH_ALL:
        return "the last resort (bands until every image is decided)"
    return f"band {level} (the fallback)"


def _same_detections(mine, ref):
    """batched_nms dict (numpy) == combined_non_max_suppression result (numpy)."""
    return (np.array_equal(mine["num_detections"], ref["valid_detections"])
            and np.allclose(mine["scores"], ref["nmsed_scores"])
            and np.allclose(mine["boxes"], ref["nmsed_boxes"])
            and np.array_equal(np.maximum(mine["classes"], 0), ref["nmsed_classes"].astype(int)))


# Score thresholds of the dense-crowd batched NMS rows.
CROWD_THRESHOLDS = (0.001, 0.05, 0.25, 0.5)


def batched_nms_row(repeats, crowd=False, batch=8, num_boxes=20000, num_classes=80, max_total_size=100,
                    candidate_pool=None, objects=(300, 500), score_threshold=0.001, seed=2):
    """Batched multi-class NMS against tf.image.combined_non_max_suppression,
    on typical detector outputs or on a dense crowd (the fallback path), at a
    score threshold.

    ``info`` gets ``search_level`` (which band of batched_nms decided: 0 is
    the first, see detect.ops.nms._batched_nms) and ``candidates`` (per
    image above the score threshold).
    """
    import tensorflow as tf

    from detect import ops
    from detect.ops.nms import _batched_nms

    if crowd:
        boxes, scores = crowd_outputs(seed, batch, num_boxes, num_classes, objects=objects)
    else:
        boxes, scores = detector_outputs(seed, batch, num_boxes, num_classes)
    boxes, scores = tf.constant(boxes), tf.constant(scores)
    args = dict(max_output_size_per_class=max_total_size, max_total_size=max_total_size, iou_threshold=0.5,
                score_threshold=score_threshold)
    ours = tf.function(lambda b, s: ops.batched_nms(b, s, **args, candidate_pool=candidate_pool))
    ref = tf.function(lambda b, s: tf.image.combined_non_max_suppression(
        b[:, :, None, :], s, args["max_output_size_per_class"], args["max_total_size"],
        args["iou_threshold"], args["score_threshold"], clip_boxes=False))
    impls = [Impl("ours: detect.ops.batched_nms",
                  lambda: {k: v.numpy() for k, v in ours(boxes, scores).items()}),
             Impl("tf.image.combined_non_max_suppression",
                  lambda: {k: v.numpy() for k, v in ref(boxes, scores)._asdict().items()})]
    candidates = int((scores.numpy() > args["score_threshold"]).sum() / batch)
    pool = "" if candidate_pool is None else f", candidate_pool={candidate_pool}"
    name = (f"batched NMS {'dense crowd' if crowd else 'typical'}: {batch} x {num_boxes // 1000}k boxes x "
            f"{num_classes} cls, score > {score_threshold:g} (~{candidates / 1000:.1f}k cand), "
            f"keep <= {max_total_size}{pool}")
    row = make_row(name, impls, repeats, _same_detections)
    # Which search decided, from a separate, untimed call on the same inputs.
    level = int(tf.function(lambda b, s: _batched_nms(b, s, **args, candidate_pool=candidate_pool)[1])(
        boxes, scores))
    row.info.update(search_level=level, candidates=candidates)
    row.notes.append(f"decided by: {search_name(level)}")
    if candidate_pool == 0:
        row.notes.append("candidate_pool=0 forces the last resort, which the first bands fall back to "
                         "when they cannot decide either")
    if crowd and level == 0:
        row.notes.append("WARNING: the first band sufficed, so this row does not time the fallback")
    return row


def roi_pool_row(repeats, num_rois=512, channels=512, seed=3):
    """RoI max pooling on a 38 x 50 map (a 600 x 800 image at stride 16)
    against a numpy loop of the original Caffe layer."""
    import tensorflow as tf

    from detect import ops

    rng = np.random.default_rng(seed)
    features = rng.normal(size=(1, 38, 50, channels)).astype(np.float32)
    xy = rng.uniform(0, 1, (num_rois, 2)) * [800, 600]
    wh = rng.uniform(16, 400, (num_rois, 2))
    rois = np.concatenate([np.zeros((num_rois, 1)), xy, np.minimum(xy + wh, [800, 600])], 1).astype(np.float32)
    tfeat, trois = tf.constant(features), tf.constant(rois)
    pool_fn = tf.function(lambda f, r: ops.roi_pool(f, r, (7, 7), 1 / 16), jit_compile=True)
    impls = [Impl("ours: detect.ops.roi_pool (XLA)", lambda: pool_fn(tfeat, trois).numpy()),
             Impl("numpy loop of the Caffe layer", lambda: numpy_roi_pool(features, rois, (7, 7), 1 / 16),
                  memory="numpy", repeats=max(1, repeats // 3))]
    return make_row(f"RoI max pool {num_rois} RoIs, 38 x 50 x {channels} -> 7 x 7", impls, repeats, np.array_equal)


# ---- suites ---------------------------------------------------------------------

def bench_ops(repeats):
    import tensorflow as tf

    device = tf_memory_device()
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, "
          f"GPU: {bool(tf.config.list_physical_devices('GPU'))}; warm: median of {repeats} calls, "
          f"ours and the references in turn")
    print("cold: the first call of a fresh function, tracing and XLA compilation included (XLA kernels "
          "an earlier row compiled for the same shapes are reused)")
    tracked = tf_memory_tracked(device)
    uncounted = f"; blocks under {CPU_UNCOUNTED_BELOW // 1024} KiB uncounted" if device.startswith("CPU") else ""
    print("peak: memory of one call above what was in use before it; TensorFlow code: "
          + (f"tf.config.experimental.get_memory_info('{device}')['peak'] after reset_memory_stats (tensors "
             f"only, not a kernel's own heap such as tf.image NMS's work lists{uncounted})"
             if tracked else f"n/a, the {device} allocator keeps no statistics")
          + "; numpy: tracemalloc")
    print("x: reference warm / ours warm (> 1: ours is faster)", flush=True)
    print()
    rows = []
    # Dense crowds at the usual thresholds: for mAP (0.001), and for
    # deployment (0.05 to 0.5), where few candidates are left and the
    # reference is fastest.
    crowd_rows = [lambda r, t=t: batched_nms_row(r, crowd=True, score_threshold=t) for t in CROWD_THRESHOLDS]
    for make in (iou_row, nms_row, batched_nms_row, *crowd_rows,
                 lambda r: batched_nms_row(r, crowd=True, candidate_pool=0), roi_pool_row):
        rows.append(make(repeats))
        print_row(rows[-1])
    return rows


def _peak_rss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _coco_api_run(coco_cls, eval_cls, gt_dict, results):
    """Index + loadRes, then evaluate/accumulate/summarize (timed apart)."""
    import contextlib
    import copy
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        gt = coco_cls()
        gt.dataset = copy.deepcopy(gt_dict)
        gt.createIndex()
        dt = gt.loadRes([dict(r) for r in results])
        evaluator = eval_cls(gt, dt, "bbox")
        loaded = time.perf_counter()
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        done = time.perf_counter()
    return np.asarray(evaluator.stats[:12]), loaded - start, done - loaded


def bench_eval(num_images):
    from detect.eval import evaluate_coco
    from detect.eval.loaders import load_coco_dets, load_coco_gt

    print(f"generating COCO-scale data: {num_images} images, 80 classes ...", flush=True)
    gt_dict, results = coco_scale_dataset(0, num_images=num_images)
    print(f"{len(gt_dict['annotations'])} ground-truth boxes, {len(results)} detections", flush=True)

    # Importing TensorFlow and starting its runtime is a once-per-process
    # cost, like importing any library; it is reported, not timed as eval.
    start = time.perf_counter()
    import tensorflow as tf

    import detect.ops  # noqa: F401

    tf.constant(0.0).numpy()
    print(f"TensorFlow import and runtime start: {time.perf_counter() - start:.2f} s (not counted below)",
          flush=True)

    def ours():
        gt = load_coco_gt(gt_dict)
        result = evaluate_coco(gt, load_coco_dets(results, gt))
        return np.array(list(result.stats.values()))

    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    ours_stats = ours()
    ours_cold = time.perf_counter() - start
    ours_peak = _peak_rss_mb() - rss_before
    ours_warm = median_seconds(ours, 3)
    print(f"ours (load arrays + evaluate + accumulate + summarize): first call {ours_cold:.2f} s, "
          f"warm {ours_warm:.2f} s, peak memory +{ours_peak:.0f} MB", flush=True)

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ref_stats, ref_load, ref_eval = _coco_api_run(COCO, COCOeval, gt_dict, results)
    print(f"pycocotools: index + loadRes {ref_load:.2f} s, evaluate + accumulate + summarize {ref_eval:.2f} s",
          flush=True)
    rows = [("pycocotools", ref_stats, ref_eval)]
    try:
        from faster_coco_eval import COCO as FastCOCO
        from faster_coco_eval import COCOeval_faster
    except ImportError:
        print("faster-coco-eval: not installed (pip install -e '.[bench]')")
    else:
        fast_stats, fast_load, fast_eval = _coco_api_run(FastCOCO, COCOeval_faster, gt_dict, results)
        print(f"faster-coco-eval: index + loadRes {fast_load:.2f} s, "
              f"evaluate + accumulate + summarize {fast_eval:.2f} s", flush=True)
        rows.append(("faster-coco-eval", fast_stats, fast_eval))
    print()
    for name, stats, seconds in rows:
        diff = float(np.abs(stats - ours_stats).max())
        print(f"vs {name:<17} x{seconds / ours_cold:6.1f} (our first call) x{seconds / ours_warm:6.1f} (warm) | "
              f"max |stat difference| {diff:.1e}")
    print("stats (ours): " + " ".join(f"{v:.4f}" for v in ours_stats))


BCCD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "BCCD"
BCCD_CLASSES = ("RBC", "WBC", "Platelets")
DATA_STEP_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "yolo_bccd.yaml")


def _pipeline_rate(make_dataset, images_per_round, rounds):
    """Warm-up seconds (to the first batch, then one round untimed), per-round images/s and
    this process's CPU seconds (all threads) per image over the timed rounds."""
    import gc

    start = time.perf_counter()
    it = iter(make_dataset().repeat())
    next(it)
    first_batch = time.perf_counter() - start
    seen = 0
    while seen < images_per_round:  # let AUTOTUNE settle before timing
        seen += int(next(it)["image"].shape[0])
    warmup = time.perf_counter() - start
    rates, cpu_start, total = [], time.process_time(), 0
    for _ in range(rounds):
        seen, start = 0, time.perf_counter()
        while seen < images_per_round:
            seen += int(next(it)["image"].shape[0])
        rates.append(seen / (time.perf_counter() - start))
        total += seen
    cpu_per_image = (time.process_time() - cpu_start) / total
    # Drop the iterator before returning: its threads must not be running Python at exit.
    del it
    gc.collect()
    return first_batch, warmup, rates, cpu_per_image


def bench_data(rounds, config_path=DATA_STEP_CONFIG, overrides=()):
    """The YOLO training pipeline on BCCD, plain and with mosaic / mixup, against a training step.

    Every row is images/s of the pipeline alone; the last line times the
    bare training step of ``config_path`` (its model, loss, optimizer and
    batch size, on batches of its own pipeline) in the same process, and each
    row is also given as a multiple of it: the pipeline must stay well ahead
    of the step it feeds (goal with mosaic: >= 3x).
    """
    import tensorflow as tf

    from detect.data import read_voc
    from detect.data.augment import AugmentConfig
    from detect.data.pipeline import build_dataset, pipeline_stats
    from detect.data.tfrecord import write_tfrecords

    if not BCCD.is_dir():
        print(f"benchmark.py data: BCCD not found at {BCCD}", file=sys.stderr)
        return 2
    records = [r for split in ("trainval", "test") for r in read_voc(BCCD, split, class_names=BCCD_CLASSES)]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, load average {load} (1/5/15 min; "
          f"other processes share the cores)")
    print(f"YOLO training pipeline on BCCD ({len(records)} images, 640 x 480 JPEG): 416 x 416 letterbox, "
          f"full augmentation (AugmentConfig defaults), batch 16, shuffle; median of {rounds} rounds "
          f"of {len(records)} images after a warm-up of one round", flush=True)

    def pipeline(source, **augment):
        # A mosaic holds about four images' boxes, hence the larger max_boxes.
        return lambda: build_dataset(source, training=True, batch_size=16, image_size=416, max_boxes=256,
                                     augment=AugmentConfig(**augment))

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_tfrecords(records, tmp, num_shards=8, prefix="bccd")
        print(f"wrote 8 TFRecord shards in {time.perf_counter() - start:.1f} s (not counted)", flush=True)
        rows = (("image files", records, {}), ("TFRecord", tmp, {}),
                ("TFRecord, mosaic 1.0", tmp, {"mosaic_prob": 1.0}),
                ("TFRecord, mosaic 1.0 + mixup 0.5", tmp, {"mosaic_prob": 1.0, "mixup_prob": 0.5}))
        for name, source, augment in rows:
            first, warmup, rates, cpu = _pipeline_rate(pipeline(source, **augment), len(records), rounds)
            results[name] = float(np.median(rates))
            # Wall rate x CPU per image well under the core count means other processes took the cores.
            print(f"{name:<33} warm-up: first batch {first:.2f} s, first round {warmup:.2f} s | "
                  f"{results[name]:7.1f} images/s (rounds: {', '.join(f'{r:.0f}' for r in rates)}) | "
                  f"CPU {cpu * 1e3:.1f} ms per image, all threads", flush=True)
    goal = 150.0
    print(f"goal: >= {goal:.0f} images/s from TFRecord with full augmentation: "
          f"{'met' if results['TFRecord'] >= goal else 'NOT met'} ({results['TFRecord']:.1f})")
    print(pipeline_stats().summary())
    step_rate, label = _training_step_rate(config_path, overrides)
    print(f"training step of {label}: {step_rate:.1f} images/s (bare tf.function step, median of 3 rounds)")
    for name, rate in results.items():
        print(f"  {name:<33} x{rate / step_rate:.1f} the training step")
    mosaic = results["TFRecord, mosaic 1.0"] / step_rate
    print(f"goal: pipeline with mosaic >= 3x the training step: {'met' if mosaic >= 3 else 'NOT met'} "
          f"(x{mosaic:.1f})")
    return 0


def _bare_step(task, optimizer, variables):
    """A ``tf.function`` training step with nothing around it: forward, loss, gradients, update."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def step(batch):
        with tf.GradientTape() as tape:
            loss = task.losses(task.forward(batch, training=True), batch)["loss"]
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return step


def _config_task_and_batches(config_path, overrides):
    """(config, its task, an endless iterator over its training pipeline's batches)."""
    from detect.train.data import class_names_of, load_records, prepare_data
    from detect.train.experiment import load_experiment
    from detect.train.run import build_task, make_datasets

    config = load_experiment(config_path, overrides)
    prepare_data(config.data)
    names = class_names_of(config.data)
    records = load_records(config.data, config.data.train_split, names)
    task = build_task(config, len(names))
    train_data, _, _ = make_datasets(config, records, records, strategy=None)
    return config, task, iter(train_data(0).repeat())


def _training_step_rate(config_path, overrides=(), steps=10, rounds=3):
    """(images/s of a config's bare training step on cached batches of its own pipeline, a label)."""
    from detect.train.engine import build_optimizer

    config, task, iterator = _config_task_and_batches(config_path, overrides)
    batches = [next(iterator) for _ in range(steps)]
    del iterator
    variables = task.model.trainable_variables
    optimizer = build_optimizer(config.train, steps, 1)
    optimizer.build(variables)
    step = _bare_step(task, optimizer, variables)
    times = []
    for _ in range(rounds + 1):  # the first round traces
        start = time.perf_counter()
        for batch in batches:
            loss = step(batch)
        float(loss)
        times.append(time.perf_counter() - start)
    images = steps * config.train.batch_size
    return images / float(np.median(times[1:])), f"{Path(config_path).name} (batch {config.train.batch_size})"


def bench_train(config_path, steps, overrides=(), rounds=5, stage=None):
    """A config's training step: the engine against a bare Keras step, then the input pipeline.

    Engine overhead: ``Trainer``'s epoch loop (its step, loss read-back, NaN
    check, logs) over ``steps`` cached batches, against a bare
    ``tf.function`` step over the same task forward pass, loss, optimizer
    settings and trained variables on the same batches, with no engine
    around it; rounds alternate, and the medians (and the best rounds, the
    least disturbed on a shared machine, as timeit uses) are compared (goal:
    <= 10%). Then the step fed by the config's own pipeline, and the
    pipeline alone. Any registered model type; a multi-stage schedule
    (Faster R-CNN's alternating steps) is timed in ``stage`` (a stage name;
    default the first).
    """
    import tensorflow as tf

    from detect.errors import InputError
    from detect.train.engine import Trainer, build_optimizer

    config, task, iterator = _config_task_and_batches(config_path, overrides)
    batch_size = config.train.batch_size
    model = config.model
    kind = f"YOLO{model.version}" if model.type == "yolo" else model.type
    size = (f"{config.data.image_size} px" if config.data.resize == "letterbox"
            else f"shortest side {config.data.min_side}, longest <= {config.data.max_side}")
    print(f"{config.name}: {kind} {model.backbone} at {size}, batch {batch_size}, "
          f"{task.model.count_params() / 1e6:.2f} M parameters; {steps} steps per round, {rounds} rounds", flush=True)
    cached = [next(iterator) for _ in range(steps)]
    batches = tf.data.Dataset.from_tensors(cached[0])
    for batch in cached[1:]:
        batches = batches.concatenate(tf.data.Dataset.from_tensors(batch))
    trainer = Trainer(task, config.train, tempfile.mkdtemp(prefix="detect-bench-train-"), lambda epoch: batches,
                      steps, progress=False)
    stage_names = [s.name for s in trainer.stages]
    if stage is not None:
        if stage not in stage_names:
            raise InputError("benchmark.py", f"--stage {stage!r}: the schedule's stages are {', '.join(stage_names)}")
        trainer._enter_stage(stage_names.index(stage))
    timed = trainer.stages[trainer.stage_index]
    if len(stage_names) > 1:
        print(f"stage {timed.name!r} of {', '.join(stage_names)}", flush=True)
    bare_optimizer = build_optimizer(timed.train_config(config.train), steps, 1)
    variables = trainer.variables
    bare_optimizer.build(variables)

    bare_step = _bare_step(task, bare_optimizer, variables)

    def bare_round():
        for batch in batches:
            loss = bare_step(batch)
        float(loss)

    def engine_round():
        trainer._run_epoch(0, timed)

    rounds_of = {"engine": engine_round, "bare": bare_round}
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
    median = {k: float(np.median(v)) for k, v in timings.items()}
    best = {k: min(v) for k, v in timings.items()}
    labels = {"engine": "engine step (Trainer epoch loop)",
              "bare": "bare Keras step (tf.function, same model, loss, optimizer, batches)"}
    for key, label in labels.items():
        print(f"{label}: cold {cold[key]:.1f} s (tracing), warm {median[key] / steps * 1e3:.0f} ms/step median, "
              f"{best[key] / steps * 1e3:.0f} ms/step best ({steps * batch_size / median[key]:.1f} images/s median)")
    print(f"engine overhead: {100 * (median['engine'] / median['bare'] - 1):+.1f}% median, "
          f"{100 * (best['engine'] / best['bare'] - 1):+.1f}% best round (goal <= 10%)", flush=True)

    start = time.perf_counter()
    for _ in range(steps):
        loss = bare_step(next(iterator))
    float(loss)
    fed = steps * batch_size / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    data_only = steps * batch_size / (time.perf_counter() - start)
    print(f"training step fed by its pipeline: {fed:.1f} images/s | pipeline alone: {data_only:.1f} images/s "
          f"(x{data_only / (steps * batch_size / median['bare']):.1f} the step)")
    return 0


def _infer_image(config):
    """(a JPEG-encoded image of the config's validation split, its name), or a synthetic 480 x 640 photo-like one."""
    import cv2

    from detect.errors import InputError
    from detect.train.data import class_names_of, load_records, prepare_data

    try:
        prepare_data(config.data)
        records = load_records(config.data, config.data.val_split, class_names_of(config.data))
        path = next(r.image_path for r in records if r.image_path is not None)
        return Path(path).read_bytes(), f"{Path(path).name} of the validation split"
    except (InputError, OSError, StopIteration):
        rng = np.random.default_rng(0)
        image = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (7, 7), 0)
        return cv2.imencode(".jpg", image)[1].tobytes(), "a synthetic 480 x 640 JPEG (no dataset here)"


def bench_infer(config_path, weights=None, repeats=7, overrides=(), precision="float32"):
    """Inference speed of ``Detector``: images/s at batch 1 and 8, end to end and model only.

    End to end: JPEG bytes -> decode -> ``Detector.predict`` (the compiled
    graph of ``detect.inference.graph``: resize, model, decoding, per-class
    NMS, mapping back) -> ``Detections``. Model only: the Keras model's
    forward pass alone, compiled, on an already resized batch. Cold: the
    first call of each (tracing and compilation). Reference: zzh8829/yolov3-tf2
    (``yolov3_tf2.models.YoloV3``, its own NMS included) when it is installed.
    """
    import tensorflow as tf

    from detect.inference import Detector
    from detect.inference.graph import preprocess
    from detect.inference.images import read_image
    from detect.train.experiment import load_experiment

    config = load_experiment(config_path, overrides)
    encoded, what = _infer_image(config)
    names = config.data.classes or None
    if names is None:
        try:
            from detect.train.data import class_names_of

            names = class_names_of(config.data)
        except Exception:  # noqa: BLE001 - no dataset here: the format's usual class count
            from detect.data.voc import VOC_CLASSES

            names = list(VOC_CLASSES) if config.data.format == "voc" else [f"class{i}" for i in range(80)]
    det = Detector.from_config(config, weights=weights, class_names=names, precision=precision)
    task = det._backend.task
    model = config.model
    kind = f"YOLO{model.version}" if model.type == "yolo" else model.type
    size = (f"{config.data.image_size} px" if config.data.resize == "letterbox"
            else f"shortest side {config.data.min_side}, longest <= {config.data.max_side}")
    image = read_image(encoded)
    print(f"{config.name}: {kind} {model.backbone} at {size}, {len(names)} classes, "
          f"{task.model.count_params() / 1e6:.1f} M parameters, {precision}; input: {what} "
          f"({image.shape[1]} x {image.shape[0]}); weights: {weights or 'random (speed does not depend on them)'}")
    print(f"score threshold {det.resolve_options()[0]}, {repeats} timed calls per figure (median)", flush=True)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def model_only(x):
        return task.forward({"image": x, "image_hw": tf.tile(tf.shape(x)[1:3][None], [tf.shape(x)[0], 1])},
                            training=False)

    rows = []
    for batch in (1, 8):
        def end_to_end():
            det.predict([read_image(encoded) for _ in range(batch)])

        inputs = preprocess(np.stack([image] * batch), config.data)[0]

        def forward():
            tf.nest.map_structure(lambda t: t.numpy(), model_only(inputs))

        for name, fn in ((f"end to end (decode, resize, model, NMS), batch {batch}", end_to_end),
                         (f"model only, batch {batch}", forward)):
            start = time.perf_counter()
            fn()
            cold = time.perf_counter() - start
            warm = median_seconds(fn, repeats)
            rows.append((name, batch / warm))
            print(f"{name}: {batch / warm:.2f} images/s (warm {warm * 1e3:.0f} ms/call; first call "
                  f"{cold:.1f} s with tracing and compilation)", flush=True)
    # Compile time per new input size: one trace serves them all (static shapes after the resize).
    traces = det._backend.traces
    start = time.perf_counter()
    det.predict(np.zeros((image.shape[0] // 2 + 1, image.shape[1] // 2 + 3, 3), np.uint8))
    print(f"a new input size: {time.perf_counter() - start:.2f} s, {det._backend.traces - traces} new traces")
    if model.type != "yolo":
        return 0
    try:
        from yolov3_tf2.models import YoloV3  # zzh8829/yolov3-tf2, when installed
    except ImportError:
        print("reference zzh8829/yolov3-tf2: not installed here (on this README's machine it ran YOLOv3 416 "
              "at 2.85 images/s batch 1, 3.06 batch 8 model only)")
    else:
        reference = YoloV3(config.data.image_size, classes=len(names))
        x = tf.zeros([1, config.data.image_size, config.data.image_size, 3])
        fn = tf.function(reference)
        fn(x)
        warm = median_seconds(lambda: [t.numpy() for t in fn(x)], repeats)
        print(f"reference zzh8829/yolov3-tf2, batch 1 (model and its NMS): {1 / warm:.2f} images/s; "
              f"ours end to end x{rows[0][1] * warm:.2f}")
    return 0


class _Parser(argparse.ArgumentParser):
    """Bad command-line input is one line (and exit status 2), like bad files."""

    def error(self, message):
        from detect.errors import InputError

        raise InputError("benchmark.py", message)


def main(argv=None):
    from detect.errors import InputError

    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", choices=["ops", "eval", "data", "train", "infer"])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement (median)")
    parser.add_argument("--images", type=int, default=5000, help="eval: number of synthetic COCO images")
    parser.add_argument("--config", help="train, infer: experiment config to time; data: the config whose "
                        "training step the pipeline is compared with (default configs/yolo_bccd.yaml)")
    parser.add_argument("--weights", help="infer: a run directory or .weights.h5 (default: random weights)")
    parser.add_argument("--precision", choices=["float32", "bfloat16", "float16"], default="float32",
                        help="infer: compute precision (Keras mixed-precision policy)")
    parser.add_argument("--steps", type=int, default=20, help="train: timed steps")
    parser.add_argument("--rounds", type=int, default=5, help="train: timed rounds (engine and bare alternate)")
    parser.add_argument("--stage", help="train: the stage of a multi-stage schedule to time (default the first)")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="train, infer, data: config overrides")
    args = parser.parse_args(argv)
    for option in ("repeats", "images", "steps", "rounds"):
        if getattr(args, option) < 1:
            raise InputError("benchmark.py", f"--{option} must be at least 1, got {getattr(args, option)}")
    if args.suite == "ops":
        bench_ops(args.repeats)
    elif args.suite == "eval":
        bench_eval(args.images)
    elif args.suite == "data":
        return bench_data(min(args.repeats, 5), args.config or DATA_STEP_CONFIG, args.overrides)
    elif args.suite == "train":
        if not args.config:
            parser.error("train needs --config")
        return bench_train(args.config, args.steps, args.overrides, args.rounds, args.stage)
    elif args.suite == "infer":
        if not args.config:
            parser.error("infer needs --config")
        return bench_infer(args.config, args.weights, args.repeats, args.overrides, args.precision)
    else:
        print(f"benchmark.py: the '{args.suite}' suite is not implemented yet", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from detect.errors import InputError

    try:
        code = main()
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        code = 2
    exit_now(code)
