"""The ``model:`` section of a YOLO experiment (``model.type: yolo``, the default)."""

from dataclasses import dataclass, field
from typing import Optional, Tuple

from detect.backbones import BACKBONES, backbone_levels
from detect.config import FieldError, bounded, check_fields, one_of
from detect.yolo.anchors import YOLOV2_ANCHORS, YOLOV3_ANCHORS
from detect.yolo.loss import YoloLossConfig

YOLO_VERSIONS = ("v2", "v3")
# v2's passthrough: "space_to_depth" (tf.nn.space_to_depth, the default) or
# "darknet" (Darknet's own reorg layer, which YOLOv2's released weights need).
REORGS = ("space_to_depth", "darknet")
V3_LEVELS = ("C3", "C4", "C5")  # the backbone levels YOLOv3 predicts on


@dataclass(frozen=True)
class YoloConfig:
    """What a YOLO detector is made of.

    Attributes:
      type: "yolo", the ``model.type`` tag that picks this config and
        ``YoloTask`` in ``detect.models``.
      version: "v2" (one level) or "v3" (three levels, so the backbone must
        have C3, C4 and C5).
      backbone: a name from ``detect.backbones``.
      backbone_weights: None, "imagenet" or a weights file.
      init_weights: where training starts from (``detect.train.transfer``):
        None (from scratch, or ``backbone_weights``); a run directory or a
        detector's ``.weights.h5`` (with its config beside it), loaded by
        layer path and shape, the class-dependent prediction layers
        re-initialised when the class count differs; or "imagenet" / a
        Keras-applications ``.h5`` file for the backbone.
      init_skip_mismatch: leave initialised the tensors of other layers that
        do not fit ``init_weights`` (listed), instead of an error.
      anchors: (w, h) pixel pairs (> 0), small to large; empty = the
        paper's; v3 takes a multiple of 3 (as many per level).
      head_width: channels of the head's 3x3 convolutions at stride 32
        (halved at each finer level in v3), >= 4.
      dropout: dropout rate before each output convolution, in [0, 1)
        (0 = none).
      reorg: how v2's passthrough folds 2 x 2 cells of C4 into channels:
        "space_to_depth" (``tf.nn.space_to_depth``) or "darknet" (what
        Darknet's ``reorg`` layer computes, see ``DarknetReorg``; needed to
        run YOLOv2 weights converted from Darknet). No effect on v3.
      loss: ``YoloLossConfig``.
      score_threshold, iou_threshold: decoding and NMS, in [0, 1].
      max_detections: detections kept per image, >= 1.
    """

    type: str = one_of("yolo", ("yolo",))
    version: str = one_of("v3", YOLO_VERSIONS)
    backbone: str = one_of("tiny", BACKBONES)
    backbone_weights: Optional[str] = None
    init_weights: Optional[str] = None
    init_skip_mismatch: bool = False
    anchors: Tuple[Tuple[float, float], ...] = bounded((), gt=0)
    # v3's finest level uses head_width // 4 channels, which must not be 0.
    head_width: int = bounded(256, ge=4)
    dropout: float = bounded(0.0, ge=0, lt=1)
    reorg: str = one_of("space_to_depth", REORGS)
    loss: YoloLossConfig = field(default_factory=YoloLossConfig)
    score_threshold: float = bounded(0.001, ge=0, le=1)
    iou_threshold: float = bounded(0.5, ge=0, le=1)
    max_detections: int = bounded(100, ge=1)

    def __post_init__(self):
        check_fields(self)
        if self.version == "v3":
            levels = [level.name for level in backbone_levels(self.backbone)]
            if not all(name in levels for name in V3_LEVELS):
                raise FieldError("backbone", f"{self.backbone!r} has levels {', '.join(levels)}; YOLOv3 needs "
                                             f"levels {', '.join(V3_LEVELS)}")
            if len(self.anchor_list()) % len(V3_LEVELS):
                raise FieldError("anchors", f"must be a multiple of {len(V3_LEVELS)} pairs for YOLOv3 (as many "
                                            f"per level), got {len(self.anchor_list())}")

    def anchor_list(self):
        if self.anchors:
            return [tuple(float(v) for v in a) for a in self.anchors]
        return list(YOLOV3_ANCHORS if self.version == "v3" else YOLOV2_ANCHORS)

    def coarsest_stride(self):
        """Pixels per cell of the coarsest output level (as ``YoloTask`` picks it), without building.

        Input sides must be multiples of it: v3 upsamples C5 by 2 onto C4
        and C4 onto C3, and v2's passthrough folds 2 x 2 cells of C4 into C5.
        """
        strides = {level.name: level.stride for level in backbone_levels(self.backbone)}
        return strides["C5"] if "C5" in strides else max(strides.values())

    def display_name(self):
        return f"YOLO{self.version}"
