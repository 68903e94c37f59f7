"""The ``model:`` section of a Faster R-CNN experiment (``model.type: faster_rcnn``).

Defaults are the original py-faster-rcnn release's (``lib/fast_rcnn/config.py``
and the VGG16 ``alt_opt`` prototxts); a config states only what it changes.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

from detect.backbones import BACKBONES, backbone_levels
from detect.config import FieldError, bounded, check_fields, one_of
from detect.faster_rcnn.loss import LOSS_NORMALIZATIONS
from detect.faster_rcnn.targets import DEFAULT_BOX_STDS

TRAINING_SCHEDULES = ("alternating", "joint")
DETECTOR_BACKBONE_INITS = ("fresh", "rpn")  # model.detector_backbone_init
ROI_OPS = ("roi_pool", "roi_align")
HEADS = ("fc", "c4")
# The backbone stage the C4 head runs on pooled RoIs: the level after the one the RPN reads.
C4_HEAD_STAGES = {"resnet50": ("C4", "C5")}
# The paper's 4-step schedule ran 80k, 40k, 80k, 40k iterations (VGG16, VOC).
ALTERNATING_RATIO = (2, 1, 2, 1)
# Layers frozen in pretrained backbones, as the original froze conv1-conv2 of VGG16.
PRETRAINED_FROZEN = {"vgg16": "block2_pool", "resnet50": "conv2_block3_out"}


@dataclass(frozen=True)
class FasterRcnnConfig:
    """What a Faster R-CNN detector is made of and how it is trained.

    Attributes:
      type: "faster_rcnn", the ``model.type`` tag.
      backbone: a name from ``detect.backbones``.
      backbone_weights: None (from scratch), "imagenet" or a weights file.
      init_weights: where training starts from (``detect.train.transfer``):
        None (from scratch, or ``backbone_weights``); a run directory or a
        detector's ``.weights.h5`` (with its config beside it), loaded by
        layer path and shape, the class-dependent prediction layers
        re-initialised when the class count differs; or "imagenet" / a
        Keras-applications ``.h5`` file for the backbone. Both backbones of
        the alternating steps start from it, as the paper's both start from
        ImageNet.
      init_skip_mismatch: leave initialised the tensors of other layers that
        do not fit ``init_weights`` (listed), instead of an error.
      feature_level: the backbone level the RPN and the RoI head read
        ("C4": conv5_3 of VGG16, C4 of ResNet50, stride 16 on every shipped
        backbone).
      freeze_until: last backbone layer frozen; "auto" = conv1-conv2 of
        VGG16 (``block2_pool``) or ResNet50's C2 when ``backbone_weights`` or
        ``init_weights`` is given, nothing otherwise; "" = nothing.
      freeze_bn: the backbones' BatchNormalization layers keep their
        statistics and affine parameters (FrozenBatchNorm, as torchvision
        and detectron2 train Faster R-CNN: batches of 1-2 images give
        useless batch statistics); null (default) = frozen when the backbone
        starts from pretrained weights (``backbone_weights`` or
        ``init_weights``), trained when it starts from scratch, where
        frozen statistics would be the initial ones. VGG16 has none.
      anchor_scales, anchor_ratios: ``generate_anchors`` scales (x the
        level's stride) and height/width ratios, each > 0, at least one of
        each; 3 x 3 = 9 anchors per cell by default.
      rpn_width: channels of the RPN's 3x3 convolution (512 for VGG16), >= 1.
      rpn_batch: anchors sampled per image, >= 1; rpn_positive_fraction:
        largest positive share, in (0, 1].
      rpn_positive_iou, rpn_negative_iou: anchor labelling thresholds
        (0.7 / 0.3), in [0, 1], negative <= positive.
      rpn_allowed_border: pixels an anchor may cross the image border and
        still be trained, >= 0.
      rpn_nms_iou: proposal NMS threshold, in [0, 1].
      train_pre_nms, train_post_nms: proposals kept before and after NMS in
        training (12000 / 2000); test_pre_nms, test_post_nms: at inference
        (6000 / 300). A pre-NMS value of 0 keeps every box; post >= 1.
      rpn_min_size: proposals narrower or shorter than this many pixels of
        the original image (x the image's resize scale) are dropped, >= 0.
      roi_batch: RoIs sampled per image, >= 1; roi_fg_fraction: largest
        foreground share, in (0, 1].
      roi_fg_iou: foreground from this IoU; roi_bg_iou_hi, roi_bg_iou_lo:
        background in [lo, hi); all in [0, 1].
      box_stds: detector box-target normalisation (0.1, 0.1, 0.2, 0.2), > 0.
      roi_op: "roi_pool" (Fast R-CNN max pooling) or "roi_align".
      pool_size: RoI bins per side, >= 1 (7).
      head: the detector head on the pooled RoIs: "fc" (fc6, fc7: the
        paper's VGG16 head, on every backbone) or "c4" (ResNet-50's conv5
        stage, stride 2, then global average pooling: the C4 model of the
        ResNet paper, torchvision and detectron2; ``feature_level: C4``,
        an even ``pool_size``, 14 in theirs).
      fc_width: width of fc6 and fc7 (``head: fc``), >= 1 (4096 for VGG16; smaller for small
        backbones); fc_dropout: dropout after each, in [0, 1).
      training: "alternating" (the paper's 4 steps as engine stages) or
        "joint" (approximate joint training). ``train.schedule`` already names
        the learning-rate decay, hence the different key.
      stage_epochs: epochs of the 4 alternating steps, each >= 1; empty =
        ``train.epochs`` split 2:1:2:1 like the paper's 80k/40k/80k/40k
        iterations.
      stage_learning_rates: peak learning rate of each step, > 0; empty =
        ``train.learning_rate`` for every step (as the original).
      stage_step_epochs: with ``train.schedule: step``, the epoch of each
        alternating step, counted from that step's start, after which its
        learning rate is multiplied by ``train.step_factor``; 0 = no decay in
        that step (e.g. [6, 3, 6, 3] for 8/4/8/4-epoch steps: the original's
        solvers restart each step at the base rate and step it down at 60k
        of 80k and 30k of 40k iterations). Set, it replaces
        ``train.step_epochs`` for the alternating steps, which then stays the
        joint schedule's (as ``stage_epochs`` and ``train.epochs``); empty:
        ``train.step_epochs``, counted over the whole run
        (``Stage.train_config``).
      stage_batch_sizes: images per training step of each alternating
        step, each >= 1 (the original: 1, 2, 1, 2); an epoch is still one
        pass over the training images, so a step of 2 images takes half
        the iterations per epoch. Empty: ``train.batch_size`` for every step.
      reinit_heads: alternating steps 3 and 4 start the layers they train
        (the RPN's; the classifier and box regressor) afresh from their
        initializers, as the original (True), or continue from steps 1
        and 2 (False, the default).
      detector_backbone_init: where alternating step 2's own backbone
        starts: "fresh" (the paper: its own initialisation, the pretrained
        weights when there are any) or "rpn" (a copy of the backbone step 1
        trained: for a backbone trained from scratch, the only pretraining
        there is).
      loss_normalization: "code" (py-faster-rcnn's code) or "paper" (the
        paper's N_cls / N_reg with lambda 10).
      score_threshold: detections at or below it are dropped, in [0, 1]
        (0.001 for mAP evaluation, the default; applications use 0.05).
      iou_threshold: per-class NMS of detections, in [0, 1] (0.3).
      max_detections: per image, >= 1.
    """

    type: str = one_of("faster_rcnn", ("faster_rcnn",))
    backbone: str = one_of("vgg16", BACKBONES)
    backbone_weights: Optional[str] = None
    init_weights: Optional[str] = None
    init_skip_mismatch: bool = False
    feature_level: str = "C4"
    freeze_until: str = "auto"
    freeze_bn: Optional[bool] = None
    anchor_scales: Tuple[float, ...] = bounded((8.0, 16.0, 32.0), gt=0)
    anchor_ratios: Tuple[float, ...] = bounded((0.5, 1.0, 2.0), gt=0)
    rpn_width: int = bounded(512, ge=1)
    rpn_batch: int = bounded(256, ge=1)
    rpn_positive_fraction: float = bounded(0.5, gt=0, le=1)
    rpn_positive_iou: float = bounded(0.7, ge=0, le=1)
    rpn_negative_iou: float = bounded(0.3, ge=0, le=1)
    rpn_allowed_border: float = bounded(0.0, ge=0)
    rpn_nms_iou: float = bounded(0.7, ge=0, le=1)
    train_pre_nms: int = bounded(12000, ge=0)
    train_post_nms: int = bounded(2000, ge=1)
    test_pre_nms: int = bounded(6000, ge=0)
    test_post_nms: int = bounded(300, ge=1)
    rpn_min_size: float = bounded(16.0, ge=0)
    roi_batch: int = bounded(128, ge=1)
    roi_fg_fraction: float = bounded(0.25, gt=0, le=1)
    roi_fg_iou: float = bounded(0.5, ge=0, le=1)
    roi_bg_iou_hi: float = bounded(0.5, ge=0, le=1)
    roi_bg_iou_lo: float = bounded(0.1, ge=0, le=1)
    box_stds: Tuple[float, float, float, float] = bounded(DEFAULT_BOX_STDS, gt=0)
    roi_op: str = one_of("roi_pool", ROI_OPS)
    head: str = one_of("fc", HEADS)
    pool_size: int = bounded(7, ge=1)
    fc_width: int = bounded(4096, ge=1)
    fc_dropout: float = bounded(0.5, ge=0, lt=1)
    training: str = one_of("alternating", TRAINING_SCHEDULES)
    stage_epochs: Tuple[int, ...] = bounded((), ge=1)
    stage_learning_rates: Tuple[float, ...] = bounded((), gt=0)
    stage_step_epochs: Tuple[int, ...] = bounded((), ge=0)
    stage_batch_sizes: Tuple[int, ...] = bounded((), ge=1)
    reinit_heads: bool = False
    detector_backbone_init: str = one_of("fresh", DETECTOR_BACKBONE_INITS)
    loss_normalization: str = one_of("code", LOSS_NORMALIZATIONS)
    score_threshold: float = bounded(0.001, ge=0, le=1)
    iou_threshold: float = bounded(0.3, ge=0, le=1)
    max_detections: int = bounded(100, ge=1)

    def __post_init__(self):
        check_fields(self)
        for key in ("anchor_scales", "anchor_ratios"):
            if not getattr(self, key):  # no anchors: an RPN of 0 filters
                raise FieldError(key, "needs at least one value, got []")
        levels = [level.name for level in backbone_levels(self.backbone)]
        if self.feature_level not in levels:
            raise FieldError("feature_level", f"{self.backbone!r} has levels {', '.join(levels)}, "
                                              f"got {self.feature_level!r}")
        if self.rpn_negative_iou > self.rpn_positive_iou:
            raise FieldError("rpn_negative_iou", f"must be <= rpn_positive_iou ({self.rpn_positive_iou}), "
                                                 f"got {self.rpn_negative_iou}")
        if self.head == "c4":
            levels_of_head = C4_HEAD_STAGES.get(self.backbone)
            if levels_of_head is None:
                raise FieldError("head", f"c4 runs ResNet-50's conv5 stage on the RoIs; backbone "
                                         f"{self.backbone!r} has none (use resnet50, or head: fc)")
            if self.feature_level != levels_of_head[0]:
                raise FieldError("head", f"c4 needs feature_level: {levels_of_head[0]} (the stage before conv5), "
                                         f"got {self.feature_level!r}")
            if self.pool_size % 2:
                raise FieldError("pool_size", f"the c4 head halves the pooled RoIs (conv5's stride 2): use an "
                                              f"even size (14, as torchvision and detectron2), got {self.pool_size}")
        if self.roi_bg_iou_lo > self.roi_bg_iou_hi:
            raise FieldError("roi_bg_iou_lo", f"must be <= roi_bg_iou_hi ({self.roi_bg_iou_hi}), "
                                              f"got {self.roi_bg_iou_lo}")
        for key in ("stage_epochs", "stage_learning_rates", "stage_step_epochs", "stage_batch_sizes"):
            value = getattr(self, key)
            if value and len(value) != len(ALTERNATING_RATIO):
                raise FieldError(key, f"needs one value per alternating step ({len(ALTERNATING_RATIO)}), "
                                      f"got {len(value)}")

    def stride(self):
        """Input pixels per cell of the level the detector reads."""
        return {level.name: level.stride for level in backbone_levels(self.backbone)}[self.feature_level]

    def coarsest_stride(self):
        """The one level's stride: input sides are padded to multiples of it."""
        return self.stride()

    def display_name(self):
        return "Faster R-CNN"

    def frozen_layer(self):
        """The last backbone layer to freeze, or None (see ``freeze_until``)."""
        if self.freeze_until == "auto":
            return PRETRAINED_FROZEN.get(self.backbone) if self.backbone_weights or self.init_weights else None
        return self.freeze_until or None

    def batchnorm_frozen(self):
        """Whether the backbones' BatchNorm layers stay frozen (see ``freeze_bn``)."""
        if self.freeze_bn is None:
            return bool(self.backbone_weights or self.init_weights)
        return self.freeze_bn

    def alternating_epochs(self, total_epochs):
        """Epochs of the 4 steps: ``stage_epochs``, else ``total_epochs`` split 2:1:2:1 (each >= 1)."""
        if self.stage_epochs:
            return tuple(int(e) for e in self.stage_epochs)
        weight = sum(ALTERNATING_RATIO)
        epochs = [max(1, round(total_epochs * r / weight)) for r in ALTERNATING_RATIO]
        return tuple(epochs)
