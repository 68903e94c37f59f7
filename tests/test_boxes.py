import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from compile_check import assert_same_compiled
from detect.ops import (
    DEFAULT_SCALE_CLAMP,
    aligned_iou,
    box_area,
    clip_boxes,
    convert_boxes,
    decode_boxes,
    encode_boxes,
    iou,
    smooth_l1,
)


def random_boxes(rng, n, size=100.0, min_side=1.0):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(min_side, size / 2, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def iou_loop(a, b):
    """Pairwise IoU by explicit loops: the independent reference."""
    out = np.zeros((len(a), len(b)), np.float64)
    for i, (ax1, ay1, ax2, ay2) in enumerate(a.astype(np.float64)):
        for j, (bx1, by1, bx2, by2) in enumerate(b.astype(np.float64)):
            iw = min(ax2, bx2) - max(ax1, bx1)
            ih = min(ay2, by2) - max(ay1, by1)
            inter = iw * ih if iw > 0 and ih > 0 else 0.0
            area_a = max(ax2 - ax1, 0) * max(ay2 - ay1, 0)
            area_b = max(bx2 - bx1, 0) * max(by2 - by1, 0)
            union = area_a + area_b - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


# ---- conversion, area, clipping -------------------------------------------

def test_convert_hand_case():
    xyxy = np.array([[10, 20, 50, 80]], np.float32)
    np.testing.assert_allclose(convert_boxes(xyxy, "xyxy", "xywh"), [[10, 20, 40, 60]])
    np.testing.assert_allclose(convert_boxes(xyxy, "xyxy", "cxcywh"), [[30, 50, 40, 60]])
    np.testing.assert_allclose(convert_boxes([[30, 50, 40, 60]], "cxcywh", "xyxy"), xyxy)
    np.testing.assert_allclose(convert_boxes([[10, 20, 40, 60]], "xywh", "xyxy"), xyxy)


def test_convert_round_trips_all_pairs():
    boxes = random_boxes(np.random.default_rng(0), 50).reshape(5, 10, 4)
    for mid in ("xywh", "cxcywh"):
        back = convert_boxes(convert_boxes(boxes, "xyxy", mid), mid, "xyxy")
        np.testing.assert_allclose(back, boxes, atol=1e-4)


def test_convert_rejects_unknown_format():
    with pytest.raises(ValueError, match="yxyx"):
        convert_boxes(np.zeros((1, 4)), "yxyx", "xyxy")


def test_area_and_clip():
    boxes = np.array([[0, 0, 10, 5], [5, 5, 5, 9], [4, 4, 2, 2], [-5, -5, 120, 30]], np.float32)
    np.testing.assert_allclose(box_area(boxes), [50, 0, 0, 125 * 35])
    np.testing.assert_allclose(clip_boxes(boxes, 20, 100)[3], [0, 0, 100, 20])
    # Per-image sizes broadcast over a batch.
    batch = np.stack([boxes, boxes])
    clipped = clip_boxes(batch, np.array([[20.0], [10.0]]), np.array([[100.0], [50.0]]))
    np.testing.assert_allclose(clipped[1, 3], [0, 0, 50, 10])


# ---- IoU -------------------------------------------------------------------

def test_iou_hand_case():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 5, 15, 15], [0, 0, 10, 10], [10, 10, 20, 20], [0, 0, 5, 10]], np.float32)
    np.testing.assert_allclose(iou(a, b), [[25 / 175, 1.0, 0.0, 0.5]], rtol=1e-6)


def test_iou_matches_loop_reference_batched():
    rng = np.random.default_rng(1)
    a = np.stack([random_boxes(rng, 7) for _ in range(3)])
    b = np.stack([random_boxes(rng, 5) for _ in range(3)])
    got = iou(a, b).numpy()
    assert got.shape == (3, 7, 5)
    for k in range(3):
        np.testing.assert_allclose(got[k], iou_loop(a[k], b[k]), atol=1e-6)


def test_iou_padded_zero_area_and_empty():
    a = np.array([[0, 0, 0, 0], [3, 3, 3, 8], [0, 0, 10, 10]], np.float32)
    got = iou(a, a).numpy()
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(got[:2], 0.0)
    assert got[2, 2] == 1.0
    assert iou(np.zeros((0, 4), np.float32), a).shape == (0, 3)
    assert iou(a, np.zeros((0, 4), np.float32)).shape == (3, 0)
    assert iou(np.zeros((2, 0, 4), np.float32), np.zeros((2, 4, 4), np.float32)).shape == (2, 0, 4)


# Pixel coordinates on a 1/16 grid: float32-exact, and no subnormal areas
# (which the CPU flushes to zero).
box_coords = hnp.arrays(np.float32, (6, 4), elements=st.integers(-1600, 8000).map(lambda v: v / 16))


def _ordered(b):
    x1, x2 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    y1, y2 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    return np.stack([x1, y1, x2, y2], 1)


