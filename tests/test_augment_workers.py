"""Augmentation in worker processes (detect.data.augment_workers) gives what the tf.data threads give, to the bit."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from detect.data.augment import AugmentConfig, ThreadLocalAugmenter
from detect.data.augment_workers import AUTO, NO_FIT, WorkerPool, fit, resolve_workers, run_one, usable_cores
from detect.data.pipeline import build_dataset
from test_augment import GEOMETRIC, RECTS, rectangles_image
from test_pipeline import record

LETTERBOX = dict(resize="letterbox", image_size=160, min_side=600, max_side=1000)
SHORTEST = dict(resize="shortest_side", image_size=416, min_side=96, max_side=160)
# Every box far outside after a big zoom and shift: a crop with nothing left in it.
LOSES_BOXES = AugmentConfig(crop_prob=0.0, affine_prob=1.0, scale=0.9, translate=1.0, min_visibility=0.99)


@pytest.fixture(scope="module")
def pool():
    pool = WorkerPool(2)
    yield pool
    pool.close()


def _inputs(seed):
    image = rectangles_image()
    classes = np.arange(4, dtype=np.int32)
    return image, RECTS.copy(), classes, np.array([False, True, False, False]), seed


@pytest.mark.parametrize("cfg", [AugmentConfig(), GEOMETRIC, LOSES_BOXES], ids=["defaults", "geometric", "empty"])
@pytest.mark.parametrize("geometry", [LETTERBOX, SHORTEST], ids=["letterbox", "shortest_side"])
def test_worker_output_equals_the_thread_output_to_the_bit(pool, cfg, geometry):
    in_thread = ThreadLocalAugmenter(cfg)
    emptied = 0
    for seed in range(12):
        expected = run_one(in_thread, geometry, *_inputs(seed), geometry["min_side"])
        got = pool.run(cfg, geometry, *_inputs(seed), geometry["min_side"])
        assert len(got) == len(expected) == 6
        for g, e in zip(got, expected):
            assert g.dtype == e.dtype and g.shape == e.shape
            np.testing.assert_array_equal(g, e)
        emptied += len(expected[1]) == 0
    if cfg is LOSES_BOXES:
        assert emptied > 0  # the empty-array path was taken


@pytest.mark.parametrize("geometry", [LETTERBOX, SHORTEST], ids=["letterbox", "shortest_side"])
def test_a_kept_fit_and_an_image_fitted_before_give_the_same_output(pool, geometry):
    """keep_fit hands back ``fit``'s image; that image with its original size (a FitCache hit) gives what
    the decoded image gives, in the worker as in the thread."""
    cfg = AugmentConfig()
    for seed in range(6):
        image, boxes, classes, ignore, _ = _inputs(seed)
        fitted, _, _ = fit(image, boxes, geometry, geometry["min_side"])
        from_decoded = pool.run(cfg, geometry, *_inputs(seed), geometry["min_side"], keep_fit=True)
        np.testing.assert_array_equal(from_decoded[5], fitted)
        np.testing.assert_array_equal(pool.run(cfg, geometry, *_inputs(seed), geometry["min_side"])[5], NO_FIT)
        for run in (pool.run, lambda *a, **k: run_one(ThreadLocalAugmenter(cfg), *a[1:], **k)):
            from_fitted = run(cfg, geometry, fitted, boxes, classes, ignore, seed, geometry["min_side"],
                              original_size=image.shape[:2])
            for g, e in zip(from_fitted[:5], from_decoded[:5]):
                assert g.dtype == e.dtype
                np.testing.assert_array_equal(g, e)
    with pytest.raises(ValueError, match="another geometry"):  # a cached image of the wrong size
        pool.run(cfg, geometry, image[:50], boxes, classes, ignore, 0, geometry["min_side"],
                 original_size=image.shape[:2])


def test_images_larger_than_the_shared_file_grow_it(pool):
    """The file both processes map starts at 4 MiB; a 1200 x 1600 image (5.8 MB) grows it, in and out."""
    cfg = AugmentConfig()
    big = np.tile(rectangles_image(), (10, 10, 1))[:1200, :1600]
    assert big.nbytes > 4 << 20
    geometry = dict(LETTERBOX, image_size=1600)
    for image in (big, rectangles_image(), big):
        args = (image, RECTS.copy(), np.arange(4, dtype=np.int32), np.zeros(4, bool), 3, 600)
        expected = run_one(ThreadLocalAugmenter(cfg), geometry, *args, keep_fit=True)
        got = pool.run(cfg, geometry, *args, keep_fit=True)
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)


def test_no_boxes_in_and_a_worker_error_comes_back_and_the_pool_goes_on(pool):
    cfg = AugmentConfig()
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.int32), np.zeros(0, bool))
    got = pool.run(cfg, LETTERBOX, rectangles_image(), *empty, 5, 600)
    expected = run_one(ThreadLocalAugmenter(cfg), LETTERBOX, rectangles_image(), *empty, 5, 600)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)
    with pytest.raises(Exception) as raised:  # a 2-D "image": cv2 / albumentations refuse it in the worker
        pool.run(cfg, LETTERBOX, np.zeros((4,), np.uint8), *empty, 5, 600)
    assert not isinstance(raised.value, RuntimeError)  # the worker's own error, not a dead worker
    assert len(pool.run(cfg, LETTERBOX, rectangles_image(), *empty, 5, 600)) == 6


def test_a_killed_worker_is_named_and_replaced(pool):
    conn, process = pool._idle.get()
    process.kill()
    process.wait()
    pool._idle.put((conn, process))
    cfg = AugmentConfig()
    with pytest.raises(RuntimeError, match=f"augmentation worker {process.pid} failed"):
        for _ in range(pool.size):  # the dead one is taken at the latest on the size-th call
            pool.run(cfg, LETTERBOX, *_inputs(0), 600)
    for seed in range(2 * pool.size):
        assert len(pool.run(cfg, LETTERBOX, *_inputs(seed), 600)) == 6


@pytest.mark.parametrize("kwargs", [{}, dict(resize="shortest_side", min_side=96, max_side=160)],
                         ids=["letterbox", "shortest_side"])
def test_pipeline_with_workers_gives_the_same_batches(tmp_path, kwargs):
    image = rectangles_image()
    recs = [record(tmp_path / f"rect{i}.png", np.roll(image, 7 * i, axis=1), RECTS, classes=np.arange(4),
                    ignore=[False] * 4, image_id=f"rect{i}") for i in range(8)]

    def batches(workers):
        ds = build_dataset(recs, training=True, batch_size=4, image_size=160, augment=AugmentConfig(), seed=2,
                           deterministic=True, augment_workers=workers, **kwargs)
        return [{k: v.numpy() for k, v in b.items()} for _ in range(2) for b in ds]

    threads, workers = batches(0), batches(2)
    assert len(threads) == len(workers) == 4
    for a, b in zip(threads, workers):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_auto_is_one_per_core_from_two_cores_and_counts_are_checked():
    assert resolve_workers(0) == 0 and resolve_workers(3) == 3
    assert resolve_workers(AUTO) == (usable_cores() if usable_cores() >= 2 else 0)
    with pytest.raises(ValueError, match="augment_workers=-2"):
        resolve_workers(-2)


def test_workers_do_not_load_tensorflow(tmp_path):
    """A worker started from a script that imports TensorFlow (as tools/train.py does) has none of it
    mapped after augmenting an image (a multiprocessing spawn would import the script, TensorFlow too)."""
    script = tmp_path / "main.py"
    script.write_text(
        "import numpy as np, tensorflow\n"
        "from detect.data.augment import AugmentConfig\n"
        "from detect.data.augment_workers import WorkerPool\n"
        "pool = WorkerPool(1)\n"
        "image, boxes = np.zeros((60, 80, 3), np.uint8), np.array([[10, 10, 40, 40]], np.float32)\n"
        "geometry = dict(resize='letterbox', image_size=64, min_side=64, max_side=64)\n"
        "out = pool.run(AugmentConfig(), geometry, image, boxes, np.zeros(1, np.int32), np.zeros(1, bool), 1, 64)\n"
        "conn, process = pool._idle.get()\n"
        "maps = open(f'/proc/{process.pid}/maps').read()\n"
        "print(out[0].shape, 'cv2' in maps, 'tensorflow' in maps)\n"
        "pool._idle.put((conn, process)); pool.close()\n")
    if not Path("/proc/self/maps").exists():
        pytest.skip("needs /proc (Linux) to read a process's mapped libraries")
    out = subprocess.run([sys.executable, str(script)], check=True, capture_output=True, text=True).stdout
    assert out.split()[-3:] == ["3)", "True", "False"], out
