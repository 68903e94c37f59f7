"""YOLO loss parts against a hand computation in numpy."""

import math

import numpy as np
import pytest

from detect.yolo.loss import YoloLossConfig, decode_level, yolo_loss


def bce(logit, target):
    return max(logit, 0) - logit * target + math.log1p(math.exp(-abs(logit)))


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


CONFIG = YoloLossConfig(lambda_coord=2.0, lambda_obj=1.5, lambda_noobj=0.25, lambda_cls=3.0, ignore_thresh=0.6)


def case():
    """One 64 x 64 image, one level (stride 32, 2 x 2 cells), one 32 x 32 anchor, 2 classes.

    The object [0, 0, 64, 32] (centre (32, 16), 64 x 32, class 1) belongs to
    cell (y=0, x=1). Cell (0, 0) predicts almost the same box, so the
    ignore rule spares it; cells in row 1 are background.
    """
    rng = np.random.default_rng(0)
    raw = rng.normal(0, 1, (1, 2, 2, 1, 7)).astype(np.float32)
    raw[0, 0, 0, 0, :4] = [6.0, 0.0, math.log(2.0), 0.0]  # decodes to ~[0, 0, 64, 32]
    batch = {
        "image": np.zeros((1, 64, 64, 3), np.float32),
        "boxes": np.array([[[0, 0, 64, 32], [0, 0, 0, 0]]], np.float32),
        "classes": np.array([[1, -1]], np.int32),
    }
    anchors = [np.array([[32.0, 32.0]], np.float32)]
    return raw, batch, anchors


def test_loss_parts_equal_hand_computation():
    raw, batch, anchors = case()
    got = {k: float(v) for k, v in yolo_loss([raw], anchors, [32], batch, 2, CONFIG).items()}
    r = raw[0, :, :, 0].astype(np.float64)
    resp = r[0, 1]
    # Targets: centre in cell units minus the cell, log size ratios.
    tx, ty, tw, th = 32 / 32 - 1, 16 / 32 - 0, math.log(64 / 32), math.log(32 / 32)
    size_weight = 2 - 64 * 32 / (64 * 64)
    box = ((sigmoid(resp[0]) - tx) ** 2 + (sigmoid(resp[1]) - ty) ** 2 + (resp[2] - tw) ** 2 + (resp[3] - th) ** 2)
    expected_box = CONFIG.lambda_coord * size_weight * box
    # Objectness: the responsible cell towards 1; row 1 towards 0; cell (0, 0) ignored.
    expected_obj = CONFIG.lambda_obj * bce(resp[4], 1.0) + CONFIG.lambda_noobj * (
        bce(r[1, 0, 4], 0.0) + bce(r[1, 1, 4], 0.0))
    expected_cls = CONFIG.lambda_cls * (bce(resp[5], 0.0) + bce(resp[6], 1.0))
    assert got["loss_box"] == pytest.approx(expected_box, rel=1e-5)
    assert got["loss_obj"] == pytest.approx(expected_obj, rel=1e-5)
    assert got["loss_cls"] == pytest.approx(expected_cls, rel=1e-5)
    assert got["loss"] == pytest.approx(expected_box + expected_obj + expected_cls, rel=1e-5)


def test_ignore_rule_spares_overlapping_background():
    raw, batch, anchors = case()
    decoded = decode_level(raw, anchors[0], 32).numpy()[0, 0, 0, 0]
    np.testing.assert_allclose(decoded, [0, 0, 64, 32], atol=0.2)
    strict = YoloLossConfig(**{**CONFIG.__dict__, "ignore_thresh": 1.0})  # ignore nothing
    with_ignore = float(yolo_loss([raw], anchors, [32], batch, 2, CONFIG)["loss_obj"])
    without = float(yolo_loss([raw], anchors, [32], batch, 2, strict)["loss_obj"])
    assert without - with_ignore == pytest.approx(CONFIG.lambda_noobj * bce(float(raw[0, 0, 0, 0, 4]), 0.0),
                                                  rel=1e-5)


def test_softmax_class_loss_and_empty_image():
    raw, batch, anchors = case()
    cfg = YoloLossConfig(**{**CONFIG.__dict__, "class_loss": "softmax"})
    got = float(yolo_loss([raw], anchors, [32], batch, 2, cfg)["loss_cls"])
    logits = raw[0, 0, 1, 0, 5:].astype(np.float64)
    expected = -(logits[1] - np.log(np.exp(logits).sum()))
    assert got == pytest.approx(cfg.lambda_cls * expected, rel=1e-5)
    # No objects: only background objectness remains.
    empty = {**batch, "classes": np.array([[-1, -1]], np.int32)}
    losses = yolo_loss([raw], anchors, [32], empty, 2, CONFIG)
    assert float(losses["loss_box"]) == 0.0 and float(losses["loss_cls"]) == 0.0
    r = raw[0, :, :, 0, 4].astype(np.float64)
    assert float(losses["loss_obj"]) == pytest.approx(CONFIG.lambda_noobj * sum(bce(v, 0.0) for v in r.ravel()),
                                                      rel=1e-5)


