"""``tools/benchmark.py train --peer yolov3-tf2``: the inputs both sides get, and the peer's loading.

The peer itself is not in this tree (it is the user's checkout); its step is
timed by the benchmark, not by these tests. What is tested: the boxes are
COCO-like and legal, the peer's labels are its documented layout (corners
over the input size, then the class; all-zero rows are padding, which its
``transform_targets_for_output`` skips by ``x2 == 0``), our batch is our
pipeline's dict, and a bad ``--peer-path`` is an InputError (printed as one line,
status 2, like every bad command line: ``test_benchmark``).
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from detect.bench.peer_train import coco_like_boxes, load_yolov3_tf2, our_batch, peer_labels
from detect.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def test_coco_like_boxes_lie_inside_the_input_with_coco_sizes():
    boxes, classes, num_boxes = coco_like_boxes(seed=3, batch=64, size=416, max_boxes=100)
    assert boxes.shape == (64, 100, 4) and classes.shape == (64, 100) and num_boxes.shape == (64,)
    assert 4 < num_boxes.mean() < 10 and num_boxes.min() >= 1
    for i, n in enumerate(num_boxes):
        real = boxes[i, :n]
        wh = real[:, 2:] - real[:, :2]
        assert (real >= 0).all() and (real <= 416).all()
        assert (wh >= 6 - 1e-3).all() and (wh <= 400 + 1e-3).all()
        assert ((classes[i, :n] >= 0) & (classes[i, :n] < 80)).all()
        assert (classes[i, n:] == -1).all() and (boxes[i, n:] == 0).all()
    again = coco_like_boxes(seed=3, batch=64, size=416, max_boxes=100)
    np.testing.assert_array_equal(again[0], boxes)


def test_peer_labels_are_its_layout_with_zero_rows_as_padding():
    boxes = np.zeros((2, 4, 4), np.float32)
    classes = np.full((2, 4), -1, np.int32)
    boxes[0, :2] = [[10, 20, 110, 220], [0, 0, 416, 416]]
    classes[0, :2] = [7, 0]
    boxes[1, 0] = [208, 104, 312, 416]
    classes[1, 0] = 79
    labels = peer_labels(boxes, classes, 416)
    expected = np.zeros((2, 4, 5), np.float32)
    expected[0, 0] = [10 / 416, 20 / 416, 110 / 416, 220 / 416, 7]
    expected[0, 1] = [0, 0, 1, 1, 0]
    expected[1, 0] = [0.5, 0.25, 0.75, 1, 79]
    np.testing.assert_allclose(labels, expected, rtol=1e-6)


def test_our_batch_is_the_pipelines_dict():
    images = np.zeros((2, 32, 32, 3), np.float32)
    boxes, classes, num_boxes = coco_like_boxes(seed=0, batch=2, size=32, max_boxes=5)
    batch = our_batch(images, boxes, classes, num_boxes)
    assert set(batch) == {"image", "image_hw", "boxes", "classes", "ignore", "num_boxes", "image_id", "transform",
                          "original_size"}
    assert batch["image_hw"].numpy().tolist() == [[32, 32], [32, 32]]
    assert batch["transform"].numpy().tolist() == [[1, 1, 0, 0]] * 2  # scale 1, no padding: pixels are input pixels
    assert not batch["ignore"].numpy().any()


def test_peer_path_without_the_package_names_what_it_wants(tmp_path):
    with pytest.raises(InputError, match="no yolov3_tf2/models.py"):
        load_yolov3_tf2(tmp_path)


def test_a_peer_that_does_not_import_is_one_error(tmp_path):
    package = tmp_path / "yolov3_tf2"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text("import no_such_module_here\n")
    with pytest.raises(InputError, match="does not import"):
        load_yolov3_tf2(tmp_path)
    assert str(tmp_path) not in sys.path


def _benchmark_tool():
    spec = importlib.util.spec_from_file_location("benchmark_tool", ROOT / "tools" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("args,message", [
    (["train", "--peer", "yolov3-tf2"], "--peer needs --peer-path"),
    (["train", "--peer", "yolov3-tf2", "--peer-path", "/no/such/checkout"], "no yolov3_tf2/models.py"),
    (["train", "--peer", "yolov3-tf2", "--peer-path", ".", "--batch", "0"], "--batch must be at least 1"),
    (["train", "--peer", "darknet", "--peer-path", "."], "invalid choice"),
])
def test_bad_peer_command_line_is_an_input_error(args, message):
    with pytest.raises(InputError, match=message):
        _benchmark_tool().main(args)


def test_alternating_rounds_time_each_side_in_turn():
    from detect.bench.timing import alternating_rounds

    calls = []
    cold, timings = alternating_rounds({"ours": lambda: calls.append("ours"), "peer": lambda: calls.append("peer")}, 3)
    assert calls == ["ours", "peer"] * 4  # one cold call each, then three rounds in turn
    assert set(cold) == {"ours", "peer"} and all(len(v) == 3 and min(v) >= 0 for v in timings.values())
