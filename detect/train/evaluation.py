"""Validation: predictions mapped back to original images, scored like tools/eval.py."""

import numpy as np
import tensorflow as tf

from detect.data.batch import batch_image_hw
from detect.eval.accumulator import DetectionAccumulator


def make_predict_fn(task):
    """Compiled ``(images, image_hw, transform=None) -> batched_nms dict`` (traced once per input size).

    ``image_hw`` [B, 2] int32: each image's valid extent in the padded batch,
    which a two-stage model needs to clip proposals; ``transform`` [B, 4]
    (optional): the resize transforms, whose scale sets the smallest
    proposal. A task whose inference parts change between stages says so
    by its ``inference_key()`` (``detect.models.protocol``); one compiled
    function is kept per key, and runs ``forward`` in that mode.
    """
    # One trace per input shape, on purpose: decoding and batched_nms need the
    # static number of boxes, which a shape-relaxed trace (reduce_retracing) loses.
    def compile_predict(key):
        @tf.function
        def predict(batch):
            return task.postprocess(task.forward(batch, training=False, mode=key), batch["image_hw"])

        return predict

    compiled = {}

    def predict_fn(images, image_hw, transform=None):
        key = task.inference_key()
        if key not in compiled:
            compiled[key] = compile_predict(key)
        batch = {"image": images, "image_hw": image_hw}
        if transform is not None:
            batch["transform"] = transform
        return compiled[key](batch)

    return predict_fn


def predict_dataset(task, dataset, unmap_boxes, predict_fn=None):
    """Runs the detector over a dataset in original-image coordinates.

    Args:
      task: has ``forward`` and ``postprocess`` (``detect.models.protocol.Task``).
      dataset: batches with ``image``, ``image_id``, ``transform``,
        ``original_size`` and ``image_hw`` (see ``detect.data.pipeline``).
      unmap_boxes: ``(boxes [B, K, 4], transform [B, 4]) -> boxes`` back to
        original pixels.

    Yields:
      (image_id str, boxes [K, 4] xyxy original pixels, scores [K], classes [K]).
    """
    predict_fn = predict_fn or make_predict_fn(task)
    for batch in dataset:
        out = predict_fn(batch["image"], batch_image_hw(batch), batch.get("transform"))
        boxes = unmap_boxes(out["boxes"], batch["transform"]).numpy()
        sizes = batch["original_size"].numpy().astype(np.float32)  # [B, 2] (h, w)
        counts = out["num_detections"].numpy()
        scores, classes = out["scores"].numpy(), out["classes"].numpy()
        for i, image_id in enumerate(batch["image_id"].numpy()):
            n = int(counts[i])
            b = boxes[i, :n].copy()
            b[:, 0::2] = np.clip(b[:, 0::2], 0, sizes[i, 1])
            b[:, 1::2] = np.clip(b[:, 1::2], 0, sizes[i, 0])
            key = image_id.decode() if isinstance(image_id, bytes) else str(image_id)
            yield key, b, scores[i, :n], classes[i, :n]


def evaluate_predictions(predictions, records, class_names):
    """Scores predictions against the records' own (original) ground truth.

    Args:
      predictions: iterable of (image_id, boxes, scores, classes).
      records: the split's ``Record`` list (ids compared as strings).
      class_names: class names.

    Returns:
      (summary dict: the 12 COCO stats plus ``mAP50``, the accumulator).
    """
    by_id = {str(r.image_id): r for r in records}
    acc = DetectionAccumulator(class_names)
    seen = set()
    for image_id, boxes, scores, classes in predictions:
        record = by_id.get(image_id)
        if record is None or image_id in seen:
            continue
        seen.add(image_id)
        _add_one(acc, record, boxes, scores, classes)
    # Images the pipeline skipped still count: their objects were missed.
    for image_id, record in by_id.items():
        if image_id not in seen:
            _add_one(acc, record, np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int32))
    return acc.summary(), acc


def _add_one(acc, record, boxes, scores, classes):
    acc.add(record.boxes[None], record.classes[None], np.asarray(boxes, np.float32)[None],
            np.asarray(scores, np.float32)[None], np.asarray(classes, np.int32)[None],
            gt_ignore=record.ignore[None], gt_area=record.area[None])
