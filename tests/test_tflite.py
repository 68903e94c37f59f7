"""TFLite export (``detect.export.tflite``, ``tools/export.py``) of a small trained YOLO.

A tiny YOLO is overfitted (as in test_yolo_overfit.py, 200 steps) on a few
NON-SQUARE shapes images (128 x 96 crops, letterboxed to 128 with grey
bands), so it finds their objects; each TFLite variant must then find them
too, in original-image pixels, through ``Detector.load(x.tflite)``.
"""

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from detect import Detector
from detect.data.pipeline import build_dataset
from detect.data.records import Record
from detect.data.shapes import SHAPES_CLASSES, render_shapes_image
from detect.data.voc import read_voc
from detect.data.voc_writer import write_voc
from detect.errors import InputError
from detect.export.tflite import export_tflite, model_ops
from detect.inference.tflite_backend import meta_path
from detect.yolo.loss import YoloLossConfig
from detect.yolo.config import YoloConfig
from detect.yolo.model import YoloTask
from overfit import SMALL_ANCHORS, overfit

REPO = Path(__file__).resolve().parents[1]
SIZE = 128  # network input (letterbox)
TOP, HEIGHT = 16, 96  # the crop of each 128 x 128 shapes image: rows 16..112
NUM_TRAIN, NUM_VAL = 8, 2
ANCHORS = SMALL_ANCHORS
NOISE = re.compile(r"^(WARNING|I0000|E0000|W0000|INFO|fully_quantize)|To enable")


