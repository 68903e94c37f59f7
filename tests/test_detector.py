"""``Detector``, its SavedModel export and ``tools/detect.py``.

A tiny YOLO overfits 8 shapes images (as in test_yolo_overfit) and is saved
as a run directory; the detector must then find every object of one of them
pasted into a wider canvas (so the letterbox pads and the boxes must be
mapped back through it), in the canvas's own pixels, through ``Detector``
and through the exported SavedModel in a process that never imports
``detect``. The boxes must be those ``tools/eval.py --save-dets`` writes,
and the exported graph must score the split exactly as the Keras model does.
A randomly initialised Faster R-CNN checks the same plumbing for the other
family.
"""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml

from detect import Detector, Detections
from detect.data.shapes import SHAPES_CLASSES
from detect.errors import InputError
from detect.outputs import MARKER

ROOT = Path(__file__).resolve().parents[1]
SIZE = 128


def box_iou(a, b):
    """IoU of two xyxy boxes (numpy reference)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def write_config(path, root, model):
    config = {"name": "tiny", "data": {"format": "voc", "root": str(root), "image_size": SIZE, "max_boxes": 8,
                                       "classes": list(SHAPES_CLASSES)},
              "model": model, "train": {"batch_size": 8}}
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def yolo(yolo_run):
    return Detector.load(yolo_run[0])


@pytest.fixture(scope="module")
def canvas(yolo_run):
    """A non-square crop of a training image with all its objects, at the training scale; (image, boxes, classes).

    The crop keeps the long side at ``SIZE`` (so the objects keep the size
    the model learned) and starts at an offset, so the letterbox pads the
    short side and the boxes must be mapped back through both.
    """
    def extent(record, axis):
        return record.boxes[:, axis + 2].max() - record.boxes[:, axis].min()

    record, axis = min(((r, a) for r in yolo_run[1] if len(r.boxes) >= 2 for a in (0, 1)),
                       key=lambda ra: extent(*ra))
    # About 3/4 of the image around the objects: far enough from square, close enough to what it learned.
    centre = (record.boxes[:, axis].min() + record.boxes[:, axis + 2].max()) / 2
    low = int(np.clip(centre - 0.375 * SIZE, 0, SIZE // 4))
    high = low + 3 * SIZE // 4
    image = np.asarray(tf.io.decode_jpeg(tf.io.read_file(str(record.image_path)), channels=3))
    crop = image[:, low:high] if axis == 0 else image[low:high]
    shift = np.zeros(4, np.float32)
    shift[[axis, axis + 2]] = low
    assert ((record.boxes[:, axis] >= low) & (record.boxes[:, axis + 2] <= high)).all()
    return np.ascontiguousarray(crop), record.boxes - shift, record.classes


def assert_finds_every_object(boxes, classes, want_boxes, want_classes):
    for want_box, want_class in zip(want_boxes, want_classes):
        best = max((box_iou(b, want_box) for b, c in zip(boxes, classes) if c == want_class), default=0.0)
        assert best >= 0.5, (want_box, want_class, boxes, classes)


def test_detector_finds_the_objects_of_a_non_square_image_in_its_pixels(yolo, canvas):
    image, want_boxes, want_classes = canvas
    found = yolo.predict(image, score_threshold=0.3)
    assert isinstance(found, Detections) and found.image_size == image.shape[:2]
    assert len(want_boxes) >= 2
    assert_finds_every_object(found.boxes, found.classes, want_boxes, want_classes)
    assert found.labels == [SHAPES_CLASSES[c] for c in found.classes]
    assert np.all(np.diff(found.scores) <= 0)
    # A path, a BGR frame and a PIL image give the same detections.
    from PIL import Image

    for other in (yolo.predict(image[..., ::-1].copy(), bgr=True, score_threshold=0.3),
                  yolo.predict(Image.fromarray(image), score_threshold=0.3)):
        np.testing.assert_array_equal(other.boxes, found.boxes)


def test_same_boxes_as_tools_eval_save_dets(yolo, yolo_run, tmp_path):
    run = yolo_run[0]
    dets = tmp_path / "dets.json"
    subprocess.run([sys.executable, str(ROOT / "tools/eval.py"), "--config", str(run / "config.yaml"), "--weights",
                    str(run), "--split", "train", "--save-dets", str(dets)], check=True, capture_output=True)
    saved = json.loads(dets.read_text())
    records = yolo_run[1]
    found = yolo.predict([str(r.image_path) for r in records], score_threshold=yolo.config.model.score_threshold)
    for record, detections in zip(records, found):
        mine = sorted((d["score"], d["bbox"]) for d in detections.to_coco(record.image_id))
        theirs = sorted((d["score"], d["bbox"]) for d in saved if d["image_id"] == record.image_id)
        assert len(mine) == len(theirs) > 0
        np.testing.assert_allclose([b for _, b in mine], [b for _, b in theirs], atol=1e-3)
        np.testing.assert_allclose([s for s, _ in mine], [s for s, _ in theirs], atol=1e-5)


def test_threads_give_the_serial_results(yolo, yolo_run, canvas):
    images = [canvas[0]] + [str(r.image_path) for r in yolo_run[1][:5]]
    serial = [yolo.predict(x) for x in images]
    results = [None] * len(images) * 2

    def work(k):
        for i in range(k, len(results), 4):
            results[i] = yolo.predict(images[i % len(images)])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result.boxes, serial[i % len(images)].boxes)


def test_new_sizes_and_batches_do_not_retrace(yolo, canvas, yolo_run):
    yolo.predict(canvas[0])
    traces = yolo._backend.traces
    image = canvas[0]
    for h, w in ((50, 70), (SIZE, SIZE), (301, 97)):
        yolo.predict([np.ascontiguousarray(image[:h, :w])] * 3)
    yolo.predict(str(yolo_run[1][1].image_path))
    assert yolo._backend.traces == traces


def test_list_groups_by_size_and_keeps_the_order(yolo, canvas, yolo_run):
    small = str(yolo_run[1][2].image_path)
    items = [canvas[0], small, canvas[0], small]
    found = yolo.predict(items)
    alone = [yolo.predict(x) for x in items]
    for a, b in zip(found, alone):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)


def test_class_filter_and_options(yolo, canvas):
    image, want_boxes, want_classes = canvas
    everything = yolo.predict(image, score_threshold=0.3)
    name = SHAPES_CLASSES[int(want_classes[0])]
    only = yolo.predict(image, score_threshold=0.3, classes=[name])
    assert len(only) > 0 and set(only.labels) == {name}
    np.testing.assert_allclose(only.boxes, everything.boxes[everything.classes == want_classes[0]], atol=1e-4)
    assert len(yolo.predict(image, score_threshold=0.3, max_detections=1)) == 1
    with pytest.raises(InputError, match="unknown class 'hexagon'"):
        yolo.predict(image, classes=["hexagon"])
    with pytest.raises(InputError, match="score_threshold"):
        yolo.predict(image, score_threshold=1.5)


@pytest.mark.parametrize("bad, message", [
    ("missing.jpg", "cannot read the file"),
    (np.zeros((20, 30), np.uint8), r"array of shape \(20, 30\): expected an \[H, W, 3\]"),
    (np.zeros((20, 30, 4), np.uint8), r"array of shape \(20, 30, 4\)"),
    (np.zeros((0, 30, 3), np.uint8), "empty image"),
    (np.zeros((20, 30, 3), np.float32), "expected uint8"),
])
def test_bad_input_is_one_clear_error_and_the_rest_survives(yolo, canvas, bad, message, tmp_path):
    with pytest.raises(InputError, match=message):
        yolo.predict(bad)
    with pytest.raises(InputError, match=message):
        yolo.predict([canvas[0], bad])
    good, skipped = yolo.predict([canvas[0], bad], skip_bad=True)
    assert len(good) > 0 and len(skipped) == 0 and isinstance(skipped.error, InputError)


def test_empty_list_and_corrupt_file(yolo, tmp_path):
    with pytest.raises(InputError, match="empty list"):
        yolo.predict([])
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(InputError, match="corrupt.jpg: cannot be decoded"):
        yolo.predict(str(corrupt))


def test_draw_returns_an_annotated_copy(yolo, canvas):
    image = canvas[0].copy()
    found = yolo.predict(image, score_threshold=0.3)
    drawn = yolo.draw(image, found)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    np.testing.assert_array_equal(image, canvas[0])  # the input is untouched
    assert (drawn != image).any(axis=-1).sum() > 100
    x1, y1 = (int(round(v)) for v in found.boxes[0, :2])
    assert (drawn[y1 + 5, x1] != image[y1 + 5, x1]).any()  # the box's left edge


def test_detections_to_coco_and_dict(yolo, canvas):
    found = yolo.predict(canvas[0], score_threshold=0.3)
    coco = found.to_coco(7)
    assert len(coco) == len(found) and coco[0]["image_id"] == 7
    x1, y1, x2, y2 = found.boxes[0]
    np.testing.assert_allclose(coco[0]["bbox"], [x1, y1, x2 - x1, y2 - y1], rtol=1e-6)
    assert coco[0]["category_id"] == int(found.classes[0])
    assert json.loads(json.dumps(found.to_dict()))["labels"] == found.labels


def test_load_errors(tmp_path, yolo_run):
    with pytest.raises(InputError, match="no such file"):
        Detector.load(tmp_path / "nothing")
    with pytest.raises(InputError, match="not a run directory"):
        Detector.load(tmp_path)
    with pytest.raises(InputError, match="needs its config"):
        Detector.load(yolo_run[0] / "best.weights.h5")
    det = Detector.load(yolo_run[0] / "best.weights.h5", config=yolo_run[0] / "config.yaml")
    assert det.class_names == list(SHAPES_CLASSES)


# ---- SavedModel ------------------------------------------------------------------

SERVE_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
image = np.load(sys.argv[2])
out = serve(images=tf.constant(np.stack([image, image])))
print(json.dumps({"detect_imported": "detect" in sys.modules,
                  "inputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in serve.structured_input_signature[1].items()},
                  **{k: v.numpy().tolist() for k, v in out.items()},
                  "dtypes": {k: v.dtype.name for k, v in out.items()}}))
"""