@settings(max_examples=60, deadline=None)
@given(box_coords, box_coords)
def test_iou_properties(raw_a, raw_b):
    a, b = _ordered(raw_a), _ordered(raw_b)
    ab = iou(a, b).numpy()
    assert np.all(ab >= 0) and np.all(ab <= 1 + 1e-6)
    np.testing.assert_allclose(ab, iou(b, a).numpy().T, atol=1e-6)
    np.testing.assert_allclose(ab, iou_loop(a, b), atol=1e-5)
    diag = np.diag(iou(a, a).numpy())
    positive = box_area(a).numpy() > 0
    np.testing.assert_allclose(diag[positive], 1.0, atol=1e-6)


def test_iou_eager_equals_compiled_two_shapes():
    rng = np.random.default_rng(2)
    assert_same_compiled(iou, random_boxes(rng, 9), random_boxes(rng, 4))
    assert_same_compiled(iou, random_boxes(rng, 12).reshape(2, 6, 4), random_boxes(rng, 10).reshape(2, 5, 4))


# ---- paired IoU variants (box-regression losses) ----------------------------


def aligned_iou_reference(a, b, kind):
    """GIoU / DIoU / CIoU of one pair, written from the papers' definitions."""
    ax1, ay1, ax2, ay2 = map(float, a)
    bx1, by1, bx2, by2 = map(float, b)
    overlap = iou_loop(np.array([a]), np.array([b]))[0, 0]
    iw = max(min(ax2, bx2) - max(ax1, bx1), 0.0)
    ih = max(min(ay2, by2) - max(ay1, by1), 0.0)
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - iw * ih
    cw, ch = max(ax2, bx2) - min(ax1, bx1), max(ay2, by2) - min(ay1, by1)
    if kind == "iou":
        return overlap
    if kind == "giou":
        return overlap - (cw * ch - union) / (cw * ch)
    rho2 = ((ax1 + ax2) / 2 - (bx1 + bx2) / 2) ** 2 + ((ay1 + ay2) / 2 - (by1 + by2) / 2) ** 2
    diou = overlap - rho2 / (cw ** 2 + ch ** 2)
    if kind == "diou":
        return diou
    v = 4 / math.pi ** 2 * (math.atan((bx2 - bx1) / (by2 - by1)) - math.atan((ax2 - ax1) / (ay2 - ay1))) ** 2
    alpha = v / ((1 - overlap) + v) if v > 0 else 0.0
    return diou - alpha * v


def test_aligned_iou_hand_case():
    # 10 x 10 boxes offset by (5, 5): IoU 25 / 175; enclosing box 15 x 15.
    a, b = [[0.0, 0.0, 10.0, 10.0]], [[5.0, 5.0, 15.0, 15.0]]
    assert float(aligned_iou(a, b, "iou")[0]) == pytest.approx(1 / 7, rel=1e-6)
    assert float(aligned_iou(a, b, "giou")[0]) == pytest.approx(1 / 7 - (225 - 175) / 225, rel=1e-6)
    assert float(aligned_iou(a, b, "diou")[0]) == pytest.approx(1 / 7 - 50 / 450, rel=1e-6)
    assert float(aligned_iou(a, b, "ciou")[0]) == pytest.approx(1 / 7 - 50 / 450, rel=1e-6)  # same aspect: v = 0
    # Disjoint boxes: GIoU and DIoU go below 0, which plain IoU cannot tell apart.
    far = [[30.0, 0.0, 40.0, 10.0]]
    assert float(aligned_iou(a, far, "iou")[0]) == 0.0
    assert float(aligned_iou(a, far, "giou")[0]) == pytest.approx(-(400 - 200) / 400, rel=1e-6)
    assert float(aligned_iou(a, far, "diou")[0]) == pytest.approx(-900 / (1600 + 100), rel=1e-6)


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_aligned_iou_matches_reference(kind):
    rng = np.random.default_rng(7)
    a, b = random_boxes(rng, 64).reshape(2, 32, 4), random_boxes(rng, 64).reshape(2, 32, 4)
    got = aligned_iou(a, b, kind).numpy()
    assert got.shape == (2, 32)
    expected = np.array([aligned_iou_reference(x, y, kind) for x, y in zip(a.reshape(-1, 4), b.reshape(-1, 4))])
    np.testing.assert_allclose(got.ravel(), expected, atol=2e-6)
    if kind == "iou":  # the diagonal of the all-pairs op
        np.testing.assert_allclose(got, np.diagonal(iou(a, b).numpy(), axis1=1, axis2=2), atol=1e-6)
    assert_same_compiled(lambda x, y: aligned_iou(x, y, kind), a, b)


