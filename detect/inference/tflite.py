"""TFLite export of a YOLO detector, and the ``Detector`` backend that runs it.

    det = Detector.load("runs/yolo_shapes")
    det.export("yolo.tflite", format="tflite", quantize="int8")   # or None, "float16"
    lite = Detector.load("yolo.tflite")                           # reads yolo.json beside it
    lite.predict("photo.jpg")                                     # Detections in original pixels

The ``.tflite`` holds the network for one image of the config's fixed size
S (``data.image_size``, letterbox layout), batch 1, builtin ops only:

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
``YoloDetector.decode``'s code and the JSON's anchors and strides. Boxes and scores are two outputs, not one
[1, N, 4 + C]: one per-tensor scale for both would round scores to 0.

The host does the rest, as ``detect.inference.graph`` does in the graph: the
letterbox resize (``letterbox_tf``, the evaluation pipeline's own),
per-class NMS (``detect.ops.batched_nms``) on boxes in input pixels, then
``unmap_boxes`` to the original image, clipped to it. ``<out>.json`` (the
``.tflite`` path with the suffix ``.json``) beside the model holds what
``Detector.load`` needs: class names, the experiment config, default
thresholds, input size, quantisation, output names and the decoding.

Faster R-CNN is not exported: see ``FASTER_RCNN_UNSUPPORTED``.

An existing ``.tflite`` (or ``.json`` beside it) is replaced only with
``overwrite``, never when it is an input, and both files are written
through temporaries renamed into place at the end (``detect.outputs``; see
``detect.inference.export``). int8 calibration uses every training image
when the split holds fewer than asked, says so (a warning on the ``detect``
logger), and records the number used in the JSON.
"""

import json
import logging
import shutil
import tempfile
import threading
import time
import types
import warnings
from pathlib import Path

import numpy as np

from detect.errors import InputError

log = logging.getLogger("detect")

QUANTIZE = (None, "float16", "int8")
DECODE = ("model", "host")
INPUT_NAME = "image"
MODEL_OUTPUTS = ("boxes", "scores")  # decode="model"
RAW_OUTPUT = "raw_{}"  # decode="host": one per level
RAW_BOX_FIELDS = 5  # tx, ty, tw, th, objectness: a raw output's last axis is 5 + C
META_SUFFIX = ".json"
DEFAULT_CALIBRATION_IMAGES = 100
# Interpreter threads; None lets TFLite decide.
NUM_THREADS = None
# tf.lite.Interpreter's notice that LiteRT (ai_edge_litert) replaces it; LiteRT is no dependency here.
_DEPRECATION = ".*tf.lite.Interpreter is deprecated"

# What a Faster R-CNN conversion meets (TF 2.21): the whole graph fails in the converter (the while
# loop of detect.ops.batched_nms, with or without Flex); the forward pass alone (proposals, RoI
# pooling, heads) converts only with Flex ops, from detect.ops.roi (roi_pool's float64 division in
# _divide_f32 and tf.bitwise.left_shift), and the tf.lite interpreter of the pip package cannot run them.
FASTER_RCNN_UNSUPPORTED = (
    "TFLite export supports YOLO only. Faster R-CNN does not convert to TFLite builtin ops: its "
    "per-class NMS (detect.ops.batched_nms) fails in the converter even with --flex, and its forward pass "
    "(proposals, RoI pooling, heads) needs the Flex ops RealDiv (float64) and LeftShift from "
    "detect.ops.roi; export a SavedModel instead (--format saved_model)")


def meta_path(path):
    """The JSON written beside a ``.tflite`` file: ``model.tflite`` -> ``model.json``."""
    return Path(path).with_suffix(META_SUFFIX)


# ---- export ---------------------------------------------------------------------------

