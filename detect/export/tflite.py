"""TFLite export of a YOLO or Faster R-CNN detector (``detect.inference.tflite_backend`` runs it).

    det = Detector.load("runs/yolo_shapes")
    det.export("yolo.tflite", format="tflite", quantize="int8")   # or None, "float16"
    lite = Detector.load("yolo.tflite")                           # reads yolo.json beside it
    lite.predict("photo.jpg")                                     # Detections in original pixels

A YOLO ``.tflite`` holds the network for one image of the config's fixed
size S (``data.image_size``, letterbox layout), batch 1, builtin ops only:

    input  ``image``   [1, S, S, 3]  the letterboxed RGB image (grey 114
                                     padding): float32 in [0, 1] (float32 and
                                     float16 variants); uint8 0..255 for int8
                                     (scale 1/255, zero point 0)

float32 and float16 (``decode="model"``, their default) also decode the boxes:

    output ``boxes``   [1, N, 4]     xyxy in the letterboxed input divided by
                                     S (about [0, 1]), every anchor cell
    output ``scores``  [1, N, C]     objectness x class probability

int8 (``decode="host"``, its default) stops at the raw head outputs, one per
level, finest first, each int8 with its own scale and zero point:

    output ``raw_<l>`` [1, H_l, W_l, A_l, 5 + C]  tx, ty, tw, th, objectness
                                     logit, C class logits per anchor cell

Decoding in int8 is what costs accuracy (``exp`` of the size offsets and
the product of two probabilities have no good int8 scale: on the shapes
model, validation mAP@0.5 fell by 31 points with the decoding in the int8
model, by 0.1 with the raw heads), so the host decodes them in float32 with
``YoloTask.decode``'s code and the JSON's anchors and strides. Boxes and scores are two outputs, not one
[1, N, 4 + C]: one per-tensor scale for both would round scores to 0.

Faster R-CNN (float32 and float16; ``decode="model"``) takes a square
canvas S = ``data.max_side`` rounded up to ``data.size_divisor`` (every
shortest-side resize fits it; the host pads the image with zeros at the
bottom and right, as the pipeline pads to the divisor, but on to S, so
scores near that padding can differ from the Keras graph's) and the
original's ``im_info``:

    input  ``image``       [1, S, S, 3]  float32 in [0, 1]
    input  ``image_info``  [1, 3]        the resized image's height and width
                                         in the canvas, and its resize scale
    output ``boxes``       [1, R, C, 4]  per-class boxes, xyxy canvas pixels / S,
                                         clipped to the image (R = test_post_nms)
    output ``scores``      [1, R, C]     class probabilities (0 for padded RoIs)

The model holds the whole forward pass: backbone, RPN, proposals with their
NMS (``detect.ops.nms``'s tiled loop converts to TFLite's WHILE), RoI
pooling (``detect.ops.roi``: int32 arithmetic for its exact divisions, no
float64, no shift-left) and the head; the per-class NMS of the detections runs
on the host, as for YOLO. int8 is YOLO's only (its calibration and host
decoding are written for YOLO's raw heads).

The host does the rest (the resize, per-class NMS, unmapping) and reads
``<out>.json`` beside the model: ``detect.inference.tflite_backend`` says
how and what the JSON holds.

An existing ``.tflite`` (or ``.json`` beside it) is replaced only with
``overwrite``, never when it is an input, and both files are written
through temporaries renamed into place at the end (``detect.outputs``; see
``detect.export``). int8 calibration uses every training image
when the split holds fewer than asked, says so (a warning on the ``detect``
logger), and records the number used in the JSON.
"""

import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from detect.errors import InputError
from detect.export.common import export_inputs
from detect.inference.tflite_backend import (_DEPRECATION, INFO_NAME, INPUT_NAME, MODEL_OUTPUTS, RAW_OUTPUT,
                                             _first_lines, _interpreter, _Preprocess, export_input_size, meta_path)

log = logging.getLogger("detect")

