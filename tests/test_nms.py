import importlib

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from compile_check import assert_same_compiled
from detect.ops import PAD_CLASS, PAD_INDEX, batched_nms, nms
from detect.ops.nms import SEARCH_ALL, _batched_nms
from detect.ops.nms_banded import _band_sort, _band_start, _float_keys, _key_floats

# The module (``detect.ops.nms`` is also the name of the function).
NMS = importlib.import_module("detect.ops.nms")


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


# Few sizes (each is compiled anew): one box, several tiles and a partial one.
@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([1, 700]), st.sampled_from([1, 120]),
       st.sampled_from([0.3, 0.5, 0.7]))
def test_nms_equals_tf_image(seed, n, max_out, iou_threshold):
    rng = np.random.default_rng(seed)
    boxes = clustered_boxes(rng, n)
    scores = rng.permutation(n).astype(np.float32) / n  # distinct
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
    boxes, scores = clustered_boxes(rng, 333), rng.random(333).astype(np.float32)
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


# (boxes per image, classes, boxes per class, candidate_pool, per-class cap,
# total): each is compiled anew, so few, each run on several seeds.
REFERENCE_CONFIGS = [
    (90, 4, False, None, 3, 20),  # default first band, per-class cap
    (90, 4, True, 8, 15, 12),  # per-class boxes, small bands, no cap below K
    (1, 1, False, 0, 1, 1),  # one box, one class, the last resort only
]


@pytest.mark.parametrize("config", REFERENCE_CONFIGS, ids=str)
def test_batched_equals_per_class_reference(config):
    n, classes, per_class_boxes, pool, per_class, total = config
    for seed in range(3):
        rng = np.random.default_rng(seed)
        batch = 2
        shape = (batch, n, classes) if per_class_boxes else (batch, n)
        boxes = np.stack([clustered_boxes(rng, int(np.prod(shape[1:]))) for _ in range(batch)]).reshape(shape + (4,))
        scores = (rng.permutation(batch * n * classes).reshape(batch, n, classes) / (batch * n * classes)).astype(
            np.float32)
        out = batched_nms(boxes, scores, per_class, total, 0.5, 0.2, candidate_pool=pool, tile_size=16)
        result = {k: v.numpy() for k, v in out.items()}
        _assert_equals_reference(result, boxes, scores, per_class, total, 0.5, 0.2)
        _assert_equals_combined_nms(out, boxes, scores, per_class, total, 0.5, 0.2)
        # Kept boxes of a class do not overlap (independently of the references).
        for b in range(batch):
            k = int(result["num_detections"][b])
            for i in range(k):
                for j in range(i + 1, k):
                    if result["classes"][b, i] == result["classes"][b, j]:
                        assert np_iou(result["boxes"][b, i], result["boxes"][b, j]) <= 0.5


def test_batched_zero_candidates_does_not_crash():
    # (Compiled, an image without candidates is in the compiled test below.)
    boxes = np.zeros((2, 5, 4), np.float32)
    scores = np.full((2, 5, 3), 0.01, np.float32)
    out = batched_nms(boxes, scores, 5, 7, 0.5, 0.5)  # everything under the threshold
    np.testing.assert_array_equal(out["num_detections"], [0, 0])
    np.testing.assert_array_equal(out["classes"], np.full((2, 7), PAD_CLASS))
    out = batched_nms(np.zeros((2, 0, 4), np.float32), np.zeros((2, 0, 3), np.float32), 5, 7, 0.5, 0.1)
    assert out["boxes"].shape == (2, 7, 4)
    np.testing.assert_array_equal(out["num_detections"], [0, 0])


def test_batched_rejects_dynamic_class_axis():
    fn = tf.function(lambda s: batched_nms(tf.zeros([1, 3, 4]), s, 1, 1),
                     input_signature=[tf.TensorSpec([1, 3, None])])
    with pytest.raises(ValueError, match="static N and C"):
        fn.get_concrete_function()


# ---- batched: the band walk ------------------------------------------------------

def _assert_equals_combined_nms(out, boxes, scores, per_class, total, iou_threshold, score_threshold):
    """The same detections as tf.image.combined_non_max_suppression(clip_boxes=False)."""
    ref = tf.image.combined_non_max_suppression(boxes[:, :, None] if boxes.ndim == 3 else boxes, scores, per_class,
                                                total, iou_threshold, score_threshold, clip_boxes=False)
    np.testing.assert_array_equal(out["num_detections"], ref.valid_detections)
    np.testing.assert_allclose(out["scores"], ref.nmsed_scores, rtol=1e-6)
    np.testing.assert_allclose(out["boxes"], ref.nmsed_boxes, rtol=1e-6)
    n = ref.valid_detections.numpy()
    for b in range(len(n)):
        np.testing.assert_array_equal(out["classes"][b, : n[b]], ref.nmsed_classes.numpy()[b, : n[b]].astype(np.int32))


def _pair_rank_of_last_kept(scores, ref):
    """How many (box, class) pairs score at least the K-th kept detection."""
    return int((scores >= ref[-1][0]).sum())


