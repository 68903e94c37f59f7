"""The data suite (``tools/benchmark.py data``): the YOLO training pipeline on BCCD against a training step."""

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from detect.bench.train import training_step_rate

# BCCD in the shared datasets folder beside the repository; the config whose step the pipeline feeds.
BCCD = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "BCCD"
BCCD_CLASSES = ("RBC", "WBC", "Platelets")
DATA_STEP_CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "yolo_bccd.yaml")


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


def _with_threads(dataset, threads):
    """``dataset`` on a private pool of ``threads`` threads (the thread budget both pipelines get)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    return dataset.with_options(options)


def _cpu_seconds():
    """This process's CPU seconds, all threads, plus its augmentation workers' (``detect.data.augment_workers``)."""
    from detect.data.augment_workers import worker_cpu_seconds

    return time.process_time() + worker_cpu_seconds()


def _alternating_rates(pipelines, images_per_round, rounds, before_round=None, warmup_batches=8):
    """Images/s of each named pipeline, rounds interleaved (A B A B ...) so load changes hit both alike.

    Each round builds its pipeline's iterator afresh, runs ``warmup_batches``
    untimed (buffers fill, AUTOTUNE settles), times ``images_per_round``
    images, then drops the iterator: no pipeline keeps prefetching while the
    other is timed (a kept iterator filled its buffers in the background and
    read back at several times its rate).

    ``before_round``: {name: fn()} run before each of that pipeline's rounds
    (process-wide settings that differ between them, e.g. OpenCV's threads).

    Returns:
      {name: (seconds to the first batch in the first round, [images/s per
      round], CPU s per image over the timed parts)}.
    """
    import gc

    results = {name: (None, [], 0.0) for name in pipelines}
    for _ in range(rounds):
        for name, make in pipelines.items():
            (before_round or {}).get(name, lambda: None)()
            start = time.perf_counter()
            it = iter(make().repeat())
            next(it)
            first = time.perf_counter() - start
            for _ in range(warmup_batches):
                next(it)
            seen, start, cpu = 0, time.perf_counter(), _cpu_seconds()
            while seen < images_per_round:
                seen += int(next(it)["image"].shape[0])
            elapsed, used = time.perf_counter() - start, _cpu_seconds() - cpu
            # Drop the iterator before the next round: its threads must stop (and not run Python at exit).
            del it
            gc.collect()
            first_so_far, rates, cpu_total = results[name]
            rates.append(seen / elapsed)
            results[name] = (first if first_so_far is None else first_so_far, rates, cpu_total + used / seen)
    return {name: (first, rates, cpu / rounds) for name, (first, rates, cpu) in results.items()}


def bench_data_naive(rounds):
    """Ours against the hand-written loop (``detect.bench.naive_data``): same shards, augmentation, batch.

    Both read the same 8 TFRecord shards of BCCD, letterbox to 416, pad
    boxes to 100, batch 16 as float32, on the same cores: the process is
    pinned to 2 cores, then to all when there are more. Each runs as it
    would in a process of its own on those cores: the naive loop on a
    tf.data pool of one thread per core (tf.data's default; more threads
    only make it wait longer on the GIL), ours as ``build_dataset`` sets
    itself up (``data.augment_workers``: a worker process per core, and
    one more tf.data thread per worker, which waits on it without using a
    core), alternating rounds in this process. Ours
    keeps one ``FitCache`` over its rounds, as training keeps one over its
    epochs (each round builds a new pipeline, as each epoch does): from its
    second round on it reads no image, as epochs after the first; "ours, no
    cache" is every round as a first epoch. CPU ms per image is this process's
    CPU time over a pipeline's rounds (the other pipeline's buffers are
    full then, so its threads are idle). OpenCV's thread count is
    process-wide: the naive loop's rounds run with OpenCV's default, as in
    a process of its own; ours with what building our pipeline sets.
    """
    import cv2
    import tensorflow as tf

    from detect.data.augment_workers import opencv_per_image

    from detect.bench.naive_data import naive_dataset
    from detect.data import read_voc
    from detect.data.augment import AugmentConfig
    from detect.data.fit_cache import FitCache
    from detect.data.pipeline import build_dataset
    from detect.data.tfrecord import tfrecord_files, write_tfrecords

    if not BCCD.is_dir():
        print(f"benchmark.py data: BCCD not found at {BCCD}", file=sys.stderr)
        return 2
    records = [r for split in ("trainval", "test") for r in read_voc(BCCD, split, class_names=BCCD_CLASSES)]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, load average {load} (1/5/15 min)")
    print(f"ours (build_dataset) against a hand-written tf.data + albumentations loop: BCCD ({len(records)} "
          f"images) from 8 TFRecord shards, AugmentConfig defaults, letterbox 416, batch 16, 100 boxes; "
          f"median of {rounds} alternating rounds of {2 * len(records)} images, each on a fresh iterator after "
          f"8 untimed batches",
          flush=True)
    cfg = AugmentConfig()
    default_threads = cv2.getNumThreads()  # before building ours changes it
    with tempfile.TemporaryDirectory() as tmp:
        write_tfrecords(records, tmp, num_shards=8, prefix="bccd")
        files = tfrecord_files(tmp)
        all_cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        for threads in sorted({2, len(all_cores or ()) or os.cpu_count() or 2}):
            if all_cores:
                os.sched_setaffinity(0, all_cores[:threads])  # the workers started from here inherit it
            fit_cache = FitCache(1 << 30)

            def ours(fit_cache=fit_cache):
                return build_dataset(tmp, training=True, batch_size=16, image_size=416, max_boxes=100,
                                     augment=cfg, fit_cache=fit_cache)

            pipelines = {
                "ours": ours,
                "naive": lambda: _with_threads(naive_dataset(files, cfg, batch_size=16, image_size=416,
                                                             max_boxes=100), threads),
                "ours, no cache": lambda: ours(fit_cache=None),
            }
            rates = _alternating_rates(pipelines, 2 * len(records), rounds, before_round={
                "ours": opencv_per_image, "ours, no cache": opencv_per_image,
                "naive": lambda: cv2.setNumThreads(default_threads)})
            for name, (first, per_round, cpu) in rates.items():
                print(f"  {threads} cores, {name:<16}: {np.median(per_round):7.1f} images/s (rounds: "
                      f"{', '.join(f'{r:.0f}' for r in per_round)}), first batch {first:.2f} s, "
                      f"CPU {cpu * 1e3:.1f} ms per image", flush=True)
            ratio = np.median(rates["ours"][1]) / np.median(rates["naive"][1])
            first_epoch = np.median(rates["ours, no cache"][1]) / np.median(rates["naive"][1])
            print(f"  {threads} cores: ours / naive = x{ratio:.2f} (goal >= 1.3: {'met' if ratio >= 1.3 else 'NOT met'}); "
                  f"as a first epoch (no cache) x{first_epoch:.2f}", flush=True)
        if all_cores:
            os.sched_setaffinity(0, all_cores)
    return 0


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
    from detect.data.bad_input import pipeline_stats
    from detect.data.pipeline import build_dataset
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
    step_rate, label = training_step_rate(config_path, overrides)
    print(f"training step of {label}: {step_rate:.1f} images/s (bare tf.function step, median of 3 rounds)")
    for name, rate in results.items():
        print(f"  {name:<33} x{rate / step_rate:.1f} the training step")
    mosaic = results["TFRecord, mosaic 1.0"] / step_rate
    print(f"goal: pipeline with mosaic >= 3x the training step: {'met' if mosaic >= 3 else 'NOT met'} "
          f"(x{mosaic:.1f})")
    return 0
