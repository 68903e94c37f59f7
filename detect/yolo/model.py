"""YOLO detectors: a backbone, a 1x1-conv head per level, decoding and NMS.

YOLOv2: one level (stride 32, with the stride-16 passthrough when the
backbone has it), all anchors there. YOLOv3: three levels (strides 8, 16,
32) joined top-down by upsampling and concatenation, three anchors each.
Every head ends in a 1x1 convolution predicting A x (5 + C) numbers per
cell: tx, ty, tw, th, objectness, C class logits.
"""

import math
import keras
import numpy as np
import tensorflow as tf

from detect.backbones import build_backbone
from detect.backbones.base import Conv2D
from detect.models.base import TaskBase
from detect.yolo.config import YoloConfig
from detect.yolo.loss import decode_level, yolo_loss

# Objectness and class logits start at this probability, so the first
# steps are not dominated by thousands of confident background cells.
PRIOR_PROBABILITY = 0.01
# Layer names: the prediction convolutions end in this; the head (what
# ``train.freeze`` keeps trainable in "all_but_head") starts with these.
PREDICTION_SUFFIX = "_pred"
HEAD_LAYER_PREFIXES = ("p3_head_", "p4_head_", "p5_head_", "head_c_", "out")


def _conv(x, filters, kernel, name, strides=1):
    x = Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.97, epsilon=1e-3, name=f"{name}_bn")(x)
    return keras.layers.LeakyReLU(0.1, name=f"{name}_act")(x)


def _output_conv(x, num_anchors, num_classes, dropout, name):
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    prior = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
    bias = np.zeros((num_anchors, 5 + num_classes), np.float32)
    bias[:, 4:] = prior
    x = Conv2D(num_anchors * (5 + num_classes), 1, name=f"{name}{PREDICTION_SUFFIX}",
               kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
               bias_initializer=keras.initializers.Constant(bias.reshape(-1)))(x)
    return SplitAnchors(num_anchors, name=f"{name}_anchors")(x)