QUANTIZE = (None, "float16", "int8")
DECODE = ("model", "host")
DEFAULT_CALIBRATION_IMAGES = 100
# The JSON's description of the outputs, by (model type, decoding).
_LAYOUTS = {
    ("yolo", "model"): "boxes [1, N, 4] xyxy letterboxed-input pixels / input_size; scores [1, N, C]",
    ("yolo", "host"): "raw_<l> [1, H_l, W_l, A_l, 5 + C] head outputs, finest level first",
    ("faster_rcnn", "model"): "boxes [1, R, C, 4] per-class xyxy input pixels / input_size; scores [1, R, C]",
}

def export_tflite(detector, out, quantize=None, flex=False, calibration_images=DEFAULT_CALIBRATION_IMAGES,
                  decode=None, score_threshold=None, iou_threshold=None, max_detections=None, overwrite=False):
    """Writes a Keras-backed YOLO or Faster R-CNN ``Detector`` as a ``.tflite`` model (see the module notes).

    Args:
      detector: a ``Detector`` built from a config (``Detector.load(run_dir)``).
      out: the ``.tflite`` path to write; ``meta_path(out)`` is written beside it.
      quantize: None (float32), ``"float16"`` (float16 weights, float32
        compute and I/O) or ``"int8"`` (full integer: int8 weights and
        activations, uint8 input, int8 outputs), calibrated on
        ``calibration_images`` images of the config's training split,
        preprocessed as the validation pipeline preprocesses.
      flex: also allow TensorFlow ops (``SELECT_TF_OPS``); such a model
        needs the Flex delegate (in the ``tensorflow`` pip package, not in
        the LiteRT runtime alone).
      calibration_images: int8 only, >= 1; a training split with fewer
        images calibrates on all of them (a warning says so, the JSON
        records the number used).
      decode: ``"model"`` (boxes and scores out of the model) or ``"host"``
        (raw head outputs; the backend decodes). Default: host for int8,
        model otherwise.
      score_threshold, iou_threshold, max_detections: the defaults recorded
        in the JSON (the backend applies them on the host; each call can
        override them), checked as ``Detector.predict`` checks them.
      overwrite: replace an existing ``out`` or JSON (never an input of
        the detector, ``Detector.inputs``).

    Returns:
      ``Path(out)``.

    Raises:
      InputError: not a Keras-backed detector, a YOLO that is not
      letterboxed, an unknown ``quantize`` or ``decode`` (Faster R-CNN:
      int8 or host decoding), a bad threshold or ``calibration_images``, an ``out``
      that exists (without ``overwrite``), is an input or cannot be
      written (all before any conversion), or a model that does not
      convert with the ops allowed.
    """
    from detect.config import to_dict
    from detect.outputs import atomic_path, check_file_output, write_text_atomic

    backend = detector._backend
    config = detector.config
    if getattr(backend, "task", None) is None or config is None:
        raise InputError(detector.source or "Detector", "TFLite export needs a Keras-backed detector "
                                                        "(Detector.load(run_dir)), not an exported one")
    if quantize not in QUANTIZE:
        raise InputError("quantize", f"unknown quantisation {quantize!r}; one of None (float32), float16, int8")
    decode = ("host" if quantize == "int8" else "model") if decode is None else decode
    if decode not in DECODE:
        raise InputError("decode", f"unknown decoding {decode!r}; one of {', '.join(DECODE)}")
    out = Path(out)
    if out.suffix != ".tflite":
        raise InputError(out, "a TFLite export is written to a file ending in .tflite")
    model_type = config.model.type
    if model_type not in ("yolo", "faster_rcnn"):
        raise InputError("format", f"TFLite export supports YOLO and Faster R-CNN, not model.type {model_type!r}")
    if model_type == "yolo" and config.data.resize != "letterbox":
        raise InputError("data.resize", f"TFLite export of YOLO needs the fixed input size of the letterbox "
                                        f"layout, not {config.data.resize!r}")
    if model_type == "faster_rcnn" and (quantize == "int8" or decode == "host"):
        raise InputError("quantize" if quantize == "int8" else "decode",
                         "Faster R-CNN exports to TFLite in float32 or float16 with its decoding in the model; "
                         "int8 and host decoding are YOLO's")
    if quantize == "int8" and int(calibration_images) < 1:
        raise InputError("calibration_images", f"{calibration_images}; int8 calibration needs >= 1 image")
    score, iou, max_det, _ = detector.resolve_options(score_threshold, iou_threshold, max_detections)
    inputs = export_inputs(detector)
    for path in (out, meta_path(out)):
        check_file_output(path, "--out", overwrite=overwrite, inputs=inputs)

    task = backend.task
    size = export_input_size(config.data)
    records = None
    if quantize == "int8":
        records = calibration_records(config, detector.class_names, int(calibration_images))
        if len(records) < int(calibration_images):
            log.warning("detect: int8 calibration on all %d images of the training split (%s), fewer than the "
                        "%d asked", len(records), config.data.train_split, int(calibration_images))
    content = _convert(task, size, quantize, flex, decode, records, config, detector.max_pixels, model_type)
    ops = model_ops(content)
    foreign = sorted({op for op in ops if op.startswith("Flex") or op == "CUSTOM"})
    if foreign and not flex:  # the converter refuses these without SELECT_TF_OPS; a second check
        raise InputError(out, f"the converted model needs non-builtin ops: {', '.join(foreign)}")
    outputs = list(MODEL_OUTPUTS) if decode == "model" else [RAW_OUTPUT.format(i) for i in range(len(task.strides))]
    yolo = model_type == "yolo"
    meta = {
        "class_names": detector.class_names, "model_type": model_type, "format": "tflite",
        "score_threshold": score, "iou_threshold": iou, "max_detections": max_det,
        "input_size": size, "quantize": quantize, "flex": bool(flex), "decode": decode,
        "calibration_images": len(records) if records is not None else None,
        "inputs": [INPUT_NAME] if yolo else [INPUT_NAME, INFO_NAME],
        "input": (f"{INPUT_NAME} [1, {size}, {size}, 3] letterboxed RGB, "
                  + ("uint8 0..255 (scale 1/255)" if quantize == "int8" else "float32 in [0, 1]")) if yolo else
                 (f"{INPUT_NAME} [1, {size}, {size}, 3] resized RGB float32 in [0, 1], zero-padded at the bottom "
                  f"and right; {INFO_NAME} [1, 3] its height and width in the input and its resize scale"),
        "outputs": outputs,
        "layout": _LAYOUTS[model_type, decode],
        "ops": sorted(set(ops)), "source": detector.source, "config": to_dict(config),
    }
    if yolo:
        meta.update(anchors=[np.asarray(a, np.float32).tolist() for a in task.anchors],
                    strides=[int(s) for s in task.strides])
    # The JSON is renamed into place just before the model: a failure leaves both as they were.
    with atomic_path(out) as model_tmp:
        model_tmp.write_bytes(content)
        write_text_atomic(meta_path(out), json.dumps(meta, indent=1, default=str))
    return out