# Ways to force each path of the band walk on the crowd below: (candidate_pool,
# module constants, the band that decides). The crowd needs a few hundred
# pairs walked per image.
BAND_PATHS = {
    "first band": (4096, {}, 0),
    "third band": (48, {}, 2),  # 48, 48, then 192 pairs
    "last resort": (8, {}, SEARCH_ALL),  # 8, 8, 32, then 32 at a time
    "last resort only": (0, {}, SEARCH_ALL),
    # The lower edge aims at 1.5 times the pair buffer, whose size the box
    # buffer has: the boxes do not fit and the band is estimated anew at half.
    "band estimated anew": (48, {"ESTIMATE_SHARE": 1.5, "BOX_BUFFER_SHARE": 4}, None),
    # The lower edge aims at 4 times the pair buffer, and the box buffer is
    # twice it: every band is cut short at its first pair that does not fit.
    "bands cut short": (48, {"ESTIMATE_SHARE": 4.0, "BOX_BUFFER_SHARE": 8}, None),
    # A box buffer of a quarter of the pair buffer: the lower edge is raised
    # to the first box left out (bounds descending, then box index).
    "box buffer full": (48, {"ESTIMATE_SHARE": 4.0, "BOX_BUFFER_SHARE": 1}, None),
}


@pytest.mark.parametrize("path", sorted(BAND_PATHS))
def test_batched_each_path_on_a_crowd_equals_references(path, monkeypatch):
    pool, constants, expected_level = BAND_PATHS[path]
    for name, value in constants.items():
        monkeypatch.setattr(NMS, name, value)
    rng = np.random.default_rng(11)
    boxes, scores = crowd(rng, 2, 500, 3, 25)
    per_class, total = 12, 20
    for score_threshold in (0.0, 0.05, 0.25, 0.5):
        out, level = _batched_nms(boxes, scores, per_class, total, 0.5, score_threshold, candidate_pool=pool,
                                  tile_size=16)
        if expected_level is not None:
            assert int(level) == expected_level, (path, score_threshold)
        if path == "third band" and score_threshold == 0.0:
            # The answer lies beyond the first band (about 48 pairs).
            for b in range(2):
                ref = batched_reference(boxes[b], scores[b], per_class, total, 0.5, score_threshold)
                assert len(ref) == total and _pair_rank_of_last_kept(scores[b], ref) > 2 * pool
            # The public function gives the same, with the documented keys only.
            public = batched_nms(boxes, scores, per_class, total, 0.5, score_threshold, candidate_pool=pool,
                                 tile_size=16)
            assert sorted(public) == ["boxes", "classes", "num_detections", "scores"]
            for key in public:
                np.testing.assert_array_equal(public[key], out[key])
        out = {k: v.numpy() for k, v in out.items()}
        _assert_equals_reference(out, boxes, scores, per_class, total, 0.5, score_threshold)
        _assert_equals_combined_nms(out, boxes, scores, per_class, total, 0.5, score_threshold)


@pytest.mark.slow
def test_batched_forced_paths_per_class_boxes_and_compiled(monkeypatch):
    """Eager == tf.function (on CPU: groups of images in parallel) == XLA, on
    per-class boxes with the box buffer full, and with an image without
    candidates in a group beside a crowd."""
    monkeypatch.setattr(NMS, "ESTIMATE_SHARE", 4.0)
    monkeypatch.setattr(NMS, "BOX_BUFFER_SHARE", 1)
    rng = np.random.default_rng(12)
    boxes, scores = crowd(rng, 4, 300, 3, 20)
    boxes = (boxes[:, :, None, :] + rng.normal(0, 0.5, (4, 300, 3, 4))).astype(np.float32)  # per class
    scores[3] *= 0.01  # all under the threshold
    out, _ = assert_same_compiled(
        lambda b, s: _batched_nms(b, s, 10, 16, 0.5, 0.05, candidate_pool=16, tile_size=16), boxes, scores)
    assert out["num_detections"][3] == 0
    _assert_equals_reference(out, boxes, scores, 10, 16, 0.5, 0.05)
    _assert_equals_combined_nms(out, boxes, scores, 10, 16, 0.5, 0.05)


# (The band walk without ties, box buffer not full, is the "third band" path.)
@pytest.mark.parametrize("pool, box_share", [(8, 1), (0, 3)])
def test_batched_ties_end_and_keep_the_reference_sets(pool, box_share, monkeypatch):
    """Tied scores (as a sigmoid saturating to 1.0 gives): the walk still ends,
    with each class's greedy set (ties by box index) and the same counts."""
    monkeypatch.setattr(NMS, "BOX_BUFFER_SHARE", box_share)
    rng = np.random.default_rng(13)
    boxes = np.stack([clustered_boxes(rng, 200, clusters=5) for _ in range(2)])
    scores = (np.round(rng.random((2, 200, 3)) * 4) / 4).astype(np.float32)
    scores[1] = 1.0
    out, _ = _batched_nms(boxes, scores, 300, 300, 0.5, 0.1, candidate_pool=pool, tile_size=16)
    for b in range(2):
        ref = batched_reference(boxes[b], scores[b], 300, 300, 0.5, 0.1)
        n = int(out["num_detections"][b])
        assert n == len(ref)
        got = sorted(zip(out["scores"][b, :n].numpy().tolist(), out["classes"][b, :n].numpy().tolist(),
                         map(tuple, out["boxes"][b, :n].numpy().tolist())))
        want = sorted((float(s), c, tuple(boxes[b, i].tolist())) for s, c, i in ref)
        assert got == want
        np.testing.assert_array_equal(np.diff(out["scores"][b, :n]) <= 0, True)  # by descending score