@keras.saving.register_keras_serializable(package="detect")
class SplitAnchors(keras.layers.Layer):
    """[B, H, W, A * (5 + C)] -> [B, H, W, A, 5 + C] for any H, W."""

    def __init__(self, num_anchors, **kwargs):
        super().__init__(**kwargs)
        self.num_anchors = num_anchors

    def call(self, x):
        shape = keras.ops.shape(x)
        # The static channel count, not -1: with an unknown batch size a -1 would lose it.
        return keras.ops.reshape(x, (shape[0], shape[1], shape[2], self.num_anchors, x.shape[-1] // self.num_anchors))

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, h, w, self.num_anchors, c // self.num_anchors)

    def get_config(self):
        return {**super().get_config(), "num_anchors": self.num_anchors}


@keras.saving.register_keras_serializable(package="detect")
class DarknetReorg(keras.layers.Layer):
    """Darknet's ``reorg`` layer (stride s): [B, H, W, C] -> [B, H/s, W/s, s*s*C].

    Not ``tf.nn.space_to_depth``. Darknet (``reorg_layer.c``, forward) calls
    ``reorg_cpu(input, w=W, h=H, c=C, ..., forward=0)``, which reads the
    input's C x H x W buffer as if it were (C/s^2) x (sH) x (sW), writes
    ``out[k, j, i] = in'[k % (C/s^2), s*j + o // s, s*i + o % s]`` with
    ``o = k // (C/s^2)`` over a C x H x W output buffer, and the next layer
    reads that buffer as (s^2 C) x (H/s) x (W/s). The channels therefore mix
    rows and columns that ``space_to_depth`` keeps apart; this layer does
    the same three reinterpretations with reshapes and transposes.
    C must be a multiple of s^2, H and W multiples of s.
    """

    def __init__(self, stride=2, **kwargs):
        super().__init__(**kwargs)
        self.stride = int(stride)

    def call(self, x):
        s = self.stride
        shape = keras.ops.shape(x)
        batch, height, width, channels = shape[0], shape[1], shape[2], x.shape[-1]
        t = keras.ops.transpose(x, (0, 3, 1, 2))  # Darknet's memory order, C x H x W
        t = keras.ops.reshape(t, (batch, channels // (s * s), height, s, width, s))  # read as C/s^2 x sH x sW
        t = keras.ops.transpose(t, (0, 3, 5, 1, 2, 4))  # [B, dy, dx, C/s^2, H, W] = reorg_cpu's output order
        t = keras.ops.reshape(t, (batch, channels * s * s, height // s, width // s))  # read as s^2 C x H/s x W/s
        return keras.ops.transpose(t, (0, 2, 3, 1))

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        s = self.stride
        return (b, None if h is None else h // s, None if w is None else w // s, c * s * s)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


def _conv_set(x, width, name):
    """YOLOv3's five alternating 1x1 / 3x3 convolutions."""
    for i in range(5):
        x = _conv(x, width if i % 2 == 0 else width * 2, 1 if i % 2 == 0 else 3, f"{name}_{i}")
    return x


def _as_list(outputs):
    # A one-output Keras model returns the tensor itself, not a list.
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


class YoloTask(TaskBase):
    """A YOLO model with its anchors, strides, loss and decoding (``detect.models.protocol.Task``).

    One mode, one stage: no ``stages`` of its own (the engine runs those of
    ``train.freeze`` around ``parts``), a constant ``inference_key``;
    ``postprocess`` is ``TaskBase``'s over ``decode``.

    Attributes:
      model: ``keras.Model`` from images [B, H, W, 3] in [0, 1] to a list of
        raw outputs [B, H_l, W_l, A_l, 5 + C], finest level first.
      anchors: list of [A_l, 2] arrays (pixels); strides: list of ints.
    """

    def __init__(self, num_classes, config=YoloConfig(), input_shape=(None, None, 3)):
        self.num_classes = int(num_classes)
        self.config = config
        backbone = build_backbone(config.backbone, weights=config.backbone_weights, input_shape=input_shape)
        levels = {level.name: level for level in backbone.feature_levels}
        anchors = np.asarray(config.anchor_list(), np.float32)
        images = keras.Input(input_shape, name="image")
        features = backbone(images)
        width = config.head_width
        if config.version == "v2":
            top = "C5" if "C5" in levels else max(levels.values(), key=lambda lv: lv.stride).name
            x = _conv(features[top], width, 3, "head_a")
            x = _conv(x, width, 3, "head_b")
            fine = {"C5": "C4"}.get(top)
            if fine in levels:
                # Passthrough: stride-16 detail folded into the coarse grid.
                passthrough = _conv(features[fine], max(width // 16, 8), 1, "passthrough")
                if config.reorg == "darknet":
                    passthrough = DarknetReorg(2, name="reorg")(passthrough)
                else:
                    passthrough = keras.layers.Lambda(lambda t: tf.nn.space_to_depth(t, 2), name="reorg")(passthrough)
                x = keras.layers.Concatenate(name="passthrough_concat")([passthrough, x])
            x = _conv(x, width, 3, "head_c")
            outputs = [_output_conv(x, len(anchors), self.num_classes, config.dropout, "out")]
            self.strides = [levels[top].stride]
            self.anchors = [anchors]
        else:
            for name in ("C3", "C4", "C5"):
                if name not in levels:
                    raise ValueError(f"YOLOv3 needs levels C3, C4, C5; backbone {config.backbone!r} has "
                                     f"{sorted(levels)}")
            if len(anchors) % 3:
                raise ValueError(f"YOLOv3 needs a multiple of 3 anchors, got {len(anchors)}")
            per_level = len(anchors) // 3
            x5 = _conv_set(features["C5"], width, "p5")
            out5 = _output_conv(_conv(x5, width * 2, 3, "p5_head"), per_level, self.num_classes, config.dropout,
                                "out5")
            up = keras.layers.UpSampling2D(2, name="p5_up")(_conv(x5, width // 2, 1, "p5_lateral"))
            x4 = _conv_set(keras.layers.Concatenate(name="p4_concat")([up, features["C4"]]), width // 2, "p4")
            out4 = _output_conv(_conv(x4, width, 3, "p4_head"), per_level, self.num_classes, config.dropout,
                                "out4")
            up = keras.layers.UpSampling2D(2, name="p4_up")(_conv(x4, width // 4, 1, "p4_lateral"))
            x3 = _conv_set(keras.layers.Concatenate(name="p3_concat")([up, features["C3"]]), width // 4, "p3")
            out3 = _output_conv(_conv(x3, width // 2, 3, "p3_head"), per_level, self.num_classes, config.dropout,
                                "out3")
            outputs = [out3, out4, out5]
            self.strides = [levels["C3"].stride, levels["C4"].stride, levels["C5"].stride]
            self.anchors = [anchors[i * per_level:(i + 1) * per_level] for i in range(3)]
        self.model = keras.Model(images, outputs, name=f"yolo{config.version}_{config.backbone}")
        self.backbone = backbone

    # ---- parts, for fine-tuning ---------------------------------------------------------
    def parts(self):
        """``{"backbone": [the backbone model], "head": [layers]}`` (``detect.train.freeze``).

        The head is what turns the last features into predictions: v3's
        ``p<k>_head`` 3 x 3 convolution (with its batch norm) and
        ``out<k>_pred`` of each level, v2's ``head_c`` and ``out_pred``.
        """
        return {"backbone": self.backbones(),
                "head": [layer for layer in self.model.layers if layer.name.startswith(HEAD_LAYER_PREFIXES)]}

    def backbones(self):
        """The backbone model (a top-level layer of ``model``), for ``model.init_weights: imagenet``."""
        return [self.backbone]

    def class_dependent_layers(self):
        """Names of the layers whose shapes follow the class count: the prediction convolutions."""
        return [layer.name for layer in self.model.layers if layer.name.endswith(PREDICTION_SUFFIX)]

    def forward(self, batch, training=False, mode=None):
        """Raw outputs for a batch (only its ``image`` is used; one mode, so ``mode`` is ignored)."""
        return self.model(batch["image"], training=training)

    def losses(self, outputs, batch):
        """Loss parts (see ``yolo_loss``) of raw outputs on a batch."""
        return yolo_loss(_as_list(outputs), self.anchors, self.strides, batch, self.num_classes, self.config.loss)

    def decode(self, outputs, image_hw=None):
        """All predicted boxes and class scores.

        ``image_hw`` is not used: letterboxed detections are clipped to the
        original image after unmapping.

        Returns:
          boxes [B, N, 4] xyxy input pixels and scores [B, N, C] =
          objectness x class probability (softmax for a softmax class loss,
          else sigmoid).
        """
        boxes, scores = [], []
        for raw, anchors, stride in zip(_as_list(outputs), self.anchors, self.strides):
            raw = tf.cast(raw, tf.float32)
            batch = tf.shape(raw)[0]
            # A static box count where the grid is static (batched_nms needs it), whatever the batch size.
            count = -1 if None in raw.shape[1:4] else raw.shape[1] * raw.shape[2] * raw.shape[3]
            boxes.append(tf.reshape(decode_level(raw, anchors, stride), [batch, count, 4]))
            logits = raw[..., 5:]
            if self.config.loss.class_loss == "softmax":
                probs = tf.nn.softmax(logits)
            else:
                probs = tf.sigmoid(logits)
            level_scores = tf.sigmoid(raw[..., 4:5]) * probs
            scores.append(tf.reshape(level_scores, [batch, count, self.num_classes]))
        return tf.concat(boxes, 1), tf.concat(scores, 1)