def _write_saved_model(task, size, decode, path, model_type):
    """The SavedModel to convert: ``serving_default`` of the module notes' inputs and outputs.

    Written with Keras 3's ``ExportArchive``, which saves the model's
    variables so that the converter freezes them (a plain ``tf.Module``
    around a Keras 3 model leaves them as resource variables).
    """
    import keras
    import tensorflow as tf

    image_spec = tf.TensorSpec([1, size, size, 3], tf.float32, name=INPUT_NAME)

    def serve_yolo(image):
        raw = task.model(image, training=False)
        if decode == "host":
            raw = raw if isinstance(raw, (list, tuple)) else [raw]
            return {RAW_OUTPUT.format(i): level for i, level in enumerate(raw)}
        boxes, scores = task.decode(raw)
        return {"boxes": boxes * (1.0 / size), "scores": scores}

    def serve_faster_rcnn(image, image_info):
        image_hw = tf.cast(image_info[:, :2], tf.int32)
        scale = image_info[:, 2:3]
        # The transform's first entry is what the forward pass reads (proposals' minimum size scales with it).
        transform = tf.concat([scale, scale, tf.zeros_like(image_info[:, :2])], axis=1)
        outputs = task.forward({"image": image, "image_hw": image_hw, "transform": transform}, training=False)
        boxes, scores = task.decode(outputs, image_hw)
        return {"boxes": boxes * (1.0 / size), "scores": scores}

    archive = keras.export.ExportArchive()
    archive.track(task.model)
    if model_type == "yolo":
        archive.add_endpoint("serving_default", serve_yolo, input_signature=[image_spec])
    else:
        archive.add_endpoint("serving_default", serve_faster_rcnn, input_signature=[
            image_spec, tf.TensorSpec([1, 3], tf.float32, name=INFO_NAME)])
    archive.write_out(str(path), verbose=False)


