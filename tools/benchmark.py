#!/usr/bin/env python
"""Side-by-side benchmarks: ours against a reference, in one process.

    python tools/benchmark.py ops [--repeats 7]
    python tools/benchmark.py eval [--images 5000]
    python tools/benchmark.py train --config configs/yolo_shapes.yaml [--steps 20] [--set ...]
    python tools/benchmark.py data [--repeats 5]

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


def bench_data(rounds):
    import tempfile

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

    def pipeline(source):
        return lambda: build_dataset(source, training=True, batch_size=16, image_size=416, augment=AugmentConfig())

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_tfrecords(records, tmp, num_shards=8, prefix="bccd")
        print(f"wrote 8 TFRecord shards in {time.perf_counter() - start:.1f} s (not counted)", flush=True)
        for name, source in (("image files", records), ("TFRecord", tmp)):
            first, warmup, rates, cpu = _pipeline_rate(pipeline(source), len(records), rounds)
            results[name] = float(np.median(rates))
            # Wall rate x CPU per image well under the core count means other processes took the cores.
            print(f"{name:<12} warm-up: first batch {first:.2f} s, first round {warmup:.2f} s | "
                  f"{results[name]:7.1f} images/s (rounds: {', '.join(f'{r:.0f}' for r in rates)}) | "
                  f"CPU {cpu * 1e3:.1f} ms per image, all threads", flush=True)
    goal = 150.0
    print(f"goal: >= {goal:.0f} images/s from TFRecord with full augmentation: "
          f"{'met' if results['TFRecord'] >= goal else 'NOT met'} ({results['TFRecord']:.1f})")
    print(pipeline_stats().summary())
    return 0


def bench_train(config_path, steps, overrides=()):
    """Training throughput of a config: full steps fed by its real pipeline,
    and the same steps on one cached batch (the model's own speed)."""
    import tensorflow as tf

    from detect.data.pipeline import build_dataset
    from detect.train.data import class_names_of, load_records, prepare_data
    from detect.train.engine import Trainer
    from detect.train.experiment import load_experiment
    from detect.train.run import build_task

    config = load_experiment(config_path, overrides)
    prepare_data(config.data)
    names = class_names_of(config.data)
    records = load_records(config.data, config.data.train_split, names)
    task = build_task(config, len(names))
    batch_size = config.train.batch_size
    trainer = Trainer(task, config.train, "/tmp/detect-bench-train", lambda e: None, max(len(records) // batch_size, 1),
                      progress=False)
    dataset = build_dataset(records, training=True, batch_size=batch_size, image_size=config.data.image_size,
                            max_boxes=config.data.max_boxes, augment=config.data.augment, seed=0).repeat()
    print(f"{config.name}: {config.model.version} {config.model.backbone} at {config.data.image_size}, "
          f"batch {batch_size}, {task.model.count_params() / 1e6:.2f} M parameters", flush=True)
    iterator = iter(dataset)
    first = next(iterator)
    start = time.perf_counter()
    trainer.train_step(first)  # trace and first run
    print(f"first step (tracing): {time.perf_counter() - start:.1f} s", flush=True)

    def run(next_batch):
        start = time.perf_counter()
        for _ in range(steps):
            losses = trainer.train_step(next_batch())
        float(losses["loss"])
        return steps * batch_size / (time.perf_counter() - start)

    fed = run(lambda: next(iterator))
    cached = run(lambda: first)
    data_only_start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    data_only = steps * batch_size / (time.perf_counter() - data_only_start)
    print(f"training with its pipeline: {fed:.1f} images/s | model alone (cached batch): {cached:.1f} images/s | "
          f"pipeline alone: {data_only:.1f} images/s (x{data_only / cached:.1f} the model)")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", choices=["ops", "eval", "data", "train"])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement (median)")
    parser.add_argument("--images", type=int, default=5000, help="eval: number of synthetic COCO images")
    parser.add_argument("--config", help="train: experiment config to time")
    parser.add_argument("--steps", type=int, default=20, help="train: timed steps")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="train: config overrides")
    args = parser.parse_args(argv)
    if args.suite == "ops":
        bench_ops(args.repeats)
    elif args.suite == "eval":
        bench_eval(args.images)
    elif args.suite == "data":
        return bench_data(min(args.repeats, 5))
    elif args.suite == "train":
        if not args.config:
            parser.error("train needs --config")
        return bench_train(args.config, args.steps, args.overrides)
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
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: tf.data threads running Python
    # (tf.numpy_function) can abort it with 'terminate called ...'.
    os._exit(code)
