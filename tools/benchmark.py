#!/usr/bin/env python
"""Side-by-side benchmarks: ours against a reference, in one process.

    python tools/benchmark.py ops [--repeats 7]

Each line prints the median wall time of ours and of the reference, the
speed ratio (reference / ours, > 1 means we are faster) and whether the two
agree on the result. Timings are of warmed-up, already-traced functions on
inputs already in memory.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def median_seconds(fn, repeats):
    """Median wall time of fn() after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def report(name, ours_s, ref_name, ref_s, agree):
    ratio = ref_s / ours_s if ours_s > 0 else float("inf")
    print(f"{name:<48} ours {ours_s * 1e3:9.2f} ms | {ref_name:<34} {ref_s * 1e3:9.2f} ms | "
          f"x{ratio:6.2f} | {'same result' if agree else 'DIFFERENT RESULT'}", flush=True)
    return ratio


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
    rows = np.arange(num_boxes)
    for b in range(batch):
        n_obj = rng.poisson(7) + 1
        obj_wh = np.exp(rng.uniform(np.log(10), np.log(400), (n_obj, 2)))
        obj_ctr = rng.uniform(0, size, (n_obj, 2))
        obj_cls = rng.integers(0, num_classes, n_obj)
        near = rng.random(num_boxes) < 0.03
        owner = rng.integers(0, n_obj, num_boxes)
        jitter = rng.normal(0, 0.15, (num_boxes, 4))
        ctr = np.where(near[:, None], obj_ctr[owner] + jitter[:, :2] * obj_wh[owner],
                       rng.uniform(0, size, (num_boxes, 2)))
        wh = np.where(near[:, None], obj_wh[owner] * np.exp(jitter[:, 2:]),
                      np.exp(rng.uniform(np.log(8), np.log(300), (num_boxes, 2))))
        boxes[b] = np.concatenate([ctr - wh / 2, ctr + wh / 2], axis=1)
        objectness = np.where(near, rng.beta(2, 2, num_boxes), rng.beta(0.5, 40, num_boxes))
        logits = rng.normal(-6.9, 1.5, (num_boxes, num_classes))
        own = logits[rows, obj_cls[owner]]
        logits[rows, obj_cls[owner]] = np.where(near, rng.normal(2.0, 1.0, num_boxes), own)
        scores[b] = objectness[:, None] / (1 + np.exp(-logits))
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


# ---- suites ---------------------------------------------------------------------

def bench_ops(repeats):
    import tensorflow as tf

    from detect import ops

    rng = np.random.default_rng(0)
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, "
          f"GPU: {bool(tf.config.list_physical_devices('GPU'))}; medians of {repeats} runs")
    ratios = {}

    # IoU 5000 x 5000.
    a, b = random_boxes(rng, 5000), random_boxes(rng, 5000)
    ta, tb = tf.constant(a), tf.constant(b)
    iou_fn = tf.function(ops.iou, jit_compile=True)
    agree = np.allclose(iou_fn(ta, tb).numpy(), numpy_iou(a, b), atol=1e-6)
    ratios["iou"] = report("IoU 5000 x 5000", median_seconds(lambda: iou_fn(ta, tb).numpy(), repeats),
                           "numpy (vectorised)", median_seconds(lambda: numpy_iou(a, b), repeats), agree)

    # Single-class NMS, 20k boxes.
    boxes, scores = detector_outputs(1, batch=1, num_boxes=20000, num_classes=1)
    boxes, scores = tf.constant(boxes[0]), tf.constant(scores[0, :, 0])
    ours_nms = tf.function(lambda b, s: ops.nms(b, s, 0.5, 1000))
    ref_nms = tf.function(lambda b, s: tf.image.non_max_suppression(b, s, 1000, 0.5))
    idx, n = ours_nms(boxes, scores)
    agree = np.array_equal(idx.numpy()[: int(n)], ref_nms(boxes, scores).numpy())
    ratios["nms"] = report("NMS 1 class, 20k boxes, keep <= 1000",
                           median_seconds(lambda: ours_nms(boxes, scores)[0].numpy(), repeats),
                           "tf.image.non_max_suppression",
                           median_seconds(lambda: ref_nms(boxes, scores).numpy(), repeats), agree)

    # Batched multi-class NMS: batch 8, 20k boxes, 80 classes.
    boxes, scores = detector_outputs(2)
    boxes, scores = tf.constant(boxes), tf.constant(scores)
    args = dict(max_output_size_per_class=100, max_total_size=100, iou_threshold=0.5, score_threshold=0.001)
    ours_b = tf.function(lambda b, s: ops.batched_nms(b, s, **args))
    ref_b = tf.function(lambda b, s: tf.image.combined_non_max_suppression(
        b[:, :, None, :], s, args["max_output_size_per_class"], args["max_total_size"],
        args["iou_threshold"], args["score_threshold"], clip_boxes=False))
    mine, ref = ours_b(boxes, scores), ref_b(boxes, scores)
    agree = (np.array_equal(mine["num_detections"].numpy(), ref.valid_detections.numpy())
             and np.allclose(mine["scores"].numpy(), ref.nmsed_scores.numpy())
             and np.allclose(mine["boxes"].numpy(), ref.nmsed_boxes.numpy())
             and np.array_equal(np.maximum(mine["classes"].numpy(), 0), ref.nmsed_classes.numpy().astype(int)))
    candidates = int((scores.numpy() > args["score_threshold"]).sum() / scores.shape[0])
    ratios["batched_nms"] = report(
        f"batched NMS 8 x 20k boxes x 80 cls (~{candidates // 1000}k cand)",
        median_seconds(lambda: ours_b(boxes, scores)["boxes"].numpy(), repeats),
        "tf.image.combined_non_max_suppression",
        median_seconds(lambda: ref_b(boxes, scores).nmsed_boxes.numpy(), repeats), agree)

    # RoI max pooling: 512 RoIs on a 38 x 50 x 512 map (a 600 x 800 image, stride 16).
    features = rng.normal(size=(1, 38, 50, 512)).astype(np.float32)
    xy = rng.uniform(0, 1, (512, 2)) * [800, 600]
    wh = rng.uniform(16, 400, (512, 2))
    rois = np.concatenate([np.zeros((512, 1)), xy, np.minimum(xy + wh, [800, 600])], 1).astype(np.float32)
    tfeat, trois = tf.constant(features), tf.constant(rois)
    pool_fn = tf.function(lambda f, r: ops.roi_pool(f, r, (7, 7), 1 / 16), jit_compile=True)
    agree = np.array_equal(pool_fn(tfeat, trois).numpy(), numpy_roi_pool(features, rois, (7, 7), 1 / 16))
    ratios["roi_pool"] = report(
        "RoI max pool 512 RoIs, 38 x 50 x 512 -> 7 x 7",
        median_seconds(lambda: pool_fn(tfeat, trois).numpy(), repeats),
        "numpy loop of the Caffe layer",
        median_seconds(lambda: numpy_roi_pool(features, rois, (7, 7), 1 / 16), max(1, repeats // 3)),
        agree)
    return ratios


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", choices=["ops", "eval", "data", "train"])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement (median)")
    args = parser.parse_args(argv)
    if args.suite != "ops":
        print(f"benchmark.py: the '{args.suite}' suite is not implemented yet", file=sys.stderr)
        return 2
    bench_ops(args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
