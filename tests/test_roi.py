"""Tests for detect.ops.roi: RoI max pooling and RoIAlign.

References are plain numpy loop ports of the original kernels (Caffe's
ROIPoolingLayer forward/backward, torchvision's CPU roi_align), written here
so that the vectorised ops are checked against something independent.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from detect.ops.roi import RoIAlign, RoIPool, _divide_f32, roi_align, roi_pool

SCALES = (1.0, 0.5, 0.25, 1.0 / 16.0, 1.0 / 3.0)


# --------------------------------------------------------------------------
# Numpy references
# --------------------------------------------------------------------------


def c_round(value):
    """C round(): halves away from zero. Exact for float32 inputs in float64."""
    value = float(value)
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def caffe_roi_pool(features, rois, output_size, spatial_scale, upstream=None):
    """Caffe ROIPoolingLayer forward (and backward when `upstream` is given).

    Args:
        features: [B, H, W, C] float32.
        rois: [K, 5] (batch, x1, y1, x2, y2).
        output_size: (ph, pw).
        spatial_scale: float.
        upstream: optional [K, ph, pw, C] gradient of the output.

    Returns:
        [K, ph, pw, C] float32, and the [B, H, W, C] feature gradient if
        `upstream` is given.
    """
    features = np.asarray(features, np.float32)
    rois = np.asarray(rois, np.float32).reshape(-1, 5)
    _, height, width, channels = features.shape
    pooled_h, pooled_w = output_size
    scale = np.float32(spatial_scale)
    out = np.zeros((len(rois), pooled_h, pooled_w, channels), np.float32)
    grad = np.zeros_like(features)
    for k, roi in enumerate(rois):
        b = int(roi[0])
        start_w, start_h = c_round(roi[1] * scale), c_round(roi[2] * scale)
        end_w, end_h = c_round(roi[3] * scale), c_round(roi[4] * scale)
        roi_h = max(end_h - start_h + 1, 1)
        roi_w = max(end_w - start_w + 1, 1)
        bin_h = np.float32(roi_h) / np.float32(pooled_h)  # float32, as in Caffe
        bin_w = np.float32(roi_w) / np.float32(pooled_w)
        for i in range(pooled_h):
            for j in range(pooled_w):
                hstart = int(np.floor(np.float32(i) * bin_h))
                wstart = int(np.floor(np.float32(j) * bin_w))
                hend = int(np.ceil(np.float32(i + 1) * bin_h))
                wend = int(np.ceil(np.float32(j + 1) * bin_w))
                hstart = min(max(hstart + start_h, 0), height)
                hend = min(max(hend + start_h, 0), height)
                wstart = min(max(wstart + start_w, 0), width)
                wend = min(max(wend + start_w, 0), width)
                if hend <= hstart or wend <= wstart:
                    continue  # empty bin stays 0
                best = np.full(channels, -np.finfo(np.float32).max, np.float32)
                arg = np.full((channels, 2), -1)
                for h in range(hstart, hend):
                    for w in range(wstart, wend):
                        better = features[b, h, w] > best
                        best = np.where(better, features[b, h, w], best)
                        arg[better] = (h, w)
                out[k, i, j] = best
                if upstream is not None:
                    for c in range(channels):
                        grad[b, arg[c, 0], arg[c, 1], c] += upstream[k, i, j, c]
    return out if upstream is None else (out, grad)


def _bilinear(feature_map, y, x):
    """torchvision bilinear_interpolate on one [H, W, C] map."""
    height, width, _ = feature_map.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(feature_map.shape[-1], np.float32)
    y, x = max(y, np.float32(0)), max(x, np.float32(0))
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = np.float32(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = np.float32(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (
        hy * hx * feature_map[y_low, x_low]
        + hy * lx * feature_map[y_low, x_high]
        + ly * hx * feature_map[y_high, x_low]
        + ly * lx * feature_map[y_high, x_high]
    )


def torchvision_roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """torchvision roi_align CPU forward with a fixed sampling_ratio, NHWC."""
    features = np.asarray(features, np.float32)
    rois = np.asarray(rois, np.float32).reshape(-1, 5)
    pooled_h, pooled_w = output_size
    scale = np.float32(spatial_scale)
    offset = np.float32(0.5 if aligned else 0.0)
    out = np.zeros((len(rois), pooled_h, pooled_w, features.shape[-1]), np.float32)
    for k, roi in enumerate(rois):
        feature_map = features[int(roi[0])]
        start_w, start_h = roi[1] * scale - offset, roi[2] * scale - offset
        end_w, end_h = roi[3] * scale - offset, roi[4] * scale - offset
        roi_w, roi_h = end_w - start_w, end_h - start_h
        if not aligned:
            roi_w, roi_h = max(roi_w, np.float32(1)), max(roi_h, np.float32(1))
        bin_h = roi_h / np.float32(pooled_h)
        bin_w = roi_w / np.float32(pooled_w)
        grid = np.float32(sampling_ratio)
        for i in range(pooled_h):
            for j in range(pooled_w):
                total = np.zeros(features.shape[-1], np.float32)
                for iy in range(sampling_ratio):
                    y = start_h + np.float32(i) * bin_h + np.float32(iy + 0.5) * bin_h / grid
                    for ix in range(sampling_ratio):
                        x = start_w + np.float32(j) * bin_w + np.float32(ix + 0.5) * bin_w / grid
                        total += _bilinear(feature_map, y, x)
                out[k, i, j] = total / np.float32(sampling_ratio * sampling_ratio)
    return out


# --------------------------------------------------------------------------
# Random cases
# --------------------------------------------------------------------------

_ROI_KINDS = ("inside", "overhang", "tiny", "half", "far", "swapped")


def random_rois(rng, num, batch, height, width, spatial_scale):
    """[num, 5] RoIs in image pixels mixing every awkward kind of box.

    Coordinates are drawn in feature-map cells and divided by the scale, so
    "half" boxes land exactly on .5 after scaling (for power-of-two scales).
    """
    rois = np.zeros((num, 5), np.float32)
    for n in range(num):
        kind = _ROI_KINDS[rng.integers(len(_ROI_KINDS))]
        if kind == "inside":
            x1, y1 = rng.uniform(0, width), rng.uniform(0, height)
            x2, y2 = rng.uniform(x1, width), rng.uniform(y1, height)
        elif kind == "overhang":  # partly (or fully) off the map
            x1, y1 = rng.uniform(-4, width), rng.uniform(-4, height)
            x2, y2 = x1 + rng.uniform(0, width + 4), y1 + rng.uniform(0, height + 4)
        elif kind == "tiny":  # smaller than a cell, let alone a bin
            x1, y1 = rng.uniform(-1, width), rng.uniform(-1, height)
            x2, y2 = x1 + rng.uniform(0, 0.9), y1 + rng.uniform(0, 0.9)
        elif kind == "half":  # .5 after scaling: C round and banker's differ
            x1, y1 = rng.integers(-2, width + 1) + 0.5, rng.integers(-2, height + 1) + 0.5
            x2, y2 = x1 + rng.integers(0, 6), y1 + rng.integers(0, 6)
        elif kind == "far":  # wholly outside: every bin empty
            x1, y1 = width + 1.6 + rng.uniform(0, 3), rng.uniform(-3, height)
            x2, y2 = x1 + rng.uniform(0, 5), y1 + rng.uniform(0, 5)
        else:  # x2 < x1: Caffe clamps the size to one cell
            x2, y2 = rng.uniform(-1, width), rng.uniform(-1, height)
            x1, y1 = x2 + rng.uniform(0, 3), y2 + rng.uniform(0, 3)
        rois[n] = (rng.integers(batch), x1 / spatial_scale, y1 / spatial_scale,
                   x2 / spatial_scale, y2 / spatial_scale)
    return rois


@st.composite
def roi_cases(draw):
    batch = draw(st.integers(1, 3))
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    channels = draw(st.integers(1, 3))
    output_size = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    spatial_scale = draw(st.sampled_from(SCALES))
    num = draw(st.integers(0, 10))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # Mostly negative values: zero padding instead of -inf would show up.
    features = rng.uniform(-10.0, 1.0, (batch, height, width, channels)).astype(np.float32)
    rois = random_rois(rng, num, batch, height, width, spatial_scale)
    return features, rois, output_size, spatial_scale


# --------------------------------------------------------------------------
# roi_pool
# --------------------------------------------------------------------------

HAND_MAP = np.array(
    [
        [-1, 5, -3, 0],
        [2, -8, 7, -4],
        [-6, 3, -2, 9],
        [4, -5, 1, -7],
    ],
    np.float32,
)[None, :, :, None]


@pytest.mark.parametrize(
    "roi, scale, expected",
    [
        # Whole map, 4x4 cells -> 2x2 bins of 2x2 cells.
        ((0, 0, 0, 3, 3), 1.0, [[5, 7], [4, 9]]),
        # 3x3 cells from (x=0, y=1): bin size 1.5, bins [0,2) and [1,3)
        # relative, so neighbouring bins share a row/column.
        ((0, 0, 1, 2, 3), 1.0, [[3, 7], [4, 3]]),
        # Scaled corners are 0.5 and 2.5: C round -> cells 1..3 (banker's
        # rounding would give 0..2 and [[5, 7], [5, 7]]).
        ((0, 1, 1, 5, 5), 0.5, [[7, 9], [3, 9]]),
        # y from -3 to 1 (5 rows, bin 2.5): the first row of bins is [-3, 0),
        # clamped to nothing -> 0; x from 1 to 2.
        ((0, 1, -3, 2, 1), 1.0, [[0, 0], [5, 7]]),
    ],
)
def test_roi_pool_hand_computed(roi, scale, expected):
    out = roi_pool(HAND_MAP, np.array([roi], np.float32), (2, 2), scale)
    np.testing.assert_array_equal(out.numpy()[0, :, :, 0], np.array(expected, np.float32))


@settings(max_examples=40, deadline=None)
@given(roi_cases())
def test_roi_pool_matches_caffe(case):
    features, rois, output_size, scale = case
    expected = caffe_roi_pool(features, rois, output_size, scale)
    out = roi_pool(features, rois, output_size, scale)
    assert out.shape == expected.shape and out.dtype == tf.float32
    np.testing.assert_array_equal(out.numpy(), expected)


def test_roi_pool_rounding_edges():
    """Coordinates right at and just below .5 after scaling, both signs."""
    rng = np.random.default_rng(0)
    features = rng.uniform(-5, -1, (2, 9, 10, 2)).astype(np.float32)
    below_half = float(np.nextafter(np.float32(0.5), np.float32(0)))  # 0.49999997
    coords = [0.5, 1.5, 2.5, -0.5, -1.5, below_half, 2 + below_half, -below_half, 3.5, 7.5]
    rois = np.array(
        [(b, x1, y1, x1 + w, y1 + h) for b in (0, 1) for x1 in coords for y1 in coords[:4]
         for w, h in ((0.0, 0.0), (3.0, 5.0), (4.5, 1.5))],
        np.float32,
    )
    for scale in (1.0, 0.5, 2.0):
        scaled_rois = rois.copy()
        scaled_rois[:, 1:] /= scale
        expected = caffe_roi_pool(features, scaled_rois, (3, 2), scale)
        out = roi_pool(features, scaled_rois, (3, 2), scale)
        np.testing.assert_array_equal(out.numpy(), expected)


def test_roi_pool_float32_bin_edges():
    """RoI sizes where float32 bin sizes move a ceil() edge vs exact math.

    For 57 cells and 7 bins, float32(57/7) * 7 rounds above 57, so Caffe's last
    bin ends one row later than exact arithmetic says. Grappler and XLA turn
    x / 7 into x * (1/7), which would change that; check all three modes.
    """
    rng = np.random.default_rng(1)
    features = rng.uniform(-3, 3, (1, 70, 64, 2)).astype(np.float32)
    rois = np.array(
        [(0, 2, 3, 2 + size - 1, 3 + size - 1) for size in range(1, 64)]
        + [(0, 0, 0, 56, 56), (0, 5, 1, 61, 57), (0, 0, 0, 63, 69)],
        np.float32,
    )
    expected = caffe_roi_pool(features, rois, (7, 7), 1.0)
    for fn in (roi_pool, tf.function(roi_pool), tf.function(roi_pool, jit_compile=True)):
        out = fn(features, rois, (7, 7), 1.0)
        np.testing.assert_array_equal(out.numpy(), expected)


def _division_cases():
    """Integers (RoI lengths), random float32 of every exponent and sign, and the special values."""
    rng = np.random.default_rng(11)
    patterns = rng.integers(0, 2**32, 50_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    specials = np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, np.finfo(np.float32).tiny,
                           np.finfo(np.float32).max, 57.0, 1.0 - 2.0**-24])
    return np.concatenate([np.arange(1 << 16, dtype=np.float32), patterns, specials])


@pytest.mark.parametrize("denominator", [1, 2, 3, 7, 14, 63])
def test_divide_f32_is_the_correctly_rounded_quotient_in_every_mode(denominator):
    """numpy's float32 division is IEEE's (correctly rounded); ours must equal it eagerly, in a graph and
    under XLA, whose rewrite into a multiplication by 1/d is what it avoids (57 / 7 is such a case).
    Quotients below the smallest normal float are left out: TensorFlow's CPU kernels flush them to zero."""
    values = _division_cases()
    with np.errstate(all="ignore"):
        expected = values / np.float32(denominator)
    checked = ~(np.abs(expected) < np.finfo(np.float32).tiny) | (expected == 0)
    for fn in (_divide_f32, tf.function(_divide_f32), tf.function(_divide_f32, jit_compile=True)):
        out = fn(tf.constant(values), denominator).numpy()
        np.testing.assert_array_equal(out[checked], expected[checked])


