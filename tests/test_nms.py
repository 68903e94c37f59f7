import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from compile_check import assert_same_compiled
from detect.ops import PAD_CLASS, PAD_INDEX, batched_nms, nms
from detect.ops.nms import SEARCH_ALL, _batched_nms, _cutoff_candidates


def random_boxes(rng, shape, size=200.0):
    xy = rng.uniform(0, size, shape + (2,))
    wh = rng.uniform(4, size / 3, shape + (2,))
    return np.concatenate([xy, xy + wh], axis=-1).astype(np.float32)


def clustered_boxes(rng, n, clusters=6):
    """Boxes jittered around a few centres, so NMS has real work to do."""
    centres = random_boxes(rng, (clusters,))
    owner = rng.integers(0, clusters, n)
    boxes = centres[owner] + rng.normal(0, 6, (n, 4))
    # Keep x1 <= x2 and y1 <= y2: inverted boxes are empty for us (tf.image
    # reorders their corners instead).
    lo, hi = np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])
    return np.concatenate([lo, hi + 1], axis=1).astype(np.float32)


def crowd(rng, batch, num_boxes, num_classes, num_objects, size=200.0):
    """A dense crowd: objects close together, every box a jittered duplicate
    of one of them, scored by its object's confidence (so the best pairs are
    many duplicates of a few objects), plus weak scores for other classes.

    Returns:
      boxes [B, N, 4] xyxy, scores [B, N, C] (distinct).
    """
    boxes = np.empty((batch, num_boxes, 4), np.float32)
    scores = np.empty((batch, num_boxes, num_classes), np.float32)
    for b in range(batch):
        centre = rng.uniform(0, size, (num_objects, 2))
        wh = rng.uniform(8, 20, (num_objects, 2))
        owner = rng.integers(0, num_objects, num_boxes)
        jitter = rng.normal(0, 0.05, (num_boxes, 4))
        ctr = centre[owner] + jitter[:, :2] * wh[owner]
        half = wh[owner] * np.exp(jitter[:, 2:]) / 2
        boxes[b] = np.concatenate([ctr - half, ctr + half], axis=1)
        confidence = rng.uniform(0.2, 1.0, num_objects)
        scores[b] = rng.uniform(0, 0.1, (num_boxes, num_classes))
        scores[b, np.arange(num_boxes), owner % num_classes] = confidence[owner] * rng.uniform(0.8, 1.0, num_boxes)
    # Distinct scores: ties would make the order (and the reference) ambiguous.
    assert len(np.unique(scores)) == scores.size
    return boxes, scores


