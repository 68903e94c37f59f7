"""RoI feature extraction: Fast R-CNN RoI max pooling and Mask R-CNN RoIAlign.

Both ops take a batch of feature maps and a flat list of RoIs, each tagged
with the index of the image it belongs to, and return one fixed-size feature
patch per RoI. Shapes are static (no per-RoI loops), so the ops run eagerly,
inside ``tf.function`` and under ``tf.function(jit_compile=True)``, also when H
and W are only known at run time.

``roi_pool`` reproduces the bin arithmetic of the original Caffe
``ROIPoolingLayer`` bit for bit (C ``round``, float32 bin sizes, floor/ceil bin
edges). Rather than looping over bins, it builds a 2-D sparse table (range-max
table) of the feature map once, after which the max over any rectangle is the
max of four table rows, fetched with one ``tf.gather`` each.

The op reads ``x2`` and ``y2`` as Caffe does, as inclusive pixel corners
(``round(x2 * scale)`` is the last cell). Faster R-CNN here passes its
continuous boxes (``x2 = x1 + width``) unchanged, so each RoI reaches one
input pixel further than the original's RoI of the same box; after the
rounding at stride 16, about one RoI edge in 16 then ends one feature cell
further. That is a difference of the model, not of the op, which is exact.

``roi_align`` follows the semantics of torchvision's ``roi_align`` CPU kernel
with a fixed ``sampling_ratio``.
"""

from typing import Sequence, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

_Size = Union[int, Sequence[int]]

# Caffe computes `round(x * scale)` into an int; clipping first keeps absurd
# coordinates from overflowing int32 while every float32 integer stays exact.
_MAX_COORD = float(2**24)


def _pair(value: _Size, name: str) -> Tuple[int, int]:
    """Returns `value` as an (height, width) pair of positive ints."""
    if isinstance(value, (int, np.integer)):
        pair = (int(value), int(value))
    else:
        pair = tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}.")
    return pair


def _check_rois(rois: tf.Tensor) -> None:
    """Raises if `rois` is statically known not to be [K, 5]."""
    shape = rois.shape
    if shape.rank is not None and (shape.rank != 2 or shape[-1] not in (None, 5)):
        raise ValueError(f"rois must have shape [K, 5] (batch index, x1, y1, x2, y2), got {shape}.")


def _c_round(x: tf.Tensor) -> tf.Tensor:
    """C `round()`: halves go away from zero, unlike `tf.round` (to even).

    `floor(|x| + 0.5)` is wrong in float32 (0.49999997 + 0.5 rounds up to 1),
    so the fraction is compared instead; `|x| - floor(|x|)` is exact.

    Args:
        x: float tensor of any shape.

    Returns:
        Tensor like `x` holding integer values.
    """
    magnitude = tf.abs(x)
    whole = tf.floor(magnitude)
    whole += tf.cast(magnitude - whole >= 0.5, x.dtype)
    return tf.where(x < 0, -whole, whole)


# _divide_f32 divides by Python ints below this: a float32 significand (24 bits) shifted left by
# bit_length(d) <= 6 bits stays below 2**30, inside int32.
_MAX_DIVISOR = 63
_SIGNIFICAND_BITS = 23
_EXPONENT_BIAS = 127
# float32 bit fields as int32 arithmetic: x * _MANTISSA_UNIT is x << 23, without a shift op.
_MANTISSA_UNIT = 1 << _SIGNIFICAND_BITS
_POWERS_OF_TWO = np.array([1 << i for i in range(31)], np.int32)