def export_tflite(detector, out, quantize=None, flex=False, calibration_images=DEFAULT_CALIBRATION_IMAGES,
                  decode=None, score_threshold=None, iou_threshold=None, max_detections=None, overwrite=False):
    """Writes a Keras-backed YOLO ``Detector`` as a ``.tflite`` model (see the module notes).

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
      InputError: not a Keras-backed detector, not YOLO (Faster R-CNN does
      not convert to builtin ops), not letterboxed, an unknown ``quantize``
      or ``decode``, a bad threshold or ``calibration_images``, an ``out``
      that exists (without ``overwrite``), is an input or cannot be
      written (all before any conversion), or a model that does not
      convert with the ops allowed.
    """
    from detect.config import to_dict
    from detect.inference.export import export_inputs
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
    if model_type == "faster_rcnn":
        raise InputError("format", FASTER_RCNN_UNSUPPORTED)
    if model_type != "yolo":
        raise InputError("format", f"TFLite export supports YOLO only, not model.type {model_type!r}")
    if config.data.resize != "letterbox":
        raise InputError("data.resize", f"TFLite export needs the fixed input size of the letterbox layout, "
                                        f"not {config.data.resize!r}")
    if quantize == "int8" and int(calibration_images) < 1:
        raise InputError("calibration_images", f"{calibration_images}; int8 calibration needs >= 1 image")
    score, iou, max_det, _ = detector.resolve_options(score_threshold, iou_threshold, max_detections)
    inputs = export_inputs(detector)
    for path in (out, meta_path(out)):
        check_file_output(path, "--out", overwrite=overwrite, inputs=inputs)

    task = backend.task
    size = int(config.data.image_size)
    records = None
    if quantize == "int8":
        records = calibration_records(config, detector.class_names, int(calibration_images))
        if len(records) < int(calibration_images):
            log.warning("detect: int8 calibration on all %d images of the training split (%s), fewer than the "
                        "%d asked", len(records), config.data.train_split, int(calibration_images))
    content = _convert(task, size, quantize, flex, decode, records, config, detector.max_pixels)
    ops = model_ops(content)
    foreign = sorted({op for op in ops if op.startswith("Flex") or op == "CUSTOM"})
    if foreign and not flex:  # the converter refuses these without SELECT_TF_OPS; a second check
        raise InputError(out, f"the converted model needs non-builtin ops: {', '.join(foreign)}")
    outputs = list(MODEL_OUTPUTS) if decode == "model" else [RAW_OUTPUT.format(i) for i in range(len(task.strides))]
    meta = {
        "class_names": detector.class_names, "model_type": model_type, "format": "tflite",
        "score_threshold": score, "iou_threshold": iou, "max_detections": max_det,
        "input_size": size, "quantize": quantize, "flex": bool(flex), "decode": decode,
        "calibration_images": len(records) if records is not None else None,
        "input": f"{INPUT_NAME} [1, {size}, {size}, 3] letterboxed RGB, "
                 + ("uint8 0..255 (scale 1/255)" if quantize == "int8" else "float32 in [0, 1]"),
        "outputs": outputs,
        "layout": ("boxes [1, N, 4] xyxy letterboxed-input pixels / input_size; scores [1, N, C]"
                   if decode == "model" else "raw_<l> [1, H_l, W_l, A_l, 5 + C] head outputs, finest level first"),
        "anchors": [np.asarray(a, np.float32).tolist() for a in task.anchors],
        "strides": [int(s) for s in task.strides],
        "ops": sorted(set(ops)), "source": detector.source, "config": to_dict(config),
    }
    # The JSON is renamed into place just before the model: a failure leaves both as they were.
    with atomic_path(out) as model_tmp:
        model_tmp.write_bytes(content)
        write_text_atomic(meta_path(out), json.dumps(meta, indent=1, default=str))
    return out


def _write_saved_model(task, size, decode, path):
    """The SavedModel to convert: ``serving_default`` letterboxed image -> the outputs of the module notes.

    Written with Keras 3's ``ExportArchive``, which saves the model's
    variables so that the converter freezes them (a plain ``tf.Module``
    around a Keras 3 model leaves them as resource variables).
    """
    import keras
    import tensorflow as tf

    def serve(image):
        raw = task.model(image, training=False)
        if decode == "host":
            raw = raw if isinstance(raw, (list, tuple)) else [raw]
            return {RAW_OUTPUT.format(i): level for i, level in enumerate(raw)}
        boxes, scores = task.decode(raw)
        return {"boxes": boxes * (1.0 / size), "scores": scores}

    archive = keras.export.ExportArchive()
    archive.track(task.model)
    archive.add_endpoint("serving_default", serve, input_signature=[
        tf.TensorSpec([1, size, size, 3], tf.float32, name=INPUT_NAME)])
    archive.write_out(str(path), verbose=False)


def _convert(task, size, quantize, flex, decode, records, config, max_pixels):
    """The ``.tflite`` bytes (``records``: int8's calibration images)."""
    import tensorflow as tf

    tmp = Path(tempfile.mkdtemp(prefix="detect-tflite-"))
    try:
        _write_saved_model(task, size, decode, tmp / "saved_model")
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
            converter.representative_dataset = _representative(config, records, max_pixels)
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


def _first_lines(error, limit=600):
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + " ..."


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


