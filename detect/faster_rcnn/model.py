"""Faster R-CNN (Ren et al. 2015): a backbone level, an RPN, RoI pooling and a Fast R-CNN head.

One feature level (``config.feature_level``, stride 16 on every shipped
backbone) feeds both heads. The RPN is a 3x3 convolution and two sibling
1x1 convolutions: one objectness logit and 4 box deltas per anchor (the
original has two softmax logits per anchor; one sigmoid logit is the same
model with half the parameters). Proposals (``detect.faster_rcnn.proposals``)
are constants for the head (``tf.stop_gradient``): back-propagating through
box coordinates is unstable, and in the alternating schedule the RPN that
makes them is frozen anyway.

Where we differ from py-faster-rcnn (beside the sigmoid above):

- Proposals for the detector steps of the alternating schedule are made on
  the fly by the frozen RPN of the step before, on the very image being
  trained, instead of precomputed once for the training set. With the RPN
  frozen the proposals are the ones precomputation would give, and they
  follow every augmentation (a flipped image gets flipped proposals, as the
  original arranged by hand; a scaled or cropped one gets its own).
- Boxes are continuous ``xyxy`` (width = x2 - x1), not inclusive pixel
  indices (width = x2 - x1 + 1); anchors keep the original's values.
- The head is fc6 / fc7 (``head: fc``, the paper's), or on ResNet-50
  the conv5 stage and global average pooling on 14 x 14 RoIs (``head:
  c4``, the ResNet paper's C4 model as torchvision and detectron2 build it).
- Batches hold several images (the original: one), each padded to the
  batch's largest and clipped to its own valid extent (``image_hw``).
"""

import keras
import numpy as np
import tensorflow as tf

from detect.backbones import backbone_levels, build_backbone
from detect.data.batch import batch_image_hw
from detect.faster_rcnn.config import C4_HEAD_STAGES, FasterRcnnConfig
from detect.faster_rcnn.loss import detector_loss, rpn_loss
from detect.faster_rcnn.proposals import generate_proposals
from detect.faster_rcnn.stages import DETECTOR, JOINT, MODES, OWN_DETECTOR, RPN, freeze_pretrained, training_stages
from detect.faster_rcnn.targets import proposal_targets, rpn_targets
from detect.models.base import TaskBase
from detect.models.protocol import SideModel
from detect.ops import anchor_grid, clip_boxes, decode_boxes, generate_anchors, iou, roi_align, roi_pool

RPN_SIGMA = 3.0  # py-faster-rcnn's rpn_loss_bbox sigma (beta = 1/9)
DETECTOR_SIGMA = 1.0
# py-faster-rcnn initialises the RPN and the classifier with N(0, 0.01), the box regressor with N(0, 0.001).
_CLS_INIT = keras.initializers.RandomNormal(stddev=0.01)
_BOX_INIT = keras.initializers.RandomNormal(stddev=0.001)
# The detector head's output layers, whose shapes follow the class count (K + 1 scores, 4K deltas).
CLASSIFIER_LAYER = "cls_score"
BOX_LAYER = "bbox_pred"
DETECTOR_BACKBONE = "detector_backbone"  # the side model's name, and its weights' key prefix
RES5 = "res5"  # the C4 head's conv5 stage: its part's name, and its weights' key prefix