def _divide_f32(numerator: tf.Tensor, denominator: int) -> tf.Tensor:
    """Correctly rounded float32 `numerator / denominator`, as C computes it.

    Grappler and XLA rewrite division by a constant into multiplication by its
    reciprocal, which is off by one ulp for many quotients and moves floor/ceil
    bin edges. So the quotient is rounded in int32 arithmetic, which no
    rewrite changes and which TFLite runs with builtin ops (float64 is not one):

    |n| = A * 2**e with A the 24-bit significand (implicit bit included). With
    s = bit_length(d), Q, R = divmod(A * 2**s, d) puts A * 2**s / d in
    [2**23, 2**25): Q is the quotient's significand with one extra bit when
    Q >= 2**24, and R says exactly where the true value lies between Q and
    Q + 1. Rounding Q (or Q // 2) half to even on that is IEEE rounding of
    the exact quotient; the result's bits are then M + (E + 149) * 2**23 for
    the value M * 2**E, M in [2**23, 2**24] (M = 2**24 carries into the
    exponent by itself).

    Exact whenever |n| and the quotient are normal floats (|quotient| >=
    2**-126); zeros, subnormals, infinities and NaN take `n * (1 / d)`
    (zeros and non-finite values exactly; subnormals as the platform's
    multiply gives them, which TensorFlow's CPU kernels flush to zero).

    Args:
        numerator: float32 tensor of any shape.
        denominator: Python int in [1, _MAX_DIVISOR].

    Returns:
        float32 tensor like `numerator`.
    """
    d = int(denominator)
    if not 1 <= d <= _MAX_DIVISOR:
        raise ValueError(f"_divide_f32 divides by an int in [1, {_MAX_DIVISOR}], got {denominator!r}")
    numerator = tf.convert_to_tensor(numerator, tf.float32)
    magnitude = tf.abs(numerator)
    bits = tf.bitcast(magnitude, tf.int32)
    exponent = tf.bitwise.right_shift(bits, _SIGNIFICAND_BITS)  # biased; the sign bit is 0
    significand = bits - (exponent - 1) * _MANTISSA_UNIT  # A in [2**23, 2**24) when normal
    shift = d.bit_length()
    scaled = significand * (1 << shift)
    quotient = tf.math.floordiv(scaled, d)
    remainder = scaled - quotient * d
    wide = quotient >= (1 << (_SIGNIFICAND_BITS + 1))
    half = tf.math.floordiv(quotient, 2)
    kept = tf.where(wide, half, quotient)
    # Twice the discarded fraction, in units of 1/d of the kept last place: compared with d below.
    twice_fraction = tf.where(wide, (quotient - 2 * half) * d + remainder, 2 * remainder)
    odd = kept - 2 * tf.math.floordiv(kept, 2)
    round_up = (twice_fraction > d) | ((twice_fraction == d) & (odd == 1))
    kept += tf.cast(round_up, tf.int32)
    # The value is kept * 2**E with E = exponent - 150 - shift (+ 1 when wide).
    exponent_out = exponent - shift + tf.cast(wide, tf.int32) - 1  # E + 149
    rounded = tf.bitcast(kept + exponent_out * _MANTISSA_UNIT, tf.float32)
    normal = (exponent >= 1) & (exponent <= 2 * _EXPONENT_BIAS) & (exponent_out >= 0)
    fallback = magnitude * np.float32(1.0 / d)
    quotient_f32 = tf.where(normal, rounded, fallback)
    return tf.where(numerator < 0, -quotient_f32, quotient_f32)


def _power_of_two(exponent: tf.Tensor) -> tf.Tensor:
    """int32 2**exponent for int32 `exponent` in [0, 31), looked up: TFLite has no builtin left shift."""
    return tf.gather(_POWERS_OF_TWO, exponent)


def _floor_log2(n: tf.Tensor) -> tf.Tensor:
    """Exact floor(log2(n)) of int32 `n` in [1, 2**24).

    Reads the exponent field of float32(n), which is exact because such
    integers convert to float32 without rounding (a float `log` is not exact
    at powers of two).

    Args:
        n: int32 tensor of any shape, values in [1, 2**24).

    Returns:
        int32 tensor like `n`.
    """
    bits = tf.bitcast(tf.cast(n, tf.float32), tf.int32)
    return tf.bitwise.right_shift(bits, 23) - 127