@pytest.fixture(scope="module")
def yolo_saved_model(yolo, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "yolo_saved_model"
    yolo.export(out, score_threshold=0.3)
    return out


def test_saved_model_holds_no_xla_compiled_function(yolo_saved_model):
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((yolo_saved_model / "saved_model.pb").read_bytes())
    functions = saved.meta_graphs[0].graph_def.library.function
    assert len(functions) > 10  # the model, the walks of batched_nms, ...
    assert [f.signature.name for f in functions if f.attr["_XlaMustCompile"].b] == []


def test_saved_model_in_a_process_without_detect(yolo_saved_model, canvas, tmp_path):
    image, want_boxes, want_classes = canvas
    np.save(tmp_path / "image.npy", image)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, str(yolo_saved_model), str(tmp_path / "image.npy")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["detect_imported"] is False
    assert out["inputs"] == {"images": ["uint8", [None, None, None, 3]]}
    assert out["dtypes"] == {"boxes": "float32", "scores": "float32", "classes": "int32", "num_detections": "int32"}
    for b in range(2):  # a batch of two
        n = out["num_detections"][b]
        assert_finds_every_object(np.array(out["boxes"][b][:n]), out["classes"][b][:n], want_boxes, want_classes)
        assert all(c == -1 for c in out["classes"][b][n:])


def test_saved_model_detector_equals_keras_and_scores_the_same(yolo, yolo_saved_model, canvas):
    exported = Detector.load(yolo_saved_model)
    assert exported.class_names == yolo.class_names
    for kwargs in ({}, {"score_threshold": 0.05, "classes": ["circle"]}, {"max_detections": 3}):
        a, b = yolo.predict(canvas[0], **kwargs), exported.predict(canvas[0], **kwargs)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        assert a.labels == b.labels
    # The exported graph, image by image, scores the split as the Keras pipeline does.
    np.testing.assert_allclose(exported.evaluate(split="train").mAP, yolo.evaluate(split="train").mAP, atol=1e-9)


# ---- Faster R-CNN -----------------------------------------------------------------

@pytest.fixture(scope="module")
def frcnn(tmp_path_factory, yolo_run):
    tmp = tmp_path_factory.mktemp("frcnn")
    model = {"type": "faster_rcnn", "backbone": "tiny", "feature_level": "C3", "rpn_width": 32, "fc_width": 64,
             "pool_size": 4, "anchor_scales": [2, 4, 8], "test_post_nms": 50, "score_threshold": 0.2}
    config = write_config(tmp / "config.yaml", Path(yolo_run[1][0].image_path).parents[1], model)
    data = yaml.safe_load(config.read_text())
    data["data"].update(resize="shortest_side", min_side=SIZE, max_side=2 * SIZE, size_divisor=8)
    config.write_text(yaml.safe_dump(data))
    tf.keras.utils.set_random_seed(1)
    det = Detector.from_config(config)
    det._backend.task.model.save_weights(str(tmp / "best.weights.h5"))
    return Detector.load(tmp, config=config), tmp


def test_faster_rcnn_detector_matches_eval_and_its_saved_model(frcnn, canvas, tmp_path):
    det, run = frcnn
    found = det.predict(canvas[0], score_threshold=0.2)
    assert len(found) > 0 and found.image_size == canvas[0].shape[:2]
    height, width = canvas[0].shape[:2]
    assert (found.boxes[:, [0, 2]] <= width).all() and (found.boxes[:, [1, 3]] <= height).all()
    assert (found.boxes >= 0).all()
    exported = Detector.load(det.export(tmp_path / "frcnn_saved_model"))
    again = exported.predict(canvas[0], score_threshold=0.2)
    np.testing.assert_allclose(again.boxes, found.boxes, atol=1e-3)
    np.testing.assert_allclose(exported.evaluate(split="val").mAP, det.evaluate(split="val").mAP, atol=1e-9)


# ---- tools/detect.py ---------------------------------------------------------------

def test_detect_tool_images_folder_glob_video_and_bad_files(yolo_run, canvas, tmp_path):
    import cv2

    run, records, _ = yolo_run
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "wide.png"), canvas[0][..., ::-1])
    (folder / "broken.jpg").write_bytes(b"not an image")
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, canvas[0].shape[1::-1])
    for _ in range(3):
        writer.write(canvas[0][..., ::-1])
    writer.release()
    out, results = tmp_path / "out", tmp_path / "dets.json"
    done = subprocess.run([sys.executable, str(ROOT / "tools/detect.py"), "--model", str(run), str(folder),
                           str(Path(records[1].image_path).parent / "*0002.jpg"), str(video), str(tmp_path / "gone.jpg"),
                           "--out", str(out), "--json", str(results), "--score", "0.3"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "broken.jpg: cannot be decoded" in done.stderr and "gone.jpg: cannot read the file" in done.stderr
    assert "2 skipped" in done.stdout and "5 images/frames" in done.stdout
    # Outputs and ids keep the inputs' paths below the folder that holds them all (here pytest's base temp).
    jpeg = Path(records[1].image_path).parent / "000002.jpg"
    root = Path(os.path.commonpath([folder, jpeg.parent, tmp_path]))

    def rel(path):
        return path.relative_to(root).as_posix()

    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != MARKER) \
        == sorted([rel(jpeg), rel(video), rel(folder / "wide.png")])
    entries = json.loads(results.read_text())
    wide_id, clip_id = rel(folder / "wide"), rel(tmp_path / "clip")
    assert {e["image_id"] for e in entries} >= {wide_id, rel(jpeg.with_suffix("")), f"{clip_id}:0", f"{clip_id}:2"}
    wide = [e for e in entries if e["image_id"] == wide_id]
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (e["bbox"] for e in wide)])
    assert_finds_every_object(boxes, [e["category_id"] for e in wide], canvas[1], canvas[2])


def test_detect_tool_bad_model_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "tools/detect.py"), "--model", str(tmp_path / "none"),
                           str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("none: no such file or directory")
    assert "Traceback" not in done.stderr


def test_bfloat16_detector_finds_the_same_objects(yolo_run, canvas):
    import keras

    det = Detector.load(yolo_run[0], precision="bfloat16")
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    image, want_boxes, want_classes = canvas
    found = det.predict(image, score_threshold=0.3)
    assert_finds_every_object(found.boxes, found.classes, want_boxes, want_classes)
    with pytest.raises(InputError, match="precision"):
        Detector.load(yolo_run[0], precision="int4")