def _representative(config, records, max_pixels=None):
    """The converter's representative dataset: training images as the validation pipeline feeds them.

    Decoded as the pipeline decodes (``read_image``, within the detector's
    pixel budget), then / 255 and the letterbox with grey 114 padding (the
    graph's ``preprocess``).
    """
    from detect.inference.images import read_image

    letterbox = _Letterbox(config.data)

    def generate():
        for i, record in enumerate(records):
            source = record.image_path if record.image_path is not None else record.image_bytes
            image, _ = letterbox(read_image(source, max_pixels=max_pixels)[None])
            if i == 0:
                # Pins the calibrated input range to exactly [0, 1], so that the uint8 input has scale
                # 1/255 and zero point 0 whatever the sample holds; two pixels barely move the other ranges.
                image = image.copy()
                image[0, 0, 0, 0], image[0, 0, 1, 0] = 0.0, 1.0
            yield {INPUT_NAME: image}

    return generate


def _interpreter(content, num_threads=None):
    """``tf.lite.Interpreter`` for model bytes, without its deprecation notice (LiteRT is no dependency)."""
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATION, category=UserWarning)
        return tf.lite.Interpreter(model_content=content, num_threads=num_threads)


def model_ops(content):
    """Op names of a ``.tflite`` model, one per op (builtins by name, ``Flex*`` for TensorFlow ops)."""
    interpreter = _interpreter(content)
    try:
        return [op["op_name"] for op in interpreter._get_ops_details()]
    except AttributeError:  # a TensorFlow without the (private) helper: nothing to check
        return []


# ---- the backend ----------------------------------------------------------------------

class _Letterbox:
    """Host preprocessing: uint8 [B, H, W, 3] -> (float32 [B, S, S, 3] in [0, 1], transform [4]).

    The graph's own ``preprocess`` (``letterbox_tf``), so the TFLite input
    is the Keras model's input to the bit.
    """

    def __init__(self, data_cfg):
        import tensorflow as tf

        from detect.inference.graph import preprocess

        def letterbox(images):
            inputs, _, transform = preprocess(images, data_cfg)
            return inputs, transform[0]

        self._fn = tf.function(letterbox, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])

    def __call__(self, images):
        inputs, transform = self._fn(images)
        return inputs.numpy(), transform.numpy()


def host_decode(raw, anchors, strides, model_cfg, num_classes):
    """Boxes (input pixels) and scores of raw YOLO head outputs: ``YoloDetector.decode``, without the model.

    Args:
      raw: list over levels of [B, H_l, W_l, A_l, 5 + C] float32.
      anchors: list over levels of [A_l, 2] pixels; strides: list of ints.
      model_cfg: the ``YoloConfig`` (its class loss picks softmax or sigmoid).
    """
    from detect.yolo.model import YoloDetector

    # decode reads only these attributes; calling it keeps a single copy of the decoding.
    shim = types.SimpleNamespace(anchors=[np.asarray(a, np.float32) for a in anchors], strides=list(strides),
                                 config=model_cfg, num_classes=int(num_classes))
    return YoloDetector.decode(shim, list(raw))


class _Postprocess:
    """Host side after the model: (decoding,) class mask and per-class NMS, one compiled function per K.

    Args of a call: the model's outputs (dequantised, stacked over the batch,
    in ``meta["outputs"]`` order), the thresholds, K and the class mask.
    Returns ``batched_nms``'s dict (boxes in letterboxed-input pixels).
    """

    def __init__(self, meta, config, num_classes):
        self.decode = meta.get("decode", "model")
        self.size = float(meta["input_size"])
        self.anchors, self.strides = meta.get("anchors"), meta.get("strides")
        self.model_cfg = config.model if config is not None else None
        self.num_classes = num_classes
        self._functions = {}
        self._lock = threading.Lock()

    def _function(self, max_detections):
        import tensorflow as tf

        from detect.ops import batched_nms

        def postprocess(outputs, score_threshold, iou_threshold, class_mask):
            if self.decode == "host":
                boxes, scores = host_decode(outputs, self.anchors, self.strides, self.model_cfg, self.num_classes)
            else:
                boxes, scores = outputs[0] * self.size, outputs[1]
            return batched_nms(boxes, scores * class_mask, max_output_size_per_class=max_detections,
                               max_total_size=max_detections, iou_threshold=iou_threshold,
                               score_threshold=score_threshold)

        return tf.function(postprocess, reduce_retracing=True)

    def __call__(self, outputs, score_threshold, iou_threshold, max_detections, class_mask):
        import tensorflow as tf

        with self._lock:
            fn = self._functions.get(max_detections)
            if fn is None:
                fn = self._functions[max_detections] = self._function(max_detections)
        out = fn([tf.constant(o) for o in outputs], tf.constant(score_threshold, tf.float32),
                 tf.constant(iou_threshold, tf.float32), tf.constant(class_mask, tf.float32))
        return {k: v.numpy() for k, v in out.items()}


