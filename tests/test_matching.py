import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compile_check import assert_same_compiled
from detect.ops import IGNORE, NEGATIVE, NO_MATCH, NO_SAMPLE, POSITIVE, match, sample_balanced


def match_reference(iou, thresholds, labels, low_quality, gt_valid):
    """Loop-by-loop matcher (torchvision Matcher semantics plus gt validity)."""
    n, m = iou.shape
    matched = np.full(n, NO_MATCH)
    out = np.full(n, labels[0])
    valid_cols = [j for j in range(m) if gt_valid[j]]
    if not valid_cols:
        return matched, out
    for i in range(n):
        best_j = max(valid_cols, key=lambda j: (iou[i, j], -j))
        matched[i] = best_j
        for edge, label in zip(thresholds, labels[1:]):
            if iou[i, best_j] >= edge:
                out[i] = label
    if low_quality:
        for j in valid_cols:
            top = iou[:, j].max()
            if top > 0:
                out[iou[:, j] == top] = POSITIVE
    return matched, out


def test_hand_case_rpn_rules():
    iou = np.array([
        [0.80, 0.10],  # positive for gt 0
        [0.50, 0.20],  # between thresholds: ignored
        [0.10, 0.25],  # negative, but gt 1's best anchor: positive (low quality)
        [0.05, 0.00],  # negative
    ], np.float32)
    matched, labels = match(iou, (0.3, 0.7), (NEGATIVE, IGNORE, POSITIVE), True)
    np.testing.assert_array_equal(matched, [0, 0, 1, 0])
    np.testing.assert_array_equal(labels, [POSITIVE, IGNORE, POSITIVE, NEGATIVE])
    _, labels = match(iou, (0.3, 0.7), (NEGATIVE, IGNORE, POSITIVE), False)
    np.testing.assert_array_equal(labels, [POSITIVE, IGNORE, NEGATIVE, NEGATIVE])


def test_no_ground_truth_and_padding():
    # M = 0: every anchor is negative, matched -1.
    matched, labels = match(np.zeros((5, 0), np.float32))
    np.testing.assert_array_equal(matched, [NO_MATCH] * 5)
    np.testing.assert_array_equal(labels, [NEGATIVE] * 5)
    # Only padded ground truth (IoU 0 everywhere): also no positives.
    matched, labels = match(np.zeros((5, 3), np.float32), gt_valid=[False, False, False])
    np.testing.assert_array_equal(matched, [NO_MATCH] * 5)
    np.testing.assert_array_equal(labels, [NEGATIVE] * 5)
    # A padded column with a high IoU must be ignored.
    iou = np.array([[0.9, 0.4], [0.1, 0.2]], np.float32)
    matched, labels = match(iou, gt_valid=[False, True])
    np.testing.assert_array_equal(matched, [1, 1])
    np.testing.assert_array_equal(labels, [POSITIVE, NEGATIVE])


def test_batched_with_per_image_validity():
    iou = np.array([[[0.9, 0.0], [0.2, 0.0]], [[0.0, 0.0], [0.0, 0.0]]], np.float32)
    valid = np.array([[True, False], [False, False]])
    matched, labels = match(iou, gt_valid=valid)
    np.testing.assert_array_equal(matched, [[0, 0], [NO_MATCH, NO_MATCH]])
    np.testing.assert_array_equal(labels, [[POSITIVE, NEGATIVE], [NEGATIVE, NEGATIVE]])


