import numpy as np
import pytest
import tensorflow as tf

from detect.data.transforms import (PAD_VALUE, letterbox, letterbox_geometry, letterbox_tf, map_boxes,
                                    rescale_transform, resize_shortest_side, resize_shortest_side_tf,
                                    shortest_side_geometry, unmap_boxes)


def random_boxes(rng, n, height, width):
    xy = rng.uniform(0, 1, (n, 2)) * [width - 2, height - 2]
    wh = rng.uniform(1, 1, (n, 2)) + rng.uniform(0, 1, (n, 2)) * ([width, height] - xy - 1)
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def test_letterbox_geometry_by_hand():
    # 640 x 480 into 416: scale 0.65 -> 416 x 312, padded 52 rows above and below.
    new_h, new_w, t = letterbox_geometry(480, 640, 416)
    assert (new_h, new_w) == (312, 416)
    np.testing.assert_allclose(t, [0.65, 0.65, 52, 0], rtol=1e-6)
    np.testing.assert_allclose(map_boxes(np.array([[0, 0, 640, 480]], np.float32), t), [[0, 52, 416, 364]],
                               atol=1e-4)
    # 33 wide, 100 high into 64: scale 0.64, width 21.12 rounds to 21, so scale_x is 21/33, not 0.64.
    new_h, new_w, t = letterbox_geometry(100, 33, 64)
    assert (new_h, new_w) == (64, 21)
    np.testing.assert_allclose(t, [0.64, 21 / 33, 0, 21], rtol=1e-6)
    # Odd padding: the extra row goes below/right (pad offset rounds down).
    assert letterbox_geometry(10, 9, 10)[2][3] == 0  # 9 wide -> 9, pad (10 - 9) // 2 = 0


def test_shortest_side_geometry_by_hand():
    new_h, new_w, t = shortest_side_geometry(480, 640, 600, 1000)
    assert (new_h, new_w) == (600, 800)
    np.testing.assert_allclose(t, [1.25, 1.25, 0, 0])
    # A wide image is capped by the longer side: 300 x 1500 -> 200 x 1000.
    new_h, new_w, t = shortest_side_geometry(300, 1500, 600, 1000)
    assert (new_h, new_w) == (200, 1000)
    np.testing.assert_allclose(t, [2 / 3, 2 / 3, 0, 0], rtol=1e-6)


def test_map_then_unmap_is_identity_numpy_and_tf():
    rng = np.random.default_rng(0)
    for height, width in [(480, 640), (100, 33), (777, 501), (5, 900)]:
        boxes = random_boxes(rng, 50, height, width)
        for _, _, t in (letterbox_geometry(height, width, 416), shortest_side_geometry(height, width, 600, 1000)):
            mapped = map_boxes(boxes, t)
            np.testing.assert_allclose(unmap_boxes(mapped, t), boxes, atol=1e-4)
            back = unmap_boxes(tf.constant(mapped), tf.constant(t))
            assert isinstance(back, tf.Tensor)
            np.testing.assert_allclose(back.numpy(), boxes, atol=1e-4)


def test_unmap_batched_and_clipped():
    t = np.array([[0.5, 0.5, 10, 0], [2.0, 1.0, 0, 3]], np.float32)  # [B, 4]
    boxes = np.array([[[0, 10, 20, 30]], [[3, 0, 13, 8]]], np.float32)  # [B, 1, 4]
    expected = np.array([[[0, 0, 40, 40]], [[0, 0, 10, 4]]], np.float32)
    np.testing.assert_allclose(unmap_boxes(boxes, t), expected)
    np.testing.assert_allclose(unmap_boxes(tf.constant(boxes), t).numpy(), expected)
    clipped = unmap_boxes(boxes, t, original_size=np.array([[30, 35], [3, 100]]))
    np.testing.assert_allclose(clipped, [[[0, 0, 35, 30]], [[0, 0, 10, 3]]])


def test_letterbox_moves_pixels_with_boxes():
    image = np.zeros((60, 80, 3), np.uint8)
    image[10:30, 20:60] = 255  # box [20, 10, 60, 30]
    out, boxes, t = letterbox(image, np.array([[20, 10, 60, 30]], np.float32), 40)
    assert out.shape == (40, 40, 3)
    np.testing.assert_allclose(t, [0.5, 0.5, 5, 0])
    np.testing.assert_allclose(boxes, [[10, 10, 30, 20]])
    assert (out[:5] == PAD_VALUE).all() and (out[35:] == PAD_VALUE).all()
    ys, xs = np.nonzero(out[..., 0] > 127)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (10, 10, 30, 20)


