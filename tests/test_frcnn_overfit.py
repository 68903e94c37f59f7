"""Learning works: a small Faster R-CNN overfits a handful of shapes images; its TFLite export finds the same.

CI's proof for the two-stage family, as ``test_yolo_overfit`` is YOLO's: 8
synthetic images (128 px; stride 8 and 16-64 px anchors, as
faster_rcnn_shapes.yaml at half its size), joint training from scratch with Adam on that one
batch (RPN and detector losses together, proposals and RoI sampling as in
training), then the real evaluation path (shortest-side pipeline, proposals,
RoI pooling, per-class NMS, mapping back to the image, VOC mAP) must reach
mAP@0.5 >= MIN_MAP50 on those same images.

The trained model is then written as a run directory and exported to TFLite
(``detect.export.tflite``): builtin ops only, the same detections as the
Keras ``Detector`` through ``Detector.load(model.tflite)``, the same mAP.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from detect import Detector
from detect.data.pipeline import build_dataset
from detect.data.shapes import SHAPES_CLASSES, make_shapes
from detect.data.transforms import unmap_boxes
from detect.data.voc import read_voc
from detect.export.check import check_artifact
from detect.export.tflite import export_tflite, model_ops
from detect.faster_rcnn import stages
from detect.faster_rcnn.config import FasterRcnnConfig
from detect.faster_rcnn.model import FasterRcnnTask
from detect.inference.images import read_image
from detect.inference.tflite_backend import INFO_NAME, meta_path
from detect.train.evaluation import evaluate_predictions, predict_dataset

# Measured at seed 0: mAP@0.5 0.95 after 100 steps, 0.998 after 200, 0.96 after 400.
STEPS = 200
MIN_MAP50 = 0.9
SIZE = 128
# The model, as FasterRcnnConfig fields and as the run's config.yaml says them.
MODEL = dict(backbone="tiny", training="joint", feature_level="C3", anchor_scales=(2, 4, 8), rpn_min_size=4,
             rpn_width=64, fc_width=128, fc_dropout=0.0, rpn_batch=64, roi_batch=32, train_pre_nms=600,
             train_post_nms=128, test_pre_nms=300, test_post_nms=64)


def _yaml_value(value):
    return f"[{', '.join(map(str, value))}]" if isinstance(value, tuple) else str(value)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(task, train records, their dataset, the first and last loss, a run directory of the trained model)."""
    base = tmp_path_factory.mktemp("frcnn_overfit")
    root = make_shapes(base / "shapes", "voc", num_images=10, size=SIZE, seed=3, val_fraction=0.2)
    records = read_voc(root, "train", class_names=list(SHAPES_CLASSES))
    dataset = build_dataset(records, training=False, batch_size=len(records), resize="shortest_side",
                            min_side=SIZE, max_side=SIZE, size_divisor=16, max_boxes=8)
    batch = next(iter(dataset))

    tf.keras.utils.set_random_seed(0)
    task = FasterRcnnTask(3, FasterRcnnConfig(**MODEL))
    stages.prepare_joint(task)
    # As overfit.py for YOLO: so few steps are too few for the default moving averages (0.99) to settle.
    for layer in task.model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    optimizer = keras.optimizers.Adam(1e-3)
    variables = task.model.trainable_variables

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = task.losses(task.forward(batch, training=True), batch)["loss"]
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    first = float(step(batch))
    for _ in range(STEPS - 2):
        step(batch)
    last = float(step(batch))

    run = base / "run"
    run.mkdir()
    task.model.save_weights(str(run / "best.weights.h5"))
    model_yaml = "".join(f"  {key}: {_yaml_value(value)}\n" for key, value in MODEL.items())
    (run / "config.yaml").write_text(
        f"name: frcnn_overfit\ndata:\n  format: voc\n  root: {root}\n  classes: [circle, square, triangle]\n"
        f"  resize: shortest_side\n  min_side: {SIZE}\n  max_side: {SIZE}\n  size_divisor: 16\n  max_boxes: 8\n"
        f"model:\n  type: faster_rcnn\n{model_yaml}train:\n  batch_size: 2\n")
    return task, records, dataset, (first, last), run


def test_tiny_faster_rcnn_overfits_a_few_shapes_images(trained):
    task, records, dataset, (first, last), _ = trained
    assert last < 0.25 * first, (first, last)
    summary, _ = evaluate_predictions(predict_dataset(task, dataset, unmap_boxes), records, list(SHAPES_CLASSES))
    assert summary["mAP50"] >= MIN_MAP50, summary