def test_rejects_bad_configuration():
    with pytest.raises(ValueError, match="increase"):
        match(np.zeros((2, 2)), thresholds=(0.7, 0.3))
    with pytest.raises(ValueError, match="labels"):
        match(np.zeros((2, 2)), thresholds=(0.5,), labels=(NEGATIVE, IGNORE, POSITIVE))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_matches_loop_reference(seed, low_quality):
    rng = np.random.default_rng(seed)
    n, m = rng.integers(1, 12), rng.integers(0, 5)
    # Quantised IoUs make ties (the low-quality rule's hard case) common.
    iou = (rng.integers(0, 10, (n, m)) / 10).astype(np.float32)
    valid = rng.random(m) < 0.8
    thresholds, labels = (0.4, 0.5), (NEGATIVE, IGNORE, POSITIVE)
    got_matched, got_labels = match(iou, thresholds, labels, low_quality, valid)
    ref_matched, ref_labels = match_reference(iou, thresholds, labels, low_quality, valid)
    np.testing.assert_array_equal(got_labels, ref_labels)
    np.testing.assert_array_equal(got_matched, ref_matched)


def test_match_eager_equals_compiled_two_shapes():
    rng = np.random.default_rng(0)
    for shape in ((20, 4), (2, 30, 3)):
        iou = rng.random(shape).astype(np.float32)
        valid = np.ones(shape[:-2] + shape[-1:], bool)
        assert_same_compiled(lambda x, v: match(x, gt_valid=v), iou, valid)


# ---- balanced sampling -------------------------------------------------------

def _check_sample(labels, indices, num_samples, fraction):
    labels = np.asarray(labels)
    n_pos, n_neg = int((labels == POSITIVE).sum()), int((labels == NEGATIVE).sum())
    want_pos = min(n_pos, int(num_samples * fraction))
    want_neg = min(n_neg, num_samples - want_pos)
    assert indices.shape == (num_samples,)
    real = indices[indices != NO_SAMPLE]
    assert len(real) == want_pos + want_neg
    assert len(set(real.tolist())) == len(real), "sampled twice"
    np.testing.assert_array_equal(labels[indices[:want_pos]], POSITIVE)
    np.testing.assert_array_equal(labels[indices[want_pos:want_pos + want_neg]], NEGATIVE)
    np.testing.assert_array_equal(indices[want_pos + want_neg:], NO_SAMPLE)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 64), st.sampled_from([0.25, 0.5, 1.0]))
def test_sample_counts_and_order(seed, num_samples, fraction):
    rng = np.random.default_rng(seed)
    labels = rng.choice([POSITIVE, NEGATIVE, IGNORE], size=rng.integers(0, 80), p=[0.1, 0.6, 0.3])
    indices = sample_balanced(labels.astype(np.int32), num_samples, fraction, seed=seed % 1000).numpy()
    _check_sample(labels, indices, num_samples, fraction)


def test_sample_hand_case_and_determinism():
    labels = np.array([NEGATIVE, POSITIVE, IGNORE, POSITIVE, NEGATIVE, POSITIVE, NEGATIVE], np.int32)
    a = sample_balanced(labels, 4, 0.5, seed=7).numpy()
    # 2 of the 3 positives, then 2 of the 3 negatives.
    assert set(a[:2]) <= {1, 3, 5} and set(a[2:]) <= {0, 4, 6}
    np.testing.assert_array_equal(a, sample_balanced(labels, 4, 0.5, seed=7).numpy())
    draws = {tuple(sample_balanced(labels, 4, 0.5, seed=s).numpy()) for s in range(20)}
    assert len(draws) > 1, "the seed does not change the sample"


def test_sample_is_uniform_over_positives():
    labels = np.array([POSITIVE] * 4 + [NEGATIVE] * 4, np.int32)
    counts = np.zeros(4)
    for s in range(400):
        counts[sample_balanced(labels, 2, 0.5, seed=s).numpy()[0]] += 1
    # Each positive is picked first about 100 times out of 400.
    assert counts.min() > 60 and counts.max() < 140, counts


def test_sample_batched_and_compiled():
    rng = np.random.default_rng(1)
    for shape in ((3, 50), (2, 9)):
        labels = rng.choice([POSITIVE, NEGATIVE, IGNORE], size=shape).astype(np.int32)
        out = assert_same_compiled(lambda x: sample_balanced(x, 16, 0.25, seed=3), labels)
        for row, idx in zip(labels, out):
            _check_sample(row, idx, 16, 0.25)
