"""The ``Detector`` backend that runs a ``.tflite`` export (``detect.export.tflite`` writes it).

    lite = Detector.load("yolo.tflite")   # reads yolo.json beside it
    lite.predict("photo.jpg")             # Detections in original pixels

The model's inputs and outputs, its quantisation and decoding, are described
in ``detect.export.tflite``. The model runs in ``tf.lite.Interpreter``, one
interpreter per thread, one image per call.

The host does the rest, as ``detect.inference.graph`` does in the graph: the
validation resize (``detect.inference.graph.preprocess``, the evaluation
pipeline's own; a shortest-side image is then padded with zeros at the bottom
and right to the model's fixed S x S), per-class NMS
(``detect.ops.batched_nms``) on boxes in input pixels, then
``unmap_boxes`` to the original image, clipped to it. ``<out>.json`` (the
``.tflite`` path with the suffix ``.json``) beside the model holds what
``Detector.load`` needs: class names, the experiment config, default
thresholds, input size, quantisation, output names and the decoding.
"""

import threading
import types
import warnings
from pathlib import Path

import numpy as np

from detect.errors import InputError

INPUT_NAME = "image"
# Faster R-CNN's second input [1, 3]: the resized image's (height, width) inside the S x S input and its
# resize scale, py-faster-rcnn's im_info (proposals are clipped to the extent, their minimum size scales).
INFO_NAME = "image_info"
MODEL_OUTPUTS = ("boxes", "scores")  # decode="model"
RAW_OUTPUT = "raw_{}"  # decode="host": one per level
RAW_BOX_FIELDS = 5  # tx, ty, tw, th, objectness: a raw output's last axis is 5 + C
META_SUFFIX = ".json"
# Interpreter threads; None lets TFLite decide.
NUM_THREADS = None
# tf.lite.Interpreter's notice that LiteRT (ai_edge_litert) replaces it; LiteRT is no dependency here.
_DEPRECATION = ".*tf.lite.Interpreter is deprecated"


def meta_path(path):
    """The JSON written beside a ``.tflite`` file: ``model.tflite`` -> ``model.json``."""
    return Path(path).with_suffix(META_SUFFIX)


def _first_lines(error, limit=600):
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _interpreter(content, num_threads=None):
    """``tf.lite.Interpreter`` for model bytes, without its deprecation notice (LiteRT is no dependency)."""
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATION, category=UserWarning)
        return tf.lite.Interpreter(model_content=content, num_threads=num_threads)


def export_input_size(data_cfg):
    """The side S of a TFLite model's square input: letterbox's ``image_size``; for the shortest-side
    layout ``max_side`` rounded up to ``size_divisor``, which every resized image fits."""
    if data_cfg.resize == "letterbox":
        return int(data_cfg.image_size)
    divisor = int(data_cfg.size_divisor)
    return -(-int(data_cfg.max_side) // divisor) * divisor


class _Preprocess:
    """Host preprocessing: uint8 [B, H, W, 3] -> (float32 [B, S, S, 3] in [0, 1], image_info [B, 3], transform [4]).

    The graph's own ``preprocess``, so the TFLite input is the Keras model's
    input to the bit (letterbox), or that input padded with zeros at the
    bottom and right to S x S (shortest side). ``image_info``: the resized
    extent (height, width) and the resize scale.
    """

    def __init__(self, data_cfg, size):
        import tensorflow as tf

        from detect.inference.graph import preprocess

        def prepare(images):
            inputs, image_hw, transform = preprocess(images, data_cfg)
            extra = size - tf.shape(inputs)[1:3]
            inputs = tf.pad(inputs, [[0, 0], [0, extra[0]], [0, extra[1]], [0, 0]])
            info = tf.concat([tf.cast(image_hw, tf.float32), transform[:, :1]], axis=1)
            return tf.ensure_shape(inputs, [None, size, size, 3]), info, transform[0]

        self._fn = tf.function(prepare, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])

    def __call__(self, images):
        inputs, info, transform = self._fn(images)
        return inputs.numpy(), info.numpy(), transform.numpy()


