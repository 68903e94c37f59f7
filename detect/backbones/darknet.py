"""Darknet-19 (YOLOv2) and Darknet-53 (YOLOv3) in Keras layers.

Both are stacks of ``conv_bn_leaky`` units (Conv -> BatchNorm ->
LeakyReLU(0.1)). Input: [B, H, W, 3] RGB in [0, 1], fed as is, like Darknet.
Every layer has a fixed name, so two builds in one process share weight-file
keys and ``weights=PATH`` round-trips.
"""

import keras
from keras import layers

from detect.backbones.base import (
    FeatureLevel,
    conv_bn_leaky,
    feature_model,
    load_local_weights,
    no_imagenet_weights,
)

# Darknet-19 after the stem, one list per stride: (filters, kernel) units,
# each stage preceded by a 2x2 max pool. The 3x3/1x1 alternation is the
# YOLOv2 paper's Table 6.
DARKNET19_STAGES = (
    ((64, 3),),  # stride 2
    ((128, 3), (64, 1), (128, 3)),  # stride 4
    ((256, 3), (128, 1), (256, 3)),  # stride 8: C3
    ((512, 3), (256, 1), (512, 3), (256, 1), (512, 3)),  # stride 16: C4
    ((1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3)),  # stride 32: C5
)
DARKNET19_STEM = 32

# Darknet-53: residual blocks per stage (YOLOv3 paper, Table 1); stage k
# downsamples to stride 2**k and has 32 * 2**k channels.
DARKNET53_BLOCKS = (1, 2, 8, 8, 4)
DARKNET53_STEM = 32

# Levels are read at the end of the last three stages (strides 8, 16, 32).
LEVEL_NAMES = ("C3", "C4", "C5")


def darknet19_levels():
    """Returns: the static ``FeatureLevel`` list of ``darknet19``."""
    return [
        FeatureLevel(name, stage[-1][0], 2**k) for name, stage, k in zip(LEVEL_NAMES, DARKNET19_STAGES[2:], (3, 4, 5))
    ]


def darknet53_levels():
    """Returns: the static ``FeatureLevel`` list of ``darknet53``."""
    return [FeatureLevel(name, DARKNET53_STEM * 2**k, 2**k) for name, k in zip(LEVEL_NAMES, (3, 4, 5))]


def build_darknet19(input_shape=(None, None, 3), weights=None):
    """Builds Darknet-19 without its classifier (the YOLOv2 backbone).

    Args:
      input_shape: (H, W, 3); H and W may be ``None``.
      weights: ``None`` or a local ``.weights.h5`` file saved from a
        ``darknet19`` backbone.

    Returns:
      ``keras.Model``: [B, H, W, 3] -> {"C3": [B, H/8, W/8, 256],
      "C4": [B, H/16, W/16, 512], "C5": [B, H/32, W/32, 1024]}. C4 is the
      26x26 map (at 416 px) that YOLOv2's passthrough layer reorganises.

    Raises:
      ValueError: ``weights="imagenet"``.
    """
    no_imagenet_weights("darknet19", weights)
    inputs = keras.Input(shape=input_shape, name="image")
    x = conv_bn_leaky(inputs, DARKNET19_STEM, 3, name="darknet19_l1")
    unit = 1
    stage_outputs = []
    for stage_index, stage in enumerate(DARKNET19_STAGES, start=1):
        x = layers.MaxPooling2D(2, strides=2, name=f"darknet19_pool{stage_index}")(x)
        for filters, kernel_size in stage:
            unit += 1
            x = conv_bn_leaky(x, filters, kernel_size, name=f"darknet19_l{unit}")
        stage_outputs.append(x)
    features = dict(zip(LEVEL_NAMES, stage_outputs[2:]))
    model = feature_model(inputs, features, darknet19_levels(), "darknet19")
    return load_local_weights(model, weights)


def _residual_block(x, filters, name):
    """1x1 squeeze to filters / 2, 3x3 back to filters, plus the input.

    Args:
      x: [B, H, W, filters] Keras tensor.

    Returns:
      [B, H, W, filters] Keras tensor.
    """
    y = conv_bn_leaky(x, filters // 2, 1, name=f"{name}_1x1")
    y = conv_bn_leaky(y, filters, 3, name=f"{name}_3x3")
    return layers.Add(name=f"{name}_add")([x, y])


def build_darknet53(input_shape=(None, None, 3), weights=None):
    """Builds Darknet-53 without its classifier (the YOLOv3 backbone).

    Args:
      input_shape: (H, W, 3); H and W may be ``None``.
      weights: ``None`` or a local ``.weights.h5`` file saved from a
        ``darknet53`` backbone.

    Returns:
      ``keras.Model``: [B, H, W, 3] -> {"C3": [B, H/8, W/8, 256],
      "C4": [B, H/16, W/16, 512], "C5": [B, H/32, W/32, 1024]}.

    Raises:
      ValueError: ``weights="imagenet"``.
    """
    no_imagenet_weights("darknet53", weights)
    inputs = keras.Input(shape=input_shape, name="image")
    x = conv_bn_leaky(inputs, DARKNET53_STEM, 3, name="darknet53_stem")
    stage_outputs = []
    for stage, blocks in enumerate(DARKNET53_BLOCKS, start=1):
        filters = DARKNET53_STEM * 2**stage
        x = conv_bn_leaky(x, filters, 3, strides=2, name=f"darknet53_s{stage}_down")
        for block in range(1, blocks + 1):
            x = _residual_block(x, filters, name=f"darknet53_s{stage}_b{block}")
        stage_outputs.append(x)
    features = dict(zip(LEVEL_NAMES, stage_outputs[2:]))
    model = feature_model(inputs, features, darknet53_levels(), "darknet53")
    return load_local_weights(model, weights)
