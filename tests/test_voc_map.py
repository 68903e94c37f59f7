"""VOC AP against hand-computed cases and a numpy port of the devkit."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detect.eval import DetectionRows, GroundTruth, evaluate_voc
from voc_devkit import voc_eval_class


def make_gt(rows, class_names=("a", "b", "c")):
    """rows: (image, class, [xmin, ymin, xmax, ymax] 1-based, difficult)."""
    boxes = np.array([[b[0] - 1, b[1] - 1, b[2] - b[0] + 1, b[3] - b[1] + 1] for _, _, b, _ in rows], float)
    images = sorted({r[0] for r in rows})
    return GroundTruth(
        image_ids=images, class_names=list(class_names), category_ids=list(range(len(class_names))),
        image_index=np.array([images.index(r[0]) for r in rows], np.int32),
        classes=np.array([r[1] for r in rows], np.int32), boxes_xywh=boxes.reshape(-1, 4),
        area=boxes[:, 2] * boxes[:, 3] if len(rows) else np.zeros(0),
        ignore=np.array([r[3] for r in rows], bool))


def make_dets(rows, gt):
    """rows: (image, class, score, [xmin, ymin, xmax, ymax] 1-based)."""
    boxes = np.array([[b[0] - 1, b[1] - 1, b[2] - b[0] + 1, b[3] - b[1] + 1] for *_, b in rows], float)
    return DetectionRows(np.array([gt.image_ids.index(r[0]) for r in rows], np.int32),
                         np.array([r[1] for r in rows], np.int32), boxes.reshape(-1, 4),
                         np.array([r[2] for r in rows], float))


A = [11, 11, 60, 40]


def test_hand_cases_all_point_and_11_point():
    gt = make_gt([(0, 0, A, False), (0, 0, [100, 100, 150, 150], False), (1, 0, A, True)])
    dets = make_dets([
        (0, 0, 0.9, A),                  # TP
        (0, 0, 0.8, A),                  # duplicate: FP
        (1, 0, 0.7, A),                  # on a difficult box: not counted
        (0, 0, 0.6, [100, 100, 150, 150]),  # TP
    ], gt)
    # Recall/precision at the TPs: (0.5, 1), (1, 2/3).
    result = evaluate_voc(gt, dets)
    assert result.per_class["a"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    result07 = evaluate_voc(gt, dets, use_07_metric=True)
    assert result07.per_class["a"] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    # Classes without ground truth are NaN and left out of the mean.
    assert np.isnan(result.per_class["b"]) and result.mAP == pytest.approx(result.per_class["a"])


def test_best_box_taken_is_a_false_positive_even_if_another_fits():
    # The devkit looks only at the best-overlapping box; no fallback.
    gt = make_gt([(0, 0, [10, 10, 50, 50], False), (0, 0, [14, 10, 54, 50], False)])
    dets = make_dets([(0, 0, 0.9, [10, 10, 50, 50]), (0, 0, 0.8, [11, 10, 51, 50])], gt)
    recall, precision = evaluate_voc(gt, dets).curves["a"]
    np.testing.assert_allclose(recall, [0.5, 0.5])
    np.testing.assert_allclose(precision, [1.0, 0.5])


def test_iou_of_exactly_half_is_not_a_match():
    # 1-based [1, 1, 10, 10] is 10 x 10; [6, 1, 15, 10] overlaps 5 x 10: IoU 50 / 150.
    # [1, 1, 10, 20] vs [1, 1, 10, 10]: IoU 100 / 200 = 0.5 exactly -> not > 0.5.
    gt = make_gt([(0, 0, [1, 1, 10, 10], False)])
    dets = make_dets([(0, 0, 0.9, [1, 1, 10, 20])], gt)
    assert evaluate_voc(gt, dets).per_class["a"] == 0.0


def random_case(seed, num_images=20, num_classes=3):
    rng = np.random.default_rng(seed)
    gt_rows, det_rows = [], []
    for image in range(num_images):
        for _ in range(rng.integers(0, 6)):
            xmin, ymin = rng.integers(1, 400, 2)
            w, h = rng.integers(3, 150, 2)
            c = int(rng.integers(num_classes))
            gt_rows.append((image, c, [xmin, ymin, xmin + w - 1, ymin + h - 1], bool(rng.random() < 0.15)))
            for _ in range(rng.integers(0, 4)):
                j = rng.normal(0, 0.12, 4)
                x1, y1 = xmin + j[0] * w, ymin + j[1] * h
                det_c = c if rng.random() < 0.85 else int(rng.integers(num_classes))
                det_rows.append((image, det_c, float(np.round(rng.random(), 2)),
                                 [x1, y1, x1 + w * np.exp(j[2]), y1 + h * np.exp(j[3])]))
        for _ in range(rng.integers(0, 3)):
            x1, y1 = rng.uniform(1, 400, 2)
            w, h = rng.uniform(3, 150, 2)
            det_rows.append((image, int(rng.integers(num_classes)), float(rng.random()), [x1, y1, x1 + w, y1 + h]))
    return gt_rows, det_rows


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans())
def test_random_cases_equal_devkit(seed, use_07_metric):
    gt_rows, det_rows = random_case(seed)
    images = sorted({r[0] for r in gt_rows} | {r[0] for r in det_rows})
    gt = make_gt(gt_rows)
    gt.image_ids = images
    gt.image_index = np.array([images.index(r[0]) for r in gt_rows], np.int32)
    result = evaluate_voc(gt, make_dets(det_rows, gt), use_07_metric)
    for c, name in enumerate(gt.class_names):
        gts = {}
        for image, cls, box, difficult in gt_rows:
            if cls == c:
                boxes, flags = gts.get(image, (np.zeros((0, 4)), np.zeros(0, bool)))
                gts[image] = (np.vstack([boxes, box]), np.append(flags, difficult))
        ref, rec, prec = voc_eval_class(gts, [(r[0], r[2], r[3]) for r in det_rows if r[1] == c], use_07_metric)
        if np.isnan(ref):
            assert np.isnan(result.per_class[name])
            continue
        assert result.per_class[name] == pytest.approx(ref, abs=1e-9)
        recall, precision = result.curves[name]
        np.testing.assert_allclose(recall, rec, atol=1e-12)
        np.testing.assert_allclose(precision, prec, atol=1e-12)


def test_no_detections_give_zero():
    gt = make_gt([(0, 0, A, False)])
    result = evaluate_voc(gt, DetectionRows.empty())
    assert result.per_class["a"] == 0.0 and result.mAP == 0.0
