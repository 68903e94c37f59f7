"""The benchmarks' ops suite (detect.bench.ops, detect.bench.timing; tools/benchmark.py ops): its rows
time what they claim against references that agree with ours, and report first-call, warm and
peak-memory numbers. The data suite's hand-written reference loop augments as ours does."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from detect.bench.naive_data import naive_compose
from detect.bench.ops import (
    CROWD_THRESHOLDS, batched_nms_row, crowd_outputs, iou_row, nms_row, numpy_iou, random_boxes, roi_pool_row,
    tf_iou_formula)
from detect.bench.timing import (
    Impl, _format_measured, make_row, numpy_step_peak, tf_memory_device, tf_memory_tracked, tf_step_peak)
from detect.data.augment import AugmentConfig, build_augmenter

TOOL = Path(__file__).resolve().parents[1] / "tools" / "benchmark.py"
MiB = 2**20


def _check_fields(measured):
    for m in measured:
        assert m.cold_s > 0 and m.warm_s > 0, m
        assert m.memory, m


def test_tf_iou_formula_is_the_numpy_formula():
    # Hand case: two 10 x 10 boxes overlapping in a 5 x 5 square.
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 5, 15, 15], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(tf_iou_formula(tf.constant(a), tf.constant(b)), [[25 / 175, 0]], rtol=1e-6)
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 50), random_boxes(rng, 70)
    np.testing.assert_allclose(tf_iou_formula(tf.constant(a), tf.constant(b)), numpy_iou(a, b),
                               rtol=1e-6)


def test_iou_row_has_numpy_plain_tf_and_bare_xla_references():
    n = 512  # a 1 MiB result: above what the CPU allocator leaves uncounted
    row = iou_row(2, n=n)
    names = [ref.name for ref in row.refs]
    assert [name.split(" ")[0] for name in names] == ["numpy", "plain", "bare"]
    assert "no XLA" in names[1] and "jit_compile=True" in names[2]
    assert all(ref.agree for ref in row.refs)
    _check_fields([row.ours, *row.refs])
    ours, numpy_ref, plain, bare = row.ours, *row.refs
    # The first call of a compiled function includes its compilation.
    for m in (ours, bare):
        assert m.cold_s > m.warm_s
    # Peaks are of the step itself: at least its result, numpy's and plain
    # TF's also their [n, n, 2] temporaries, XLA's fused formula none of them.
    result = n * n * 4
    assert numpy_ref.memory == "tracemalloc"
    assert 4 * result <= numpy_ref.peak_bytes < 64 * result
    if tf_memory_tracked(tf_memory_device()):
        assert result <= bare.peak_bytes < 3 * result
        assert result <= ours.peak_bytes < 3 * result
        assert 3 * result <= plain.peak_bytes < 64 * result
    assert any("bare XLA" in note for note in row.notes)


def test_make_row_flags_a_reference_that_disagrees():
    ours = Impl("ours", lambda: np.arange(5.0), memory="numpy")
    right = Impl("right", lambda: np.arange(5.0), memory="numpy")
    wrong = Impl("wrong", lambda: np.arange(5.0) + 1e-3, memory="numpy")
    row = make_row("toy", [ours, right, wrong], 2, np.array_equal)
    assert [ref.agree for ref in row.refs] == [True, False]
    assert "DIFFERENT RESULT" in _format_measured(row.refs[1], row.ours)


def test_step_peaks_count_the_step_not_the_process():
    held = np.ones(16 * MiB // 8)  # 16 MiB alive before and after the step
    peak = numpy_step_peak(lambda: np.ones(MiB).sum())  # an 8 MiB temporary
    assert 8 * MiB <= peak < 9 * MiB
    device = tf_memory_device()
    if not tf_memory_tracked(device):
        pytest.skip(f"{device}'s allocator keeps no statistics")
    held_tf = tf.ones([8 * MiB])  # 32 MiB held by TensorFlow
    x = tf.ones([MiB])
    step = tf.function(lambda v: v * 2.0 + 1.0)  # 4 MiB result
    step(x)
    peak = tf_step_peak(lambda: step(x).numpy(), device)
    assert 4 * MiB <= peak < 16 * MiB
    del held, held_tf


def test_nms_and_roi_pool_rows_agree_and_report_all_fields():
    nms = nms_row(1, num_boxes=2000, max_output_size=100)
    roi = roi_pool_row(1, num_rois=16, channels=8)
    for row in (nms, roi):
        assert row.refs and all(ref.agree for ref in row.refs)
        _check_fields([row.ours, *row.refs])
        assert row.ours.peak_bytes is not None or not tf_memory_tracked(tf_memory_device())
    assert roi.refs[0].peak_bytes > 0  # numpy, tracemalloc


@pytest.mark.slow
def test_batched_nms_rows_time_the_typical_and_the_fallback_path():
    # A first band of about 64 pairs decides typical images, not this crowd.
    sizes = dict(batch=2, num_boxes=2000, num_classes=4, max_total_size=20, candidate_pool=64)
    typical = batched_nms_row(1, **sizes)
    crowd = batched_nms_row(1, crowd=True, objects=(60, 80), **sizes)
    for row in (typical, crowd):
        assert [ref.name for ref in row.refs] == ["tf.image.combined_non_max_suppression"]
        assert row.refs[0].agree
        _check_fields([row.ours, *row.refs])
    assert typical.info["search_level"] == 0
    # The dense crowd needs more than the first band: its row times a fallback.
    assert crowd.info["search_level"] != 0
    assert "fallback" in " ".join(crowd.notes)
    assert crowd.info["candidates"] > typical.info["candidates"]


@pytest.mark.slow
def test_crowd_rows_at_each_threshold_name_it_and_agree():
    # The ops suite times the dense crowd at the mAP threshold and at the
    # deployment ones, where the reference has the least to do.
    assert CROWD_THRESHOLDS == (0.001, 0.05, 0.25, 0.5)
    sizes = dict(batch=2, num_boxes=2000, num_classes=4, max_total_size=20, candidate_pool=64, objects=(60, 80))
    rows = {t: batched_nms_row(1, crowd=True, score_threshold=t, **sizes) for t in (0.001, 0.5)}
    for t, row in rows.items():
        assert f"score > {t:g} " in row.name
        assert row.refs[0].agree
        assert row.info["search_level"] != 0  # the fallback, at every threshold
        _check_fields([row.ours, *row.refs])
    assert rows[0.5].info["candidates"] < rows[0.001].info["candidates"]


def test_crowd_outputs_is_a_dense_crowd():
    boxes, scores = crowd_outputs(0, batch=1, num_boxes=4000, num_classes=3, objects=(80, 80))
    assert boxes.shape == (1, 4000, 4) and scores.shape == (1, 4000, 3)
    assert (boxes[..., 2:] > boxes[..., :2]).all()
    # Duplicates: most confident boxes overlap another confident box heavily.
    best = np.argsort(-scores[0].max(axis=1))[:200]
    iou = numpy_iou(boxes[0, best], boxes[0, best])
    np.fill_diagonal(iou, 0)
    assert (iou.max(axis=1) > 0.5).mean() > 0.9


@pytest.mark.parametrize("args", [["ops", "--repeats", "0"], ["ops", "--repeats", "many"], ["nosuch"]])
def test_bad_command_line_is_one_line_and_status_2(args):
    done = subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: benchmark.py:"), done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("cfg", [AugmentConfig(), AugmentConfig(crop_prob=0.7, scale=0.3, flip_prob=0.0, blur_prob=0.5)],
                         ids=["defaults", "other"])
def test_naive_loop_runs_our_augmentations_with_our_settings(cfg):
    """`benchmark.py data --naive` compares plumbing only: the hand-written loop's albumentations steps are
    ours, in our order, with our arguments and probabilities."""
    ours, naive = build_augmenter(cfg), naive_compose(cfg)
    assert [type(t) for t in naive.transforms] == [type(t) for t in ours.transforms]
    for a, b in zip(ours.transforms, naive.transforms):
        assert a.to_dict() == b.to_dict()
    bbox = ("min_visibility", "min_width", "min_height", "clip")
    ours_params = ours.processors["bboxes"].params
    naive_params = naive.processors["bboxes"].params
    assert all(getattr(ours_params, k) == getattr(naive_params, k) for k in bbox)
