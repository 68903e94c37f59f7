"""ResNet-50 (He et al., v1) as a backbone with C3, C4, C5.

Input: [B, H, W, 3] RGB in [0, 1]; the Caffe-style preprocessing that the
Keras ImageNet weights expect is part of the model.
"""

import keras

from detect.backbones.base import CaffePreprocess, FeatureLevel, application_backbone

# Level -> output of the last residual block of each keras.applications stage.
RESNET50_LAYERS = {"C3": "conv3_block4_out", "C4": "conv4_block6_out", "C5": "conv5_block3_out"}


def resnet50_levels():
    """Returns: the static ``FeatureLevel`` list of ``resnet50``."""
    return [FeatureLevel("C3", 512, 8), FeatureLevel("C4", 1024, 16), FeatureLevel("C5", 2048, 32)]


def build_resnet50(input_shape=(None, None, 3), weights=None):
    """Builds the ResNet-50 backbone.

    Args:
      input_shape: (H, W, 3); H and W may be ``None`` (at least 32 when set).
      weights: ``None``, ``"imagenet"`` or a local file (see
        ``base.application_backbone``).

    Returns:
      ``keras.Model``: [B, H, W, 3] -> {"C3": [B, H/8, W/8, 512],
      "C4": [B, H/16, W/16, 1024], "C5": [B, H/32, W/32, 2048]}.
    """
    return application_backbone(
        keras.applications.ResNet50,
        "resnet50",
        CaffePreprocess(name="resnet50_preprocess"),
        RESNET50_LAYERS,
        resnet50_levels(),
        input_shape,
        weights,
    )
