"""The YOLO loss (v2/v3 style), with targets built in the graph.

Each ground-truth box is the responsibility of one anchor: the one, over
all levels, whose shape overlaps it best (IoU of sizes on a shared centre),
in the grid cell holding the box centre. With ``assign_thresh`` below 1,
every other anchor whose shape overlaps the box by more than it is
responsible too (YOLOv4's ``iou_thresh``): more positives per object, which
is what a small dataset lacks. Responsible anchors are trained on
coordinates (``sigmoid(tx) + cx`` and ``log(w / pw)`` targets), objectness 1
and the class. Every other prediction is trained towards objectness 0,
unless its decoded box overlaps some ground truth by more than
``ignore_thresh``: those are left alone, since they are good boxes that just
are not the responsible ones.
"""

from dataclasses import dataclass

import tensorflow as tf

from detect.config import bounded, check_fields, one_of
from detect.ops import aligned_iou, iou

LOSS_NAMES = ("loss_box", "loss_obj", "loss_cls")
CLASS_LOSSES = ("bce", "softmax")
BOX_LOSSES = ("mse", "giou", "diou", "ciou")


@dataclass(frozen=True)
class YoloLossConfig:
    """Loss weights and rules.

    Attributes:
      lambda_coord: weight of the coordinate loss (YOLOv1/v2: 5), >= 0.
      lambda_obj: weight of objectness on responsible anchors, >= 0.
      lambda_noobj: weight of objectness on background predictions (0.5), >= 0.
      lambda_cls: weight of the class loss, >= 0.
      ignore_thresh: background predictions overlapping a ground truth by
        more than this IoU are not penalised (0.6); in [0, 1], 1 ignores none.
      class_loss: "bce" (sigmoid per class, YOLOv3) or "softmax" (YOLOv2).
      scale_by_size: weight coordinates by ``2 - w * h / image area`` so
        small boxes count more (YOLOv3).
      assign_thresh: besides the best anchor, anchors whose shape IoU with a
        box exceeds this are responsible for it too (YOLOv4 uses 0.213); in
        [0, 1], 1 (the default) keeps YOLOv3's one anchor per box.
      box_loss: "mse" (YOLOv3: squared error of ``sigmoid(tx)`` and ``tw``)
        or "giou" / "diou" / "ciou": ``1 - aligned_iou`` of the decoded box
        and the ground truth (YOLOv4 uses CIoU), weighted like "mse".
    """

    lambda_coord: float = bounded(5.0, ge=0)
    lambda_obj: float = bounded(1.0, ge=0)
    lambda_noobj: float = bounded(0.5, ge=0)
    lambda_cls: float = bounded(1.0, ge=0)
    ignore_thresh: float = bounded(0.6, ge=0, le=1)
    class_loss: str = one_of("bce", CLASS_LOSSES)
    scale_by_size: bool = True
    assign_thresh: float = bounded(1.0, ge=0, le=1)
    box_loss: str = one_of("mse", BOX_LOSSES)

    def __post_init__(self):
        check_fields(self)


def _wh_iou(wh1, wh2):
    """[..., 2] x [A, 2] -> [..., A] IoU of centred boxes of these sizes."""
    inter = tf.minimum(wh1[..., None, 0], wh2[:, 0]) * tf.minimum(wh1[..., None, 1], wh2[:, 1])
    union = wh1[..., None, 0] * wh1[..., None, 1] + wh2[:, 0] * wh2[:, 1] - inter
    return tf.math.divide_no_nan(inter, union)


def decode_level(raw, anchors, stride):
    """Boxes of one level: ``b = (sigmoid(t) + c) * stride``, ``w = pw * exp(tw)``.

    Args:
      raw: [B, H, W, A, 5 + C] head output.
      anchors: [A, 2] pixels.
      stride: pixels per cell.

    Returns:
      [B, H, W, A, 4] xyxy pixels.
    """
    shape = tf.shape(raw)
    grid_y, grid_x = tf.meshgrid(tf.range(shape[1]), tf.range(shape[2]), indexing="ij")
    grid = tf.cast(tf.stack([grid_x, grid_y], -1), raw.dtype)[None, :, :, None, :]  # [1, H, W, 1, 2]
    centre = (tf.sigmoid(raw[..., 0:2]) + grid) * stride
    # Clamp as Faster R-CNN does so exp() cannot overflow early in training.
    size = tf.cast(anchors, raw.dtype) * tf.exp(tf.minimum(raw[..., 2:4], 8.0))
    return tf.concat([centre - 0.5 * size, centre + 0.5 * size], -1)


