"""Pieces shared by every backbone: level records, the model wrapper, weights.

A backbone is a ``keras.Model`` that takes ``[B, H, W, 3]`` float32 RGB images
in ``[0, 1]`` and returns a dict ``{level_name: [B, H / stride, W / stride,
channels]}``. Level names follow the ResNet convention: ``C<k>`` has stride
``2**k`` (C3 = 8, C4 = 16, C5 = 32).
"""

import dataclasses
import os
from pathlib import Path

import keras
from keras import layers, ops

# Conv-BN-LeakyReLU blocks follow the Darknet reference configs.
LEAKY_SLOPE = 0.1
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3

# Per-channel BGR means of the ImageNet training set in 0..255, as used by
# the Caffe-converted VGG and ResNet weights that Keras ships.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

WEIGHTS_DIR_HINT = (
    "put local weight files under weights/ (see weights/README.md) and pass "
    "their path, e.g. weights='weights/<file>.weights.h5'"
)


@dataclasses.dataclass(frozen=True)
class FeatureLevel:
    """One output level of a backbone.

    Attributes:
      name: key in the model's output dict, e.g. ``"C4"``.
      channels: feature depth of the level.
      stride: input pixels per feature cell along each axis.
    """

    name: str
    channels: int
    stride: int


@keras.saving.register_keras_serializable(package="detect")
class Conv2D(layers.Conv2D):
    """``keras.layers.Conv2D`` (same weights, same forward op); a stride-1 ``SAME`` convolution takes
    ``detect.ops.conv.conv2d_same``, whose gradients run as forward convolutions and matmuls on a CPU."""

    def convolution_op(self, inputs, kernel):
        same = self.padding == "same" or self.kernel_size == (1, 1)  # a 1x1 kernel pads nothing either way
        if (self.strides == (1, 1) and same and self.dilation_rate == (1, 1)
                and self.data_format == "channels_last" and self.groups == 1):
            from detect.ops.conv import conv2d_same

            return conv2d_same(inputs, kernel)
        return super().convolution_op(inputs, kernel)


@keras.saving.register_keras_serializable(package="detect")
class CaffePreprocess(layers.Layer):
    """RGB in [0, 1] -> BGR in 0..255 minus the ImageNet mean (Caffe style).

    What ``keras.applications.vgg16/resnet50.preprocess_input`` does to 0..255
    RGB, folded into the model so that callers always feed [0, 1] RGB.

    Input and output: [B, H, W, 3] float.
    """

    def call(self, images):
        bgr = ops.flip(images, axis=-1) * 255.0
        mean = ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype=bgr.dtype)
        return bgr - mean

    def compute_output_shape(self, input_shape):
        return input_shape


def conv_bn_leaky(x, filters, kernel_size, name, strides=1):
    """Darknet's convolution unit: Conv (no bias) -> BatchNorm -> LeakyReLU(0.1).

    Stride-2 units pad top-left by one and convolve "valid", like Darknet,
    so an even input size H gives exactly H / 2.

    Args:
      x: [B, H, W, C] Keras tensor.
      filters: output channels.
      kernel_size: square kernel side.
      name: prefix of the three layer names (``name_conv``, ``_bn``, ``_leaky``).
      strides: 1 or 2.

    Returns:
      [B, H / strides, W / strides, filters] Keras tensor.
    """
    padding = "same"
    if strides > 1:
        x = layers.ZeroPadding2D(((1, 0), (1, 0)), name=f"{name}_pad")(x)
        padding = "valid"
    x = Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=False, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{name}_leaky")(x)


def feature_model(inputs, features, levels, name):
    """Wraps feature tensors into a multi-output backbone model.

    Checks that every declared level exists and has the declared channels, so
    ``backbone_levels`` (static) can never drift from the built model.

    Args:
      inputs: the [B, H, W, 3] ``keras.Input``.
      features: dict level name -> [B, h, w, C] Keras tensor.
      levels: sequence of ``FeatureLevel`` in increasing stride.
      name: model name.

    Returns:
      A ``keras.Model`` with dict outputs ``{level.name: tensor}`` and a
      ``feature_levels`` attribute holding ``levels`` as a tuple.
    """
    outputs = {}
    for level in levels:
        tensor = features[level.name]
        if tensor.shape[-1] != level.channels:
            raise AssertionError(
                f"{name}: level {level.name} declares {level.channels} channels, "
                f"the built layer has {tensor.shape[-1]}"
            )
        outputs[level.name] = tensor
    model = keras.Model(inputs, outputs, name=name)
    model.feature_levels = tuple(levels)
    return model