def _batch_indices(rois: tf.Tensor, batch_size: tf.Tensor) -> tf.Tensor:
    """Image index of each RoI, clipped into [0, B) so gathers stay in range.

    Args:
        rois: [K, 5] float32.
        batch_size: int32 scalar B.

    Returns:
        [K] int32.
    """
    return tf.clip_by_value(tf.cast(rois[:, 0], tf.int32), 0, batch_size - 1)


def _dim(x: tf.Tensor, axis: int) -> Union[int, tf.Tensor]:
    """Static size of `x` along `axis` when known, else the dynamic one."""
    static = x.shape[axis]
    return static if static is not None else tf.shape(x)[axis]


def _compact_range_max_table(features: tf.Tensor, height: int, width: int):
    """2-D sparse table of a map whose H and W are known at trace time.

    Level (i, j) holds the max over every 2**i x 2**j window that fits in the
    map, so it is [B, H - 2**i + 1, W - 2**j + 1, C]; levels are flattened and
    concatenated in row-major (i, j) order.

    Args:
        features: [B, H, W, C].
        height: H.
        width: W.

    Returns:
        (table, level_h, level_w, level_offset): table [N, C] where row
        level_offset[i * Lw + j] + (b * level_h[i] + y) * level_w[j] + x is the
        max of features[b, y:y + 2**i, x:x + 2**j]; level_h [Lh], level_w
        [Lw] and level_offset [Lh * Lw] are int32, Lh = floor(log2(H)) + 1,
        Lw = floor(log2(W)) + 1.
    """
    num_h, num_w = height.bit_length(), width.bit_length()
    channels = _dim(features, 3)
    levels = []
    rows = features
    for i in range(num_h):
        if i:
            # 2**i rows = two adjacent 2**(i - 1)-row spans of the level below.
            shift = 1 << (i - 1)
            rows = tf.maximum(rows[:, :-shift], rows[:, shift:])
        cols = rows
        for j in range(num_w):
            if j:
                shift = 1 << (j - 1)
                cols = tf.maximum(cols[:, :, :-shift], cols[:, :, shift:])
            levels.append(tf.reshape(cols, [-1, channels]))

    level_h = np.array([height - (1 << i) + 1 for i in range(num_h)], np.int32)
    level_w = np.array([width - (1 << j) + 1 for j in range(num_w)], np.int32)
    cells = np.outer(level_h, level_w).reshape(-1)
    cells_before = np.concatenate([[0], np.cumsum(cells)[:-1]]).astype(np.int32)
    level_offset = tf.shape(features)[0] * cells_before
    return tf.concat(levels, axis=0), tf.constant(level_h), tf.constant(level_w), level_offset


def _padded_range_max_table(features: tf.Tensor):
    """The same sparse table when H or W is only known at run time.

    The number of levels is a runtime value, so the doubling runs in
    `tf.while_loop`s. Every level keeps the full [B, H, W, C] shape (static
    loop shapes, which XLA needs when it compiles for concrete sizes): level
    i + 1 at y is max(level i at y, level i at y + 2**i), reading a clamped
    row past the end. Such entries are garbage, but a window that fits the
    map only reads windows that fit, so lookups never touch them.

    Args:
        features: [B, H, W, C].

    Returns:
        (table, level_h, level_w, level_offset) as in
        `_compact_range_max_table`, with level_h = H and level_w = W for all
        levels.
    """
    shape = tf.shape(features)
    batch, height, width = shape[0], shape[1], shape[2]
    channels = _dim(features, 3)
    num_h = _floor_log2(height) + 1
    num_w = _floor_log2(width) + 1

    def double(x, axis, size, shift):
        partner = tf.minimum(tf.range(size) + shift, size - 1)
        return tf.maximum(x, tf.gather(x, partner, axis=axis))

    levels = tf.TensorArray(features.dtype, size=num_h * num_w, element_shape=features.shape)

    def row_body(i, rows, levels):
        def col_body(j, cols, levels):
            levels = levels.write(i * num_w + j, cols)
            return j + 1, double(cols, 2, width, _power_of_two(j)), levels

        _, _, levels = tf.while_loop(
            lambda j, cols, levels: j < num_w, col_body, (tf.constant(0), rows, levels)
        )
        return i + 1, double(rows, 1, height, _power_of_two(i)), levels

    _, _, levels = tf.while_loop(
        lambda i, rows, levels: i < num_h, row_body, (tf.constant(0), features, levels)
    )
    table = tf.reshape(levels.stack(), [-1, channels])
    level_h = tf.fill([num_h], height)
    level_w = tf.fill([num_w], width)
    level_offset = tf.range(num_h * num_w) * (batch * height * width)
    return table, level_h, level_w, level_offset


