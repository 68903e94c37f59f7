"""The eval suite (``tools/benchmark.py eval``): our COCO evaluation against pycocotools
(and faster-coco-eval when installed) on a synthetic COCO-sized dataset."""

import time

import numpy as np

from detect.bench.timing import median_seconds


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

    # Importing detect.ops and starting TensorFlow's runtime (the tool has
    # imported TensorFlow) are once-per-process costs: reported, not timed as eval.
    start = time.perf_counter()
    import tensorflow as tf

    import detect.ops  # noqa: F401

    tf.constant(0.0).numpy()
    print(f"detect.ops import and runtime start: {time.perf_counter() - start:.2f} s (not counted below)",
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