def test_float_keys_order_floats_and_map_back():
    values = np.array([-np.inf, -3.5, -1e-30, -0.0, 0.0, 1e-30, 0.25, 1.0, 7e30, np.inf], np.float32)
    keys = _float_keys(tf.constant(values)).numpy()
    assert keys[3] == keys[4]  # -0.0 and 0.0 alike
    assert np.all(np.diff(np.delete(keys, 3)) > 0)
    np.testing.assert_array_equal(_key_floats(tf.constant(keys)).numpy(), np.where(values == 0, 0.0, values))


def test_band_start_raises_the_edge_to_the_first_box_left_out():
    # Ten boxes, bounds with ties; room for 3: in the order (bound descending,
    # index ascending) the first three are boxes 0, 2, 4 (all 0.9), so the
    # edge is at the bound 0.9 and the next box at it, box 6.
    bound = tf.constant([[0.9, 0.5, 0.9, 0.7, 0.9, 0.1, 0.9, 0.7, 0.3, 0.9]])
    num_classes = 4
    lower_score, lower_pair, mask, count = _band_start(
        bound, bound, 1, tf.constant([True]), tf.constant(0.0), 1000, 3, num_classes)
    assert float(lower_score[0]) == pytest.approx(0.9) and int(lower_pair[0]) == 6 * num_classes
    np.testing.assert_array_equal(np.flatnonzero(mask[0]), [0, 2, 4])
    assert int(count[0]) == 3
    # Enough room: the edge stays where the estimate put it (every pair left,
    # down to the threshold), and every box above the threshold is in.
    lower_score, lower_pair, mask, count = _band_start(
        bound, bound, 1, tf.constant([True]), tf.constant(0.2), 1000, 10, num_classes)
    assert float(lower_score[0]) == pytest.approx(0.2) and int(lower_pair[0]) == 0
    np.testing.assert_array_equal(np.flatnonzero(mask[0]), [0, 1, 2, 3, 4, 6, 7, 8, 9])


def test_band_sort_orders_by_score_then_index_and_keeps_the_first_left_out():
    # One image, three box slots x two classes; five pairs in the band.
    scores = np.array([[[0.5, 0.9], [0.7, 0.1], [0.5, 0.7]]], np.float32)
    in_band = scores > 0.2
    keys, pairs, count = _band_sort(_float_keys(tf.constant(scores)), tf.constant(in_band), 3)
    assert int(count[0]) == 5
    # Walk order: 0.9 (slot 0, class 1), then 0.7 twice by flat index (slot 1
    # class 0 = pair 2, slot 2 class 1 = pair 5), then 0.5 (pair 0) left out first.
    np.testing.assert_array_equal(pairs[0], [1, 2, 5, 0])
    np.testing.assert_allclose(_key_floats(keys[0]).numpy(), [0.9, 0.7, 0.7, 0.5])


def _xla_functions(graph_def):
    """Names of the functions of a graph that XLA must compile."""
    return [f.signature.name for f in graph_def.library.function
            if "_XlaMustCompile" in f.attr and f.attr["_XlaMustCompile"].b]


def test_without_xla_traces_plain_ops_with_the_same_detections():
    from detect.ops import without_xla

    rng = np.random.default_rng(21)
    boxes, scores = crowd(rng, 2, 300, 3, 20)
    args = (12, 20, 0.5, 0.05)
    compiled = tf.function(lambda b, s: batched_nms(b, s, *args, candidate_pool=16, tile_size=16))
    plain = tf.function(lambda b, s: batched_nms(b, s, *args, candidate_pool=16, tile_size=16))
    single = tf.function(lambda b, s: nms(b, s, 0.5, 30))
    assert _xla_functions(compiled.get_concrete_function(boxes, scores).graph.as_graph_def())
    with without_xla():
        graph = plain.get_concrete_function(boxes, scores).graph.as_graph_def()
        single_graph = single.get_concrete_function(boxes[0], scores[0, :, 0]).graph.as_graph_def()
    assert _xla_functions(graph) == [] and _xla_functions(single_graph) == []
    out = {k: v.numpy() for k, v in plain(boxes, scores).items()}
    _assert_equals_reference(out, boxes, scores, *args)
    _assert_equals_combined_nms(out, boxes, scores, *args)
    np.testing.assert_array_equal(single(boxes[0], scores[0, :, 0])[0], nms(boxes[0], scores[0, :, 0], 0.5, 30)[0])
