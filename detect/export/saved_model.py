"""SavedModel export of a ``Detector``, for TensorFlow Serving.

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

What the export may write over, and which arguments are checked before any
work: see ``detect.export``.
"""

import json
from pathlib import Path

from detect.errors import InputError
from detect.export.common import export_inputs

# The folder kind and tool in a SavedModel's MARKER (detect.outputs).
SAVED_MODEL_KIND = "saved_model"
TOOL = "tools/export.py"


def export_saved_model(detector, out, score_threshold=None, iou_threshold=None, max_detections=None,
                       overwrite=False):
    """The SavedModel of the module docstring.

    Args:
      detector: a Keras-backed ``Detector``.
      out: the folder to write: new, empty, or an earlier export (replaced
        once the new one is complete); any other folder only with
        ``overwrite``; never an input (module notes).
      score_threshold: ``serving_default``'s (default
        ``DEFAULT_SCORE_THRESHOLD``); iou_threshold and max_detections
        default to the config's. Checked as ``Detector.predict`` checks them.
      overwrite: also replace a folder (or file) that is not an earlier export.

    Returns:
      ``Path(out)``.

    Raises:
      InputError: a bad threshold, or an ``out`` that may not or cannot be
      written, before any work.
    """
    import keras
    import tensorflow as tf

    from detect.config import to_dict
    from detect.inference.backends import EXPORT_META
    from detect.inference.graph import detect_images
    from detect.ops import without_xla
    from detect.outputs import replaced_folder

    backend = detector._backend
    if getattr(backend, "task", None) is None or detector.config is None:
        raise InputError(detector.source or "Detector", "SavedModel export needs a Keras-backed detector "
                                                        "(Detector.load(run_dir)), not an exported one")
    task, data_cfg = backend.task, detector.config.data
    score, iou, max_det, _ = detector.resolve_options(score_threshold, iou_threshold, max_detections)
    num_classes = detector.num_classes
    images_spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")

    def serve(images):
        return detect_images(task, data_cfg, images, tf.constant(score, tf.float32), tf.constant(iou, tf.float32),
                             max_det)

    def detect(images, score_threshold, iou_threshold, class_mask):
        return detect_images(task, data_cfg, images, score_threshold, iou_threshold, max_det, class_mask)

    out = Path(out)
    meta = {"class_names": detector.class_names, "model_type": detector.config.model.type,
            "score_threshold": score, "iou_threshold": iou, "max_detections": max_det,
            "input": "images uint8 [B, H, W, 3] RGB", "boxes": "xyxy, input image pixels",
            "source": detector.source, "config": to_dict(detector.config)}
    with replaced_folder(out, kind=SAVED_MODEL_KIND, tool=TOOL, option="--out", overwrite=overwrite,
                         inputs=export_inputs(detector)) as tmp:
        # No XLA-compiled functions in the graph: TensorFlow Serving on CPU runs without XLA's JIT.
        with without_xla():
            archive = keras.export.ExportArchive()
            archive.track(task.model)
            archive.add_endpoint("serving_default", serve, input_signature=[images_spec])
            archive.add_endpoint("detect", detect, input_signature=[
                images_spec, tf.TensorSpec([], tf.float32, name="score_threshold"),
                tf.TensorSpec([], tf.float32, name="iou_threshold"),
                tf.TensorSpec([num_classes], tf.float32, name="class_mask")])
            archive.write_out(str(tmp), verbose=False)
        (tmp / EXPORT_META).write_text(json.dumps(meta, indent=1, default=str))
    return out
