"""A small, fast backbone for CPU training and tests (about 1 M parameters).

Five stride-2 stages of Darknet conv-BN-LeakyReLU units; every stage but the
first adds one 3x3 unit at its resolution. Sized for 256-416 px inputs on a
few CPU cores. Input: [B, H, W, 3] RGB in [0, 1], fed as is.
"""

import keras

from detect.backbones.base import (
    FeatureLevel,
    conv_bn_leaky,
    feature_model,
    load_local_weights,
    no_imagenet_weights,
)

# Channels of stages 1..5 (strides 2..32).
TINY_WIDTHS = (16, 32, 64, 128, 256)

# Levels are the outputs of the last three stages.
LEVEL_NAMES = ("C3", "C4", "C5")


def tiny_levels(widths=TINY_WIDTHS):
    """The static ``FeatureLevel`` list of ``tiny``.

    Args:
      widths: five stage widths.

    Returns:
      [C3, C4, C5] at strides 8, 16, 32 with ``widths[2:]`` channels.
    """
    widths = _check_widths(widths)
    return [FeatureLevel(name, width, 2**k) for name, width, k in zip(LEVEL_NAMES, widths[2:], (3, 4, 5))]


def _check_widths(widths):
    widths = tuple(int(w) for w in widths)
    if len(widths) != len(TINY_WIDTHS) or min(widths) < 1:
        raise ValueError(f"tiny needs {len(TINY_WIDTHS)} positive stage widths, got {widths}")
    return widths


def build_tiny(input_shape=(None, None, 3), weights=None, widths=TINY_WIDTHS):
    """Builds the tiny backbone.

    Args:
      input_shape: (H, W, 3); H and W may be ``None``.
      weights: ``None`` or a local ``.weights.h5`` file saved from a ``tiny``
        backbone with the same widths.
      widths: channels of the five stages.

    Returns:
      ``keras.Model``: [B, H, W, 3] -> {"C3": [B, H/8, W/8, widths[2]],
      "C4": [B, H/16, W/16, widths[3]], "C5": [B, H/32, W/32, widths[4]]}.

    Raises:
      ValueError: ``weights="imagenet"`` or bad ``widths``.
    """
    no_imagenet_weights("tiny", weights)
    widths = _check_widths(widths)
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    stage_outputs = []
    for stage, width in enumerate(widths, start=1):
        x = conv_bn_leaky(x, width, 3, strides=2, name=f"tiny_s{stage}_down")
        # Stage 1 runs at half resolution, where an extra unit costs the most.
        if stage > 1:
            x = conv_bn_leaky(x, width, 3, name=f"tiny_s{stage}_conv")
        stage_outputs.append(x)
    features = dict(zip(LEVEL_NAMES, stage_outputs[2:]))
    model = feature_model(inputs, features, tiny_levels(widths), "tiny")
    return load_local_weights(model, weights)
