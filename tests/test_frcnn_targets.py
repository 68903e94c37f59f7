import numpy as np
import pytest
import tensorflow as tf

from compile_check import assert_same_compiled
from detect.faster_rcnn.targets import BACKGROUND, proposal_targets, rpn_targets
from detect.ops import IGNORE, NEGATIVE, NO_MATCH, POSITIVE


# ---------------------------------------------------------------------------
# Independent numpy references (py-faster-rcnn style, continuous coordinates)
# ---------------------------------------------------------------------------

def np_iou(a, b):
    """[N, M] IoU of xyxy boxes, float64; empty boxes have IoU 0."""
    a = np.asarray(a, np.float64)[:, None, :]
    b = np.asarray(b, np.float64)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area = lambda r: np.clip(r[..., 2] - r[..., 0], 0, None) * np.clip(r[..., 3] - r[..., 1], 0, None)
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def np_encode(box, ref, weights=(1.0, 1.0, 1.0, 1.0)):
    bw, bh = box[2] - box[0], box[3] - box[1]
    rw, rh = ref[2] - ref[0], ref[3] - ref[1]
    bx, by = box[0] + bw / 2, box[1] + bh / 2
    rx, ry = ref[0] + rw / 2, ref[1] + rh / 2
    return np.array([weights[0] * (bx - rx) / rw, weights[1] * (by - ry) / rh,
                     weights[2] * np.log(bw / rw), weights[3] * np.log(bh / rh)])


def rpn_reference(anchors, gt, valid, hw, pos_iou=0.7, neg_iou=0.3, border=0.0):
    """AnchorTargetLayer before subsampling, for one image.

    Returns labels [N], matched gt [N] (index into the original M), targets [N, 4].
    """
    n = len(anchors)
    h, w = hw
    # The original's test, on the same anchor values (generate_anchors reproduces them): x2 < w.
    inside = np.where((anchors[:, 0] >= -border) & (anchors[:, 1] >= -border)
                      & (anchors[:, 2] < w + border) & (anchors[:, 3] < h + border))[0]
    labels = np.full(n, IGNORE)
    matched = np.full(n, NO_MATCH)
    targets = np.zeros((n, 4))
    areas = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    gt_idx = np.where(valid & (areas > 0))[0]
    if len(gt_idx) == 0:
        labels[inside] = NEGATIVE
        return labels, matched, targets
    overlaps = np_iou(anchors[inside], gt[gt_idx])
    argmax = overlaps.argmax(axis=1)
    max_overlaps = overlaps[np.arange(len(inside)), argmax]
    gt_max = overlaps.max(axis=0)
    gt_argmax = np.where((overlaps == gt_max) & (gt_max > 0))[0]
    sub = np.full(len(inside), IGNORE)
    sub[max_overlaps < neg_iou] = NEGATIVE  # negatives first ...
    sub[gt_argmax] = POSITIVE               # ... then positives overwrite them
    sub[max_overlaps >= pos_iou] = POSITIVE
    labels[inside] = sub
    matched[inside] = gt_idx[argmax]
    for i in np.where(labels == POSITIVE)[0]:
        targets[i] = np_encode(gt[matched[i]], anchors[i])
    return labels, matched, targets


def proposal_reference(proposals, pvalid, gt, classes, gvalid, fg_iou=0.5, hi=0.5, lo=0.1):
    """ProposalTargetLayer's candidate split, for one image.

    Returns candidates [C, 4], fg mask, bg mask, best IoU, label [C].
    """
    areas = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    keep_gt = gvalid & (areas > 0) & (classes >= 0)
    g, c = gt[keep_gt], classes[keep_gt]
    cand = np.concatenate([proposals[pvalid], g], axis=0)
    if len(g):
        ov = np_iou(cand, g)
        best, arg = ov.max(axis=1), ov.argmax(axis=1)
    else:
        best, arg = np.zeros(len(cand)), np.zeros(len(cand), int)
    fg = best >= fg_iou
    bg = (best >= lo) & (best < hi) & ~fg
    label = np.where(fg, c[arg] + 1 if len(g) else 0, BACKGROUND)
    return cand, fg, bg, best, label, g[arg] if len(g) else np.zeros_like(cand)