def _caffe_bin_edges(
    start: tf.Tensor, end: tf.Tensor, pooled: int, size
) -> Tuple[tf.Tensor, tf.Tensor]:
    """Caffe RoI pooling bin edges along one axis.

    Args:
        start: [K] int32, rounded RoI start on the feature map.
        end: [K] int32, rounded RoI end (inclusive).
        pooled: number of bins.
        size: feature map length along this axis.

    Returns:
        (lo, hi): [K, pooled] int32 each, bin k covers [lo, hi), clamped to
        [0, size]; empty when hi <= lo.
    """
    length = tf.maximum(end - start + 1, 1)
    bin_size = _divide_f32(tf.cast(length, tf.float32), pooled)[:, None]
    index = tf.range(pooled, dtype=tf.float32)[None, :]
    # float32 products as in Caffe; floor/ceil of them set the overlap pattern.
    lo = tf.cast(tf.floor(index * bin_size), tf.int32) + start[:, None]
    hi = tf.cast(tf.math.ceil((index + 1.0) * bin_size), tf.int32) + start[:, None]
    return tf.clip_by_value(lo, 0, size), tf.clip_by_value(hi, 0, size)


def roi_pool(
    features,
    rois,
    output_size: _Size = (7, 7),
    spatial_scale: float = 1.0 / 16.0,
) -> tf.Tensor:
    """Fast R-CNN RoI max pooling, bit-exact with Caffe's ROIPoolingLayer.

    Each RoI is scaled to the feature map and C-rounded to integer cells
    [round(x1 * s), round(x2 * s)] (inclusive, at least one cell), cut into
    `output_size` bins with float32 floor/ceil edges (bins may overlap), and
    each bin is max-pooled. Bins that fall entirely outside the map give 0.
    Batch indices are truncated to int and clipped into [0, B).

    The gradient flows to one maximal cell per bin (Caffe's argmax, up to
    ties). Memory: the sparse table is a little less than
    (floor(log2(H)) + 1) * (floor(log2(W)) + 1) times the feature map (22x
    for 38 x 50); exactly that when H or W is unknown at trace time.

    Args:
        features: [B, H, W, C] float feature maps.
        rois: [K, 5] (batch index, x1, y1, x2, y2), xyxy in input-image
            pixels. Cast to float32.
        output_size: int or (ph, pw), bins per RoI.
        spatial_scale: feature-map cells per image pixel (1/stride).

    Returns:
        [K, ph, pw, C] with the dtype of `features`.
    """
    pooled_h, pooled_w = _pair(output_size, "output_size")
    features = tf.convert_to_tensor(features)
    rois = tf.cast(tf.convert_to_tensor(rois), tf.float32)
    _check_rois(rois)
    if features.shape.rank not in (None, 4):
        raise ValueError(f"features must have shape [B, H, W, C], got {features.shape}.")

    batch = tf.shape(features)[0]
    height, width = _dim(features, 1), _dim(features, 2)
    if isinstance(height, int) and isinstance(width, int):
        table, level_h, level_w, level_offset = _compact_range_max_table(features, height, width)
    else:
        table, level_h, level_w, level_offset = _padded_range_max_table(features)
    num_w = tf.size(level_w)

    image = _batch_indices(rois, batch)
    scaled = _c_round(rois[:, 1:] * np.float32(spatial_scale))
    x1, y1, x2, y2 = tf.unstack(
        tf.cast(tf.clip_by_value(scaled, -_MAX_COORD, _MAX_COORD), tf.int32), 4, axis=1
    )
    y_lo, y_hi = _caffe_bin_edges(y1, y2, pooled_h, height)  # [K, ph]
    x_lo, x_hi = _caffe_bin_edges(x1, x2, pooled_w, width)  # [K, pw]

    empty = (y_hi <= y_lo)[:, :, None] | (x_hi <= x_lo)[:, None, :]  # [K, ph, pw]
    # Empty bins still index the table, so point them at a valid cell.
    y_lo, y_hi = tf.where(y_hi > y_lo, y_lo, 0), tf.where(y_hi > y_lo, y_hi, 1)
    x_lo, x_hi = tf.where(x_hi > x_lo, x_lo, 0), tf.where(x_hi > x_lo, x_hi, 1)

    # [lo, hi) is the union of the two (overlapping) power-of-two spans that
    # start at lo and end at hi.
    level_y = _floor_log2(y_hi - y_lo)
    level_x = _floor_log2(x_hi - x_lo)
    y_end = y_hi - _power_of_two(level_y)
    x_end = x_hi - _power_of_two(level_x)
    rows_in_level = tf.gather(level_h, level_y)  # [K, ph]
    cols_in_level = tf.gather(level_w, level_x)[:, None, :]  # [K, 1, pw]
    offset = tf.gather(level_offset, level_y[:, :, None] * num_w + level_x[:, None, :])

    def lookup(y, x):
        row = (image[:, None] * rows_in_level + y)[:, :, None]
        return tf.gather(table, offset + row * cols_in_level + x[:, None, :])

    pooled = tf.maximum(
        tf.maximum(lookup(y_lo, x_lo), lookup(y_lo, x_end)),
        tf.maximum(lookup(y_end, x_lo), lookup(y_end, x_end)),
    )
    return tf.where(empty[..., None], tf.zeros([], pooled.dtype), pooled)


