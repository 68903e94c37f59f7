"""Checking an export: its mAP@0.5, size and speed against the Keras detector it was written from."""

import time
from pathlib import Path

import numpy as np

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
    from detect.train.data import split_name

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
        inputs = [backend.model_input(read_image(s)[None])[0] for s in sources]
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
