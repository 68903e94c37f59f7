import math

import numpy as np
import tensorflow as tf

from compile_check import assert_same_compiled
from detect.faster_rcnn.proposals import generate_proposals

CLAMP = math.log(1000.0 / 16)


# ---------------------------------------------------------------------------
# Independent numpy reference (py-faster-rcnn ProposalLayer, continuous sizes)
# ---------------------------------------------------------------------------

def np_decode(deltas, anchors):
    w, h = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    cx, cy = anchors[:, 0] + 0.5 * w, anchors[:, 1] + 0.5 * h
    pcx, pcy = deltas[:, 0] * w + cx, deltas[:, 1] * h + cy
    pw, ph = np.exp(np.minimum(deltas[:, 2], CLAMP)) * w, np.exp(np.minimum(deltas[:, 3], CLAMP)) * h
    return np.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph], axis=1)


def np_box_iou(a, b):
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def proposal_reference(logits, deltas, anchors, hw, pre, post, thresh, min_size):
    """One image: returns kept boxes [K, 4] and sigmoid scores [K] in order."""
    boxes = np_decode(deltas.astype(np.float64), anchors.astype(np.float64))
    h, w = hw
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, w)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, h)
    keep = np.where((boxes[:, 2] - boxes[:, 0] >= min_size) & (boxes[:, 3] - boxes[:, 1] >= min_size))[0]
    order = keep[np.argsort(-logits[keep], kind="stable")]
    if pre > 0:
        order = order[:pre]
    kept = []
    for i in order:
        if all(np_box_iou(boxes[i], boxes[k]) <= thresh for k in kept):
            kept.append(i)
        if len(kept) == post:
            break
    kept = np.array(kept, int)
    return boxes[kept], 1.0 / (1.0 + np.exp(-logits[kept].astype(np.float64)))


def scene(rng, batch=2, n=500):
    """Anchors clustered on a few spots (so NMS has work), distinct logits."""
    centres = rng.uniform(20, 280, (8, 2))
    ctr = centres[rng.integers(0, 8, n)] + rng.normal(0, 8, (n, 2))
    wh = rng.choice([16.0, 32.0, 64.0, 128.0], (n, 1)) * np.stack([np.ones(n), rng.choice([0.5, 1.0, 2.0], n)], 1)
    anchors = np.concatenate([ctr - wh / 2, ctr + wh / 2], axis=1).astype(np.float32)
    deltas = rng.normal(0, 0.15, (batch, n, 4)).astype(np.float32)
    logits = rng.permutation(batch * n).reshape(batch, n).astype(np.float32) / 50.0 - 5.0
    return logits, deltas, anchors


def check_against_reference(out, logits, deltas, anchors, hw, pre, post, thresh, min_sizes):
    for b in range(len(logits)):
        boxes, scores = proposal_reference(logits[b], deltas[b], anchors, hw[b], pre, post, thresh, min_sizes[b])
        k = len(boxes)
        assert out["num_proposals"][b] == k
        np.testing.assert_array_equal(out["valid"][b], np.arange(post) < k)
        np.testing.assert_allclose(out["boxes"][b][:k], boxes, atol=1e-3)
        np.testing.assert_allclose(out["scores"][b][:k], scores, rtol=1e-5)
        assert not np.any(out["boxes"][b][k:]) and not np.any(out["scores"][b][k:])


def test_matches_reference_with_caps_and_per_image_sizes():
    rng = np.random.default_rng(0)
    logits, deltas, anchors = scene(rng)
    hw = np.array([[300, 280], [180, 220]], np.int32)
    min_size = np.array([16.0, 24.0], np.float32)
    out = generate_proposals(logits, deltas, anchors, hw, pre_nms_top_n=150, post_nms_top_n=40, nms_iou=0.7,
                             min_size=min_size)
    assert out["boxes"].shape == (2, 40, 4) and out["num_proposals"].dtype == tf.int32
    check_against_reference(out, logits, deltas, anchors, hw, 150, 40, 0.7, min_size)
    # Every kept box lies in its own image's valid extent.
    boxes = np.asarray(out["boxes"])
    assert np.all(boxes[1, :, 2] <= 220) and np.all(boxes[1, :, 3] <= 180)
    # The pre-NMS cap matters here: without it more boxes survive NMS.
    uncapped = generate_proposals(logits, deltas, anchors, hw, pre_nms_top_n=0, post_nms_top_n=200, min_size=min_size)
    check_against_reference(uncapped, logits, deltas, anchors, hw, 0, 200, 0.7, min_size)
    capped = generate_proposals(logits, deltas, anchors, hw, pre_nms_top_n=150, post_nms_top_n=200, min_size=min_size)
    assert np.all(np.asarray(uncapped["num_proposals"]) > np.asarray(capped["num_proposals"]))


