"""Faster R-CNN RPN and detector losses against hand computations in numpy."""

import math

import numpy as np
import pytest
import tensorflow as tf

from compile_check import assert_same_compiled
from detect.faster_rcnn.loss import LOSS_NORMALIZATIONS, detector_loss, rpn_loss


def bce_pos(x):
    """-log(sigmoid(x)): an anchor labelled object."""
    return math.log(1 + math.exp(-x))


def bce_neg(x):
    """-log(1 - sigmoid(x)): an anchor labelled background."""
    return math.log(1 + math.exp(x))


def smooth_l1_hand(d, sigma):
    """Fast R-CNN's piecewise form, written out: 0.5 (sigma d)^2 inside |d| < 1/sigma^2."""
    if abs(d) < 1 / sigma**2:
        return 0.5 * sigma**2 * d * d
    return abs(d) - 0.5 / sigma**2


def softmax_ce(logits, label):
    return math.log(sum(math.exp(v) for v in logits)) - logits[label]


# ---------------------------------------------------------------- RPN ---

def rpn_case():
    """2 images x 4 anchors; 6 sampled (3 positive, 3 negative), 2 ignored.

    The positives' residuals (delta - target) straddle the sigma-3
    transition |d| = 1/9: 0.05 and -0.1 are quadratic, the rest linear.
    """
    objectness = np.array([[2.0, -1.0, 0.5, 3.0],
                           [-2.0, 1.5, 0.0, -0.5]], np.float32)
    labels = np.array([[1, 0, -1, 0],
                       [0, 1, 1, -1]], np.int32)
    box_targets = np.array([[[0.1, -0.2, 0.3, 0.0], [9, 9, 9, 9], [7, 7, 7, 7], [5, 5, 5, 5]],
                            [[1, 1, 1, 1], [0.0, 0.5, -0.5, 0.2], [0.2, 0.2, 0.2, 0.2], [3, 3, 3, 3]]], np.float32)
    residual = np.array([[[0.05, 0.3, -0.1, 1.0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
                         [[0, 0, 0, 0], [-0.5, 0.0, 2.0, 0.12], [0.08, -0.2, 0.0, 0.6], [0, 0, 0, 0]]], np.float32)
    deltas = box_targets + residual
    return objectness, deltas, labels, box_targets, residual


def rpn_hand(objectness, labels, residual, sigma=3.0):
    """(sum of BCE over sampled, sum of smooth-L1 over positives, #sampled)."""
    cls_sum, box_sum, count = 0.0, 0.0, 0
    for b in range(labels.shape[0]):
        for n in range(labels.shape[1]):
            x = float(objectness[b, n])
            if labels[b, n] == 1:
                cls_sum += bce_pos(x)
                box_sum += sum(smooth_l1_hand(float(d), sigma) for d in residual[b, n])
                count += 1
            elif labels[b, n] == 0:
                cls_sum += bce_neg(x)
                count += 1
    return cls_sum, box_sum, count


def test_rpn_code_normalization_equals_hand_computation():
    objectness, deltas, labels, box_targets, residual = rpn_case()
    cls_sum, box_sum, count = rpn_hand(objectness, labels, residual)
    assert count == 6
    cls_loss, box_loss = rpn_loss(objectness, deltas, labels, box_targets)
    assert cls_loss.dtype == tf.float32 and box_loss.dtype == tf.float32
    assert cls_loss.shape == () and box_loss.shape == ()
    assert float(cls_loss) == pytest.approx(cls_sum / 6, rel=1e-5)
    assert float(box_loss) == pytest.approx(box_sum / 6, rel=1e-5)
    # Spot-check the hand numbers themselves: image 0, anchor 0 is positive with logit 2.
    assert bce_pos(2.0) == pytest.approx(0.126928, abs=1e-6)
    assert smooth_l1_hand(0.05, 3.0) == pytest.approx(0.01125) and smooth_l1_hand(1.0, 3.0) == pytest.approx(17 / 18)


def test_rpn_paper_normalization_equals_hand_computation():
    objectness, deltas, labels, box_targets, residual = rpn_case()
    cls_sum, box_sum, _ = rpn_hand(objectness, labels, residual)
    # 4 anchors per image = 2 locations x 2 anchors: N_reg = B * 2 = 4.
    for num_locations in (2, tf.constant(2)):
        cls_loss, box_loss = rpn_loss(objectness, deltas, labels, box_targets, normalization="paper",
                                      num_locations=num_locations)
        assert float(cls_loss) == pytest.approx(cls_sum / 6, rel=1e-5)
        assert float(box_loss) == pytest.approx(10.0 * box_sum / 4, rel=1e-5)
    _, box_loss = rpn_loss(objectness, deltas, labels, box_targets, normalization="paper",
                           paper_lambda=2.0, num_locations=3)
    assert float(box_loss) == pytest.approx(2.0 * box_sum / 6, rel=1e-5)
    # Under "code" paper_lambda and num_locations change nothing.
    code = rpn_loss(objectness, deltas, labels, box_targets, paper_lambda=123.0, num_locations=1)
    assert float(code[1]) == pytest.approx(box_sum / 6, rel=1e-5)


def test_rpn_sigma_sets_the_transition():
    objectness, deltas, labels, box_targets, residual = rpn_case()
    _, box_sum, _ = rpn_hand(objectness, labels, residual, sigma=1.0)
    _, box_loss = rpn_loss(objectness, deltas, labels, box_targets, sigma=1.0)
    assert float(box_loss) == pytest.approx(box_sum / 6, rel=1e-5)


def test_rpn_ignored_anchors_do_not_contribute():
    objectness, deltas, labels, box_targets, _ = rpn_case()
    base = [float(v) for v in rpn_loss(objectness, deltas, labels, box_targets)]
    ignored = labels < 0
    negative = labels == 0
    obj2, deltas2, targets2 = objectness.copy(), deltas.copy(), box_targets.copy()
    obj2[ignored] = [50.0, -80.0]
    deltas2[ignored] = 100.0
    targets2[ignored] = -100.0
    # Negatives' regression outputs are not trained either.
    deltas2[negative] = 42.0
    changed = [float(v) for v in rpn_loss(obj2, deltas2, labels, targets2)]
    assert changed == pytest.approx(base, rel=1e-6)
    # ... while a sampled anchor's logit and a positive's delta do matter.
    obj3 = objectness.copy()
    obj3[0, 1] += 1.0
    assert float(rpn_loss(obj3, deltas, labels, box_targets)[0]) != pytest.approx(base[0], rel=1e-4)
    deltas3 = deltas.copy()
    deltas3[1, 2, 0] += 1.0
    assert float(rpn_loss(objectness, deltas3, labels, box_targets)[1]) != pytest.approx(base[1], rel=1e-4)


def test_rpn_gradients_vanish_at_ignored_anchors():
    objectness, deltas, labels, box_targets, _ = rpn_case()
    obj, dlt = tf.Variable(objectness), tf.Variable(deltas)
    with tf.GradientTape() as tape:
        cls_loss, box_loss = rpn_loss(obj, dlt, labels, box_targets)
        total = cls_loss + box_loss
    g_obj, g_dlt = tape.gradient(total, [obj, dlt])
    g_obj, g_dlt = g_obj.numpy(), g_dlt.numpy()
    np.testing.assert_array_equal(g_obj[labels < 0], 0.0)
    assert np.all(g_obj[labels >= 0] != 0.0)
    np.testing.assert_array_equal(g_dlt[labels != 1], 0.0)
    # d/dx of mean BCE at a positive: (sigmoid(x) - 1) / 6.
    assert g_obj[0, 0] == pytest.approx((1 / (1 + math.exp(-2.0)) - 1) / 6, rel=1e-5)


@pytest.mark.parametrize("normalization", LOSS_NORMALIZATIONS)
def test_rpn_empty_sample_is_zero_with_finite_gradients(normalization):
    objectness, deltas, _, box_targets, _ = rpn_case()
    labels = np.full((2, 4), -1, np.int32)
    obj, dlt = tf.Variable(objectness), tf.Variable(deltas)
    with tf.GradientTape() as tape:
        cls_loss, box_loss = rpn_loss(obj, dlt, labels, box_targets, normalization=normalization, num_locations=2)
        total = cls_loss + box_loss
    assert float(cls_loss) == 0.0 and float(box_loss) == 0.0
    for grad in tape.gradient(total, [obj, dlt]):
        assert np.all(np.isfinite(grad.numpy()))
        np.testing.assert_array_equal(grad.numpy(), 0.0)


def test_rpn_negatives_only_give_zero_box_loss():
    objectness, deltas, labels, box_targets, _ = rpn_case()
    labels = np.where(labels == 1, 0, labels).astype(np.int32)
    cls_loss, box_loss = rpn_loss(objectness, deltas, labels, box_targets)
    assert float(box_loss) == 0.0
    assert float(cls_loss) == pytest.approx(sum(bce_neg(float(x)) for x in objectness[labels == 0]) / 6, rel=1e-5)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_rpn_low_precision_inputs_compute_in_float32(dtype):
    objectness, deltas, labels, box_targets, _ = rpn_case()
    low = [tf.cast(t, dtype) for t in (objectness, deltas, box_targets)]
    cls_loss, box_loss = rpn_loss(low[0], low[1], labels, low[2])
    assert cls_loss.dtype == tf.float32 and box_loss.dtype == tf.float32
    # Reference: the same rounded inputs, computed in float32.
    ref = rpn_loss(*(tf.cast(t, tf.float32) for t in low[:2]), labels, tf.cast(low[2], tf.float32))
    assert float(cls_loss) == pytest.approx(float(ref[0]), rel=1e-6)
    assert float(box_loss) == pytest.approx(float(ref[1]), rel=1e-6)
    exact = rpn_loss(objectness, deltas, labels, box_targets)
    assert float(cls_loss) == pytest.approx(float(exact[0]), rel=3e-2)


def test_rpn_argument_checks():
    objectness, deltas, labels, box_targets, _ = rpn_case()
    with pytest.raises(ValueError, match="num_locations"):
        rpn_loss(objectness, deltas, labels, box_targets, normalization="paper")
    with pytest.raises(ValueError, match="normalization"):
        rpn_loss(objectness, deltas, labels, box_targets, normalization="mean")
    with pytest.raises(ValueError, match="sigma"):
        rpn_loss(objectness, deltas, labels, box_targets, sigma=0.0)


def test_rpn_eager_equals_compiled():
    objectness, deltas, labels, box_targets, residual = rpn_case()
    cls_sum, box_sum, _ = rpn_hand(objectness, labels, residual)
    got = assert_same_compiled(
        lambda o, d, l, t: rpn_loss(o, d, l, t, normalization="paper", num_locations=2),
        objectness, deltas, labels, box_targets)
    assert float(got[1]) == pytest.approx(10.0 * box_sum / 4, rel=1e-5)


# ----------------------------------------------------------- detector ---

def detector_case():
    """2 images x 3 RoI slots, C = 2 object classes; the last slot of image 1 is empty.

    Foreground: (0, 0) class 2 (columns 4:8), (0, 2) class 1 (columns 0:4),
    (1, 0) class 1. (0, 1) and (1, 1) are background; (1, 2) is padding
    with label -1.
    """
    class_logits = np.array([[[0.2, -1.0, 1.5], [2.0, 0.1, -0.3], [0.0, 1.0, 0.5]],
                             [[-0.5, 0.7, 0.2], [1.2, -0.4, 0.9], [30.0, -30.0, 0.0]]], np.float32)
    labels = np.array([[2, 0, 1], [1, 0, -1]], np.int32)
    roi_valid = np.array([[True, True, True], [True, True, False]])
    box_targets = np.array([[[0.1, 0.2, -0.1, 0.0], [5, 5, 5, 5], [0.0, -0.3, 0.4, 0.1]],
                            [[0.5, 0.5, -0.5, 0.25], [6, 6, 6, 6], [8, 8, 8, 8]]], np.float32)
    # Residuals straddle the sigma-1 transition |d| = 1: 0.5 and -0.25 quadratic, 2.0 and -1.5 linear.
    own_residual = {(0, 0): [0.5, -1.5, 0.0, 0.25], (0, 2): [2.0, 0.1, -0.25, 0.0], (1, 0): [-0.75, 1.25, 0.0, 3.0]}
    rng = np.random.default_rng(0)
    box_deltas = rng.normal(0, 3, (2, 3, 8)).astype(np.float32)  # other columns: arbitrary
    for (b, s), res in own_residual.items():
        c = labels[b, s] - 1
        box_deltas[b, s, 4 * c:4 * c + 4] = box_targets[b, s] + np.array(res, np.float32)
    return class_logits, box_deltas, labels, box_targets, roi_valid, own_residual


def detector_hand(class_logits, labels, roi_valid, own_residual, sigma=1.0):
    cls_sum, count = 0.0, 0
    for b in range(labels.shape[0]):
        for s in range(labels.shape[1]):
            if roi_valid[b, s]:
                cls_sum += softmax_ce([float(v) for v in class_logits[b, s]], int(labels[b, s]))
                count += 1
    box_sum = sum(smooth_l1_hand(d, sigma) for res in own_residual.values() for d in res)
    return cls_sum, box_sum, count


def test_detector_code_normalization_equals_hand_computation():
    class_logits, box_deltas, labels, box_targets, roi_valid, own = detector_case()
    cls_sum, box_sum, count = detector_hand(class_logits, labels, roi_valid, own)
    assert count == 5
    cls_loss, box_loss = detector_loss(class_logits, box_deltas, labels, box_targets, roi_valid)
    assert cls_loss.dtype == tf.float32 and box_loss.dtype == tf.float32
    assert float(cls_loss) == pytest.approx(cls_sum / 5, rel=1e-5)
    assert float(box_loss) == pytest.approx(box_sum / 5, rel=1e-5)
    assert smooth_l1_hand(2.0, 1.0) == 1.5 and smooth_l1_hand(0.5, 1.0) == 0.125


def test_detector_sigma_sets_the_transition():
    class_logits, box_deltas, labels, box_targets, roi_valid, own = detector_case()
    _, box_sum, _ = detector_hand(class_logits, labels, roi_valid, own, sigma=3.0)
    _, box_loss = detector_loss(class_logits, box_deltas, labels, box_targets, roi_valid, sigma=3.0)
    assert float(box_loss) == pytest.approx(box_sum / 5, rel=1e-5)


def test_detector_paper_is_code_with_box_term_times_lambda():
    args = detector_case()[:5]
    code = [float(v) for v in detector_loss(*args)]
    at_one = [float(v) for v in detector_loss(*args, normalization="paper")]
    assert at_one == pytest.approx(code, rel=1e-6)
    cls_loss, box_loss = detector_loss(*args, normalization="paper", paper_lambda=2.5)
    assert float(cls_loss) == pytest.approx(code[0], rel=1e-6)
    assert float(box_loss) == pytest.approx(2.5 * code[1], rel=1e-6)
    # paper_lambda is unused under "code".
    assert float(detector_loss(*args, paper_lambda=7.0)[1]) == pytest.approx(code[1], rel=1e-6)


def test_detector_uses_only_own_class_deltas():
    class_logits, box_deltas, labels, box_targets, roi_valid, _ = detector_case()
    base = float(detector_loss(class_logits, box_deltas, labels, box_targets, roi_valid)[1])
    own_columns = np.zeros(box_deltas.shape, bool)
    for b in range(2):
        for s in range(3):
            if roi_valid[b, s] and labels[b, s] > 0:
                c = labels[b, s] - 1
                own_columns[b, s, 4 * c:4 * c + 4] = True
    assert own_columns.sum() == 12
    other = np.where(own_columns, box_deltas, box_deltas + 25.0)
    assert float(detector_loss(class_logits, other, labels, box_targets, roi_valid)[1]) == pytest.approx(base, rel=1e-6)
    # Swapping (0, 0)'s class columns (class 2 <-> class 1) changes the loss.
    swapped = box_deltas.copy()
    swapped[0, 0] = np.concatenate([box_deltas[0, 0, 4:], box_deltas[0, 0, :4]])
    swapped_loss = float(detector_loss(class_logits, swapped, labels, box_targets, roi_valid)[1])
    assert swapped_loss != pytest.approx(base, rel=1e-3)
    # Gradient reaches the own-class columns only.
    deltas = tf.Variable(box_deltas)
    with tf.GradientTape() as tape:
        box_loss = detector_loss(class_logits, deltas, labels, box_targets, roi_valid)[1]
    grad = tape.gradient(box_loss, deltas).numpy()
    np.testing.assert_array_equal(grad[~own_columns], 0.0)
    assert np.count_nonzero(grad[own_columns]) == 9  # three residuals are exactly 0


def test_detector_invalid_slots_do_not_contribute():
    class_logits, box_deltas, labels, box_targets, roi_valid, _ = detector_case()
    base = [float(v) for v in detector_loss(class_logits, box_deltas, labels, box_targets, roi_valid)]
    logits2, deltas2, labels2, targets2 = class_logits.copy(), box_deltas.copy(), labels.copy(), box_targets.copy()
    logits2[1, 2] = [-5.0, 40.0, 3.0]
    deltas2[1, 2] = 99.0
    targets2[1, 2] = -99.0
    # Background RoIs' targets are not read either.
    targets2[0, 1] = targets2[1, 1] = 1e4
    for padding_label in (-1, 0, 2):
        labels2[1, 2] = padding_label
        got = [float(v) for v in detector_loss(logits2, deltas2, labels2, targets2, roi_valid)]
        assert got == pytest.approx(base, rel=1e-6)
    # Validating the slot does change things (so the mask is what matters).
    labels2[1, 2] = 1
    all_valid = np.ones_like(roi_valid)
    assert float(detector_loss(logits2, deltas2, labels2, targets2, all_valid)[0]) != pytest.approx(base[0], rel=1e-3)


@pytest.mark.parametrize("normalization", LOSS_NORMALIZATIONS)
def test_detector_empty_sample_is_zero_with_finite_gradients(normalization):
    class_logits, box_deltas, labels, box_targets, _, _ = detector_case()
    roi_valid = np.zeros((2, 3), bool)
    logits, deltas = tf.Variable(class_logits), tf.Variable(box_deltas)
    with tf.GradientTape() as tape:
        cls_loss, box_loss = detector_loss(logits, deltas, labels, box_targets, roi_valid,
                                           normalization=normalization, paper_lambda=3.0)
        total = cls_loss + box_loss
    assert float(cls_loss) == 0.0 and float(box_loss) == 0.0
    for grad in tape.gradient(total, [logits, deltas]):
        assert np.all(np.isfinite(grad.numpy()))
        np.testing.assert_array_equal(grad.numpy(), 0.0)


def test_detector_background_only_gives_zero_box_loss():
    class_logits, box_deltas, _, box_targets, roi_valid, _ = detector_case()
    labels = np.zeros((2, 3), np.int32)
    cls_loss, box_loss = detector_loss(class_logits, box_deltas, labels, box_targets, roi_valid)
    assert float(box_loss) == 0.0
    expected = sum(softmax_ce([float(v) for v in class_logits[b, s]], 0)
                   for b in range(2) for s in range(3) if roi_valid[b, s]) / 5
    assert float(cls_loss) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_detector_low_precision_inputs_compute_in_float32(dtype):
    class_logits, box_deltas, labels, box_targets, roi_valid, _ = detector_case()
    low = [tf.cast(t, dtype) for t in (class_logits, box_deltas, box_targets)]
    cls_loss, box_loss = detector_loss(low[0], low[1], labels, low[2], roi_valid)
    assert cls_loss.dtype == tf.float32 and box_loss.dtype == tf.float32
    ref = detector_loss(*(tf.cast(t, tf.float32) for t in low[:2]), labels, tf.cast(low[2], tf.float32), roi_valid)
    assert float(cls_loss) == pytest.approx(float(ref[0]), rel=1e-6)
    assert float(box_loss) == pytest.approx(float(ref[1]), rel=1e-6)


def test_detector_argument_checks():
    args = detector_case()[:5]
    with pytest.raises(ValueError, match="normalization"):
        detector_loss(*args, normalization="sum")
    with pytest.raises(ValueError, match="sigma"):
        detector_loss(*args, sigma=-1.0)


def test_detector_eager_equals_compiled():
    class_logits, box_deltas, labels, box_targets, roi_valid, own = detector_case()
    cls_sum, box_sum, _ = detector_hand(class_logits, labels, roi_valid, own)
    got = assert_same_compiled(detector_loss, class_logits, box_deltas, labels, box_targets, roi_valid)
    assert float(got[0]) == pytest.approx(cls_sum / 5, rel=1e-5)
    assert float(got[1]) == pytest.approx(box_sum / 5, rel=1e-5)