def np_iou(a, b):
    iw = np.clip(np.minimum(a[2], b[2]) - np.maximum(a[0], b[0]), 0, None)
    ih = np.clip(np.minimum(a[3], b[3]) - np.maximum(a[1], b[1]), 0, None)
    inter = iw * ih
    area = lambda r: max(r[2] - r[0], 0) * max(r[3] - r[1], 0)
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def greedy_reference(boxes, scores, iou_threshold, max_out, score_threshold):
    """Textbook greedy NMS, one box at a time."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept = []
    for i in order:
        if scores[i] <= score_threshold or len(kept) == max_out:
            continue
        if all(np_iou(boxes[i], boxes[k]) <= iou_threshold for k in kept):
            kept.append(i)
    return kept


def batched_reference(boxes, scores, per_class, total, iou_threshold, score_threshold):
    """Per-class greedy NMS, merged and cut to the best `total` (one image)."""
    dets = []
    for c in range(scores.shape[1]):
        class_boxes = boxes[:, c] if boxes.ndim == 3 else boxes
        for i in greedy_reference(class_boxes, scores[:, c], iou_threshold, per_class, score_threshold):
            dets.append((scores[i, c], c, i))
    dets.sort(key=lambda d: -d[0])
    return dets[:total]


# ---- single class --------------------------------------------------------------

def test_nms_hand_case():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], np.float32)
    # Box 3 wins; box 0 overlaps it at IoU 0.9, box 1 at about 0.62; box 2 is apart.
    idx, n = nms(boxes, scores, iou_threshold=0.5, max_output_size=4)
    assert int(n) == 2
    np.testing.assert_array_equal(idx, [3, 2, PAD_INDEX, PAD_INDEX])
    idx, n = nms(boxes, scores, iou_threshold=0.5, max_output_size=4, score_threshold=0.75)
    np.testing.assert_array_equal(idx[: int(n)], [3])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 700), st.sampled_from([0.3, 0.5, 0.7]))
def test_nms_equals_tf_image(seed, n, iou_threshold):
    rng = np.random.default_rng(seed)
    boxes = clustered_boxes(rng, n)
    scores = rng.permutation(n).astype(np.float32) / n  # distinct
    max_out = int(rng.integers(1, 300))
    idx, count = nms(boxes, scores, iou_threshold, max_out, score_threshold=0.1, tile_size=64)
    ref = tf.image.non_max_suppression(boxes, scores, max_out, iou_threshold, 0.1).numpy()
    assert int(count) == len(ref)
    np.testing.assert_array_equal(idx[: len(ref)], ref)
    np.testing.assert_array_equal(idx[len(ref):], PAD_INDEX)


def test_nms_equals_greedy_loop_and_no_overlap():
    rng = np.random.default_rng(0)
    boxes = clustered_boxes(rng, 300)
    scores = rng.random(300).astype(np.float32)
    idx, count = nms(boxes, scores, 0.4, 100)
    kept = idx.numpy()[: int(count)]
    assert kept.tolist() == greedy_reference(boxes, scores, 0.4, 100, -np.inf)
    for a in range(len(kept)):
        for b in range(a + 1, len(kept)):
            assert np_iou(boxes[kept[a]], boxes[kept[b]]) <= 0.4


def test_nms_empty_and_eager_equals_compiled():
    idx, count = nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 0.5, 5)
    assert int(count) == 0 and idx.numpy().tolist() == [PAD_INDEX] * 5
    rng = np.random.default_rng(1)
    for n in (50, 333):
        boxes, scores = clustered_boxes(rng, n), rng.random(n).astype(np.float32)
        assert_same_compiled(lambda b, s: nms(b, s, 0.5, 40, 0.2), boxes, scores)


# ---- batched, multi-class ------------------------------------------------------------

def _assert_equals_reference(result, boxes, scores, per_class, total, iou_threshold, score_threshold):
    for b in range(scores.shape[0]):
        ref = batched_reference(boxes[b], scores[b], per_class, total, iou_threshold, score_threshold)
        n = int(result["num_detections"][b])
        assert n == len(ref)
        np.testing.assert_allclose(result["scores"][b, :n], [d[0] for d in ref], rtol=1e-6)
        np.testing.assert_array_equal(result["classes"][b, :n], [d[1] for d in ref])
        ref_boxes = [boxes[b, d[2], d[1]] if boxes.ndim == 4 else boxes[b, d[2]] for d in ref]
        np.testing.assert_allclose(result["boxes"][b, :n].reshape(-1, 4), np.reshape(ref_boxes, (-1, 4)))
        # Padding.
        np.testing.assert_array_equal(result["classes"][b, n:], PAD_CLASS)
        np.testing.assert_array_equal(result["scores"][b, n:], 0.0)
        np.testing.assert_array_equal(result["boxes"][b, n:], 0.0)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([None, 0, 8, 40]), st.booleans())
def test_batched_equals_per_class_reference(seed, pool, per_class_boxes):
    rng = np.random.default_rng(seed)
    batch, n, classes = 2, int(rng.integers(1, 120)), int(rng.integers(1, 6))
    shape = (batch, n, classes) if per_class_boxes else (batch, n)
    boxes = np.stack([clustered_boxes(rng, int(np.prod(shape[1:]))) for _ in range(batch)]).reshape(shape + (4,))
    scores = (rng.permutation(batch * n * classes).reshape(batch, n, classes) / (batch * n * classes)).astype(
        np.float32)
    per_class, total = int(rng.integers(1, 15)), int(rng.integers(1, 30))
    result = batched_nms(boxes, scores, per_class, total, 0.5, 0.2, candidate_pool=pool, tile_size=16)
    result = {k: v.numpy() for k, v in result.items()}
    _assert_equals_reference(result, boxes, scores, per_class, total, 0.5, 0.2)


def test_batched_matches_combined_non_max_suppression():
    rng = np.random.default_rng(3)
    boxes = np.stack([clustered_boxes(rng, 400, clusters=12) for _ in range(3)])
    scores = rng.random((3, 400, 7)).astype(np.float32) ** 4
    for pool in (None, 16):
        ours = batched_nms(boxes, scores, 10, 40, 0.45, 0.05, candidate_pool=pool)
        ref = tf.image.combined_non_max_suppression(boxes[:, :, None], scores, 10, 40, 0.45, 0.05,
                                                    clip_boxes=False)
        np.testing.assert_array_equal(ours["num_detections"], ref.valid_detections)
        np.testing.assert_allclose(ours["scores"], ref.nmsed_scores, rtol=1e-6)
        np.testing.assert_allclose(ours["boxes"], ref.nmsed_boxes, rtol=1e-6)
        n = ref.valid_detections.numpy()
        for b in range(3):
            np.testing.assert_array_equal(ours["classes"][b, : n[b]], ref.nmsed_classes[b, : n[b]])


def test_batched_kept_boxes_of_a_class_do_not_overlap():
    rng = np.random.default_rng(4)
    boxes = np.stack([clustered_boxes(rng, 500, clusters=4)])
    scores = rng.random((1, 500, 3)).astype(np.float32)
    out = batched_nms(boxes, scores, 50, 100, 0.3, 0.0)
    n = int(out["num_detections"][0])
    kept_boxes, kept_classes = out["boxes"][0, :n].numpy(), out["classes"][0, :n].numpy()
    for i in range(n):
        for j in range(i + 1, n):
            if kept_classes[i] == kept_classes[j]:
                assert np_iou(kept_boxes[i], kept_boxes[j]) <= 0.3


def test_batched_zero_candidates_does_not_crash():
    boxes = np.zeros((2, 5, 4), np.float32)
    scores = np.full((2, 5, 3), 0.01, np.float32)
    for fn in (batched_nms, tf.function(batched_nms, jit_compile=True)):
        out = fn(boxes, scores, 5, 7, 0.5, 0.5)  # everything under the threshold
        np.testing.assert_array_equal(out["num_detections"], [0, 0])
        np.testing.assert_array_equal(out["classes"], np.full((2, 7), PAD_CLASS))
    out = batched_nms(np.zeros((2, 0, 4), np.float32), np.zeros((2, 0, 3), np.float32), 5, 7, 0.5, 0.1)
    assert out["boxes"].shape == (2, 7, 4)
    np.testing.assert_array_equal(out["num_detections"], [0, 0])


def test_batched_eager_equals_compiled_two_shapes():
    rng = np.random.default_rng(5)
    for batch, n, classes in ((2, 60, 4), (3, 150, 2)):
        boxes = np.stack([clustered_boxes(rng, n) for _ in range(batch)])
        scores = rng.random((batch, n, classes)).astype(np.float32)
        out = assert_same_compiled(
            lambda b, s: batched_nms(b, s, 8, 20, 0.5, 0.3, candidate_pool=32, tile_size=32), boxes, scores)
        _assert_equals_reference(out, boxes, scores, 8, 20, 0.5, 0.3)


def test_batched_rejects_dynamic_class_axis():
    fn = tf.function(lambda s: batched_nms(tf.zeros([1, 3, 4]), s, 1, 1),
                     input_signature=[tf.TensorSpec([1, 3, None])])
    with pytest.raises(ValueError, match="static N and C"):
        fn.get_concrete_function()


# ---- batched: the fallback searches -------------------------------------------------

def _pair_rank_of_last_kept(scores, ref):
    """How many (box, class) pairs score at least the K-th kept detection."""
    return int((scores >= ref[-1][0]).sum())


def test_batched_dense_crowd_takes_the_fallback_and_stays_exact():
    rng = np.random.default_rng(6)
    boxes, scores = crowd(rng, 2, 600, 3, 40)
    per_class, total, pool = 15, 15, 32
    for b in range(2):
        ref = batched_reference(boxes[b], scores[b], per_class, total, 0.5, 0.05)
        assert len(ref) == total
        # The first pool holds the 32 best pairs; the answer reaches further
        # down, so only a fallback search can find it.
        assert _pair_rank_of_last_kept(scores[b], ref) > pool
    out, level = _batched_nms(boxes, scores, per_class, total, 0.5, 0.05, candidate_pool=pool, tile_size=16)
    assert int(level) == 1  # the first wider pool
    _assert_equals_reference({k: v.numpy() for k, v in out.items()}, boxes, scores, per_class, total, 0.5, 0.05)
    tf_ref = tf.image.combined_non_max_suppression(boxes[:, :, None], scores, per_class, total, 0.5, 0.05,
                                                   clip_boxes=False)
    np.testing.assert_array_equal(out["num_detections"], tf_ref.valid_detections)
    np.testing.assert_allclose(out["scores"], tf_ref.nmsed_scores, rtol=1e-6)
    np.testing.assert_allclose(out["boxes"], tf_ref.nmsed_boxes, rtol=1e-6)
    np.testing.assert_array_equal(out["classes"], tf_ref.nmsed_classes.numpy().astype(np.int32))
    # The public function gives the same, with the documented keys only.
    public = batched_nms(boxes, scores, per_class, total, 0.5, 0.05, candidate_pool=pool, tile_size=16)
    assert sorted(public) == ["boxes", "classes", "num_detections", "scores"]
    for key in public:
        np.testing.assert_array_equal(public[key], out[key])


def test_batched_fallback_eager_equals_compiled():
    rng = np.random.default_rng(7)
    boxes, scores = crowd(rng, 2, 400, 2, 30)
    result = assert_same_compiled(
        lambda b, s: _batched_nms(b, s, 12, 12, 0.5, 0.05, candidate_pool=24, tile_size=16), boxes, scores)
    out, level = result
    assert level == 1
    _assert_equals_reference(out, boxes, scores, 12, 12, 0.5, 0.05)


def test_batched_last_resort_when_wider_pools_are_not_enough():
    # Every box duplicates one of three objects, so fewer than K survive and
    # every candidate above the threshold must be seen: no pool is enough.
    rng = np.random.default_rng(8)
    boxes, scores = crowd(rng, 1, 600, 1, 3)
    out, level = _batched_nms(boxes, scores, 10, 10, 0.5, 0.0, candidate_pool=8, tile_size=16)
    assert int(level) == SEARCH_ALL
    assert int(out["num_detections"][0]) < 10
    _assert_equals_reference({k: v.numpy() for k, v in out.items()}, boxes, scores, 10, 10, 0.5, 0.0)


def test_cutoff_candidates_sorted_and_bounded_on_overflow():
    rng = np.random.default_rng(9)
    scores = rng.permutation(2 * 50 * 3).reshape(2, 50, 3).astype(np.float32) / 300
    boxes = random_boxes(rng, (2, 50))
    cutoff = np.array([0.5, 0.97], np.float32)
    size = 10
    cand_scores, cand_boxes, cand_classes, excluded_max = (
        t.numpy() for t in _cutoff_candidates(tf.constant(boxes), tf.constant(scores), tf.constant(cutoff), size))
    for b in range(2):
        above = sorted(scores[b][scores[b] > cutoff[b]], reverse=True)
        n = min(len(above), size)
        kept = cand_scores[b, :n]
        np.testing.assert_array_equal(kept, sorted(kept, reverse=True))
        assert set(kept) <= set(above)
        np.testing.assert_array_equal(cand_scores[b, n:], -np.inf)
        # Each candidate carries its own box and class.
        for k in range(n):
            box, cls = np.argwhere(scores[b] == kept[k])[0]
            assert cand_classes[b, k] == cls
            np.testing.assert_array_equal(cand_boxes[b, k], boxes[b, box])
        # The bound: the best pair above the cutoff left out, else the cutoff.
        left_out = sorted(set(above) - set(kept))
        assert excluded_max[b] == (left_out[-1] if left_out else cutoff[b])
    assert len(scores[0][scores[0] > 0.5]) > size  # image 0 overflowed
    assert len(scores[1][scores[1] > 0.97]) <= size  # image 1 did not