@keras.saving.register_keras_serializable(package="detect")
class FasterRcnnModel(keras.Model):
    """The trained parts, one object for checkpoints and weight files.

    Attributes:
      backbone: images -> the shared feature level [B, H/s, W/s, C].
      rpn: features -> (objectness [B, h, w, A], deltas [B, h, w, 4A]).
      head: pooled RoIs [R, P, P, C] -> (class logits [R, K + 1], deltas [R, 4K]);
        with ``head: c4`` it reads ``res5``'s output [R, P/2, P/2, 2048].
      res5: ``head: c4`` only: ResNet-50's conv5 stage on the pooled RoIs
        [R, P, P, 1024] -> [R, P/2, P/2, 2048], a part of the detector head.

    The same parts for joint and alternating training (whose step-2
    backbone is the task's side model, not saved here), so the weights of
    one load into the other. ``call`` runs the backbone and the RPN; the
    detector's forward pass is ``FasterRcnnTask.forward``.
    """

    def __init__(self, backbone, rpn, head, res5=None, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.rpn = rpn
        self.head = head
        if res5 is not None:  # (no attribute at all for fc: its weights files keep their layout)
            self.res5 = res5

    def call(self, images, training=False):
        return self.rpn(self.backbone(images, training=training), training=training)


def _feature_extractor(config, input_shape, name):
    """(The backbone cut at ``config.feature_level``, the whole backbone it was cut from)."""
    full = build_backbone(config.backbone, weights=config.backbone_weights, input_shape=input_shape)
    features = full.output[config.feature_level]
    model = keras.Model(full.input, features, name=name)
    freeze_pretrained(model, config)
    return model, full


def _res5(full, config):
    """The C4 head's backbone stage (conv5 of ResNet-50) as a model on pooled RoIs, with the backbone's
    own layers, so it starts from the same weights (ImageNet's when pretrained)."""
    first, last = C4_HEAD_STAGES[config.backbone]
    return keras.Model(full.output[first], full.output[last], name=RES5)


def _rpn_head(channels, num_anchors, width):
    features = keras.Input((None, None, channels), name="features")
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", kernel_initializer=_CLS_INIT,
                            name="rpn_conv")(features)
    objectness = keras.layers.Conv2D(num_anchors, 1, kernel_initializer=_CLS_INIT, name="rpn_cls")(x)
    deltas = keras.layers.Conv2D(4 * num_anchors, 1, kernel_initializer=_CLS_INIT, name="rpn_bbox")(x)
    return keras.Model(features, [objectness, deltas], name="rpn")


def _detector_head(pool_size, channels, num_classes, width, dropout, c4=False):
    """fc: flatten, fc6, fc7; c4 (on res5's output): global average pooling. Then the two output layers."""
    pooled = keras.Input((pool_size, pool_size, channels), name="pooled")
    if c4:
        x = keras.layers.GlobalAveragePooling2D(name="res5_pool")(pooled)
    else:
        x = keras.layers.Flatten(name="flatten")(pooled)
        for name in ("fc6", "fc7"):
            x = keras.layers.Dense(width, activation="relu", name=name)(x)
            if dropout:
                x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    logits = keras.layers.Dense(num_classes + 1, kernel_initializer=_CLS_INIT, name=CLASSIFIER_LAYER)(x)
    deltas = keras.layers.Dense(4 * num_classes, kernel_initializer=_BOX_INIT, name=BOX_LAYER)(x)
    return keras.Model(pooled, [logits, deltas], name="detector_head")


def _image_scale(batch):
    """[B] resize factor of each image (1 when the batch does not say): proposals' minimum size scales with it."""
    if "transform" in batch:
        return tf.cast(batch["transform"][:, 0], tf.float32)
    return tf.ones([tf.shape(batch["image"])[0]], tf.float32)


def _ground_truth(batch):
    """(boxes [B, M, 4], classes [B, M], valid [B, M]): padded and ignored boxes are not valid."""
    classes = tf.cast(batch["classes"], tf.int32)
    valid = classes >= 0
    if "ignore" in batch:
        valid &= ~tf.cast(batch["ignore"], tf.bool)
    return tf.cast(batch["boxes"], tf.float32), classes, valid


def _random_seed():
    # Stateful draw (seeded by keras.utils.set_random_seed) for the stateless samplers: a new sample each step.
    return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)


