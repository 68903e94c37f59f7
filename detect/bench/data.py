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
