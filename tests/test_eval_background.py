"""detect.eval.background: the forked loader gives what load_files gives, results and errors alike.

The fork happens only while TensorFlow is not imported, and this test
process has imported it (conftest), so the forked path runs in a fresh
interpreter that compares it with ``load_files`` there and reports back.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from detect.errors import InputError
from detect.eval.background import BackgroundLoad
from detect.eval.files import load_files
from detect.phases import Phases

ROOT = Path(__file__).resolve().parents[1]

CHILD_SCRIPT = r"""
import json, sys
import numpy as np
from detect.eval.background import BackgroundLoad
from detect.eval.files import load_files
from detect.errors import InputError
from detect.phases import Phases

gt_path, dets_path, bad_path = sys.argv[1:4]


def arrays(pair):
    gt, dets = pair
    return [gt.image_ids, gt.category_ids, gt.class_names] + [
        getattr(x, name) for x, names in ((gt, ("image_index", "classes", "boxes_xywh", "area", "ignore")),
                                          (dets, ("image_index", "classes", "boxes_xywh", "scores")))
        for name in names]


def same(a, b):
    return all(type(x) is type(y) and (np.array_equal(x, y) and x.dtype == y.dtype if isinstance(x, np.ndarray)
                                       else x == y) for x, y in zip(arrays(a), arrays(b)))


report = {"tensorflow_imported": "tensorflow" in sys.modules}
expected = load_files(gt_path, dets_path)
phases = Phases()
with BackgroundLoad(gt_path, dets_path) as pending:
    report["forked"] = pending.forked
    report["same"] = same(pending.result(phases), expected)
report["child_steps"] = sorted(phases.seconds)

with BackgroundLoad(gt_path, dets_path) as pending:  # the child dies before answering: loaded here instead
    pending.process.kill()
    pending.process.join()
    report["same_after_kill"] = same(pending.result(), expected)

try:
    load_files(gt_path, bad_path)
except InputError as error:
    report["expected_error"] = [type(error).__name__, str(error)]
with BackgroundLoad(gt_path, bad_path) as pending:
    try:
        pending.result()
    except InputError as error:
        report["error"] = [type(error).__name__, str(error)]
print(json.dumps(report))
"""


def write_files(folder):
    from detect.bench.eval import coco_scale_dataset

    gt, results = coco_scale_dataset(2, num_images=30)
    paths = [folder / "gt.json", folder / "dets.json", folder / "bad.json"]
    paths[0].write_text(json.dumps(gt))
    paths[1].write_text(json.dumps(results))
    results[7]["bbox"][2] = -1.5
    paths[2].write_text(json.dumps(results))
    return paths


def test_forked_load_equals_load_files_and_keeps_its_errors(tmp_path):
    proc = subprocess.run([sys.executable, "-c", CHILD_SCRIPT, *map(str, write_files(tmp_path))],
                          capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""},
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["tensorflow_imported"] is False
    assert report["forked"] is True
    assert report["same"] is True
    assert report["same_after_kill"] is True
    # The child's steps come back, named as theirs.
    assert "[loading process] parse JSON: detections" in report["child_steps"]
    assert "wait for the loading process" in report["child_steps"]
    # The InputError crosses the process boundary whole: same class, same one line.
    assert report["error"] == report["expected_error"]
    assert report["error"][1].endswith("bad.json: [7]: bbox width is negative (-1.5)")


def test_loads_here_once_tensorflow_is_imported(tmp_path):
    import tensorflow  # noqa: F401 -- as in a tool that already uses it

    gt_path, dets_path, bad_path = write_files(tmp_path)
    phases = Phases()
    with BackgroundLoad(gt_path, dets_path) as pending:
        assert not pending.forked
        gt, dets = pending.result(phases)
    expected_gt, expected_dets = load_files(gt_path, dets_path)
    np.testing.assert_array_equal(dets.boxes_xywh, expected_dets.boxes_xywh)
    np.testing.assert_array_equal(gt.image_index, expected_gt.image_index)
    assert "parse JSON: detections" in phases.seconds
    with BackgroundLoad(gt_path, bad_path) as pending:
        try:
            pending.result()
        except InputError as error:
            assert str(error).endswith("[7]: bbox width is negative (-1.5)")
        else:
            raise AssertionError("no InputError")