def host_decode(raw, anchors, strides, model_cfg, num_classes):
    """Boxes (input pixels) and scores of raw YOLO head outputs: ``YoloTask.decode``, without the model.

    Args:
      raw: list over levels of [B, H_l, W_l, A_l, 5 + C] float32.
      anchors: list over levels of [A_l, 2] pixels; strides: list of ints.
      model_cfg: the ``YoloConfig`` (its class loss picks softmax or sigmoid).
    """
    from detect.yolo.model import YoloTask

    # decode reads only these attributes; calling it keeps a single copy of the decoding.
    shim = types.SimpleNamespace(anchors=[np.asarray(a, np.float32) for a in anchors], strides=list(strides),
                                 config=model_cfg, num_classes=int(num_classes))
    return YoloTask.decode(shim, list(raw))


class _Postprocess:
    """Host side after the model: (decoding,) class mask and per-class NMS, one compiled function per K.

    Args of a call: the model's outputs (dequantised, stacked over the batch,
    in ``meta["outputs"]`` order), the thresholds, K and the class mask.
    Returns ``batched_nms``'s dict (boxes in the model input's pixels).
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
        self.input_names = list(meta.get("inputs", [INPUT_NAME]))  # (YOLO exports before Faster R-CNN's: none)
        self.output_names = list(meta["outputs"])
        self.num_classes = int(num_classes)
        self.num_threads = num_threads
        if config is None:
            raise InputError(meta_path(path), "no experiment config: the resize and decoding are unknown")
        try:
            self._content = self.path.read_bytes()
        except OSError as error:
            raise InputError(path, f"cannot read the file ({error.strerror or error})") from None
        self._local = threading.local()
        self._preprocess = _Preprocess(config.data, self.size)
        self._postprocess = _Postprocess(meta, config, num_classes)
        self._interpreter()  # a bad file fails at load, not at the first image

    def _interpreter(self):
        """This thread's (interpreter, input details by name, output details in ``output_names`` order)."""
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
            if set(inputs) != set(self.input_names) or set(outputs) != set(self.output_names):
                raise InputError(self.path, f"inputs {sorted(inputs)} and outputs {sorted(outputs)} are not "
                                            f"{', '.join(self.input_names)} -> {', '.join(self.output_names)} as "
                                            f"{meta_path(self.path).name} says")
            # scores [1, N, C] or [1, R, C] (decode="model"); raw_<l> [1, H, W, A, 5 + C] (decode="host")
            last = int(outputs[self.output_names[-1]]["shape"][-1])
            model_classes = last if self.output_names == list(MODEL_OUTPUTS) else last - RAW_BOX_FIELDS
            if model_classes != self.num_classes:
                raise InputError(meta_path(self.path), f"lists {self.num_classes} classes, {self.path.name} "
                                                       f"holds {model_classes}; the JSON belongs to another export")
            state = (interpreter, inputs, [outputs[name] for name in self.output_names])
            self._local.state = state
        return state

    def model_input(self, images):
        """The model's inputs for a batch of one image: ({name: array}, transform [4])."""
        inputs, info, transform = self._preprocess(images)
        feeds = {INPUT_NAME: inputs, INFO_NAME: info}
        return {name: feeds[name] for name in self.input_names}, transform

    def input_details(self):
        """The image input's details (dtype, shape, ``quantization`` (scale, zero point))."""
        return self._interpreter()[1][INPUT_NAME]

    def output_details(self):
        """Output name -> tensor details."""
        return dict(zip(self.output_names, self._interpreter()[2]))

    def invoke(self, feeds):
        """The model alone: ``model_input``'s arrays -> its float32 outputs (a list, ``output_names`` order)."""
        interpreter, details, outputs = self._interpreter()
        for name, values in feeds.items():
            interpreter.set_tensor(details[name]["index"], _quantise(values, details[name]))
        interpreter.invoke()
        return [_dequantise(interpreter.get_tensor(o["index"]), o) for o in outputs]

    def run(self, images, score_threshold, iou_threshold, max_detections, class_mask):
        from detect.data.transforms import unmap_boxes

        images = np.asarray(images)
        per_image = []
        for image in images:
            feeds, transform = self.model_input(image[None])
            per_image.append(self.invoke(feeds))
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
    from detect.inference.backends import read_export_meta

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    meta_file = meta_path(path)
    if not meta_file.is_file():
        raise InputError(path, f"no {meta_file.name} beside it; load a model written by tools/export.py "
                               f"--format tflite")
    meta, class_names, config = read_export_meta(meta_file)
    if meta.get("format") != "tflite" or meta.get("model_type") not in ("yolo", "faster_rcnn") or "outputs" not in meta:
        raise InputError(meta_file, "not the JSON of a TFLite export of a YOLO or Faster R-CNN detector")
    return TFLiteBackend(path, meta, config, len(class_names)), class_names, config
