import numpy as np

from compile_check import assert_same_compiled
from detect.ops import anchor_grid, generate_anchors

# The 9 reference anchors printed by the original Faster R-CNN release
# (py-faster-rcnn, generate_anchors() with its defaults), in its order.
ORIGINAL_ANCHORS = np.array([
    [-84, -40, 99, 55],
    [-176, -88, 191, 103],
    [-360, -184, 375, 199],
    [-56, -56, 71, 71],
    [-120, -120, 135, 135],
    [-248, -248, 263, 263],
    [-36, -80, 51, 95],
    [-80, -168, 95, 183],
    [-168, -344, 183, 359],
], np.float32)


def test_reproduces_original_release_exactly():
    got = generate_anchors().numpy()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, ORIGINAL_ANCHORS)


def test_other_settings_follow_the_recipe():
    # base 16, ratio 1, scale 2: a 32 x 32 square centred on 7.5.
    np.testing.assert_array_equal(generate_anchors(16, (1.0,), (2,)), [[-8, -8, 23, 23]])
    anchors = generate_anchors(8, (0.5, 1.0, 2.0), (1, 2)).numpy()
    assert anchors.shape == (6, 4)
    widths = anchors[:, 2] - anchors[:, 0] + 1
    heights = anchors[:, 3] - anchors[:, 1] + 1
    # round(sqrt(64 / 0.5)) = 11, round(11 * 0.5) = round(5.5) = 6 (half to even).
    np.testing.assert_array_equal(widths, [11, 22, 8, 16, 6, 12])
    # ratio 2: round(sqrt(32)) = 6 wide, 12 high.
    np.testing.assert_array_equal(heights, [6, 12, 8, 16, 12, 24])


def test_grid_matches_conv_head_reshape_order():
    base = generate_anchors().numpy()
    height, width, stride = 3, 5, 16
    grid = anchor_grid(height, width, stride, base).numpy()
    assert grid.shape == (height * width * 9, 4)
    # A conv head's [H, W, A * 4] output reshaped to [H * W * A, 4] puts
    # anchor a of cell (y, x) at row (y * W + x) * A + a.
    for y in range(height):
        for x in range(width):
            for a in range(9):
                row = (y * width + x) * 9 + a
                np.testing.assert_array_equal(grid[row], base[a] + [x * stride, y * stride] * 2)


def test_grid_eager_equals_compiled():
    base = generate_anchors()
    for h, w in ((2, 3), (4, 1)):
        assert_same_compiled(lambda b: anchor_grid(h, w, 16, b), base)