def _convert(task, size, quantize, flex, decode, records, config, max_pixels, model_type):
    """The ``.tflite`` bytes (``records``: int8's calibration images)."""
    import tensorflow as tf

    tmp = Path(tempfile.mkdtemp(prefix="detect-tflite-"))
    try:
        _write_saved_model(task, size, decode, tmp / "saved_model", model_type)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp / "saved_model"),
                                                             signature_keys=["serving_default"])
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if quantize == "int8" else tf.lite.OpsSet.TFLITE_BUILTINS]
        if flex:
            ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
        converter.target_spec.supported_ops = ops
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = _representative(config, records, size, max_pixels)
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.int8
        try:
            with warnings.catch_warnings():  # int8 calibration runs a tf.lite.Interpreter
                warnings.filterwarnings("ignore", message=_DEPRECATION, category=UserWarning)
                return converter.convert()
        except InputError:
            raise
        except Exception as error:  # ConverterError and friends: their text names the ops
            raise InputError("tflite", f"conversion failed{'' if flex else ' with builtin ops only'}: "
                                       f"{_first_lines(error)}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def calibration_records(config, class_names, count, seed=0):
    """``count`` records of the config's training split (a fixed random sample, in split order)."""
    from detect.train.data import load_records, prepare_data

    prepare_data(config.data)
    records = load_records(config.data, config.data.train_split, class_names, skipped=[])
    if not records:
        raise InputError(config.data.train_split, "int8 calibration needs training images; the split is empty")
    if len(records) > count:
        picks = np.sort(np.random.default_rng(seed).choice(len(records), count, replace=False))
        records = [records[i] for i in picks]
    return records


def _representative(config, records, size, max_pixels=None):
    """The converter's representative dataset: training images as the validation pipeline feeds them.

    Decoded as the pipeline decodes (``read_image``, within the detector's
    pixel budget), then / 255 and the letterbox with grey 114 padding (the
    graph's ``preprocess``).
    """
    from detect.inference.images import read_image

    prepare = _Preprocess(config.data, size)

    def generate():
        for i, record in enumerate(records):
            source = record.image_path if record.image_path is not None else record.image_bytes
            image = prepare(read_image(source, max_pixels=max_pixels)[None])[0]
            if i == 0:
                # Pins the calibrated input range to exactly [0, 1], so that the uint8 input has scale
                # 1/255 and zero point 0 whatever the sample holds; two pixels barely move the other ranges.
                image = image.copy()
                image[0, 0, 0, 0], image[0, 0, 1, 0] = 0.0, 1.0
            yield {INPUT_NAME: image}

    return generate


def model_ops(content):
    """Op names of a ``.tflite`` model, one per op (builtins by name, ``Flex*`` for TensorFlow ops)."""
    interpreter = _interpreter(content)
    try:
        return [op["op_name"] for op in interpreter._get_ops_details()]
    except AttributeError:  # a TensorFlow without the (private) helper: nothing to check
        return []