def test_no_cap_settings_and_fewer_anchors_than_outputs():
    rng = np.random.default_rng(1)
    logits, deltas, anchors = scene(rng, n=60)
    hw = np.array([[300, 300], [250, 200]])
    # pre_nms_top_n above N and <= 0 both mean "all"; post > N pads.
    for pre in (6000, 0, -1):
        out = generate_proposals(logits, deltas, anchors, hw, pre_nms_top_n=pre, post_nms_top_n=100, nms_iou=0.5,
                                 min_size=8.0)
        assert out["boxes"].shape == (2, 100, 4)
        check_against_reference(out, logits, deltas, anchors, hw, 0, 100, 0.5, [8.0, 8.0])
    # post_nms_top_n <= 0: everything NMS keeps, padded to the NMS input size.
    out = generate_proposals(logits, deltas, anchors, hw, pre_nms_top_n=30, post_nms_top_n=0, nms_iou=0.5,
                             min_size=8.0)
    assert out["boxes"].shape == (2, 30, 4)
    check_against_reference(out, logits, deltas, anchors, hw, 30, 30, 0.5, [8.0, 8.0])


def test_hand_case_and_all_invalid_image():
    anchors = np.array([[0, 0, 20, 20], [2, 0, 22, 20], [50, 50, 60, 60], [90, 90, 130, 130]], np.float32)
    deltas = np.zeros((2, 4, 4), np.float32)
    deltas[0, 3] = [0.0, 0.0, np.log(2.0), 0.0]  # 80 wide around x = 110, clipped to [70, 100]
    logits = np.array([[1.0, 2.0, 3.0, 0.5], [1.0, 2.0, 3.0, 0.5]], np.float32)
    hw = np.array([[100, 100], [100, 100]])
    # Image 1: the minimum size exceeds every box.
    out = generate_proposals(logits, deltas, anchors, hw, post_nms_top_n=5, nms_iou=0.7, min_size=[12.0, 50.0])
    # Box 2 is 10 px: dropped; box 0 overlaps box 1 (IoU 18/22 > 0.7) with a lower score: suppressed;
    # box 3 is clipped to [70, 90, 100, 100] (10 px high): dropped.
    np.testing.assert_array_equal(out["num_proposals"], [1, 0])
    np.testing.assert_allclose(out["boxes"][0], [[2, 0, 22, 20]] + [[0, 0, 0, 0]] * 4)
    np.testing.assert_allclose(out["scores"][0], [1 / (1 + np.exp(-2.0)), 0, 0, 0, 0], rtol=1e-6)
    np.testing.assert_array_equal(out["valid"], [[True] + [False] * 4, [False] * 5])
    assert not np.any(out["boxes"][1]) and not np.any(out["scores"][1])
    # With min size 0, the clipped box 3 and box 2 survive.
    out = generate_proposals(logits, deltas, anchors, hw, post_nms_top_n=5, nms_iou=0.7, min_size=0.0)
    np.testing.assert_allclose(out["boxes"][0][:3], [[50, 50, 60, 60], [2, 0, 22, 20], [70, 90, 100, 100]])


def test_no_gradient_and_compiles():
    rng = np.random.default_rng(2)
    logits, deltas, anchors = scene(rng, n=200)
    hw = np.array([[300, 300], [200, 260]])
    fn = lambda s, d, h: generate_proposals(s, d, anchors, h, pre_nms_top_n=100, post_nms_top_n=30, min_size=16.0)
    out = assert_same_compiled(fn, logits, deltas, hw)
    check_against_reference(out, logits, deltas, anchors, hw, 100, 30, 0.7, [16.0, 16.0])
    s, d = tf.Variable(logits), tf.Variable(deltas)
    with tf.GradientTape() as tape:
        res = fn(s, d, hw)
        total = tf.reduce_sum(res["scores"]) + tf.reduce_sum(res["boxes"])
    grads = tape.gradient(total, [s, d])
    assert all(g is None for g in grads)


def test_run_time_number_of_anchors():
    # The model builds anchors from tf.shape(features): N is unknown while tracing.
    rng = np.random.default_rng(3)
    logits, deltas, anchors = scene(rng, n=120)
    hw = np.array([[300, 300], [220, 260]], np.int32)
    spec = [tf.TensorSpec([None, None]), tf.TensorSpec([None, None, 4]), tf.TensorSpec([None, 4]),
            tf.TensorSpec([None, 2], tf.int32)]
    for pre, post in ((80, 25), (500, 25), (0, 25), (40, 0)):
        fn = tf.function(lambda s, d, a, h: generate_proposals(s, d, a, h, pre_nms_top_n=pre, post_nms_top_n=post,
                                                               nms_iou=0.6, min_size=10.0), input_signature=spec)
        size = post if post > 0 else pre
        assert fn.get_concrete_function().structured_outputs["boxes"].shape[1:] == (size, 4)
        out = fn(logits, deltas, anchors, hw)
        check_against_reference(out, logits, deltas, anchors, hw, pre, size, 0.6, [10.0, 10.0])
