"""Tests for detect.backbones: registry, level shapes, weights, preprocessing.

Every model is built with weights=None or from a file written here; nothing
is downloaded. Inputs are small (64-128 px, batch 1) to stay fast on CPU.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from detect.backbones import (
    BACKBONES,
    FeatureLevel,
    backbone_levels,
    build_backbone,
    freeze_backbone,
)

EXPECTED_LEVELS = {
    "vgg16": [("C3", 512, 8), ("C4", 512, 16)],
    "resnet50": [("C3", 512, 8), ("C4", 1024, 16), ("C5", 2048, 32)],
    "mobilenet_v2": [("C3", 192, 8), ("C4", 576, 16), ("C5", 1280, 32)],
    "darknet19": [("C3", 256, 8), ("C4", 512, 16), ("C5", 1024, 32)],
    "darknet53": [("C3", 256, 8), ("C4", 512, 16), ("C5", 1024, 32)],
    "tiny": [("C3", 64, 8), ("C4", 128, 16), ("C5", 256, 32)],
}


# Keras's save_weights turns variables into numpy arrays in a way numpy 2
# deprecates; the warning is Keras's, not ours.
KERAS_NUMPY2_WARNING = "ignore:__array__ implementation:DeprecationWarning"


def _images(height, width, seed=0):
    return np.random.default_rng(seed).uniform(size=(1, height, width, 3)).astype("float32")


def _assert_level_shapes(outputs, levels, height, width):
    assert set(outputs) == {level.name for level in levels}
    for level in levels:
        expected = (1, height // level.stride, width // level.stride, level.channels)
        assert tuple(outputs[level.name].shape) == expected, level


def test_registry_names():
    assert set(BACKBONES) == set(EXPECTED_LEVELS)


@pytest.mark.parametrize("name", sorted(EXPECTED_LEVELS))
def test_static_levels(name):
    levels = backbone_levels(name)
    assert all(isinstance(level, FeatureLevel) for level in levels)
    assert [(lv.name, lv.channels, lv.stride) for lv in levels] == EXPECTED_LEVELS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_LEVELS))
def test_forward_shapes_fixed_input(name):
    model = build_backbone(name, weights=None, input_shape=(64, 96, 3))
    assert isinstance(model, keras.Model)
    assert list(model.feature_levels) == backbone_levels(name)
    outputs = model(_images(64, 96), training=False)
    _assert_level_shapes(outputs, model.feature_levels, 64, 96)
    for tensor in outputs.values():
        assert np.all(np.isfinite(tensor.numpy()))


@pytest.mark.parametrize("name", sorted(EXPECTED_LEVELS))
def test_forward_shapes_dynamic_input(name):
    model = build_backbone(name, weights=None, input_shape=(None, None, 3))
    for height, width in ((64, 64), (96, 128)):
        outputs = model(_images(height, width), training=False)
        _assert_level_shapes(outputs, model.feature_levels, height, width)


@pytest.mark.parametrize("name", ["tiny", "darknet19"])
def test_gradients_reach_every_trainable_variable(name):
    model = build_backbone(name, input_shape=(64, 64, 3))
    images = tf.constant(_images(64, 64))
    with tf.GradientTape() as tape:
        outputs = model(images, training=True)
        loss = tf.add_n([tf.reduce_sum(t) for t in outputs.values()])
    grads = tape.gradient(loss, model.trainable_variables)
    assert model.trainable_variables
    missing = [v.path for v, g in zip(model.trainable_variables, grads) if g is None]
    assert not missing
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)


def test_tiny_eager_equals_compiled_across_shapes():
    model = build_backbone("tiny")
    call = lambda x: model(x, training=False)  # noqa: E731
    compiled = tf.function(call, jit_compile=True)
    for height, width in ((64, 64), (96, 128)):
        images = tf.constant(_images(height, width))
        eager, graph = call(images), compiled(images)
        for key in eager:
            np.testing.assert_allclose(graph[key].numpy(), eager[key].numpy(), rtol=1e-4, atol=1e-4)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as error:
        build_backbone("resnet18")
    message = str(error.value)
    assert "resnet18" in message
    for name in BACKBONES:
        assert name in message
    with pytest.raises(ValueError, match="valid names"):
        backbone_levels("resnet18")


@pytest.mark.parametrize("name", ["darknet19", "darknet53", "tiny"])
def test_imagenet_weights_rejected_where_keras_ships_none(name):
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_backbone(name, weights="imagenet")


def test_missing_weights_file_names_path(tmp_path):
    path = tmp_path / "absent.weights.h5"
    with pytest.raises(FileNotFoundError) as error:
        build_backbone("tiny", weights=path)
    assert str(path) in str(error.value)
    assert "weights/" in str(error.value)


def test_unknown_option_rejected():
    with pytest.raises(TypeError):
        build_backbone("darknet19", alpha=0.5)


@pytest.mark.filterwarnings(KERAS_NUMPY2_WARNING)
@pytest.mark.parametrize("as_str", [False, True])
def test_tiny_weights_round_trip(tmp_path, as_str):
    source = build_backbone("tiny", input_shape=(64, 64, 3))
    # Move the BatchNorm statistics off their initial values too.
    source(_images(64, 64, seed=1), training=True)
    for variable in source.non_trainable_variables:
        variable.assign(variable + 0.5)
    path = tmp_path / "tiny.weights.h5"
    source.save_weights(path)
    loaded = build_backbone("tiny", weights=str(path) if as_str else path, input_shape=(None, None, 3))
    fresh = build_backbone("tiny", input_shape=(64, 64, 3))
    images = _images(64, 64, seed=2)
    expected = source(images, training=False)
    got = loaded(images, training=False)
    for key in expected:
        np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy())
    assert not np.allclose(fresh(images)["C5"].numpy(), expected["C5"].numpy())


@pytest.mark.filterwarnings(KERAS_NUMPY2_WARNING)
def test_application_weights_round_trip(tmp_path):
    # A keras.applications backbone loads its own .weights.h5 (the offline
    # route when "imagenet" cannot download).
    source = build_backbone("mobilenet_v2", alpha=0.35, input_shape=(64, 64, 3))
    path = tmp_path / "mnv2.weights.h5"
    source.save_weights(path)
    loaded = build_backbone("mobilenet_v2", alpha=0.35, weights=path)
    images = _images(64, 64, seed=3)
    expected, got = source(images), loaded(images)
    for key in expected:
        np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy())


@pytest.mark.parametrize("alpha", [0.35, 1.4])
def test_mobilenet_v2_width_multiplier(alpha):
    model = build_backbone("mobilenet_v2", alpha=alpha, input_shape=(64, 64, 3))
    assert list(model.feature_levels) == backbone_levels("mobilenet_v2", alpha=alpha)
    _assert_level_shapes(model(_images(64, 64)), model.feature_levels, 64, 64)
    channels = [level.channels for level in model.feature_levels]
    # Widths from Keras's own channel rounding (multiples of 8, x6 expansion).
    assert channels == ({0.35: [96, 192, 1280], 1.4: [288, 816, 1792]}[alpha])


def test_tiny_widths_option():
    widths = (8, 8, 16, 24, 32)
    model = build_backbone("tiny", widths=widths, input_shape=(64, 64, 3))
    assert [level.channels for level in model.feature_levels] == [16, 24, 32]
    _assert_level_shapes(model(_images(64, 64)), model.feature_levels, 64, 64)
    with pytest.raises(ValueError):
        backbone_levels("tiny", widths=(8, 16))


@pytest.mark.parametrize(
    "name, layer, reference",
    [
        ("vgg16", "vgg16_preprocess", keras.applications.vgg16.preprocess_input),
        ("resnet50", "resnet50_preprocess", keras.applications.resnet50.preprocess_input),
        ("mobilenet_v2", "mobilenet_v2_preprocess", keras.applications.mobilenet_v2.preprocess_input),
    ],
)
def test_preprocessing_matches_keras(name, layer, reference):
    model = build_backbone(name, input_shape=(32, 32, 3))
    images = _images(4, 5, seed=4)
    got = keras.ops.convert_to_numpy(model.get_layer(layer)(images))
    expected = reference(images * 255.0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_freeze_backbone_until_layer():
    model = build_backbone("tiny", input_shape=(64, 64, 3))
    freeze_backbone(model, until="tiny_s2_conv_leaky")
    names = [layer.name for layer in model.layers]
    cut = names.index("tiny_s2_conv_leaky")
    assert not any(layer.trainable for layer in model.layers[: cut + 1])
    assert all(layer.trainable for layer in model.layers[cut + 1 :])
    assert not model.get_layer("tiny_s2_conv_bn").trainable
    assert model.get_layer("tiny_s3_down_conv").trainable
    frozen = build_backbone("tiny", input_shape=(64, 64, 3))
    freeze_backbone(frozen)
    assert not frozen.trainable_variables
    with pytest.raises(ValueError, match="no layer"):
        freeze_backbone(model, until="nope")