def random_boxes(rng, n, size=300.0, lo=16.0, hi=120.0):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(lo, hi, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def jittered(rng, boxes, n, scale=0.08):
    """n boxes jittered around the given ones (many high-IoU matches)."""
    src = boxes[rng.integers(0, len(boxes), n)]
    wh = np.concatenate([src[:, 2:] - src[:, :2]] * 2, axis=1)
    return (src + rng.normal(0, scale, src.shape) * wh).astype(np.float32)


def rpn_scene(rng, num_random=300, num_near=120):
    anchors = np.concatenate([random_boxes(rng, num_random)], axis=0)
    gt = np.zeros((2, 4, 4), np.float32)
    gt[0, :3] = random_boxes(rng, 3, size=200.0, lo=30, hi=90)
    gt[1, :2] = random_boxes(rng, 2, size=120.0, lo=30, hi=60)
    valid = np.array([[True, True, True, False], [True, True, False, False]])
    near = jittered(rng, np.concatenate([gt[0, :3], gt[1, :2]]), num_near)
    anchors = np.concatenate([anchors, near], axis=0)
    hw = np.array([[320, 340], [200, 180]], np.int32)
    return anchors, gt, valid, hw


# ---------------------------------------------------------------------------
# rpn_targets
# ---------------------------------------------------------------------------

def test_rpn_labels_and_targets_match_reference_without_subsampling():
    for seed in range(3):
        rng = np.random.default_rng(seed)
        anchors, gt, valid, hw = rpn_scene(rng)
        n = len(anchors)
        # A sample as large as N with no positive cap keeps every label.
        out = rpn_targets(anchors, gt, valid, hw, num_samples=n, positive_fraction=1.0, seed=seed)
        for b in range(2):
            labels, matched, targets = rpn_reference(anchors, gt[b], valid[b], hw[b])
            assert (labels == POSITIVE).sum() > 0 and (labels == NEGATIVE).sum() > 0
            assert (labels == IGNORE).sum() > 0  # some anchors are outside the image
            np.testing.assert_array_equal(out["labels"][b], labels)
            np.testing.assert_array_equal(out["matched_gt"][b], matched)
            np.testing.assert_allclose(out["box_targets"][b], targets, atol=1e-5)


def test_rpn_subsampling_counts_membership_and_determinism():
    rng = np.random.default_rng(7)
    gt = np.zeros((2, 3, 4), np.float32)
    gt[0, :2] = [[40, 40, 120, 140], [150, 60, 250, 160]]
    gt[1, 0] = [20, 20, 60, 60]
    valid = np.array([[True, True, False], [True, False, False]])
    # Image 0: ~400 near-duplicates of its objects (far more than 128 positives).
    anchors = np.concatenate([jittered(rng, gt[0, :2], 400, scale=0.03), random_boxes(rng, 600, size=260)])
    hw = np.array([[400, 400], [300, 300]])
    out = rpn_targets(anchors, gt, valid, hw, seed=3)
    labels = np.asarray(out["labels"])
    for b in range(2):
        ref, _, ref_targets = rpn_reference(anchors, gt[b], valid[b], hw[b])
        sampled = labels[b] != IGNORE
        # Every sampled anchor keeps its reference label.
        np.testing.assert_array_equal(labels[b][sampled], ref[sampled])
        num_pos, num_neg = (labels[b] == POSITIVE).sum(), (labels[b] == NEGATIVE).sum()
        assert num_pos == min((ref == POSITIVE).sum(), 128)
        assert num_neg == min((ref == NEGATIVE).sum(), 256 - num_pos)
        pos = labels[b] == POSITIVE
        np.testing.assert_allclose(out["box_targets"][b][pos], ref_targets[pos], atol=1e-5)
        assert not np.any(out["box_targets"][b][~pos])
    assert (labels[0] == POSITIVE).sum() == 128 and (labels[0] == NEGATIVE).sum() == 128
    assert (labels[1] == POSITIVE).sum() < 128 and (labels[1] != IGNORE).sum() == 256

    again = rpn_targets(anchors, gt, valid, hw, seed=3)
    np.testing.assert_array_equal(again["labels"], labels)
    other = rpn_targets(anchors, gt, valid, hw, seed=4)
    assert not np.array_equal(other["labels"], labels)


def test_rpn_border_anchors_are_ignored_and_excluded_from_best_anchor():
    gt = np.array([[[0, 0, 50, 50]]], np.float32)
    anchors = np.array([
        [-2, 0, 48, 50],    # IoU 0.92 but sticks out on the left
        [10, 10, 60, 60],   # IoU 0.47: the best inside anchor
        [60, 60, 99.5, 99.5],  # inside
        [60, 60, 100, 100],  # x2 = w: outside, as the original's x2 < w (x2 an inclusive corner there)
    ], np.float32)
    valid, hw = np.array([[True]]), np.array([[100, 100]])
    out = rpn_targets(anchors, gt, valid, hw, num_samples=8)
    np.testing.assert_array_equal(out["labels"][0], [IGNORE, POSITIVE, NEGATIVE, IGNORE])
    np.testing.assert_array_equal(out["matched_gt"][0], [NO_MATCH, 0, 0, NO_MATCH])
    out = rpn_targets(anchors, gt, valid, hw, num_samples=8, allowed_border=2.0)
    np.testing.assert_array_equal(out["labels"][0], [POSITIVE, IGNORE, NEGATIVE, NEGATIVE])


@pytest.mark.parametrize("width", [599, 600, 615])
def test_rpn_inside_anchors_are_the_originals_on_its_own_anchor_grid(width):
    """The paper's anchors tiled at stride 16: widths 599 and 615 (7 mod 16) put anchor corners exactly
    on the image's edge (e.g. 71 + 16 * 33 = 599), where x2 <= w and the original's x2 < w differ."""
    from detect.ops.anchors import anchor_grid, generate_anchors

    height = 343  # 7 mod 16 as well
    anchors = anchor_grid(-(-height // 16), -(-width // 16), 16, generate_anchors()).numpy()
    assert (anchors[:, 3] == height).any() and (anchors[:, 2] == width).any() == (width % 16 == 7)
    gt = np.array([[[100, 80, 300, 250]]], np.float32)
    valid, hw = np.array([[True]]), np.array([[height, width]])
    out = rpn_targets(anchors, gt, valid, hw, num_samples=len(anchors), positive_fraction=1.0)
    _, matched, _ = rpn_reference(anchors, gt[0], valid[0], (height, width))
    np.testing.assert_array_equal(out["matched_gt"][0] != NO_MATCH, matched != NO_MATCH)


def test_rpn_best_anchors_positive_below_threshold_and_not_clobbered():
    gt = np.array([[[20, 20, 30, 30], [100, 100, 180, 180]]], np.float32)
    anchors = np.array([
        [0, 0, 40, 40],       # IoU 1/16 < 0.3 with gt 0, tied best: positive
        [10, 10, 50, 50],     # same IoU: also positive
        [100, 100, 176, 180],  # IoU 0.95 with gt 1
        [60, 0, 90, 30],      # overlaps nothing: negative
    ], np.float32)
    out = rpn_targets(anchors, gt, np.array([[True, True]]), np.array([[200, 200]]), num_samples=8)
    np.testing.assert_array_equal(out["labels"][0], [POSITIVE, POSITIVE, POSITIVE, NEGATIVE])
    np.testing.assert_array_equal(out["matched_gt"][0][:3], [0, 0, 1])
    # Hand-computed deltas: gt 0 (centre 25, size 10) on anchor 0 (centre 20, size 40).
    np.testing.assert_allclose(out["box_targets"][0][0], [5 / 40, 5 / 40, np.log(0.25), np.log(0.25)], atol=1e-6)
    np.testing.assert_allclose(out["box_targets"][0][2], [2 / 76, 0, np.log(80 / 76), 0], atol=1e-6)
    np.testing.assert_array_equal(out["box_targets"][0][3], 0)


def test_rpn_empty_image_degenerate_gt_and_no_negatives():
    anchors = np.array([[0, 0, 40, 40], [10, 10, 50, 50], [5, 0, 45, 40], [8, 8, 52, 52]], np.float32)
    gt = np.zeros((3, 2, 4), np.float32)
    valid = np.zeros((3, 2), bool)
    # Image 0: no objects at all (padding with a box that would match).
    gt[0, 0] = [0, 0, 40, 40]
    # Image 1: a zero-area object inside anchors 0-2, marked valid.
    gt[1, 0], valid[1, 0] = [20, 0, 20, 40], True
    # Image 2: one object that every anchor overlaps well: no negatives.
    gt[2, 0], valid[2, 0] = [5, 5, 50, 50], True
    hw = np.array([[100, 100], [100, 100], [100, 100]])
    out = rpn_targets(anchors, gt, valid, hw, num_samples=4, positive_fraction=0.5)
    for key in ("labels", "box_targets", "matched_gt"):
        assert np.all(np.isfinite(out[key]))
    np.testing.assert_array_equal(out["labels"][0], [NEGATIVE] * 4)
    np.testing.assert_array_equal(out["matched_gt"][0], [NO_MATCH] * 4)
    np.testing.assert_array_equal(out["labels"][1], [NEGATIVE] * 4)
    np.testing.assert_array_equal(out["matched_gt"][1], [NO_MATCH] * 4)
    assert not np.any(out["box_targets"][:2])
    ref, _, _ = rpn_reference(anchors, gt[2], valid[2], hw[2])
    assert (ref == NEGATIVE).sum() == 0 and (ref == POSITIVE).sum() >= 2
    labels = np.asarray(out["labels"][2])
    assert (labels == NEGATIVE).sum() == 0
    assert (labels == POSITIVE).sum() == 2  # floor(4 * 0.5) of the positives
    assert set(np.where(labels == POSITIVE)[0]) <= set(np.where(ref == POSITIVE)[0])


def test_rpn_degenerate_gt_beside_a_real_one():
    anchors = np.array([[0, 0, 40, 40], [60, 60, 100, 100], [0, 60, 40, 100]], np.float32)
    gt = np.array([[[60, 60, 100, 100], [20, 0, 20, 40]]], np.float32)  # real, then a vertical line
    out = rpn_targets(anchors, gt, np.array([[True, True]]), np.array([[120, 120]]), num_samples=8)
    np.testing.assert_array_equal(out["labels"][0], [NEGATIVE, POSITIVE, NEGATIVE])
    np.testing.assert_array_equal(out["matched_gt"][0], [0, 0, 0])


def test_rpn_targets_compile():
    rng = np.random.default_rng(1)
    anchors, gt, valid, hw = rpn_scene(rng, num_random=100, num_near=40)
    out = assert_same_compiled(lambda g, v, s: rpn_targets(anchors, g, v, s, num_samples=64, seed=5), gt, valid, hw)
    assert ((out["labels"] != IGNORE).sum(axis=1) <= 64).all()
    for b in range(2):
        ref, _, _ = rpn_reference(anchors, gt[b], valid[b], hw[b])
        sampled = out["labels"][b] != IGNORE
        np.testing.assert_array_equal(out["labels"][b][sampled], ref[sampled])
    # Anchors whose number is known only at run time (built from tf.shape of a feature map).
    spec = [tf.TensorSpec([None, 4]), tf.TensorSpec([None, None, 4]), tf.TensorSpec([None, None], tf.bool),
            tf.TensorSpec([None, 2], tf.int32)]
    fn = tf.function(lambda a, g, v, s: rpn_targets(a, g, v, s, num_samples=64, seed=5), input_signature=spec)
    dynamic = fn(anchors, gt, valid, hw)
    for key in out:
        np.testing.assert_array_equal(dynamic[key], out[key])


# ---------------------------------------------------------------------------
# proposal_targets
# ---------------------------------------------------------------------------

def proposal_scene(rng, num=200):
    gt = np.zeros((2, 5, 4), np.float32)
    classes = np.full((2, 5), -1, np.int32)
    valid = np.zeros((2, 5), bool)
    gt[0, :3] = random_boxes(rng, 3, size=200, lo=40, hi=100)
    classes[0, :3], valid[0, :3] = [4, 0, 7], True
    gt[1, :1] = random_boxes(rng, 1, size=200, lo=40, hi=100)
    classes[1, :1], valid[1, :1] = [2], True
    proposals = np.stack([
        np.concatenate([jittered(rng, gt[b][valid[b]], num // 2, scale=0.2), random_boxes(rng, num - num // 2)])
        for b in range(2)])
    pvalid = np.ones((2, num), bool)
    pvalid[1, num - 30:] = False
    return proposals, pvalid, gt, classes, valid


def check_rois(out, b, proposals, pvalid, gt, classes, gvalid, lo=0.1, stds=(0.1, 0.1, 0.2, 0.2)):
    """Every valid RoI is a distinct fg/bg candidate with the reference label,
    IoU and normalised target. Returns (number of fg, number of bg, ref)."""
    cand, fg, bg, best, label, matched = proposal_reference(proposals[b], pvalid[b], gt[b], classes[b], gvalid[b],
                                                            lo=lo)
    roi_valid = np.asarray(out["roi_valid"][b])
    rois = np.asarray(out["rois"][b])
    assert not np.any(rois[~roi_valid]) and not np.any(out["labels"][b][~roi_valid])
    assert not np.any(out["box_targets"][b][~roi_valid]) and not np.any(out["matched_iou"][b][~roi_valid])
    picked = []
    for s in np.where(roi_valid)[0]:
        hits = np.where(np.all(np.abs(cand - rois[s]) < 1e-4, axis=1))[0]
        assert len(hits) >= 1, rois[s]
        i = hits[0]
        picked.append(i)
        assert fg[i] or bg[i]
        assert out["labels"][b][s] == (label[i] if fg[i] else BACKGROUND)
        np.testing.assert_allclose(out["matched_iou"][b][s], best[i], atol=1e-5)
        want = np_encode(matched[i], cand[i], [1 / x for x in stds]) if fg[i] else np.zeros(4)
        np.testing.assert_allclose(out["box_targets"][b][s], want, atol=1e-4)
    assert len(set(picked)) == len(picked), "sampled with replacement"
    num_fg = int(np.sum(np.asarray(out["labels"][b]) > 0))
    # Foreground slots come first, then background, then empty slots.
    lab = np.asarray(out["labels"][b])
    assert np.all(lab[:num_fg] > 0) and np.all(roi_valid[:roi_valid.sum()])
    return num_fg, int(roi_valid.sum()) - num_fg, (fg, bg)


def test_proposal_targets_sample_everything_matches_reference():
    rng = np.random.default_rng(11)
    proposals, pvalid, gt, classes, gvalid = proposal_scene(rng)
    out = proposal_targets(proposals, pvalid, gt, classes, gvalid, num_samples=256, fg_fraction=1.0, seed=2)
    for b in range(2):
        num_fg, num_bg, (fg, bg) = check_rois(out, b, proposals, pvalid, gt, classes, gvalid)
        assert num_fg == fg.sum() > 0 and num_bg == bg.sum() > 0


def test_proposal_targets_default_sampling_counts_and_determinism():
    rng = np.random.default_rng(12)
    proposals, pvalid, gt, classes, gvalid = proposal_scene(rng, num=400)
    out = proposal_targets(proposals, pvalid, gt, classes, gvalid, seed=9)
    assert out["rois"].shape == (2, 128, 4) and out["labels"].shape == (2, 128)
    for b in range(2):
        num_fg, num_bg, (fg, bg) = check_rois(out, b, proposals, pvalid, gt, classes, gvalid)
        assert fg.sum() > 32
        assert num_fg == 32
        assert num_bg == min(bg.sum(), 128 - 32)
    again = proposal_targets(proposals, pvalid, gt, classes, gvalid, seed=9)
    for key in out:
        np.testing.assert_array_equal(again[key], out[key])
    other = proposal_targets(proposals, pvalid, gt, classes, gvalid, seed=10)
    assert not np.array_equal(other["rois"], out["rois"])


def test_proposal_targets_gt_is_appended_and_padding_never_sampled():
    gt = np.array([[[10, 10, 50, 50], [100, 100, 160, 150], [0, 0, 0, 0]]], np.float32)
    classes = np.array([[3, 0, -1]])
    gvalid = np.array([[True, True, False]])
    # Real proposals far from every object; a padded one that would be foreground.
    proposals = np.array([[[200, 200, 240, 240], [300, 10, 340, 60], [10, 10, 50, 50]]], np.float32)
    pvalid = np.array([[True, True, False]])
    out = proposal_targets(proposals, pvalid, gt, classes, gvalid, num_samples=8, bg_iou_lo=0.0)
    np.testing.assert_array_equal(out["roi_valid"][0], [True] * 4 + [False] * 4)
    fg_rois = np.asarray(out["rois"][0][:2])
    order = np.argsort(fg_rois[:, 0])
    np.testing.assert_array_equal(fg_rois[order], gt[0, :2])
    np.testing.assert_array_equal(np.asarray(out["labels"][0][:2])[order], [4, 1])
    np.testing.assert_allclose(out["matched_iou"][0][:4], [1, 1, 0, 0])
    np.testing.assert_array_equal(out["box_targets"][0], 0)  # gt on itself; background
    np.testing.assert_array_equal(out["labels"][0][2:], 0)
    # Proposals 0 and 1 are the background (in some order); the padded one never appears.
    bg_rois = np.asarray(out["rois"][0][2:4])
    np.testing.assert_array_equal(bg_rois[np.argsort(bg_rois[:, 0])], proposals[0, :2])


def test_proposal_targets_background_range_and_normalised_targets():
    gt = np.array([[[0, 0, 10, 10], [0, 100, 20, 120]]], np.float32)
    classes = np.array([[0, 2]])
    gvalid = np.array([[True, True]])
    proposals = np.array([[
        [0, 0, 10, 1],        # IoU 0.1 exactly: background (low end inclusive)
        [0, 0, 10, 5],        # IoU 0.5 exactly: foreground (high end exclusive)
        [0, 0, 10, 0.5],      # IoU 0.05: background only when bg_iou_lo = 0
        [0, 0, 10, 3],        # IoU 0.3: background unless bg_iou_hi = 0.3
        [300, 300, 310, 310],  # IoU 0
        [0, 100, 20, 140],    # IoU 0.5 with gt 1: foreground of class 2
    ]], np.float32)
    pvalid = np.ones((1, 6), bool)

    def by_roi(out):
        return {tuple(np.round(r, 3)): (int(l), float(i), t) for r, l, i, t, v in zip(
            out["rois"][0].numpy(), out["labels"][0].numpy(), out["matched_iou"][0].numpy(),
            out["box_targets"][0].numpy(), out["roi_valid"][0].numpy()) if v}

    got = by_roi(proposal_targets(proposals, pvalid, gt, classes, gvalid, num_samples=16, fg_fraction=0.5))
    assert set(got) == {(0, 0, 10, 1), (0, 0, 10, 3), (0, 0, 10, 5), (0, 100, 20, 140), (0, 0, 10, 10),
                        (0, 100, 20, 120)}
    assert got[(0, 0, 10, 1)][0] == BACKGROUND and got[(0, 0, 10, 5)][0] == 1
    # Hand-computed: gt (centre (10, 110), 20 x 20) on RoI (centre (10, 120), 20 x 40), stds (.1, .1, .2, .2).
    label, matched_iou, target = got[(0, 100, 20, 140)]
    assert label == 3 and matched_iou == pytest.approx(0.5)
    np.testing.assert_allclose(target, [0.0, -0.25 / 0.1, 0.0, np.log(0.5) / 0.2], atol=1e-5)
    # gt 0 (centre (5, 5), 10 x 10) on RoI (centre (5, 2.5), 10 x 5).
    np.testing.assert_allclose(got[(0, 0, 10, 5)][2], [0.0, 0.5 / 0.1, 0.0, np.log(2) / 0.2], atol=1e-5)

    got = by_roi(proposal_targets(proposals, pvalid, gt, classes, gvalid, num_samples=16, fg_fraction=0.5,
                                  bg_iou_lo=0.0))
    assert {(0, 0, 10, 0.5), (300, 300, 310, 310)} < set(got) and len(got) == 8

    # The high end of the background range is exclusive.
    got = by_roi(proposal_targets(proposals, pvalid, gt, classes, gvalid, num_samples=16, fg_fraction=0.5,
                                  bg_iou_hi=0.3))
    assert set(got) == {(0, 0, 10, 1), (0, 0, 10, 5), (0, 100, 20, 140), (0, 0, 10, 10), (0, 100, 20, 120)}


def test_proposal_targets_without_gt_and_degenerate_gt():
    rng = np.random.default_rng(3)
    proposals = np.stack([random_boxes(rng, 20), random_boxes(rng, 20)])
    pvalid = np.ones((2, 20), bool)
    gt = np.zeros((2, 2, 4), np.float32)
    gt[1, 0] = [50, 50, 50, 90]  # zero width, valid, class 1
    classes = np.array([[-1, -1], [1, -1]])
    gvalid = np.array([[False, False], [True, False]])
    out = proposal_targets(proposals, pvalid, gt, classes, gvalid, num_samples=32)
    assert not np.any(out["roi_valid"])
    for key in ("rois", "labels", "box_targets", "matched_iou"):
        assert not np.any(out[key]) and np.all(np.isfinite(out[key]))
    out = proposal_targets(proposals, pvalid, gt, classes, gvalid, num_samples=32, bg_iou_lo=0.0)
    np.testing.assert_array_equal(np.asarray(out["roi_valid"]).sum(axis=1), [20, 20])  # the line is not appended
    assert not np.any(out["labels"]) and not np.any(out["box_targets"])
    assert np.all(np.isfinite(out["box_targets"]))
    # No ground truth at all (M = 0).
    out = proposal_targets(proposals, pvalid, np.zeros((2, 0, 4)), np.zeros((2, 0), np.int32), np.zeros((2, 0), bool),
                           num_samples=8, bg_iou_lo=0.0)
    np.testing.assert_array_equal(out["roi_valid"], np.ones((2, 8), bool))
    assert not np.any(out["labels"])


def test_proposal_targets_compile():
    rng = np.random.default_rng(4)
    proposals, pvalid, gt, classes, gvalid = proposal_scene(rng, num=60)
    fn = lambda p, v: proposal_targets(p, v, gt, classes, gvalid, num_samples=32, seed=1)
    out = assert_same_compiled(fn, proposals, pvalid)
    for b in range(2):
        check_rois(out, b, proposals, pvalid, gt, classes, gvalid)
