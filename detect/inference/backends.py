"""What runs a ``Detector``'s graph: the config's Keras model or an exported SavedModel.

Both take ``(images uint8 [B, H, W, 3], score_threshold, iou_threshold,
max_detections, class_mask [C])`` and return the padded detection dict of
``detect.inference.graph`` in input pixels (``run``); the TFLite runtime
(``tflite_backend.py``) does the same for a ``.tflite`` file.
"""

import json
import logging
import threading
from pathlib import Path

import numpy as np

from detect.errors import InputError

log = logging.getLogger("detect")

# The file beside an exported SavedModel that names its classes and settings.
EXPORT_META = "detect.json"


class KerasBackend:
    """The config's Keras model, run through one compiled function per (stage, max_detections)."""

    def __init__(self, task, config):
        self.task = task
        self.config = config
        model_cfg = config.model
        self.iou_threshold = float(model_cfg.iou_threshold)
        self.max_detections = int(model_cfg.max_detections)
        self._functions = {}
        self._lock = threading.Lock()
        self.traces = 0  # how often a function was traced (tests: a stream never retraces)

    def function(self, max_detections):
        """The compiled ``(images, score, iou, class_mask) -> detections`` for a ``max_detections``."""
        import tensorflow as tf

        from detect.inference.graph import detect_images

        key = (self.task.inference_key(), max_detections)
        with self._lock:
            fn = self._functions.get(key)
            if fn is None:
                def run(images, score_threshold, iou_threshold, class_mask):
                    self.traces += 1
                    if self.traces > 1:
                        log.info("detect: tracing the detection graph again (%d traces)", self.traces)
                    return detect_images(self.task, self.config.data, images, score_threshold, iou_threshold,
                                         max_detections, class_mask)

                num_classes = self.task.num_classes
                fn = tf.function(run, input_signature=[
                    tf.TensorSpec([None, None, None, 3], tf.uint8, name="images"),
                    tf.TensorSpec([], tf.float32, name="score_threshold"),
                    tf.TensorSpec([], tf.float32, name="iou_threshold"),
                    tf.TensorSpec([num_classes], tf.float32, name="class_mask")])
                self._functions[key] = fn
        return fn

    def run(self, images, score_threshold, iou_threshold, max_detections, class_mask):
        out = self.function(max_detections)(images, np.float32(score_threshold), np.float32(iou_threshold),
                                            class_mask)
        return {k: v.numpy() for k, v in out.items()}


class SavedModelBackend:
    """An exported SavedModel's ``detect`` endpoint (thresholds as inputs, ``max_detections`` fixed)."""

    task = None

    def __init__(self, path, meta, num_classes):
        import tensorflow as tf

        if not (path / "variables").is_dir():
            raise InputError(path, "a SavedModel without its variables/ folder (an incomplete copy?); export "
                                   "it again with tools/export.py")
        try:
            self.iou_threshold = float(meta["iou_threshold"])
            self.max_detections = int(meta["max_detections"])
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(path / EXPORT_META, f"not written by tools/export.py: a missing or bad iou_threshold "
                                                 f"or max_detections ({error})") from None
        try:
            self.loaded = tf.saved_model.load(str(path))
            detect = self.loaded.detect
        except (OSError, ValueError, AttributeError, tf.errors.OpError) as error:
            reason = " ".join(str(error).split())[:300]
            raise InputError(path, f"cannot load this SavedModel (not a complete export of tools/export.py: "
                                   f"{reason})") from None
        # detect(images, score_threshold, iou_threshold, class_mask [C])
        model_classes = detect.input_signature[3].shape[0] if detect.input_signature else None
        if model_classes is not None and model_classes != num_classes:
            raise InputError(path / EXPORT_META, f"lists {num_classes} classes, the SavedModel holds "
                                                 f"{model_classes}; the JSON belongs to another export")

    def run(self, images, score_threshold, iou_threshold, max_detections, class_mask):
        if max_detections > self.max_detections:
            raise InputError("max_detections", f"{max_detections}: this SavedModel was exported with "
                                               f"max_detections={self.max_detections}")
        out = self.loaded.detect(images, np.float32(score_threshold), np.float32(iou_threshold), class_mask)
        out = {k: v.numpy() for k, v in out.items()}
        if max_detections < self.max_detections:
            out = dict(out, boxes=out["boxes"][:, :max_detections], scores=out["scores"][:, :max_detections],
                       classes=out["classes"][:, :max_detections],
                       num_detections=np.minimum(out["num_detections"], max_detections))
        return out


def read_export_meta(meta_path):
    """(meta dict, class names, ``ExperimentConfig`` or None) of an exported artifact's JSON."""
    try:
        meta = json.loads(Path(meta_path).read_text())
        class_names = list(meta["class_names"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(meta_path, f"not written by tools/export.py ({error})") from None
    config = None
    if meta.get("config"):
        from detect.config import from_dict
        from detect.train.experiment import ExperimentConfig

        config = from_dict(ExperimentConfig, meta["config"], source=str(meta_path))
    return meta, class_names, config


def saved_model_backend(path):
    """(backend, class names, ``ExperimentConfig`` or None) of a folder written by tools/export.py."""
    meta, class_names, config = read_export_meta(path / EXPORT_META)
    return SavedModelBackend(path, meta, len(class_names)), class_names, config