def _check_sampling_ratio(sampling_ratio: int) -> int:
    """Returns `sampling_ratio` as an int, raising unless it is positive."""
    if int(sampling_ratio) <= 0:
        raise ValueError(
            "sampling_ratio must be > 0. torchvision's adaptive mode "
            "(sampling_ratio <= 0 -> ceil(roi_size / output_size) samples per bin) "
            "gives each RoI its own number of samples, which has no static shape "
            f"and cannot compile with XLA; got sampling_ratio={sampling_ratio}."
        )
    return int(sampling_ratio)


def _bilinear_axis(coord: tf.Tensor, size) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """torchvision's bilinear_interpolate along one axis.

    Args:
        coord: [...] float32 sample coordinates on the feature map.
        size: feature map length along this axis.

    Returns:
        (low, high, w_low, w_high): int32 neighbour indices and float32
        weights, each shaped like `coord`. Samples beyond [-1, size] get zero
        weights (torchvision drops the whole sample).
    """
    size_f = tf.cast(size, tf.float32)
    inside = tf.cast((coord >= -1.0) & (coord <= size_f), tf.float32)
    # Clip before the int cast so dropped samples still index in range.
    coord = tf.clip_by_value(coord, 0.0, size_f)
    low = tf.cast(tf.floor(coord), tf.int32)
    at_edge = low >= size - 1
    low = tf.where(at_edge, size - 1, low)
    high = tf.where(at_edge, low, low + 1)
    coord = tf.where(at_edge, tf.cast(low, tf.float32), coord)
    frac = coord - tf.cast(low, tf.float32)
    return low, high, (1.0 - frac) * inside, frac * inside


