"""Exporting a ``Detector``: a SavedModel for TensorFlow Serving, TFLite for mobile.

    det = Detector.load("runs/yolo_shapes")
    det.export("exports/yolo_shapes")                             # detect.export.saved_model
    det.export("yolo.tflite", format="tflite", quantize="int8")   # detect.export.tflite

``detect.export.check`` compares an export with the Keras detector it was
written from. ``Detector.load`` runs an export with the backends of
``detect.inference`` (``detect.export`` imports ``detect.inference``, never
the other way round at module level).

What an export may write over (``detect.outputs``, the project's one rule):

- A SavedModel folder is built in a temporary sibling and swapped in only
  when complete, so a failed export leaves the previous one as it was. It
  replaces an earlier export of ``tools/export.py`` (its ``MARKER`` of kind
  ``saved_model``; exports made before markers existed count as foreign
  once) or an empty folder; any other existing folder is refused unless
  ``overwrite``.
- A ``.tflite`` file and its ``.json`` are files: an existing one is
  refused unless ``overwrite`` (a file carries no marker to tell an earlier
  export from a user's file); both are written through temporaries and
  renamed into place together at the end.
- Never, ``overwrite`` or not, over what the detector was read from
  (``Detector.inputs``: the run directory, its config and weights) or the
  dataset's root, nor over a folder holding them.

The thresholds are checked (``Detector.resolve_options``) and the output
path claimed before any tracing or conversion, so a bad argument or
an unwritable ``out`` costs nothing and writes nothing.
"""

from detect.errors import InputError
from detect.export.saved_model import export_saved_model
from detect.export.tflite import export_tflite

FORMATS = ("saved_model", "tflite")


def export(detector, out, format="saved_model", score_threshold=None, iou_threshold=None, max_detections=None,
           overwrite=False, **kwargs):
    """Writes ``detector`` as ``format`` to ``out``; returns the path written.

    Raises:
      InputError: an unknown format, a bad threshold, an ``out`` that may
      not be written (see the module notes), or what the format's writer raises.
    """
    if format not in FORMATS:
        raise InputError("format", f"unknown export format {format!r}; one of {', '.join(FORMATS)}")
    if format == "saved_model":
        return export_saved_model(detector, out, score_threshold, iou_threshold, max_detections,
                                  overwrite=overwrite, **kwargs)
    return export_tflite(detector, out, score_threshold=score_threshold, iou_threshold=iou_threshold,
                         max_detections=max_detections, overwrite=overwrite, **kwargs)
