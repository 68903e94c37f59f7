import dataclasses

import albumentations as A
import numpy as np
import pytest

from detect.data.augment import AugmentConfig, ThreadLocalAugmenter, augment, build_augmenter

# Solid rectangles of distinct colours on black; fills (114 grey) and black differ from all of them.
COLOURS = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)], np.uint8)
RECTS = np.array([[20, 30, 80, 90], [150, 40, 260, 120], [100, 130, 180, 190], [200, 150, 290, 195]],
                 np.float32)

GEOMETRIC = AugmentConfig(crop_prob=0.5, affine_prob=1.0, scale=0.5, translate=0.2, flip_prob=0.5,
                          hsv_prob=0.0, brightness_contrast_prob=0.0, blur_prob=0.0)


def rectangles_image(height=200, width=300):
    image = np.zeros((height, width, 3), np.uint8)
    for (x1, y1, x2, y2), colour in zip(RECTS.astype(int), COLOURS):
        image[y1:y2, x1:x2] = colour
    return image


def pixel_box(image, colour):
    """Box around the pixels nearer to ``colour`` than to anything else (half-way blends count)."""
    mask = np.abs(image.astype(np.int32) - colour.astype(np.int32)).max(-1) < 128
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def check_boxes_match_pixels(image, boxes, classes, tolerance=2.0):
    for box, k in zip(boxes, classes):
        found = pixel_box(image, COLOURS[k])
        assert found is not None, f"class {k}: box {box} but no pixels"
        np.testing.assert_allclose(box, found, atol=tolerance, err_msg=f"class {k}")


def test_config_validation():
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentConfig(flip_prob=1.5)
    with pytest.raises(ValueError, match="scale"):
        AugmentConfig(scale=1.0)
    with pytest.raises(ValueError, match="blur_max_kernel"):
        AugmentConfig(blur_max_kernel=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        AugmentConfig().flip_prob = 0.0


def test_builder_follows_config():
    names = [type(t).__name__ for t in build_augmenter(AugmentConfig()).transforms]
    assert names == ["BBoxSafeRandomCrop", "Affine", "HorizontalFlip", "HueSaturationValue",
                     "RandomBrightnessContrast", "Blur"]
    names = [type(t).__name__ for t in build_augmenter(GEOMETRIC).transforms]
    assert names == ["BBoxSafeRandomCrop", "Affine", "HorizontalFlip"]
    params = build_augmenter(AugmentConfig(min_visibility=0.4)).processors["bboxes"].params
    assert params.format == "pascal_voc" and params.min_visibility == 0.4
    assert list(params.label_fields) == ["classes", "ignore"]


def test_flip_moves_boxes_exactly():
    cfg = AugmentConfig(crop_prob=0, affine_prob=0, flip_prob=1.0, hsv_prob=0, brightness_contrast_prob=0,
                        blur_prob=0)
    image = rectangles_image()
    out, boxes, classes, ignore = augment(build_augmenter(cfg), image, RECTS, np.arange(4, dtype=np.int32),
                                          np.array([False, True, False, True]))
    expected = RECTS.copy()
    expected[:, [0, 2]] = 300 - RECTS[:, [2, 0]]
    np.testing.assert_allclose(boxes, expected, atol=1e-3)  # albumentations round-trips through [0, 1]
    np.testing.assert_array_equal(ignore, [False, True, False, True])
    check_boxes_match_pixels(out, boxes, classes, tolerance=1e-3)


def test_geometric_augmentation_keeps_boxes_on_their_pixels():
    image = rectangles_image()
    augmenter = ThreadLocalAugmenter(GEOMETRIC)
    kept = 0
    for seed in range(40):
        out, boxes, classes, ignore = augmenter(image, RECTS, np.arange(4, dtype=np.int32),
                                                np.zeros(4, bool), seed)
        assert out.dtype == np.uint8 and out.ndim == 3
        assert len(boxes) == len(classes) == len(ignore)
        check_boxes_match_pixels(out, boxes, classes)
        kept += len(boxes)
    assert kept > 40 * 2  # most boxes survive (the test would pass vacuously otherwise)


def test_full_augmentation_keeps_geometry_and_is_reproducible():
    image = rectangles_image()
    augmenter = ThreadLocalAugmenter(AugmentConfig())
    for seed in range(10):
        a = augmenter(image, RECTS, np.arange(4, dtype=np.int32), np.zeros(4, bool), seed)
        b = augmenter(image, RECTS, np.arange(4, dtype=np.int32), np.zeros(4, bool), seed)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
        out, boxes = a[0], a[1]
        assert ((boxes[:, 2:] > boxes[:, :2]).all() and (boxes >= 0).all()
                and (boxes[:, [2, 3]] <= [out.shape[1], out.shape[0]]).all())


def test_boxes_mostly_outside_are_dropped_with_labels():
    # Shift everything right by 40% of the width: the rightmost rectangles leave the image.
    cfg = AugmentConfig(crop_prob=0, affine_prob=1.0, scale=0.0, translate=0.4, flip_prob=0, hsv_prob=0,
                        brightness_contrast_prob=0, blur_prob=0, min_visibility=0.5)
    compose = A.Compose([A.Affine(translate_percent={"x": 0.4, "y": 0.0}, fill=114, p=1.0)],
                        bbox_params=build_augmenter(cfg).processors["bboxes"].params)
    out, boxes, classes, ignore = augment(compose, rectangles_image(), RECTS, np.arange(4, dtype=np.int32),
                                          np.array([True, False, False, False]))
    assert sorted(classes.tolist()) == [0, 2]  # x1 >= 150 moved out by 120 px: less than half visible
    assert ignore[classes.tolist().index(0)]
    check_boxes_match_pixels(out, boxes, classes, tolerance=1.0)


def test_empty_boxes():
    out, boxes, classes, ignore = ThreadLocalAugmenter(AugmentConfig())(
        rectangles_image(), np.zeros((0, 4), np.float32), np.zeros(0, np.int32), np.zeros(0, bool), 3)
    assert boxes.shape == (0, 4) and classes.shape == (0,) and ignore.shape == (0,)
