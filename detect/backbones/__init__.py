"""Backbone registry: ``build_backbone(name)`` -> model returning feature levels.

Every backbone takes [B, H, W, 3] float32 RGB images in [0, 1] (its own
preprocessing is inside the model) and returns a dict of feature maps
``{"C3": [B, H/8, W/8, C], ...}``; ``model.feature_levels`` (or
``backbone_levels(name)`` without building) says each level's channels and
stride.

The registry is explicit: each backbone module is imported here by name and
listed in ``_REGISTRY``; modules never register themselves.
"""

import dataclasses
from typing import Callable

from detect.backbones import darknet, mobilenet, resnet, tiny, vgg
from detect.backbones.base import CaffePreprocess, FeatureLevel, batchnorm_layers, freeze_backbone, freeze_batchnorm


@dataclasses.dataclass(frozen=True)
class _Entry:
    """A registered backbone: its builder and its static level list."""

    build: Callable
    levels: Callable


_REGISTRY = {
    "vgg16": _Entry(vgg.build_vgg16, vgg.vgg16_levels),
    "resnet50": _Entry(resnet.build_resnet50, resnet.resnet50_levels),
    "mobilenet_v2": _Entry(mobilenet.build_mobilenet_v2, mobilenet.mobilenet_v2_levels),
    "darknet19": _Entry(darknet.build_darknet19, darknet.darknet19_levels),
    "darknet53": _Entry(darknet.build_darknet53, darknet.darknet53_levels),
    "tiny": _Entry(tiny.build_tiny, tiny.tiny_levels),
}

BACKBONES = tuple(_REGISTRY)


def _entry(name):
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown backbone {name!r}; valid names: {', '.join(BACKBONES)}") from None


def build_backbone(name, weights=None, input_shape=(None, None, 3), **kwargs):
    """Builds a registered backbone.

    Args:
      name: one of ``BACKBONES``.
      weights: ``None`` (random init); ``"imagenet"`` for vgg16, resnet50
        and mobilenet_v2 (Keras downloads it, so it needs network); or a
        path to a local file, typically ``weights/<file>.weights.h5`` saved
        with ``model.save_weights`` from a backbone of the same name.
      input_shape: (H, W, 3) of one image; H and W may be ``None`` for any
        size. Sizes divisible by 32 give exactly H / stride cells.
      **kwargs: backbone options: ``alpha`` (mobilenet_v2 width multiplier),
        ``widths`` (tiny's five stage widths).

    Returns:
      ``keras.Model`` mapping [B, H, W, 3] float32 RGB in [0, 1] to
      ``{level.name: [B, H / level.stride, W / level.stride,
      level.channels]}``, with ``model.feature_levels`` a tuple of
      ``FeatureLevel`` in increasing stride.

    Raises:
      ValueError: unknown name (the message lists the valid ones), or
        ``"imagenet"`` for a backbone Keras ships no weights for.
      FileNotFoundError: a weights path that does not exist.
      TypeError: an option the backbone does not take.
    """
    return _entry(name).build(input_shape=tuple(input_shape), weights=weights, **kwargs)


def backbone_levels(name, **kwargs):
    """The levels ``build_backbone(name, **kwargs)`` exposes, without building.

    Args:
      name: one of ``BACKBONES``.
      **kwargs: the options that change channels (``alpha``, ``widths``).

    Returns:
      list of ``FeatureLevel`` (name, channels, stride) in increasing stride.
    """
    return list(_entry(name).levels(**kwargs))


__all__ = [
    "BACKBONES",
    "CaffePreprocess",
    "FeatureLevel",
    "backbone_levels",
    "batchnorm_layers",
    "build_backbone",
    "freeze_backbone",
    "freeze_batchnorm",
]