class FasterRcnnTask(TaskBase):
    """The Faster R-CNN task (``detect.models.protocol.Task``).

    Attributes:
      model: ``FasterRcnnModel``.
      training_mode: what ``forward(training=True)`` computes without a
        ``mode``: ``JOINT`` for joint training, else ``DETECTOR`` (the
        engine passes each stage's own, ``detect.faster_rcnn.stages``).
      inference_mode: what ``forward(training=False)`` computes without a
        ``mode`` (``inference_key``): ``DETECTOR``, or ``OWN_DETECTOR`` while
        the alternating step 2 validates its detector (its ``prepare`` sets it).
      detector_backbone: step 2's own backbone (alternating only, else
        None), a side model (``training_state``): checkpoints hold it, weights
        files and exports do not; after step 3 it equals ``backbone`` to the bit.
      base_anchors: [A, 4] anchors of the cell at (0, 0); stride: the level's.
    """

    def __init__(self, num_classes, config=FasterRcnnConfig(), input_shape=(None, None, 3)):
        self.num_classes = int(num_classes)
        self.config = config
        self.stride = config.stride()
        self.base_anchors = generate_anchors(self.stride, config.anchor_ratios, config.anchor_scales).numpy()
        channels = {level.name: level.channels for level in backbone_levels(config.backbone)}[config.feature_level]
        backbone, full = _feature_extractor(config, input_shape, "backbone")
        self.detector_backbone = (_feature_extractor(config, input_shape, DETECTOR_BACKBONE)[0]
                                  if config.training == "alternating" else None)
        rpn = _rpn_head(channels, len(self.base_anchors), config.rpn_width)
        res5 = _res5(full, config) if config.head == "c4" else None
        pooled = [config.pool_size, config.pool_size, channels]
        if res5 is not None:
            pooled = list(res5.compute_output_shape([1, *pooled])[1:])
        head = _detector_head(pooled[0], pooled[2], self.num_classes, config.fc_width, config.fc_dropout,
                              c4=res5 is not None)
        self.model = FasterRcnnModel(backbone, rpn, head, res5, name=f"faster_rcnn_{config.backbone}")
        # Create every variable now (weights load and checkpoints restore into them).
        probe = tf.zeros([1, 4 * self.stride, 4 * self.stride, 3])
        self.model(probe)
        if res5 is not None:
            res5(tf.zeros([1, config.pool_size, config.pool_size, channels]))
        head(tf.zeros([1, *pooled]))
        if self.detector_backbone is not None:
            self.detector_backbone(probe)
        self.training_mode = JOINT if config.training == "joint" else DETECTOR
        self.inference_mode = DETECTOR
        self._recall_fns = {}  # thresholds -> compiled step of proposal_recall

    # ---- parts ------------------------------------------------------------------------
    def backbones(self):
        """What ``model.init_weights: imagenet`` loads: the shared backbone, step 2's own (alternating)
        and the C4 head's conv5 stage."""
        return [b for b in (self.backbone, self.detector_backbone, self.res5) if b is not None]

    def detector_parts(self):
        """The detector head's models: ``head``, after ``res5`` with the C4 head."""
        return [part for part in (self.res5, self.head) if part is not None]

    def class_dependent_layers(self):
        """Names of the layers whose shapes follow the class count: the classifier and the box regressor."""
        return [CLASSIFIER_LAYER, BOX_LAYER]

    def training_state(self):
        """Step 2's backbone (alternating), a side model standing in for the shared ``backbone``."""
        if self.detector_backbone is None:
            return {}
        return {DETECTOR_BACKBONE: SideModel(self.detector_backbone, twin="backbone")}

    @property
    def backbone(self):
        return self.model.backbone

    @property
    def rpn(self):
        return self.model.rpn

    @property
    def res5(self):
        return getattr(self.model, RES5, None)

    @property
    def head(self):
        return self.model.head

    def inference_key(self):
        """The mode inference runs in now (``inference_mode``); compiled predict functions are cached per key."""
        return self.inference_mode

    # ---- forward ----------------------------------------------------------------------
    def anchors(self, features):
        """[h * w * A, 4] anchors of a feature map, in the order of the RPN's outputs."""
        shape = tf.shape(features)
        return anchor_grid(shape[1], shape[2], self.stride, self.base_anchors)

    def _rpn_outputs(self, features, training):
        objectness, deltas = self.rpn(features, training=training)
        batch = tf.shape(objectness)[0]
        return (tf.reshape(tf.cast(objectness, tf.float32), [batch, -1]),
                tf.reshape(tf.cast(deltas, tf.float32), [batch, -1, 4]))

    def propose(self, batch, training=False, features=None, rpn_outputs=None):
        """Proposals of the shared backbone's RPN for a batch (``generate_proposals``'s dict).

        ``rpn_outputs``: the RPN's (objectness, deltas) on ``features`` when the
        caller has them (joint training); the RPN head has no dropout or
        normalisation, so they equal its inference outputs, and its gradient
        is stopped here either way.
        """
        cfg = self.config
        if features is None:
            features = self.backbone(batch["image"], training=False)
        objectness, deltas = rpn_outputs or self._rpn_outputs(features, training=False)
        pre, post = (cfg.train_pre_nms, cfg.train_post_nms) if training else (cfg.test_pre_nms, cfg.test_post_nms)
        return generate_proposals(tf.stop_gradient(objectness), tf.stop_gradient(deltas), self.anchors(features),
                                  batch_image_hw(batch), pre_nms_top_n=pre, post_nms_top_n=post,
                                  nms_iou=cfg.rpn_nms_iou, min_size=cfg.rpn_min_size * _image_scale(batch))

    def forward(self, batch, training=False, mode=None):
        """The batch-level forward pass (``detect.models.protocol``) in ``mode``, one of ``MODES``.

        ``mode`` None: ``training_mode`` in training, else ``inference_key()``;
        in inference ``RPN`` and ``JOINT`` compute the detector on the shared
        backbone. Returns a dict: in RPN and joint training ``rpn_objectness`` [B, N],
        ``rpn_deltas`` [B, N, 4], ``anchors`` [N, 4]; with the detector,
        ``rois`` [B, R, 4], ``roi_valid`` [B, R], ``cls_logits`` [B, R, K + 1],
        ``box_deltas`` [B, R, 4K], and in training the sampled RoIs' targets
        ``roi_labels`` [B, R] and ``roi_box_targets`` [B, R, 4].
        """
        if mode is None:
            mode = self.training_mode if training else self.inference_key()
        if mode not in MODES:
            raise ValueError(f"unknown Faster R-CNN mode {mode!r}; one of {', '.join(MODES)}")
        cfg = self.config
        images = batch["image"]
        features = self.backbone(images, training=training)
        outputs, rpn_outputs = {}, None
        if training and mode in (RPN, JOINT):
            rpn_outputs = self._rpn_outputs(features, training)
            outputs.update(rpn_objectness=rpn_outputs[0], rpn_deltas=rpn_outputs[1], anchors=self.anchors(features))
            if mode == RPN:
                return outputs
        proposals = self.propose(batch, training=training, features=features, rpn_outputs=rpn_outputs)
        head_features = self.detector_backbone(images, training=training) if mode == OWN_DETECTOR else features
        if training:
            gt_boxes, gt_classes, gt_valid = _ground_truth(batch)
            targets = proposal_targets(
                proposals["boxes"], proposals["valid"], gt_boxes, gt_classes, gt_valid, num_samples=cfg.roi_batch,
                fg_fraction=cfg.roi_fg_fraction, fg_iou=cfg.roi_fg_iou, bg_iou_hi=cfg.roi_bg_iou_hi,
                bg_iou_lo=cfg.roi_bg_iou_lo, box_stds=cfg.box_stds, seed=_random_seed())
            rois, roi_valid = targets["rois"], targets["roi_valid"]
            outputs.update(roi_labels=targets["labels"], roi_box_targets=targets["box_targets"])
        else:
            rois, roi_valid = proposals["boxes"], proposals["valid"]
        cls_logits, box_deltas = self._head(head_features, rois, training)
        outputs.update(rois=rois, roi_valid=roi_valid, cls_logits=cls_logits, box_deltas=box_deltas)
        return outputs

    def _head(self, features, rois, training):
        """Pools [B, R, 4] RoIs from [B, h, w, C] features and runs the head: [B, R, K + 1], [B, R, 4K]."""
        cfg = self.config
        batch, count = tf.shape(rois)[0], tf.shape(rois)[1]
        image_index = tf.repeat(tf.cast(tf.range(batch), tf.float32), count)
        flat = tf.concat([image_index[:, None], tf.reshape(rois, [-1, 4])], axis=1)
        pool = roi_align if cfg.roi_op == "roi_align" else roi_pool
        pooled = pool(features, flat, output_size=cfg.pool_size, spatial_scale=1.0 / self.stride)
        if self.res5 is not None:
            pooled = self.res5(pooled, training=training)
        logits, deltas = self.head(pooled, training=training)
        return (tf.reshape(tf.cast(logits, tf.float32), [batch, count, self.num_classes + 1]),
                tf.reshape(tf.cast(deltas, tf.float32), [batch, count, 4 * self.num_classes]))

    # ---- losses -----------------------------------------------------------------------
    def losses(self, outputs, batch):
        """Loss parts: ``loss_rpn_cls``, ``loss_rpn_box`` (RPN), ``loss_cls``, ``loss_box`` (detector), ``loss``."""
        cfg = self.config
        parts = {}
        if "rpn_objectness" in outputs:
            gt_boxes, _, gt_valid = _ground_truth(batch)
            targets = rpn_targets(outputs["anchors"], gt_boxes, gt_valid, batch_image_hw(batch),
                                  num_samples=cfg.rpn_batch, positive_fraction=cfg.rpn_positive_fraction,
                                  positive_iou=cfg.rpn_positive_iou, negative_iou=cfg.rpn_negative_iou,
                                  allowed_border=cfg.rpn_allowed_border,
                                  seed=_random_seed())
            num_locations = tf.shape(outputs["anchors"])[0] // len(self.base_anchors)
            parts["loss_rpn_cls"], parts["loss_rpn_box"] = rpn_loss(
                outputs["rpn_objectness"], outputs["rpn_deltas"], targets["labels"], targets["box_targets"],
                sigma=RPN_SIGMA, normalization=cfg.loss_normalization, num_locations=num_locations)
        if "cls_logits" in outputs:
            parts["loss_cls"], parts["loss_box"] = detector_loss(
                outputs["cls_logits"], outputs["box_deltas"], outputs["roi_labels"], outputs["roi_box_targets"],
                outputs["roi_valid"], sigma=DETECTOR_SIGMA, normalization=cfg.loss_normalization)
        parts["loss"] = tf.add_n(list(parts.values()))
        return parts

    # ---- detections -------------------------------------------------------------------
    def decode(self, outputs, image_hw):
        """Per-class boxes [B, R, K, 4] (clipped to each image) and scores [B, R, K] (0 for padded RoIs)."""
        rois = outputs["rois"]
        deltas = tf.reshape(outputs["box_deltas"], tf.concat([tf.shape(rois)[:2], [self.num_classes, 4]], 0))
        stds = tf.constant(self.config.box_stds, tf.float32)
        boxes = decode_boxes(deltas * stds, rois[:, :, None, :])
        hw = tf.cast(image_hw, tf.float32)
        boxes = clip_boxes(boxes, hw[:, 0, None, None], hw[:, 1, None, None])
        probs = tf.nn.softmax(outputs["cls_logits"])[..., 1:]
        scores = tf.where(outputs["roi_valid"][..., None], probs, 0.0)
        return boxes, scores

    # ---- stages -----------------------------------------------------------------------
    def _make_recall_fn(self, thresholds):
        """``fn(batch) -> (hits per threshold, ground-truth boxes)``, compiled; ``proposal_recall``'s step."""
        @tf.function(reduce_retracing=True)
        def covered(batch):
            proposals = self.propose(batch, training=False)
            gt_boxes, _, gt_valid = _ground_truth(batch)
            overlap = iou(gt_boxes, proposals["boxes"])  # [B, M, P]
            best = tf.reduce_max(tf.where(proposals["valid"][:, None, :], overlap, 0.0), axis=-1)
            hits = [tf.reduce_sum(tf.cast(gt_valid & (best >= t), tf.int32)) for t in thresholds]
            return tf.stack(hits), tf.reduce_sum(tf.cast(gt_valid, tf.int32))

        return covered

    def stages(self, train_cfg, validation_data=None):
        """The engine stages of ``config.training`` (see ``detect.faster_rcnn.stages``)."""
        return training_stages(self, train_cfg, validation_data)

    def proposal_recall(self, dataset, thresholds=(0.5, 0.7)):
        """Share of ground-truth boxes that a test-time proposal covers (IoU >= t), over a dataset.

        Args:
          dataset: validation batches (``image``, ``image_hw``, ``boxes``,
            ``classes``; boxes in input pixels).

        Returns:
          {"recall50": .., "recall70": ..} for the default thresholds
          (``config.test_post_nms`` proposals per image).
        """
        covered = self._recall_fns.get(tuple(thresholds))
        if covered is None:  # traced once per run (and batch shape), not once per validation
            covered = self._recall_fns[tuple(thresholds)] = self._make_recall_fn(tuple(thresholds))
        hits, total = np.zeros(len(thresholds), np.int64), 0
        for batch in dataset:
            batch_hits, batch_total = covered({k: batch[k] for k in ("image", "image_hw", "boxes", "classes",
                                                                     "transform") if k in batch})
            hits += batch_hits.numpy()
            total += int(batch_total)
        return {f"recall{int(round(t * 100))}": float(h) / max(total, 1) for t, h in zip(thresholds, hits)}
