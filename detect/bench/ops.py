"""The ops suite (``tools/benchmark.py ops``): IoU, NMS, batched NMS and RoI pooling against references.

Each row times ours and its references in alternation on synthetic inputs
(raw detector outputs, typical and dense crowds) and checks that they agree;
see :mod:`detect.bench.timing` for what is measured.
"""

import os

import numpy as np

from detect.bench.timing import (
    CPU_UNCOUNTED_BELOW, Impl, make_row, print_row, tf_memory_device, tf_memory_tracked)

# ---- synthetic detector outputs --------------------------------------------------

def random_boxes(rng, n, size=1000.0):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(1, size / 5, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def _empty_outputs(seed, batch, num_boxes, num_classes):
    """(the seeded generator, boxes [B, N, 4] and scores [B, N, C] to fill per image)."""
    rng = np.random.default_rng(seed)
    return rng, np.empty((batch, num_boxes, 4), np.float32), np.empty((batch, num_boxes, num_classes), np.float32)


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
    rng, boxes, scores = _empty_outputs(seed, batch, num_boxes, num_classes)
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
    rng, boxes, scores = _empty_outputs(seed, batch, num_boxes, num_classes)
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


# ---- rows -------------------------------------------------------------------------

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


# ---- the suite ------------------------------------------------------------------

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
