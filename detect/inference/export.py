"""Exporting a ``Detector``: a SavedModel for TensorFlow Serving, TFLite for mobile.

SavedModel (``format="saved_model"``), written with Keras 3's
``ExportArchive`` (``TFLiteConverter.from_keras_model`` is unreliable under
Keras 3; TFLite is converted from a SavedModel instead). Two signatures:

``serving_default``: ``images`` uint8 [B, H, W, 3] (RGB, any batch and size)
  -> ``boxes`` [B, K, 4] float32 xyxy in the input image's pixels,
  ``scores`` [B, K] float32, ``classes`` [B, K] int32 (-1 in padded slots),
  ``num_detections`` [B] int32; the thresholds are those given at export.

``detect``: the same, with ``score_threshold`` and ``iou_threshold``
  (float32 scalars) and ``class_mask`` (float32 [C], 1 keep / 0 drop) as
  inputs; ``Detector.load`` uses it.

Resizing, the model, decoding and per-class NMS are all in the graph
(``detect.inference.graph``), so the artifact runs with a bare
``tf.saved_model.load`` in a process that never imports ``detect``; it holds
no XLA-compiled function (``detect.ops.without_xla``), so it needs no XLA JIT
where it is served.
``detect.json`` beside ``saved_model.pb`` names the classes (in class-id
order) and the export settings.
"""

import json
import shutil
from pathlib import Path

from detect.errors import InputError

FORMATS = ("saved_model", "tflite")


def export(detector, out, format="saved_model", score_threshold=None, iou_threshold=None, max_detections=None,
           **kwargs):
    """Writes ``detector`` as ``format`` to ``out``; returns the path written."""
    if format not in FORMATS:
        raise InputError("format", f"unknown export format {format!r}; one of {', '.join(FORMATS)}")
    if format == "saved_model":
        return export_saved_model(detector, out, score_threshold, iou_threshold, max_detections, **kwargs)
    from detect.inference.tflite import export_tflite

    return export_tflite(detector, out, score_threshold=score_threshold, iou_threshold=iou_threshold,
                         max_detections=max_detections, **kwargs)


def export_saved_model(detector, out, score_threshold=None, iou_threshold=None, max_detections=None):
    """The SavedModel of the module docstring.

    Args:
      detector: a Keras-backed ``Detector``.
      out: the directory to write (replaced if it exists).
      score_threshold: ``serving_default``'s (default
        ``DEFAULT_SCORE_THRESHOLD``); iou_threshold and max_detections
        default to the config's.

    Returns:
      ``Path(out)``.
    """
    import keras
    import tensorflow as tf

    from detect.config import to_dict
    from detect.inference.detector import DEFAULT_SCORE_THRESHOLD, EXPORT_META
    from detect.inference.graph import detect_images
    from detect.ops import without_xla

    backend = detector._backend
    task, data_cfg = backend.task, detector.config.data
    score = DEFAULT_SCORE_THRESHOLD if score_threshold is None else float(score_threshold)
    iou = backend.iou_threshold if iou_threshold is None else float(iou_threshold)
    max_det = backend.max_detections if max_detections is None else int(max_detections)
    num_classes = detector.num_classes
    images_spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")

    def serve(images):
        return detect_images(task, data_cfg, images, tf.constant(score, tf.float32), tf.constant(iou, tf.float32),
                             max_det)

    def detect(images, score_threshold, iou_threshold, class_mask):
        return detect_images(task, data_cfg, images, score_threshold, iou_threshold, max_det, class_mask)

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    # No XLA-compiled functions in the graph: TensorFlow Serving on CPU runs without XLA's JIT.
    with without_xla():
        archive = keras.export.ExportArchive()
        archive.track(task.model)
        archive.add_endpoint("serving_default", serve, input_signature=[images_spec])
        archive.add_endpoint("detect", detect, input_signature=[
            images_spec, tf.TensorSpec([], tf.float32, name="score_threshold"),
            tf.TensorSpec([], tf.float32, name="iou_threshold"),
            tf.TensorSpec([num_classes], tf.float32, name="class_mask")])
        archive.write_out(str(out), verbose=False)
    meta = {"class_names": detector.class_names, "model_type": detector.config.model.type,
            "score_threshold": score, "iou_threshold": iou, "max_detections": max_det,
            "input": "images uint8 [B, H, W, 3] RGB", "boxes": "xyxy, input image pixels",
            "source": detector.source, "config": to_dict(detector.config)}
    (out / EXPORT_META).write_text(json.dumps(meta, indent=1, default=str))
    return out