@pytest.fixture(scope="module")
def keras_detector(trained):
    return Detector.load(trained[4])


@pytest.fixture(scope="module")
def exports(keras_detector, tmp_path_factory):
    """quantize -> the .tflite export of the trained model."""
    out = tmp_path_factory.mktemp("frcnn_tflite")
    return {q: export_tflite(keras_detector, out / f"frcnn_{q or 'float32'}.tflite", quantize=q)
            for q in (None, "float16")}


@pytest.mark.parametrize("quantize", [None, "float16"])
def test_tflite_export_is_builtin_and_scores_as_the_keras_detector(keras_detector, exports, quantize):
    path = exports[quantize]
    ops = set(model_ops(path.read_bytes()))
    assert ops and not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    assert "WHILE" in ops  # the proposals' NMS is in the model
    meta = json.loads(meta_path(path).read_text())
    assert meta["model_type"] == "faster_rcnn" and meta["inputs"] == ["image", INFO_NAME]
    assert meta["input_size"] == SIZE and meta["quantize"] == quantize

    # tools/export.py --check's comparison: both scored through Detector.evaluate, the export timed alone.
    check = check_artifact(keras_detector, path, split="train", speed_images=2)
    assert check["keras_mAP50"] >= MIN_MAP50 and abs(check["mAP50_drop"]) <= 0.5, check
    assert check["model_images_per_s"] > 0 and check["size_bytes"] == path.stat().st_size


def test_float32_tflite_detections_equal_the_keras_detectors(trained, keras_detector, exports):
    lite = Detector.load(exports[None])
    task, records = trained[0], trained[1]
    for image in (read_image(records[0].image_path), read_image(records[1].image_path)):  # the canvas itself
        want, got = keras_detector.predict(image, score_threshold=0.05), lite.predict(image, score_threshold=0.05)
        assert len(got.boxes) == len(want.boxes) > 0
        np.testing.assert_array_equal(got.classes, want.classes)
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
    # Crops of 96 x 128 and 128 x 96 fill only part of the 128 x 128 canvas; the host pads them with zeros
    # beyond the size divisor, where the Keras graph stops, so the two detectors' inputs differ (an
    # overfitted model's scores move). What must hold: the model gives the Keras forward pass's outputs
    # on that canvas and image_info (its extent clips the proposals and boxes), and the boxes land in the crop.
    backend = lite._backend
    for record in records[:4]:
        image = read_image(record.image_path)
        for crop in (np.ascontiguousarray(image[16:112]), np.ascontiguousarray(image[:, 16:112])):
            feeds, _ = backend.model_input(crop[None])
            info = feeds[INFO_NAME]
            assert feeds["image"].shape == (1, SIZE, SIZE, 3) and np.all(feeds["image"][0, crop.shape[0]:] == 0)
            np.testing.assert_array_equal(info, [[crop.shape[0], crop.shape[1], 1.0]])
            batch = {"image": tf.constant(feeds["image"]), "image_hw": tf.constant(info[:, :2], tf.int32),
                     "transform": tf.constant([[1.0, 1.0, 0.0, 0.0]])}
            boxes, scores = task.decode(task.forward(batch, training=False), batch["image_hw"])
            lite_boxes, lite_scores = backend.invoke(feeds)
            np.testing.assert_allclose(lite_boxes * SIZE, boxes.numpy(), atol=2e-3)
            np.testing.assert_allclose(lite_scores, scores.numpy(), atol=1e-5)
            assert boxes.numpy()[..., [0, 2]].max() <= crop.shape[1]
            assert boxes.numpy()[..., [1, 3]].max() <= crop.shape[0]
            found = lite.predict(crop, score_threshold=0.3)
            assert len(found.boxes) and np.all(found.boxes[:, [0, 2]] <= crop.shape[1])
            assert np.all(found.boxes[:, [1, 3]] <= crop.shape[0])


def test_faster_rcnn_tflite_refuses_int8_and_host_decoding(keras_detector, tmp_path):
    from detect.errors import InputError

    with pytest.raises(InputError, match="float32 or float16"):
        export_tflite(keras_detector, tmp_path / "q.tflite", quantize="int8")
    with pytest.raises(InputError, match="float32 or float16"):
        export_tflite(keras_detector, tmp_path / "h.tflite", decode="host")
    assert not list(tmp_path.iterdir())
