"""VGG16 (Simonyan & Zisserman) as a backbone, the Faster R-CNN paper's net.

Faster R-CNN reads conv5_3 at stride 16 and drops pool5; we do the same and
also expose conv4_3 at stride 8. Input: [B, H, W, 3] RGB in [0, 1].
"""

import keras

from detect.backbones.base import CaffePreprocess, FeatureLevel, application_backbone

# Level -> keras.applications.VGG16 layer (block<k> runs at stride 2**(k-1)).
VGG16_LAYERS = {"C3": "block4_conv3", "C4": "block5_conv3"}


def vgg16_levels():
    """Returns: the static ``FeatureLevel`` list of ``vgg16``."""
    return [FeatureLevel("C3", 512, 8), FeatureLevel("C4", 512, 16)]


def build_vgg16(input_shape=(None, None, 3), weights=None):
    """Builds the VGG16 backbone.

    Args:
      input_shape: (H, W, 3); H and W may be ``None`` (at least 32 when set).
      weights: ``None``, ``"imagenet"`` or a local file (see
        ``base.application_backbone``).

    Returns:
      ``keras.Model``: [B, H, W, 3] -> {"C3": [B, H/8, W/8, 512],
      "C4": [B, H/16, W/16, 512]}.
    """
    return application_backbone(
        keras.applications.VGG16,
        "vgg16",
        CaffePreprocess(name="vgg16_preprocess"),
        VGG16_LAYERS,
        vgg16_levels(),
        input_shape,
        weights,
    )