def test_responsible_anchor_is_best_shape_over_levels():
    raw, batch, _ = case()
    # Two levels with one anchor each; the 64 x 32 object matches the second better.
    anchors = [np.array([[8.0, 8.0]], np.float32), np.array([[60.0, 30.0]], np.float32)]
    fine = np.zeros((1, 4, 4, 1, 7), np.float32)
    losses_fine_zero = yolo_loss([fine, raw], anchors, [16, 32], batch, 2, CONFIG)
    moved = fine.copy()
    moved[..., :4] = 3.0  # changing the fine level's box outputs must not change loss_box
    losses_moved = yolo_loss([moved, raw], anchors, [16, 32], batch, 2, CONFIG)
    assert float(losses_fine_zero["loss_box"]) == pytest.approx(float(losses_moved["loss_box"]), rel=1e-6)
    assert float(losses_fine_zero["loss_box"]) > 0


def two_anchor_case():
    """The object of ``case`` with a second anchor: [32, 32] (shape IoU 0.5) and [64, 32] (1, the best)."""
    rng = np.random.default_rng(3)
    raw = rng.normal(0, 1, (1, 2, 2, 2, 7)).astype(np.float32)
    _, batch, _ = case()
    return raw, batch, [np.array([[32.0, 32.0], [64.0, 32.0]], np.float32)]


@pytest.mark.parametrize("assign_thresh, responsible", [(1.0, [1]), (0.5, [1]), (0.4, [0, 1])])
def test_assign_thresh_adds_anchors_over_the_shape_iou(assign_thresh, responsible):
    raw, batch, anchors = two_anchor_case()
    cfg = YoloLossConfig(**{**CONFIG.__dict__, "ignore_thresh": 1.0, "assign_thresh": assign_thresh})
    got = {k: float(v) for k, v in yolo_loss([raw], anchors, [32], batch, 2, cfg).items()}
    r = raw[0].astype(np.float64)  # [y, x, anchor, 7]
    size_weight = 2 - 64 * 32 / (64 * 64)
    box = cls = obj = 0.0
    for a, (pw, ph) in enumerate(anchors[0]):
        for y in range(2):
            for x in range(2):
                p = r[y, x, a]
                if (y, x) == (0, 1) and a in responsible:
                    tx, ty, tw, th = 0.0, 0.5, math.log(64 / pw), math.log(32 / ph)
                    box += size_weight * ((sigmoid(p[0]) - tx) ** 2 + (sigmoid(p[1]) - ty) ** 2
                                          + (p[2] - tw) ** 2 + (p[3] - th) ** 2)
                    cls += bce(p[5], 0.0) + bce(p[6], 1.0)
                    obj += cfg.lambda_obj * bce(p[4], 1.0)
                else:
                    obj += cfg.lambda_noobj * bce(p[4], 0.0)
    assert got["loss_box"] == pytest.approx(cfg.lambda_coord * box, rel=1e-5)
    assert got["loss_cls"] == pytest.approx(cfg.lambda_cls * cls, rel=1e-5)
    assert got["loss_obj"] == pytest.approx(obj, rel=1e-5)


def test_assign_thresh_reaches_anchors_of_other_levels():
    raw, batch, _ = case()
    # The 64 x 32 object: the coarse anchor is best (shape IoU 0.88); the
    # fine one (32 x 32, IoU 0.5) joins at threshold 0.4, in its own cell.
    anchors = [np.array([[32.0, 32.0]], np.float32), np.array([[60.0, 30.0]], np.float32)]
    fine = np.random.default_rng(4).normal(0, 1, (1, 4, 4, 1, 7)).astype(np.float32)
    only_best = YoloLossConfig(**{**CONFIG.__dict__, "assign_thresh": 1.0})
    both = YoloLossConfig(**{**CONFIG.__dict__, "assign_thresh": 0.4})
    base = float(yolo_loss([fine, raw], anchors, [16, 32], batch, 2, only_best)["loss_cls"])
    more = float(yolo_loss([fine, raw], anchors, [16, 32], batch, 2, both)["loss_cls"])
    p = fine[0, 1, 2, 0].astype(np.float64)  # centre (32, 16) at stride 16: cell x=2, y=1
    assert more - base == pytest.approx(CONFIG.lambda_cls * (bce(p[5], 0.0) + bce(p[6], 1.0)), rel=1e-5)


@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
def test_iou_box_loss_is_one_minus_aligned_iou_of_decoded_box(kind):
    from test_boxes import aligned_iou_reference

    raw, batch, anchors = case()
    cfg = YoloLossConfig(**{**CONFIG.__dict__, "box_loss": kind})
    got = float(yolo_loss([raw], anchors, [32], batch, 2, cfg)["loss_box"])
    p = raw[0, 0, 1, 0].astype(np.float64)
    cx, cy = (sigmoid(p[0]) + 1) * 32, (sigmoid(p[1]) + 0) * 32
    w, h = 32 * math.exp(p[2]), 32 * math.exp(p[3])
    decoded = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    size_weight = 2 - 64 * 32 / (64 * 64)
    expected = cfg.lambda_coord * size_weight * (1 - aligned_iou_reference(decoded, [0, 0, 64, 32], kind))
    assert got == pytest.approx(expected, rel=1e-5)
    # Objectness and classes do not depend on the box loss.
    mse = {k: float(v) for k, v in yolo_loss([raw], anchors, [32], batch, 2, CONFIG).items()}
    iou_based = {k: float(v) for k, v in yolo_loss([raw], anchors, [32], batch, 2, cfg).items()}
    assert iou_based["loss_obj"] == pytest.approx(mse["loss_obj"]) and iou_based["loss_cls"] == mse["loss_cls"]