def test_divide_f32_refuses_a_divisor_its_int32_arithmetic_cannot_hold():
    with pytest.raises(ValueError, match="int in"):
        _divide_f32(tf.constant([1.0]), 64)


def test_roi_pool_gradient_matches_caffe_backward():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(2, 11, 9, 3)).astype(np.float32)  # no ties
    rois = random_rois(rng, 12, 2, 11, 9, 0.5)
    upstream = rng.normal(size=(12, 3, 4, 3)).astype(np.float32)
    _, expected = caffe_roi_pool(features, rois, (3, 4), 0.5, upstream)
    x = tf.constant(features)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(roi_pool(x, rois, (3, 4), 0.5) * upstream)
    grad = tf.convert_to_tensor(tape.gradient(loss, x))
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-6, atol=1e-6)


UNKNOWN_SHAPES = [
    tf.TensorSpec([None, None, None, None], tf.float32),
    tf.TensorSpec([None, 5], tf.float32),
]


@pytest.mark.parametrize("jit_compile", [False, True])
def test_roi_pool_unknown_height_width(jit_compile):
    """H and W unknown at trace time take the tf.while_loop table build.

    XLA then compiles per concrete shape (Keras relaxes shapes to None when
    image sizes vary), so that build must keep static loop shapes.
    """
    fn = tf.function(
        lambda f, r: roi_pool(f, r, (3, 4), 0.25),
        input_signature=UNKNOWN_SHAPES,
        jit_compile=jit_compile,
    )
    rng = np.random.default_rng(3)
    for shape, num in (((2, 13, 7, 3), 9), ((1, 4, 17, 2), 5), ((1, 1, 1, 1), 3)):
        features = rng.uniform(-4, 1, shape).astype(np.float32)
        rois = random_rois(rng, num, shape[0], shape[1], shape[2], 0.25)
        expected = caffe_roi_pool(features, rois, (3, 4), 0.25)
        np.testing.assert_array_equal(fn(features, rois).numpy(), expected)