def weights_path(weights):
    """Checks a local weights argument and returns it as a ``Path``.

    Args:
      weights: a path string or ``os.PathLike``.

    Returns:
      The path.

    Raises:
      FileNotFoundError: the file does not exist (the message names it).
    """
    path = Path(os.fspath(weights))
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}; {WEIGHTS_DIR_HINT}")
    return path


def is_local_weights(weights):
    """True for a path argument (anything but ``None`` and ``"imagenet"``)."""
    return weights is not None and weights != "imagenet"


def no_imagenet_weights(name, weights):
    """Rejects ``weights="imagenet"`` for backbones Keras ships no weights for.

    Raises:
      ValueError: ``weights == "imagenet"``.
    """
    if weights == "imagenet":
        raise ValueError(
            f"no ImageNet weights ship with Keras for backbone {name!r}; use "
            f"weights=None to train from scratch, or pass a local file: {WEIGHTS_DIR_HINT}"
        )


def load_local_weights(model, weights):
    """Loads a local weights file into a built backbone (no-op for ``None``).

    Args:
      model: the backbone model.
      weights: ``None`` or a path to a file ``model.load_weights`` reads
        (``.weights.h5`` written by ``model.save_weights``, or a legacy
        Keras ``.h5``).

    Returns:
      ``model``.
    """
    if weights is not None:
        model.load_weights(str(weights_path(weights)))
    return model


def application_backbone(app, name, preprocess, level_layers, levels, input_shape, weights, **app_kwargs):
    """Wraps a ``keras.applications`` network as a backbone.

    The preprocessing layer goes in front of the network (via
    ``input_tensor``), so the result is one flat graph whose layer names are
    the application's own, which ``freeze_backbone(until=...)`` can use.

    Args:
      app: constructor such as ``keras.applications.VGG16``.
      name: backbone (and model) name.
      preprocess: layer mapping [0, 1] RGB to what the ImageNet weights
        expect.
      level_layers: dict level name -> name of the application layer.
      levels: the ``FeatureLevel`` list.
      input_shape: (H, W, 3); H and W may be ``None``.
      weights: ``None``, ``"imagenet"`` (Keras downloads it), a
        ``.weights.h5`` file saved from a backbone of this name, or another
        file ``app`` reads itself, such as the ``*_notop.h5`` files Keras
        caches in ``~/.keras/models`` (copy them under ``weights/`` to work
        offline).
      **app_kwargs: passed on to ``app`` (e.g. ``alpha``).

    Returns:
      The backbone model (see ``feature_model``).
    """
    app_weights, own_weights = weights, None
    if is_local_weights(weights):
        path = weights_path(weights)
        if path.name.endswith(".weights.h5"):
            app_weights, own_weights = None, path
        else:
            app_weights = str(path)
    inputs = keras.Input(shape=input_shape, name="image")
    x = preprocess(inputs)
    net = app(include_top=False, weights=app_weights, input_tensor=x, **app_kwargs)
    features = {level: net.get_layer(layer).output for level, layer in level_layers.items()}
    model = feature_model(inputs, features, levels, name)
    return load_local_weights(model, own_weights)


def batchnorm_layers(model):
    """Every ``keras.layers.BatchNormalization`` inside ``model``, nested models included."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def freeze_batchnorm(model):
    """Freezes ``model``'s BatchNormalization layers: statistics and affine parameters fixed, inference mode.

    torchvision's and detectron2's ``FrozenBatchNorm2d`` for detection
    backbones: at one or two images per batch, batch statistics are too
    noisy to normalise with or to average. Keras 3 runs a frozen layer with
    its moving statistics and trains neither them nor ``gamma`` / ``beta``.

    Returns:
      How many layers were frozen.
    """
    layers = batchnorm_layers(model)
    for layer in layers:
        layer.trainable = False
    return len(layers)


def freeze_backbone(model, until=None):
    """Freezes the backbone's layers, all of them or up to a named one.

    Frozen BatchNormalization layers also run in inference mode (Keras 3),
    which is what detection fine-tuning wants.

    Args:
      model: a model from ``build_backbone``.
      until: name of the last layer to freeze (inclusive), e.g.
        ``"conv2_block3_out"`` to freeze ResNet50 up to C2 as in Faster
        R-CNN; ``None`` freezes every layer.

    Returns:
      ``model``.

    Raises:
      ValueError: ``until`` names no layer of the model.
    """
    names = [layer.name for layer in model.layers]
    if until is not None and until not in names:
        raise ValueError(f"{model.name} has no layer {until!r}")
    for layer in model.layers:
        layer.trainable = False
        if layer.name == until:
            break
    return model
