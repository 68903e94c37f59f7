"""``TaskBase``: the defaults of the task protocol and the shared ``postprocess`` (``detect.models.protocol``)."""

import tensorflow as tf

from detect.ops import batched_nms


class TaskBase:
    """Defaults for the optional parts of ``Task``, and ``postprocess`` over the task's ``decode``.

    A subclass sets ``model``, ``num_classes`` and ``config`` (with
    ``score_threshold``, ``iou_threshold`` and ``max_detections``) and
    defines ``forward``, ``losses`` and, for ``postprocess``,
    ``decode(outputs, image_hw) -> (boxes, scores)``: boxes [B, N, 4] (one
    box per prediction) or [B, N, C, 4] (one per class), xyxy input pixels,
    and scores [B, N, C].
    """

    def stages(self, train_cfg, validation_data=None):
        """None: the engine's default stages (those of ``train.freeze``)."""
        return None

    def inference_key(self):
        """None: inference always computes the same."""
        return None

    def parts(self):
        """None: the task names no backbone and head (``train.freeze`` refuses it)."""
        return None

    def backbones(self):
        """No backbone for ``model.init_weights: imagenet``."""
        return []

    def class_dependent_layers(self):
        """No layer follows the class count."""
        return []

    def training_state(self):
        """Nothing is trained outside ``model``."""
        return {}

    def decode(self, outputs, image_hw):
        raise NotImplementedError(f"{type(self).__name__} does not decode its outputs")

    def postprocess(self, outputs, image_hw, score_threshold=None, iou_threshold=None, max_detections=None,
                    class_mask=None):
        """Decoding then per-class NMS: ``batched_nms``'s padded dict, input pixels (protocol docstring).

        ``class_mask`` [C] (1 keep, 0 drop) restricts the classes before NMS;
        None thresholds and ``max_detections`` are the config's.
        """
        cfg = self.config
        boxes, scores = self.decode(outputs, image_hw)
        if class_mask is not None:
            scores = scores * tf.cast(class_mask, scores.dtype)
        max_det = int(max_detections or cfg.max_detections)
        return batched_nms(boxes, scores, max_output_size_per_class=max_det, max_total_size=max_det,
                           iou_threshold=cfg.iou_threshold if iou_threshold is None else iou_threshold,
                           score_threshold=cfg.score_threshold if score_threshold is None else score_threshold)