def _sample_coords(
    start: tf.Tensor, bin_size: tf.Tensor, pooled: int, sampling_ratio: int
) -> tf.Tensor:
    """Sample positions start + p * bin + (s + 0.5) * bin / ratio.

    Args:
        start: [K] float32.
        bin_size: [K] float32.
        pooled: number of bins.
        sampling_ratio: samples per bin along this axis.

    Returns:
        [K, pooled, sampling_ratio] float32.
    """
    bins = tf.range(pooled, dtype=tf.float32)[None, :]
    steps = tf.range(sampling_ratio, dtype=tf.float32)[None, None, :] + 0.5
    bin_start = start[:, None] + bins * bin_size[:, None]  # [K, pooled]
    offsets = _divide_f32(steps * bin_size[:, None, None], sampling_ratio)  # [K, 1, S]
    # Two separate adds, in torchvision's order; the expand_dims between them
    # stops Grappler from regrouping a broadcasting add chain.
    return bin_start[:, :, None] + offsets


def roi_align(
    features,
    rois,
    output_size: _Size = (7, 7),
    spatial_scale: float = 1.0 / 16.0,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> tf.Tensor:
    """Mask R-CNN RoIAlign with torchvision `roi_align` semantics.

    Each bin averages `sampling_ratio` x `sampling_ratio` bilinear samples on
    a regular grid. With `aligned=True` the scaled box is shifted by -0.5 so
    that pixel centres line up; with `aligned=False` (the original Mask R-CNN)
    RoIs are forced to be at least 1x1 cells. Samples farther than one cell
    outside the map contribute 0. Batch indices are truncated to int and
    clipped into [0, B).

    Args:
        features: [B, H, W, C] float feature maps.
        rois: [K, 5] (batch index, x1, y1, x2, y2), xyxy in input-image
            pixels. Cast to float32.
        output_size: int or (ph, pw), bins per RoI.
        spatial_scale: feature-map cells per image pixel (1/stride).
        sampling_ratio: samples per bin along each axis; must be > 0.
        aligned: subtract half a cell from the scaled coordinates.

    Returns:
        [K, ph, pw, C] with the dtype of `features`.

    Raises:
        ValueError: if `sampling_ratio` <= 0.
    """
    pooled_h, pooled_w = _pair(output_size, "output_size")
    sampling_ratio = _check_sampling_ratio(sampling_ratio)
    features = tf.convert_to_tensor(features)
    rois = tf.cast(tf.convert_to_tensor(rois), tf.float32)
    _check_rois(rois)
    if features.shape.rank not in (None, 4):
        raise ValueError(f"features must have shape [B, H, W, C], got {features.shape}.")

    batch = tf.shape(features)[0]
    height, width = _dim(features, 1), _dim(features, 2)
    channels = _dim(features, 3)

    image = _batch_indices(rois, batch)
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = tf.unstack(rois[:, 1:] * np.float32(spatial_scale) - offset, 4, axis=1)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        roi_w, roi_h = tf.maximum(roi_w, 1.0), tf.maximum(roi_h, 1.0)
    ys = _sample_coords(y1, _divide_f32(roi_h, pooled_h), pooled_h, sampling_ratio)  # [K, ph, S]
    xs = _sample_coords(x1, _divide_f32(roi_w, pooled_w), pooled_w, sampling_ratio)  # [K, pw, S]
    y_low, y_high, wy_low, wy_high = _bilinear_axis(ys, height)
    x_low, x_high, wx_low, wx_high = _bilinear_axis(xs, width)

    # Taps: 2 neighbours per sample, S samples per bin, along each axis.
    rows = tf.concat([y_low, y_high], axis=-1)  # [K, ph, 2S]
    row_w = tf.concat([wy_low, wy_high], axis=-1)
    cols = tf.concat([x_low, x_high], axis=-1)  # [K, pw, 2S]
    col_w = tf.concat([wx_low, wx_high], axis=-1)
    rows = (image[:, None, None] * height + rows) * width
    num_taps = (2 * sampling_ratio) ** 2
    tap_shape = tf.stack([tf.shape(rois)[0], pooled_h, pooled_w, num_taps])
    index = tf.reshape(rows[:, :, None, :, None] + cols[:, None, :, None, :], tap_shape)
    weight = tf.reshape(row_w[:, :, None, :, None] * col_w[:, None, :, None, :], tap_shape)
    index = tf.transpose(index, [3, 0, 1, 2])  # [T, K, ph, pw]
    weight = tf.cast(tf.transpose(weight, [3, 0, 1, 2]), features.dtype)

    flat = tf.reshape(features, [-1, channels])

    def add_tap(t, total):
        return t + 1, total + tf.gather(flat, index[t]) * weight[t][..., None]

    # A loop rather than unrolled adds: Grappler merges an unrolled chain
    # into one AddN that keeps all T gathered [K, ph, pw, C] tensors alive.
    # One iteration at a time keeps two.
    output_shape = tf.concat([tap_shape[:3], tf.shape(flat)[1:]], axis=0)
    total = tf.zeros(output_shape, features.dtype)
    _, total = tf.while_loop(
        lambda t, total: t < num_taps,
        add_tap,
        (tf.constant(0), total),
        parallel_iterations=1,
    )
    return total / tf.cast(sampling_ratio * sampling_ratio, total.dtype)


class RoIPool(keras.layers.Layer):
    """Keras layer around `roi_pool`: call(features [B, H, W, C], rois [K, 5]).

    Inputs are not autocast, so RoI coordinates keep float32 precision under
    a mixed-precision policy; the output has the dtype of `features`.

    Args:
        output_size: int or (ph, pw), bins per RoI.
        spatial_scale: feature-map cells per image pixel (1/stride).
        **kwargs: `keras.layers.Layer` arguments (name, dtype, ...).
    """

    def __init__(self, output_size: _Size = (7, 7), spatial_scale: float = 1.0 / 16.0, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.output_size = _pair(output_size, "output_size")
        self.spatial_scale = float(spatial_scale)

    def call(self, features, rois):
        """Returns [K, ph, pw, C] pooled features."""
        return roi_pool(features, rois, self.output_size, self.spatial_scale)

    def compute_output_shape(self, features_shape, rois_shape):
        return (rois_shape[0], *self.output_size, features_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(output_size=list(self.output_size), spatial_scale=self.spatial_scale)
        return config


class RoIAlign(keras.layers.Layer):
    """Keras layer around `roi_align`: call(features [B, H, W, C], rois [K, 5]).

    Inputs are not autocast, so RoI coordinates keep float32 precision under
    a mixed-precision policy; the output has the dtype of `features`.

    Args:
        output_size: int or (ph, pw), bins per RoI.
        spatial_scale: feature-map cells per image pixel (1/stride).
        sampling_ratio: samples per bin along each axis; must be > 0.
        aligned: subtract half a cell from the scaled coordinates.
        **kwargs: `keras.layers.Layer` arguments (name, dtype, ...).
    """

    def __init__(
        self,
        output_size: _Size = (7, 7),
        spatial_scale: float = 1.0 / 16.0,
        sampling_ratio: int = 2,
        aligned: bool = True,
        **kwargs,
    ):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.output_size = _pair(output_size, "output_size")
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = _check_sampling_ratio(sampling_ratio)
        self.aligned = bool(aligned)

    def call(self, features, rois):
        """Returns [K, ph, pw, C] aligned features."""
        return roi_align(
            features,
            rois,
            self.output_size,
            self.spatial_scale,
            self.sampling_ratio,
            self.aligned,
        )

    def compute_output_shape(self, features_shape, rois_shape):
        return (rois_shape[0], *self.output_size, features_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            output_size=list(self.output_size),
            spatial_scale=self.spatial_scale,
            sampling_ratio=self.sampling_ratio,
            aligned=self.aligned,
        )
        return config