def test_aligned_iou_degenerate_boxes_and_gradient():
    zero = np.zeros((1, 4), np.float32)
    for kind in ("iou", "giou", "diou", "ciou"):
        value = aligned_iou(zero, zero, kind).numpy()
        assert np.isfinite(value).all() and value[0] == 0.0, kind
    # CIoU's alpha is a constant for the gradient: d/dx of the CIoU equals
    # that of DIoU - alpha * v with alpha frozen at its value.
    a = tf.Variable([[2.0, 1.0, 12.0, 21.0]])
    b = tf.constant([[0.0, 0.0, 10.0, 10.0]])
    with tf.GradientTape() as tape:
        value = aligned_iou(a, b, "ciou")
    grad = tape.gradient(value, a).numpy()
    box = a.numpy()[0].astype(np.float64)
    overlap = iou_loop(box[None], b.numpy())[0, 0]
    v = 4 / math.pi ** 2 * (math.atan(1.0) - math.atan((box[2] - box[0]) / (box[3] - box[1]))) ** 2
    alpha = v / (1 - overlap + v)

    def frozen(x):
        xv = 4 / math.pi ** 2 * (math.atan(1.0) - math.atan((x[2] - x[0]) / (x[3] - x[1]))) ** 2
        return aligned_iou_reference(x, b.numpy()[0], "diou") - alpha * xv

    eps = 1e-4
    numeric = [(frozen(box + eps * np.eye(4)[i]) - frozen(box - eps * np.eye(4)[i])) / (2 * eps) for i in range(4)]
    np.testing.assert_allclose(grad[0], numeric, rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match="kind"):
        aligned_iou(zero, zero, "eiou")


# ---- box coder -------------------------------------------------------------

def test_encode_hand_case():
    anchor = np.array([[0, 0, 10, 20]], np.float32)  # centre (5, 10), size 10 x 20
    box = np.array([[2, 4, 22, 24]], np.float32)  # centre (12, 14), size 20 x 20
    expected = [[0.7, 0.2, math.log(2.0), 0.0]]
    np.testing.assert_allclose(encode_boxes(box, anchor), expected, rtol=1e-6)
    weighted = encode_boxes(box, anchor, weights=(10, 10, 5, 5))
    np.testing.assert_allclose(weighted, [[7.0, 2.0, 5 * math.log(2.0), 0.0]], rtol=1e-6)


def test_encode_matches_numpy_formula():
    rng = np.random.default_rng(3)
    boxes, anchors = random_boxes(rng, 20), random_boxes(rng, 20)
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    ref = np.stack([
        10 * ((boxes[:, 0] + bw / 2) - (anchors[:, 0] + aw / 2)) / aw,
        10 * ((boxes[:, 1] + bh / 2) - (anchors[:, 1] + ah / 2)) / ah,
        5 * np.log(bw / aw),
        5 * np.log(bh / ah),
    ], 1)
    np.testing.assert_allclose(encode_boxes(boxes, anchors, (10, 10, 5, 5)), ref, rtol=1e-4, atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]))
def test_decode_inverts_encode(seed, weights):
    rng = np.random.default_rng(seed)
    boxes, anchors = random_boxes(rng, 32, size=600), random_boxes(rng, 32, size=600, min_side=8)
    back = decode_boxes(encode_boxes(boxes, anchors, weights), anchors, weights).numpy()
    np.testing.assert_allclose(back, boxes, rtol=1e-4, atol=1e-4)


def test_decode_clamps_log_scale():
    anchor = np.array([[0, 0, 16, 16]], np.float32)
    out = decode_boxes(np.array([[0, 0, 50.0, 50.0]], np.float32), anchor).numpy()
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0, 2] - out[0, 0], 16 * math.exp(DEFAULT_SCALE_CLAMP), rtol=1e-5)
    np.testing.assert_allclose(out[0, 2] - out[0, 0], 1000.0, rtol=1e-5)


def test_coder_eager_equals_compiled_two_shapes():
    rng = np.random.default_rng(4)
    for shape in ((10,), (2, 7)):
        n = int(np.prod(shape))
        boxes = random_boxes(rng, n).reshape(shape + (4,))
        anchors = random_boxes(rng, n).reshape(shape + (4,))
        deltas = assert_same_compiled(lambda b, a: encode_boxes(b, a, (10, 10, 5, 5)), boxes, anchors)
        assert_same_compiled(lambda d, a: decode_boxes(d, a, (10, 10, 5, 5)), deltas, anchors, atol=1e-3)


# ---- smooth L1 ---------------------------------------------------------------

def test_smooth_l1_hand_values():
    pred = np.array([0.0, 0.5, 1.0, 3.0, -2.0], np.float32)
    target = np.zeros(5, np.float32)
    np.testing.assert_allclose(smooth_l1(pred, target), [0, 0.125, 0.5, 2.5, 1.5])
    # py-faster-rcnn's RPN uses sigma = 3, i.e. beta = 1/9.
    sigma = 3.0
    x = np.array([0.05, 0.5], np.float32)
    ref = np.where(np.abs(x) < 1 / sigma**2, 0.5 * sigma**2 * x**2, np.abs(x) - 0.5 / sigma**2)
    np.testing.assert_allclose(smooth_l1(x, 0.0, beta=1 / sigma**2), ref, rtol=1e-6)
    np.testing.assert_allclose(smooth_l1(pred, target, beta=0.0), np.abs(pred))


def test_smooth_l1_eager_equals_compiled():
    rng = np.random.default_rng(5)
    for shape in ((7,), (3, 5, 4)):
        a, b = rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32)
        assert_same_compiled(lambda p, t: smooth_l1(p, t, beta=0.5), a, b)
