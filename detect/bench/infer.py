"""The infer suite (``tools/benchmark.py infer``): ``Detector`` images/s, end to end and model only."""

import time
from pathlib import Path

import numpy as np

from detect.bench.timing import median_seconds


def _infer_image(config):
    """(a JPEG-encoded image of the config's validation split, its name), or a synthetic 480 x 640 photo-like one."""
    import cv2

    from detect.errors import InputError
    from detect.train.data import class_names_of, load_records, prepare_data

    try:
        prepare_data(config.data)
        records = load_records(config.data, config.data.val_split, class_names_of(config.data))
        path = next(r.image_path for r in records if r.image_path is not None)
        return Path(path).read_bytes(), f"{Path(path).name} of the validation split"
    except (InputError, OSError, StopIteration):
        rng = np.random.default_rng(0)
        image = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (7, 7), 0)
        return cv2.imencode(".jpg", image)[1].tobytes(), "a synthetic 480 x 640 JPEG (no dataset here)"


def bench_infer(config_path, weights=None, repeats=7, overrides=(), precision="float32"):
    """Inference speed of ``Detector``: images/s at batch 1 and 8, end to end and model only.

    End to end: JPEG bytes -> decode -> ``Detector.predict`` (the compiled
    graph of ``detect.inference.graph``: resize, model, decoding, per-class
    NMS, mapping back) -> ``Detections``. Model only: the Keras model's
    forward pass alone, compiled, on an already resized batch. Cold: the
    first call of each (tracing and compilation). Reference: zzh8829/yolov3-tf2
    (``yolov3_tf2.models.YoloV3``, its own NMS included) when it is installed.
    """
    import tensorflow as tf

    from detect.inference.detector import Detector
    from detect.inference.graph import preprocess
    from detect.inference.images import read_image
    from detect.train.experiment import load_experiment

    config = load_experiment(config_path, overrides)
    encoded, what = _infer_image(config)
    names = config.data.classes or None
    if names is None:
        try:
            from detect.train.data import class_names_of

            names = class_names_of(config.data)
        except Exception:  # noqa: BLE001 - no dataset here: the format's usual class count
            from detect.data.voc import VOC_CLASSES

            names = list(VOC_CLASSES) if config.data.format == "voc" else [f"class{i}" for i in range(80)]
    det = Detector.from_config(config, weights=weights, class_names=names, precision=precision)
    task = det._backend.task
    model = config.model
    kind = model.display_name()
    size = (f"{config.data.image_size} px" if config.data.resize == "letterbox"
            else f"shortest side {config.data.min_side}, longest <= {config.data.max_side}")
    image = read_image(encoded)
    print(f"{config.name}: {kind} {model.backbone} at {size}, {len(names)} classes, "
          f"{task.model.count_params() / 1e6:.1f} M parameters, {precision}; input: {what} "
          f"({image.shape[1]} x {image.shape[0]}); weights: {weights or 'random (speed does not depend on them)'}")
    print(f"score threshold {det.resolve_options()[0]}, {repeats} timed calls per figure (median)", flush=True)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def model_only(x):
        return task.forward({"image": x, "image_hw": tf.tile(tf.shape(x)[1:3][None], [tf.shape(x)[0], 1])},
                            training=False)

    rows = []
    for batch in (1, 8):
        def end_to_end():
            det.predict([read_image(encoded) for _ in range(batch)])

        inputs = preprocess(np.stack([image] * batch), config.data)[0]

        def forward():
            tf.nest.map_structure(lambda t: t.numpy(), model_only(inputs))

        for name, fn in ((f"end to end (decode, resize, model, NMS), batch {batch}", end_to_end),
                         (f"model only, batch {batch}", forward)):
            start = time.perf_counter()
            fn()
            cold = time.perf_counter() - start
            warm = median_seconds(fn, repeats)
            rows.append((name, batch / warm))
            print(f"{name}: {batch / warm:.2f} images/s (warm {warm * 1e3:.0f} ms/call; first call "
                  f"{cold:.1f} s with tracing and compilation)", flush=True)
    # Compile time per new input size: one trace serves them all (static shapes after the resize).
    traces = det._backend.traces
    start = time.perf_counter()
    det.predict(np.zeros((image.shape[0] // 2 + 1, image.shape[1] // 2 + 3, 3), np.uint8))
    print(f"a new input size: {time.perf_counter() - start:.2f} s, {det._backend.traces - traces} new traces")
    if model.type != "yolo":
        return 0
    try:
        from yolov3_tf2.models import YoloV3  # zzh8829/yolov3-tf2, when installed
    except ImportError:
        print("reference zzh8829/yolov3-tf2: not installed here (on this README's machine it ran YOLOv3 416 "
              "at 2.85 images/s batch 1, 3.06 batch 8 model only)")
    else:
        reference = YoloV3(config.data.image_size, classes=len(names))
        x = tf.zeros([1, config.data.image_size, config.data.image_size, 3])
        fn = tf.function(reference)
        fn(x)
        warm = median_seconds(lambda: [t.numpy() for t in fn(x)], repeats)
        print(f"reference zzh8829/yolov3-tf2, batch 1 (model and its NMS): {1 / warm:.2f} images/s; "
              f"ours end to end x{rows[0][1] * warm:.2f}")
    return 0