# --------------------------------------------------------------------------
# roi_align
# --------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(roi_cases(), st.booleans(), st.integers(1, 3))
def test_roi_align_matches_torchvision(case, aligned, sampling_ratio):
    features, rois, output_size, scale = case
    expected = torchvision_roi_align(features, rois, output_size, scale, sampling_ratio, aligned)
    out = roi_align(features, rois, output_size, scale, sampling_ratio, aligned)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_roi_align_constant_map():
    """Bilinear samples of a constant map inside it are that constant."""
    features = np.full((1, 6, 8, 2), 3.25, np.float32)
    rois = np.array([[0, 0.5, 0.5, 7.5, 5.5], [0, 2.0, 1.0, 3.0, 4.0]], np.float32)
    for aligned in (True, False):
        out = roi_align(features, rois, (3, 4), 1.0, 2, aligned)
        np.testing.assert_allclose(out.numpy(), 3.25, rtol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_roi_align_unknown_height_width(jit_compile):
    fn = tf.function(
        lambda f, r: roi_align(f, r, (2, 3), 0.5, 2, True),
        input_signature=UNKNOWN_SHAPES,
        jit_compile=jit_compile,
    )
    rng = np.random.default_rng(4)
    features = rng.normal(size=(2, 5, 9, 3)).astype(np.float32)
    rois = random_rois(rng, 6, 2, 5, 9, 0.5)
    expected = torchvision_roi_align(features, rois, (2, 3), 0.5, 2, True)
    np.testing.assert_allclose(fn(features, rois).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_roi_align_rejects_adaptive_sampling():
    with pytest.raises(ValueError, match="sampling_ratio"):
        roi_align(np.zeros((1, 4, 4, 1), np.float32), np.zeros((1, 5)), sampling_ratio=0)
    with pytest.raises(ValueError, match="sampling_ratio"):
        RoIAlign(sampling_ratio=-1)


# --------------------------------------------------------------------------
# Both ops: execution modes, empty input, layers
# --------------------------------------------------------------------------

OPS = {
    "roi_pool": lambda f, r: roi_pool(f, r, (3, 2), 0.5),
    "roi_align": lambda f, r: roi_align(f, r, (3, 2), 0.5, 2, True),
    "roi_align_unaligned": lambda f, r: roi_align(f, r, (3, 2), 0.5, 2, False),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_eager_graph_and_xla_agree(name):
    op = OPS[name]
    graph, xla = tf.function(op), tf.function(op, jit_compile=True)
    rng = np.random.default_rng(5)
    for shape, num in (((2, 9, 13, 4), 7), ((1, 16, 6, 3), 3)):
        features = rng.uniform(-4, 1, shape).astype(np.float32)
        rois = random_rois(rng, num, shape[0], shape[1], shape[2], 0.5)
        eager = op(features, rois).numpy()
        assert eager.shape == (num, 3, 2, shape[-1])
        np.testing.assert_array_equal(graph(features, rois).numpy(), eager)
        if name == "roi_pool":
            np.testing.assert_array_equal(xla(features, rois).numpy(), eager)
        else:  # XLA contracts multiply-adds into FMAs: last-bit differences
            np.testing.assert_allclose(xla(features, rois).numpy(), eager, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(OPS))
def test_no_rois(name):
    op = OPS[name]
    features = np.ones((2, 5, 6, 3), np.float32)
    rois = np.zeros((0, 5), np.float32)
    for fn in (op, tf.function(op), tf.function(op, jit_compile=True)):
        out = fn(features, rois)
        assert tuple(out.shape) == (0, 3, 2, 3)


@pytest.mark.parametrize(
    "layer, op",
    [
        (RoIPool(output_size=(3, 2), spatial_scale=0.25, name="pool"),
         lambda f, r: roi_pool(f, r, (3, 2), 0.25)),
        (RoIAlign(output_size=4, spatial_scale=0.25, sampling_ratio=3, aligned=False, name="align"),
         lambda f, r: roi_align(f, r, (4, 4), 0.25, 3, False)),
    ],
)
def test_layers(layer, op):
    rng = np.random.default_rng(6)
    features = rng.normal(size=(2, 7, 8, 3)).astype(np.float32)
    rois = random_rois(rng, 5, 2, 7, 8, 0.25)

    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    expected = op(features, rois).numpy()
    np.testing.assert_array_equal(layer(features, rois).numpy(), expected)
    np.testing.assert_array_equal(clone(features, rois).numpy(), expected)

    symbolic = layer(keras.KerasTensor((None, None, None, 3)), keras.KerasTensor((None, 5)))
    assert tuple(symbolic.shape) == (None, *layer.output_size, 3)


def test_layer_keeps_roi_precision_under_mixed_precision():
    """Autocasting the RoIs to float16 would move 1000.3 to 1000.5."""
    features = tf.cast(tf.reshape(tf.range(4000.0), (1, 1, 4000, 1)), tf.float16)
    rois = np.array([[0, 1000.3, 0, 1000.3, 0]], np.float32)
    layer = RoIPool(output_size=1, spatial_scale=1.0, dtype="mixed_float16")
    out = layer(features, rois)
    assert out.dtype == tf.float16
    assert float(out[0, 0, 0, 0]) == 1000.0