def _crop_record(root, index):
    """Shapes image ``index`` cropped to rows TOP..TOP+HEIGHT, written as JPEG, with its visible boxes."""
    shapes = render_shapes_image(3, index, SIZE)
    image = np.ascontiguousarray(shapes.image[TOP:TOP + HEIGHT])
    instances = shapes.instances[TOP:TOP + HEIGHT]
    boxes, classes = [], []
    for k, cls in enumerate(shapes.classes):
        mask = instances == k
        if mask.sum() < 16:  # (almost) cut away
            continue
        cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
        boxes.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
        classes.append(cls)
    image_id = f"{index:06d}"
    path = root / "JPEGImages" / f"{image_id}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Record(image_id=image_id, height=HEIGHT, width=SIZE, boxes=boxes, classes=np.asarray(classes, np.int32),
                  ignore=np.zeros(len(classes), bool), class_names=list(SHAPES_CLASSES), image_path=str(path))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory (config.yaml, best.weights.h5) of a tiny YOLO overfitted on 128 x 96 shapes crops."""
    base = tmp_path_factory.mktemp("tflite")
    root = base / "crops"
    records = [_crop_record(root, i) for i in range(1, NUM_TRAIN + NUM_VAL + 1)]
    write_voc(records[:NUM_TRAIN], root, "train")
    write_voc(records[NUM_TRAIN:], root, "val")
    train = read_voc(root, "train", class_names=list(SHAPES_CLASSES))
    dataset = build_dataset(train, training=False, batch_size=len(train), image_size=SIZE, max_boxes=8)
    batch = next(iter(dataset))

    tf.keras.utils.set_random_seed(0)
    model_cfg = YoloConfig(version="v3", backbone="tiny", head_width=32, anchors=ANCHORS,
                           loss=YoloLossConfig(lambda_coord=1.0, lambda_noobj=1.0))
    detector = YoloTask(3, model_cfg)
    overfit(detector, batch)

    run = base / "run"
    run.mkdir()
    detector.model.save_weights(str(run / "best.weights.h5"))
    anchors = "[" + ", ".join(f"[{w}, {h}]" for w, h in ANCHORS) + "]"
    (run / "config.yaml").write_text(
        f"name: tiny_crops\ndata:\n  format: voc\n  root: {root}\n  classes: [circle, square, triangle]\n"
        f"  image_size: {SIZE}\n  max_boxes: 8\nmodel:\n  type: yolo\n  version: v3\n  backbone: tiny\n"
        f"  head_width: 32\n  anchors: {anchors}\n  loss:\n    lambda_coord: 1.0\n    lambda_noobj: 1.0\n"
        f"train:\n  batch_size: 2\n")
    return run


@pytest.fixture(scope="module")
def keras_detector(run_dir):
    return Detector.load(run_dir)


@pytest.fixture(scope="module")
def exports(run_dir, keras_detector, tmp_path_factory):
    """quantize -> path of the .tflite export (converted once per module)."""
    out = tmp_path_factory.mktemp("exports")
    return {q: export_tflite(keras_detector, out / f"model_{q or 'float32'}.tflite", quantize=q)
            for q in (None, "float16", "int8")}


@pytest.fixture(scope="module")
def test_image(run_dir):
    """(RGB [96, 128, 3] uint8, boxes [N, 4] in its pixels, classes [N]): a training crop with 2+ objects."""
    from detect.inference.images import read_image

    records = read_voc(Path(run_dir.parent / "crops"), "train", class_names=list(SHAPES_CLASSES))
    record = max(records, key=lambda r: len(r.boxes))
    image = read_image(record.image_path)
    assert image.shape == (HEIGHT, SIZE, 3) and len(record.boxes) >= 2
    return image, record.boxes, record.classes


def box_iou(a, b):
    """[N, M] IoU of xyxy boxes (numpy)."""
    a, b = np.asarray(a, np.float64)[:, None], np.asarray(b, np.float64)[None]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def assert_finds_every_object(found, boxes, classes, min_iou=0.5):
    assert len(found.boxes) > 0
    iou = box_iou(boxes, found.boxes)  # [objects, detections]
    same = classes[:, None] == found.classes[None, :]
    best = np.where(same, iou, 0).max(axis=1)
    assert np.all(best >= min_iou), (best, found.boxes, boxes)


@pytest.mark.parametrize("quantize", [None, "float16", "int8"])
def test_each_variant_uses_builtins_and_finds_the_objects_of_a_non_square_image(exports, test_image, keras_detector,
                                                                               quantize):
    path = exports[quantize]
    ops = set(model_ops(path.read_bytes()))
    assert ops and not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    meta = json.loads(meta_path(path).read_text())
    assert meta["quantize"] == quantize and meta["input_size"] == SIZE and sorted(meta["ops"]) == sorted(ops)

    lite = Detector.load(path)
    assert lite.class_names == list(SHAPES_CLASSES) and lite.config is not None
    image, boxes, classes = test_image
    assert_finds_every_object(keras_detector.predict(image), boxes, classes)  # the model itself does
    found = lite.predict(image)
    assert_finds_every_object(found, boxes, classes)
    assert np.all(found.boxes >= 0) and np.all(found.boxes[:, [0, 2]] <= SIZE)
    assert np.all(found.boxes[:, [1, 3]] <= HEIGHT)  # clipped to the original (non-square) image


def test_float32_boxes_equal_the_keras_detectors(exports, test_image, keras_detector):
    lite = Detector.load(exports[None])
    image = test_image[0]
    for kwargs in ({}, {"score_threshold": 0.05, "max_detections": 20, "classes": ["square", "circle"]}):
        want, got = keras_detector.predict(image, **kwargs), lite.predict(image, **kwargs)
        assert len(got.boxes) == len(want.boxes) > 0
        np.testing.assert_array_equal(got.classes, want.classes)
        np.testing.assert_allclose(got.boxes, want.boxes, atol=0.02)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)
    # A batch of two sizes (one is the image flipped into portrait): each as predicted alone.
    portrait = np.ascontiguousarray(image.transpose(1, 0, 2))
    both = lite.predict([image, portrait, image])
    np.testing.assert_allclose(both[1].boxes, lite.predict(portrait).boxes, atol=1e-4)
    np.testing.assert_allclose(both[2].boxes, both[0].boxes, atol=1e-4)


def test_int8_is_quantised_as_documented(exports):
    backend = Detector.load(exports["int8"])._backend
    detail = backend.input_details()
    assert detail["dtype"] == np.uint8 and list(detail["shape"]) == [1, SIZE, SIZE, 3]
    scale, zero = detail["quantization"]
    assert zero == 0 and scale == pytest.approx(1 / 255, rel=1e-6)
    outputs = backend.output_details()
    assert list(outputs) == ["raw_0", "raw_1", "raw_2"]  # raw heads, finest first: the host decodes
    for i, (name, out) in enumerate(outputs.items()):
        cells = SIZE // (8 * 2 ** i)
        assert out["dtype"] == np.int8 and out["quantization"][0] > 0
        assert list(out["shape"]) == [1, cells, cells, 3, 5 + 3]
    for q in (None, "float16"):
        backend = Detector.load(exports[q])._backend
        assert backend.input_details()["dtype"] == np.float32
        outputs = backend.output_details()
        assert list(outputs) == ["boxes", "scores"]
        assert outputs["boxes"]["dtype"] == np.float32 and outputs["boxes"]["shape"][2] == 4
        assert outputs["scores"]["shape"][2] == 3
        assert outputs["boxes"]["shape"][1] == outputs["scores"]["shape"][1] == 3 * (16 ** 2 + 8 ** 2 + 4 ** 2)


def test_threads_share_a_tflite_detector(exports, test_image):
    lite = Detector.load(exports["int8"])
    image = test_image[0]
    want = lite.predict(image)
    results, errors = [], []

    def work():
        try:
            for _ in range(3):
                results.append(lite.predict(image))
        except Exception as error:  # noqa: BLE001  (reported below)
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 9
    for got in results:
        np.testing.assert_array_equal(got.boxes, want.boxes)


def test_bad_requests_are_input_errors(keras_detector, exports, tmp_path):
    with pytest.raises(InputError, match="quantize.*unknown quantisation 'int4'"):
        export_tflite(keras_detector, tmp_path / "m.tflite", quantize="int4")
    with pytest.raises(InputError, match="ending in .tflite"):
        export_tflite(keras_detector, tmp_path / "m.tfl")
    with pytest.raises(InputError, match="Keras-backed"):
        export_tflite(Detector.load(exports[None]), tmp_path / "again.tflite")
    alone = tmp_path / "alone.tflite"
    alone.write_bytes(exports[None].read_bytes())
    with pytest.raises(InputError, match="alone.json"):
        Detector.load(alone)


def _tool(*args):
    return subprocess.run([sys.executable, str(REPO / "tools" / "export.py"), *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_tools_export_writes_and_checks_a_tflite_model(run_dir, tmp_path):
    out = tmp_path / "cli" / "model.tflite"
    proc = _tool("--run", run_dir, "--format", "tflite", "--quantize", "float16", "--out", out, "--iou", "0.4",
                 "--max-det", "50", "--check")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.exists() and meta_path(out).exists()
    meta = json.loads(meta_path(out).read_text())
    assert meta["quantize"] == "float16" and meta["iou_threshold"] == 0.4 and meta["max_detections"] == 50
    match = re.search(r"mAP@0\.5 \(val\): keras ([\d.]+)\s+export ([\d.]+)", proc.stdout)
    assert match, proc.stdout
    assert abs(float(match.group(1)) - float(match.group(2))) <= 0.01
    assert "size: " in proc.stdout and "images/s" in proc.stdout


def test_tools_export_bad_run_is_one_line_and_exit_2(tmp_path):
    proc = _tool("--run", tmp_path / "missing", "--format", "tflite", "--out", tmp_path / "m.tflite")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not NOISE.search(line)]
    assert len(lines) == 1 and "missing" in lines[0], proc.stderr
    assert not (tmp_path / "m.tflite").exists()