class TFLiteBackend:
    """A ``.tflite`` export run by ``tf.lite.Interpreter``, one interpreter per thread, one image per call.

    Attributes:
      task: None (an exported artifact).
      iou_threshold, max_detections: the export's defaults.
      size: the input side S.
      meta: the JSON written at export.
    """

    task = None

    def __init__(self, path, meta, config, num_classes, num_threads=NUM_THREADS):
        self.path = Path(path)
        self.meta = meta
        self.iou_threshold = float(meta["iou_threshold"])
        self.max_detections = int(meta["max_detections"])
        self.size = int(meta["input_size"])
        self.output_names = list(meta["outputs"])
        self.num_classes = int(num_classes)
        self.num_threads = num_threads
        if config is None:
            raise InputError(meta_path(path), "no experiment config: the letterbox and decoding are unknown")
        try:
            self._content = self.path.read_bytes()
        except OSError as error:
            raise InputError(path, f"cannot read the file ({error.strerror or error})") from None
        self._local = threading.local()
        self._letterbox = _Letterbox(config.data)
        self._postprocess = _Postprocess(meta, config, num_classes)
        self._interpreter()  # a bad file fails at load, not at the first image

    def _interpreter(self):
        """This thread's (interpreter, input detail, output details in ``output_names`` order)."""
        state = getattr(self._local, "state", None)
        if state is None:
            try:
                interpreter = _interpreter(self._content, self.num_threads)
                interpreter.allocate_tensors()
                runner = interpreter.get_signature_runner()
                inputs, outputs = runner.get_input_details(), runner.get_output_details()
                del runner  # it would pin the interpreter's buffers (invoke refuses then)
            except (ValueError, RuntimeError) as error:
                raise InputError(self.path, f"not a TFLite model ({_first_lines(error, 200)})") from None
            if set(inputs) != {INPUT_NAME} or set(outputs) != set(self.output_names):
                raise InputError(self.path, f"inputs {sorted(inputs)} and outputs {sorted(outputs)} are not "
                                            f"{INPUT_NAME} -> {', '.join(self.output_names)} as "
                                            f"{meta_path(self.path).name} says")
            # scores [1, N, C] (decode="model"); raw_<l> [1, H, W, A, 5 + C] (decode="host")
            last = int(outputs[self.output_names[-1]]["shape"][-1])
            model_classes = last if self.output_names == list(MODEL_OUTPUTS) else last - RAW_BOX_FIELDS
            if model_classes != self.num_classes:
                raise InputError(meta_path(self.path), f"lists {self.num_classes} classes, {self.path.name} "
                                                       f"holds {model_classes}; the JSON belongs to another export")
            state = (interpreter, inputs[INPUT_NAME], [outputs[name] for name in self.output_names])
            self._local.state = state
        return state

    def letterbox(self, images):
        """The model input of a batch of one size: (float32 [B, S, S, 3] in [0, 1], transform [4])."""
        return self._letterbox(images)

    def input_details(self):
        """The input tensor's details (dtype, shape, ``quantization`` (scale, zero point))."""
        return self._interpreter()[1]

    def output_details(self):
        """Output name -> tensor details."""
        return dict(zip(self.output_names, self._interpreter()[2]))

    def invoke(self, image):
        """The model alone: a letterboxed float32 [1, S, S, 3] image in [0, 1] -> its float32 outputs (a list)."""
        interpreter, detail, outputs = self._interpreter()
        interpreter.set_tensor(detail["index"], _quantise(image, detail))
        interpreter.invoke()
        return [_dequantise(interpreter.get_tensor(o["index"]), o) for o in outputs]

    def run(self, images, score_threshold, iou_threshold, max_detections, class_mask):
        from detect.data.transforms import unmap_boxes

        images = np.asarray(images)
        per_image = []
        for image in images:
            inputs, transform = self.letterbox(image[None])
            per_image.append(self.invoke(inputs))
        outputs = [np.concatenate(parts) for parts in zip(*per_image)]
        out = self._postprocess(outputs, score_threshold, iou_threshold, int(max_detections),
                                np.asarray(class_mask, np.float32))
        boxes = unmap_boxes(out["boxes"], transform, np.asarray(images.shape[1:3], np.float32))
        valid = np.arange(boxes.shape[1])[None, :] < out["num_detections"][:, None]
        return {"boxes": np.where(valid[..., None], boxes, 0.0).astype(np.float32),
                "scores": out["scores"].astype(np.float32), "classes": out["classes"].astype(np.int32),
                "num_detections": out["num_detections"].astype(np.int32)}