def test_shortest_side_resizes_without_padding():
    # Padding to the batch's extent is the pipeline's job; the resize itself is the image only.
    image = np.full((30, 40, 3), 7, np.uint8)
    out, boxes, t = resize_shortest_side(image, np.array([[0, 0, 40, 30]], np.float32), 60, 100)
    assert out.shape == (60, 80, 3) and (out == 7).all()
    np.testing.assert_allclose(t, [2, 2, 0, 0])
    np.testing.assert_allclose(boxes, [[0, 0, 80, 60]])
    # Capped by max_side: 30 x 90 -> 33.33 x 100, rounded to 33 rows, so scale_y = 33 / 30.
    out, boxes, t = resize_shortest_side(np.zeros((30, 90, 3), np.uint8), np.array([[0, 0, 90, 30]]), 60, 100)
    assert out.shape == (33, 100, 3)
    np.testing.assert_allclose(t, [33 / 30, 100 / 90, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(boxes, [[0, 0, 100, 33]], rtol=1e-6)


@pytest.mark.parametrize("height,width", [(480, 640), (100, 33), (777, 501), (416, 416), (1, 300)])
def test_graph_twins_agree_with_numpy(height, width):
    image = np.random.default_rng(1).integers(0, 255, (height, width, 3), np.uint8)
    out, t = letterbox_tf(tf.constant(image, tf.float32) / 255.0, 416)
    ref, _, ref_t = letterbox(image, np.zeros((0, 4), np.float32), 416)
    assert out.shape == (416, 416, 3)
    np.testing.assert_allclose(t.numpy(), ref_t, rtol=1e-6)
    # Same geometry, so the same padding; same bilinear sampling, so nearly the same pixels.
    new_h, new_w, pad_y, pad_x = round(ref_t[0] * height), round(ref_t[1] * width), int(ref_t[2]), int(ref_t[3])
    got = out.numpy() * 255.0
    content = np.zeros((416, 416), bool)
    content[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = True
    np.testing.assert_allclose(got[~content], PAD_VALUE, atol=1e-3)
    assert np.abs(got[content] - ref[content]).mean() < 2.0
    for min_side in (600, tf.constant(600)):  # a Python int, or a per-image pick in the graph
        out, t = resize_shortest_side_tf(tf.constant(image, tf.float32), min_side, 1000)
        ref, _, ref_t = resize_shortest_side(image, np.zeros((0, 4), np.float32), 600, 1000)
        assert out.shape == ref.shape  # unpadded, the same size
        np.testing.assert_allclose(t.numpy(), ref_t, rtol=1e-6)
        assert np.abs(out.numpy() - ref).mean() < 2.0


def test_rescale_transform_keeps_mapping_exact():
    boxes = np.array([[3.0, 4.0, 50.0, 60.0]], np.float32)
    _, _, t = letterbox_geometry(480, 640, 416)
    t2 = rescale_transform(t, 320 / 416)
    np.testing.assert_allclose(map_boxes(boxes, t2), map_boxes(boxes, t) * 320 / 416, rtol=1e-6)
    np.testing.assert_allclose(unmap_boxes(map_boxes(boxes, t) * 320 / 416, t2), boxes, atol=1e-4)


def test_pad_to_multiple_pads_zeros_at_bottom_right_for_images_and_batches():
    from detect.data.transforms import pad_to_multiple_tf

    image = np.arange(5 * 7 * 3, dtype=np.float32).reshape(5, 7, 3) + 1
    out = pad_to_multiple_tf(tf.constant(image), 4).numpy()
    assert out.shape == (8, 8, 3)
    np.testing.assert_array_equal(out[:5, :7], image)
    assert (out[5:] == 0).all() and (out[:, 7:] == 0).all()
    batch = pad_to_multiple_tf(tf.constant(np.stack([image, image])), 8).numpy()
    assert batch.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(batch[1, :5, :7], image)
    assert pad_to_multiple_tf(tf.constant(image[:4, :4]), 4).shape == (4, 4, 3)  # already a multiple
