"""MobileNetV2 (Sandler et al.) as a backbone with C3, C4, C5.

Levels are the expansion activations in front of the stride-2 depthwise
convolutions (the widest tensors at each resolution), as the SSDLite and
DeepLabV3+ MobileNetV2 feature extractors use them:

  C3 = block_6_expand_relu (stride 8), C4 = block_13_expand_relu (stride 16),
  C5 = out_relu (stride 32).

Input: [B, H, W, 3] RGB in [0, 1], rescaled to [-1, 1] inside the model.
"""

import keras

from detect.backbones.base import FeatureLevel, application_backbone

MOBILENET_V2_LAYERS = {"C3": "block_6_expand_relu", "C4": "block_13_expand_relu", "C5": "out_relu"}

# Inverted-residual expansion factor, and the block widths feeding blocks 6
# and 13 (before the width multiplier).
EXPANSION = 6
BLOCK5_FILTERS = 32
BLOCK12_FILTERS = 96
LAST_FILTERS = 1280


def _make_divisible(value, divisor=8):
    """Keras's channel rounding for MobileNetV2: nearest multiple, >= 90%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def mobilenet_v2_levels(alpha=1.0):
    """The static ``FeatureLevel`` list of ``mobilenet_v2``.

    Args:
      alpha: width multiplier.

    Returns:
      [C3, C4, C5] levels; 192, 576 and 1280 channels at ``alpha=1``.
    """
    # The last conv only widens for alpha > 1, as in the paper.
    last = _make_divisible(LAST_FILTERS * alpha) if alpha > 1.0 else LAST_FILTERS
    return [
        FeatureLevel("C3", EXPANSION * _make_divisible(int(BLOCK5_FILTERS * alpha)), 8),
        FeatureLevel("C4", EXPANSION * _make_divisible(int(BLOCK12_FILTERS * alpha)), 16),
        FeatureLevel("C5", last, 32),
    ]


def build_mobilenet_v2(input_shape=(None, None, 3), weights=None, alpha=1.0):
    """Builds the MobileNetV2 backbone.

    Args:
      input_shape: (H, W, 3); H and W may be ``None`` (at least 32 when set).
      weights: ``None``, ``"imagenet"`` (Keras ships it for alpha in 0.35,
        0.5, 0.75, 1.0, 1.3, 1.4) or a local file (see
        ``base.application_backbone``).
      alpha: width multiplier of every layer.

    Returns:
      ``keras.Model``: [B, H, W, 3] -> {"C3": [B, H/8, W/8, c3],
      "C4": [B, H/16, W/16, c4], "C5": [B, H/32, W/32, c5]} with the channels
      of ``mobilenet_v2_levels(alpha)``.
    """
    return application_backbone(
        keras.applications.MobileNetV2,
        "mobilenet_v2",
        # [0, 1] -> [-1, 1], what mobilenet_v2.preprocess_input gives 0..255.
        keras.layers.Rescaling(2.0, offset=-1.0, name="mobilenet_v2_preprocess"),
        MOBILENET_V2_LAYERS,
        mobilenet_v2_levels(alpha),
        input_shape,
        weights,
        alpha=alpha,
    )