def _quantise(values, detail):
    """A float array as the tensor's dtype, with its scale and zero point (float tensors: a cast)."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return values.astype(dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero), info.min, info.max).astype(dtype)


def _dequantise(values, detail):
    if np.issubdtype(values.dtype, np.floating):
        return values.astype(np.float32)
    scale, zero = detail["quantization"]
    return ((values.astype(np.float32) - zero) * scale).astype(np.float32)


def tflite_backend(path):
    """(backend, class names, ``ExperimentConfig``) of a ``.tflite`` export, for ``Detector.load``."""
    from detect.inference.detector import read_export_meta

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    meta_file = meta_path(path)
    if not meta_file.is_file():
        raise InputError(path, f"no {meta_file.name} beside it; load a model written by tools/export.py "
                               f"--format tflite")
    meta, class_names, config = read_export_meta(meta_file)
    if meta.get("format") != "tflite" or meta.get("model_type") != "yolo" or "outputs" not in meta:
        raise InputError(meta_file, "not the JSON of a TFLite export of a YOLO detector")
    return TFLiteBackend(path, meta, config, len(class_names)), class_names, config


# ---- checking an export ----------------------------------------------------------------

def map50(result):
    """mAP@0.5 of an evaluation result: VOC's mAP, COCO's AP50."""
    if hasattr(result, "mAP"):
        return float(result.mAP)
    return float(result.stats["AP50"])


def artifact_size(path):
    """Bytes of an exported file, or of every file under an exported directory."""
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def check_artifact(detector, artifact_path, split="val", speed_images=50):
    """How an export compares with the Keras detector it was written from.

    Both are scored on the same split (``Detector.evaluate``, the Keras one
    through the evaluation pipeline, the artifact image by image through its
    own backend), and the artifact is timed one image at a time:
    end to end (file path in, ``Detections`` out: decoding, letterbox, model,
    NMS, mapping back) and the model alone (TFLite: one interpreter call on a
    prepared input; SavedModel: its whole graph on a decoded image).

    Args:
      detector: the Keras-backed ``Detector``.
      artifact_path: what ``export`` wrote (``.tflite`` file or SavedModel directory).
      split: the split to score (``val`` by default).
      speed_images: images timed (the first ones of the split), >= 1.

    Returns:
      dict: ``keras_mAP50``, ``artifact_mAP50``, ``mAP50_drop`` (points,
      i.e. x 100), ``size_bytes``, ``images_per_s`` (end to end),
      ``model_images_per_s``, ``keras_images_per_s`` (the Keras detector end
      to end, for comparison), ``timed_images``.
    """
    from detect.inference.detector import Detector
    from detect.inference.images import read_image
    from detect.train.data import load_records, prepare_data
    from detect.train.predict import split_name

    artifact = Detector.load(artifact_path)
    keras_map = map50(detector.evaluate(split=split))
    artifact_map = map50(artifact.evaluate(split=split))

    prepare_data(detector.config.data)
    records = load_records(detector.config.data, split_name(detector.config.data, split), detector.class_names,
                           skipped=[])[:max(1, int(speed_images))]
    sources = [r.image_path if r.image_path is not None else r.image_bytes for r in records]

    def per_second(call, items):
        call(items[0])  # warm-up: tracing, allocation
        start = time.perf_counter()
        for item in items:
            call(item)
        return len(items) / (time.perf_counter() - start)

    backend = artifact._backend
    if hasattr(backend, "invoke"):  # TFLite: the interpreter alone
        inputs = [backend.letterbox(read_image(s)[None])[0] for s in sources]
        model_call = backend.invoke
    else:
        inputs = [read_image(s)[None] for s in sources]
        mask = np.ones(artifact.num_classes, np.float32)

        def model_call(image):
            backend.run(image, 0.25, backend.iou_threshold, backend.max_detections, mask)
    return {
        "keras_mAP50": keras_map, "artifact_mAP50": artifact_map,
        "mAP50_drop": round(100.0 * (keras_map - artifact_map), 3),
        "size_bytes": artifact_size(artifact_path),
        "images_per_s": per_second(artifact.predict, sources),
        "model_images_per_s": per_second(model_call, inputs),
        "keras_images_per_s": per_second(detector.predict, sources),
        "timed_images": len(sources),
    }
