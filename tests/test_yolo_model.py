"""Every backbone with the YOLO head: a forward pass and a training step."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from detect.backbones import BACKBONES, backbone_levels
from detect.yolo.config import YoloConfig
from detect.yolo.model import YoloTask

SMALL_ANCHORS = ((8, 8), (12, 16), (16, 12), (20, 24), (28, 20), (24, 32), (36, 36), (48, 40), (56, 56))


def pairings():
    for name in BACKBONES:
        levels = {level.name for level in backbone_levels(name)}
        yield name, "v2"
        if {"C3", "C4", "C5"} <= levels:
            yield name, "v3"


def batch_for(size):
    return {
        "image": np.random.default_rng(0).random((2, size, size, 3)).astype(np.float32),
        "boxes": np.array([[[4, 4, 30, 40], [10, 20, 60, 50]], [[0, 0, 0, 0], [30, 2, 62, 22]]], np.float32),
        "classes": np.array([[0, 2], [-1, 1]], np.int32),
    }


@pytest.mark.parametrize("backbone,version", list(pairings()))
def test_forward_and_training_step(backbone, version):
    config = YoloConfig(version=version, backbone=backbone, head_width=32,
                        anchors=SMALL_ANCHORS if version == "v3" else SMALL_ANCHORS[:5])
    detector = YoloTask(3, config, input_shape=(None, None, 3))
    size = 64
    outputs = detector.model(batch_for(size)["image"], training=False)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    for raw, stride, anchors in zip(outputs, detector.strides, detector.anchors):
        assert tuple(raw.shape) == (2, size // stride, size // stride, len(anchors), 5 + 3)
    optimizer = keras.optimizers.SGD(1e-3)
    batch = batch_for(size)
    with tf.GradientTape() as tape:
        losses = detector.losses(detector.model(batch["image"], training=True), batch)
    grads = tape.gradient(losses["loss"], detector.model.trainable_variables)
    assert all(g is not None for g in grads)
    before = [v.numpy().copy() for v in detector.model.trainable_variables[-2:]]
    optimizer.apply_gradients(zip(grads, detector.model.trainable_variables))
    after = [v.numpy() for v in detector.model.trainable_variables[-2:]]
    assert any(not np.array_equal(a, b) for a, b in zip(after, before))
    assert np.isfinite(float(losses["loss"]))
    image_hw = np.array([[size, size]] * 2, np.int32)
    dets = detector.postprocess(detector.forward({"image": batch["image"], "image_hw": image_hw}), image_hw)
    assert dets["boxes"].shape == (2, 100, 4)


def test_v3_needs_three_levels():
    with pytest.raises(ValueError, match="C3, C4, C5"):
        YoloTask(3, YoloConfig(version="v3", backbone="vgg16"))


def test_decoding_formula():
    detector = YoloTask(2, YoloConfig(version="v2", backbone="tiny", head_width=16,
                                          anchors=((10, 20), (30, 40))), input_shape=(64, 64, 3))
    raw = np.zeros((1, 2, 2, 2, 7), np.float32)
    raw[0, 1, 0, 1] = [0.5, -1.0, 0.2, -0.3, 2.0, 1.0, -1.0]  # cell y=1, x=0, anchor 1
    boxes, scores = detector.decode([raw])
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    cx, cy = (sig(0.5) + 0) * 32, (sig(-1.0) + 1) * 32
    w, h = 30 * np.exp(0.2), 40 * np.exp(-0.3)
    index = (1 * 2 + 0) * 2 + 1  # row-major cells, then anchors
    np.testing.assert_allclose(boxes[0, index], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], rtol=1e-5)
    np.testing.assert_allclose(scores[0, index], sig(2.0) * sig(np.array([1.0, -1.0])), rtol=1e-5)