def _box_error(raw, pred_boxes, target_grid, box_loss):
    """[B, H, W, A] box error of each slot against its target (``target_grid`` [..., 10], see ``yolo_loss``).

    "mse": YOLOv3's squared error of sigmoid(tx, ty) and (tw, th) against the
    cell offsets and log size ratios; else 1 - the ``box_loss`` IoU kind of
    the decoded box and the target box.
    """
    if box_loss == "mse":
        xy_err = tf.reduce_sum(tf.square(tf.sigmoid(raw[..., 0:2]) - target_grid[..., 0:2]), -1)
        wh_err = tf.reduce_sum(tf.square(raw[..., 2:4] - target_grid[..., 2:4]), -1)
        return xy_err + wh_err
    return 1.0 - aligned_iou(pred_boxes, target_grid[..., 6:10], box_loss)


def _class_error(class_logits, class_target, num_classes, class_loss):
    """[B, H, W, A] class loss of each slot: softmax cross-entropy or per-class sigmoid BCE summed over C."""
    if class_loss == "softmax":
        return tf.nn.sparse_softmax_cross_entropy_with_logits(class_target, class_logits)
    onehot = tf.one_hot(class_target, num_classes)
    return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(onehot, class_logits), -1)


def yolo_loss(outputs, anchors, strides, batch, num_classes, config=YoloLossConfig()):
    """Loss parts of a YOLO model on one batch.

    Args:
      outputs: list over levels of [B, H_l, W_l, A_l, 5 + C] raw outputs.
      anchors: list over levels of [A_l, 2] anchors in pixels.
      strides: list over levels of ints.
      batch: dict with ``image`` [B, S_h, S_w, 3], ``boxes`` [B, N, 4] xyxy
        input pixels, ``classes`` [B, N] int32 (-1 = padding), optionally
        ``ignore`` [B, N] bool (never positive, but still shield overlapping
        predictions from the background loss).
      num_classes: C.
      config: ``YoloLossConfig``.

    Returns:
      dict ``loss_box``, ``loss_obj``, ``loss_cls`` (scalars, summed over
      the batch and divided by its size) and ``loss`` (their sum).
    """
    boxes = tf.cast(batch["boxes"], tf.float32)
    classes = tf.cast(batch["classes"], tf.int32)
    valid = classes >= 0
    ignore = tf.cast(batch.get("ignore", tf.zeros_like(valid)), tf.bool)
    positive_gt = valid & ~ignore
    batch_size = tf.shape(boxes)[0]
    image_hw = tf.cast(tf.shape(batch["image"])[1:3], tf.float32)

    all_anchors = tf.concat([tf.cast(a, tf.float32) for a in anchors], 0)  # [A_total, 2]
    first_of_level = [sum(len(a) for a in anchors[:i]) for i in range(len(anchors))]
    gt_wh = boxes[..., 2:4] - boxes[..., 0:2]
    gt_centre = 0.5 * (boxes[..., 0:2] + boxes[..., 2:4])
    shape_iou = _wh_iou(gt_wh, all_anchors)  # [B, N, A_total]
    best_anchor = tf.argmax(shape_iou, axis=-1, output_type=tf.int32)  # [B, N]
    responsible = tf.equal(best_anchor[..., None], tf.range(tf.shape(all_anchors)[0])) | (
        shape_iou > config.assign_thresh)
    responsible &= positive_gt[..., None]  # [B, N, A_total]
    size_weight = 2.0 - gt_wh[..., 0] * gt_wh[..., 1] / (image_hw[0] * image_hw[1]) if config.scale_by_size \
        else tf.ones_like(gt_wh[..., 0])
    # Per object: size weight, class, then its box; [B, N, 6].
    object_target = tf.concat([size_weight[..., None], tf.cast(tf.maximum(classes, 0), tf.float32)[..., None],
                               boxes], -1)

    loss_box = tf.constant(0.0)
    loss_obj = tf.constant(0.0)
    loss_cls = tf.constant(0.0)
    for level, (raw, level_anchors, stride) in enumerate(zip(outputs, anchors, strides)):
        raw = tf.cast(raw, tf.float32)
        level_anchors = tf.cast(level_anchors, tf.float32)
        shape = tf.shape(raw)
        height, width, num_a = shape[1], shape[2], shape[3]
        first = first_of_level[level]

        # Responsible (batch, y, x, anchor) slots of each ground truth on this
        # level, [B, N, A_l]; the others are routed to a spare anchor slot
        # that is cut off below.
        mine = responsible[:, :, first:first + len(level_anchors)]
        cell = tf.cast(tf.floor(gt_centre / stride), tf.int32)
        cell_x = tf.clip_by_value(cell[..., 0], 0, width - 1)
        cell_y = tf.clip_by_value(cell[..., 1], 0, height - 1)
        anchor_idx = tf.where(mine, tf.range(num_a), num_a)
        index = tf.stack([tf.broadcast_to(tf.range(batch_size)[:, None, None], tf.shape(mine)),
                          tf.broadcast_to(cell_y[..., None], tf.shape(mine)),
                          tf.broadcast_to(cell_x[..., None], tf.shape(mine)), anchor_idx], -1)  # [B, N, A_l, 4]
        grid_shape = tf.stack([batch_size, height, width, num_a + 1])
        target_xy = gt_centre / stride - tf.cast(tf.stack([cell_x, cell_y], -1), tf.float32)
        target_wh = tf.math.log(tf.maximum(gt_wh, 1e-6)[:, :, None, :] / level_anchors)  # [B, N, A_l, 2]
        targets = tf.concat([tf.broadcast_to(target_xy[:, :, None, :], tf.shape(target_wh)), target_wh,
                             tf.broadcast_to(object_target[:, :, None, :], tf.concat([tf.shape(mine), [6]], 0))],
                            -1)  # [B, N, A_l, 10]
        # Objects sharing a slot (same cell and anchor): one of them wins.
        target_grid = tf.tensor_scatter_nd_update(
            tf.zeros(tf.concat([grid_shape, [10]], 0)), index, targets)[:, :, :, :num_a]
        object_mask = tf.scatter_nd(index, tf.ones(tf.shape(mine)), grid_shape)[:, :, :, :num_a]
        object_mask = tf.minimum(object_mask, 1.0)  # [B, H, W, A]

        # Background predictions overlapping a ground truth are ignored.
        pred_boxes = decode_level(raw, level_anchors, stride)
        flat = tf.reshape(pred_boxes, [batch_size, -1, 4])
        overlap = tf.where(valid[:, None, :], iou(flat, boxes), 0.0)  # [B, HWA, N]
        best_overlap = tf.reshape(tf.reduce_max(tf.pad(overlap, [[0, 0], [0, 0], [0, 1]]), -1),
                                  tf.shape(object_mask))
        background = (1.0 - object_mask) * tf.cast(best_overlap <= config.ignore_thresh, tf.float32)

        box_err = _box_error(raw, pred_boxes, target_grid, config.box_loss)
        loss_box += tf.reduce_sum(object_mask * target_grid[..., 4] * box_err)

        obj_logit = raw[..., 4]
        obj_bce_pos = tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(obj_logit), obj_logit)
        obj_bce_neg = tf.nn.sigmoid_cross_entropy_with_logits(tf.zeros_like(obj_logit), obj_logit)
        loss_obj += config.lambda_obj * tf.reduce_sum(object_mask * obj_bce_pos)
        loss_obj += config.lambda_noobj * tf.reduce_sum(background * obj_bce_neg)

        cls = _class_error(raw[..., 5:], tf.cast(target_grid[..., 5], tf.int32), num_classes, config.class_loss)
        loss_cls += tf.reduce_sum(object_mask * cls)

    scale = 1.0 / tf.cast(batch_size, tf.float32)
    losses = {
        "loss_box": config.lambda_coord * loss_box * scale,
        "loss_obj": loss_obj * scale,
        "loss_cls": config.lambda_cls * loss_cls * scale,
    }
    losses["loss"] = losses["loss_box"] + losses["loss_obj"] + losses["loss_cls"]
    return losses
