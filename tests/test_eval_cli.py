"""tools/eval.py end to end.

The issue's bad inputs and the JSON output run in fresh interpreters (exit
code, stderr and "no traceback" as a user sees them); they start together, a
few at a time, because each pays TensorFlow's import. The remaining cases
call the tool's ``main`` in this process, which is the same code path.
"""

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from detect.outputs import MARKER
from test_voc_reader import voc_object, write_voc

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "eval.py"
MAX_PARALLEL = 4

# Lines TensorFlow's C++ runtime writes to stderr whatever TF_CPP_MIN_LOG_LEVEL says.
TF_NOISE = re.compile(r"^([IWEF]\d{4} \d|WARNING: All log messages before absl"
                      r"|To enable the following instructions)")

COCO_KEYS = {"metric", "AP", "AP50", "AP75", "APs", "APm", "APl",
             "AR1", "AR10", "AR100", "ARs", "ARm", "ARl", "per_class"}


def run_all(cases, cwd):
    """Runs ``{name: [args]}`` through tools/eval.py, MAX_PARALLEL at a time.

    Returns:
      {name: (returncode, stdout, stderr without TensorFlow's start-up lines)}.
    """
    pending, running, done = list(cases.items()), {}, {}
    while pending or running:
        while pending and len(running) < MAX_PARALLEL:
            name, args = pending.pop(0)
            running[name] = subprocess.Popen([sys.executable, str(TOOL), *map(str, args)], cwd=cwd,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, proc in list(running.items()):
            if proc.poll() is not None:
                out, err = proc.communicate()
                kept = "\n".join(line for line in err.splitlines() if line.strip() and not TF_NOISE.match(line))
                done[name] = (proc.returncode, out, kept)
                del running[name]
        time.sleep(0.05)
    return done


# ---- inputs -------------------------------------------------------------------

COCO_GT = {
    "images": [{"id": 3, "width": 100, "height": 100}, {"id": 1, "width": 100, "height": 100}],
    "categories": [{"id": 5, "name": "cat"}, {"id": 2, "name": "dog"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 10, 30, 40], "area": 1200, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 5, "bbox": [50, 50, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 3, "image_id": 3, "category_id": 5, "bbox": [0, 0, 60, 70], "area": 4200, "iscrowd": 0},
    ],
}


def perfect_coco_dets():
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9 - 0.1 * i}
            for i, a in enumerate(COCO_GT["annotations"])]


def det(**changes):
    return [perfect_coco_dets()[0], {**perfect_coco_dets()[1], **changes}]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval_cli")

    def write(name, data):
        path = folder / name
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        return path

    paths = {
        "gt": write("gt.json", COCO_GT),
        "perfect": write("perfect.json", perfect_coco_dets()),
        "empty": write("empty.json", []),
        "malformed": write("malformed.json",
                           '[{"image_id": 1, "category_id": 2,\n  "bbox": [1, 2, 3, 4] "score": 1}]'),
        "unknown_image": write("unknown_image.json", det(image_id=99)),
        "unknown_category": write("unknown_category.json", det(category_id=7)),
        "negative_width": write("negative_width.json", det(bbox=[1, 2, -3, 4])),
        "nan_score": write("nan_score.json", det(score=math.nan)),  # json writes the NaN literal
        "gt_malformed": write("gt_malformed.json", '{"images": [}'),
        "not_a_list": write("not_a_list.json", {"image_id": 1}),
    }
    voc = write_voc(folder / "voc", {
        "img_b": [voc_object("dog", 1, 1, 10, 20), voc_object("person", 5, 6, 30, 40, difficult=1)],
        "img_a": [voc_object("cat", 11, 21, 60, 70), voc_object("dog", 31, 41, 80, 90)],
    }, {"test": ["img_a", "img_b"]})
    paths["voc"] = voc
    # Devkit corners (xmin, ymin, xmax, ymax) -> COCO-style [xmin - 1, ymin - 1, width, height].
    paths["voc_perfect"] = write("voc_perfect.json", [
        {"image_id": "img_b", "category_id": "dog", "bbox": [0, 0, 10, 20], "score": 0.9},
        {"image_id": "img_a", "category_id": "cat", "bbox": [10, 20, 50, 50], "score": 0.8},
        {"image_id": "img_a", "category_id": 11, "bbox": [30, 40, 50, 50], "score": 0.7},  # 11 = dog
    ])
    paths["voc_indices"] = write("voc_indices.json", [  # indices into --classes cat,dog,person
        {"image_id": "img_b", "category_id": 1, "bbox": [0, 0, 10, 20], "score": 0.9},
        {"image_id": "img_a", "category_id": 0, "bbox": [10, 20, 50, 50], "score": 0.8},
        {"image_id": "img_a", "category_id": "dog", "bbox": [30, 40, 50, 50], "score": 0.7},
    ])
    paths["voc_unknown_class"] = write("voc_unknown_class.json", [
        {"image_id": "img_b", "category_id": "zebra", "bbox": [0, 0, 10, 20], "score": 0.9}])
    paths["not_voc"] = folder / "not_voc"
    paths["not_voc"].mkdir()
    return paths


# ---- bad input: one line naming the file and the entry, exit 2 ------------------

BAD_CASES = {
    # name: (gt key, dets key, extra args, expected message after "<path>: ")
    "malformed_json": ("gt", "malformed", [], "malformed JSON at line 2, column 24"),
    "unknown_image": ("gt", "unknown_image", [], "[1]: image_id 99 is not an image of the ground truth"),
    "unknown_category": ("gt", "unknown_category", [], "[1]: category_id 7 is not a category id"),
    "negative_width": ("gt", "negative_width", [], "[1]: bbox width is negative (-3)"),
    "nan_score": ("gt", "nan_score", [], "[1]: score is not finite (nan)"),
    "not_a_list": ("gt", "not_a_list", [], "expected a JSON list of detections"),
    "missing_dets_file": ("gt", None, [], "file not found"),
    "gt_malformed": ("gt_malformed", "perfect", [], "malformed JSON at line 1, column 13"),
    "voc_unknown_class": ("voc", "voc_unknown_class", [], '[0]: category_id "zebra" is neither a class name'),
    "voc_missing_split": ("voc", "voc_perfect", ["--split", "val"], "no such split file; available splits: test"),
    "not_a_voc_root": ("not_voc", "perfect", [], "not a VOC dataset root"),
    "split_on_coco": ("gt", "perfect", ["--split", "val"], "apply to VOC dataset folders only"),
}
# The list, checked in a real process; the others through main().
SUBPROCESS_CASES = ("malformed_json", "unknown_image", "unknown_category", "negative_width", "nan_score")


def bad_case(files, name):
    """(argv, path the error must start with, expected text)."""
    gt_key, dets_key, extra, expected = BAD_CASES[name]
    dets = files[dets_key] if dets_key else files["gt"].parent / "no_such_file.json"
    argv = ["--gt", files[gt_key], "--dets", dets, *extra]
    if name == "voc_missing_split":
        source = files["voc"] / "ImageSets" / "Main" / "val.txt"
    elif name in ("gt_malformed", "not_a_voc_root", "split_on_coco"):
        source = files[gt_key]
    else:
        source = dets
    return [str(a) for a in argv], source, expected


def load_tool():
    spec = importlib.util.spec_from_file_location("eval_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(argv, capsys):
    """(exit code, stdout, stderr) of the tool's main() in this process."""
    try:
        rc = load_tool().main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse usage errors
        rc = exit_.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.fixture(scope="module")
def bad_runs(files, tmp_path_factory):
    cases = {name: bad_case(files, name)[0] for name in SUBPROCESS_CASES}
    cases["config_not_available"] = ["--config", "configs/x.yaml", "--weights", "w.keras"]
    return run_all(cases, tmp_path_factory.mktemp("cwd"))


def check_bad(rc, out, err, source, expected):
    assert rc == 2, (out, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{source}: "), lines[0]
    assert expected in lines[0]
    assert out == ""


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_bad_input_subprocess(files, bad_runs, name):
    _, source, expected = bad_case(files, name)
    check_bad(*bad_runs[name], source, expected)


@pytest.mark.parametrize("name", sorted(set(BAD_CASES) - set(SUBPROCESS_CASES)))
def test_bad_input_main(files, capsys, name):
    argv, source, expected = bad_case(files, name)
    check_bad(*run_main(argv, capsys), source, expected)


def test_missing_config_is_one_clean_line(bad_runs):
    rc, _, err = bad_runs["config_not_available"]
    assert rc == 2 and "x.yaml" in err and "cannot read config" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_usage_errors(files, capsys):
    rc, _, err = run_main([], capsys)
    assert rc == 2 and "--gt and --dets are required" in err
    rc, _, err = run_main(["--gt", files["gt"], "--dets", files["perfect"], "--metric", "map"], capsys)
    assert rc == 2 and "invalid choice: 'map'" in err


# ---- good input: tables, JSON, plots --------------------------------------------


@pytest.fixture(scope="module")
def good_runs(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    cases = {
        "coco_perfect": ["--gt", files["gt"], "--dets", files["perfect"], "--json", out / "coco.json",
                         "--plots", out / "coco_plots"],
        "voc_perfect": ["--gt", files["voc"], "--dets", files["voc_perfect"], "--json", out / "voc.json",
                        "--plots", out / "voc_plots"],
    }
    runs = run_all(cases, out)
    return {name: (*runs[name], out) for name in cases}


# TensorFlow's own start-up lines ("I0000 00:00:... cudart_stub.cc:31] Could not find cuda
# drivers", absl's "WARNING: All log messages before absl::InitializeLog()"), which a user
# reads as errors; tools hold them back (detect.cli.quiet_tensorflow).
TF_STARTUP_LINE = re.compile(r"^(?:[IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl|.*cuda)", re.M)


def test_no_tensorflow_startup_lines(good_runs):
    for name in ("coco_perfect", "voc_perfect"):
        rc, stdout, err, _ = good_runs[name]
        assert rc == 0, err
        assert not TF_STARTUP_LINE.search(err), err
        assert not TF_STARTUP_LINE.search(stdout), stdout


FAKE_TENSORFLOW = """
import os
os.write(2, b"I0000 00:00:1.0  1 cudart_stub.cc:31] fake start-up line\\n")
if os.environ.get("FAKE_TF_FAILS"):
    raise ImportError("fake tensorflow cannot load")
_listed = []
class config:
    @staticmethod
    def list_physical_devices():
        if not _listed:  # as TensorFlow: devices are initialised (and logged) once
            os.write(2, b"E0000 00:00:2.0  1 cuda_platform.cc:52] fake device line\\n")
            _listed.append(True)
        return []
"""


@pytest.mark.parametrize("env, fails, shown", [
    ({}, False, False),                      # the default: held back
    ({"DETECT_TF_LOGS": "1"}, False, True),  # asked for
    ({}, True, True),                        # the import failed: replayed before the traceback
])
def test_quiet_tensorflow_holds_back_replays_or_shows(tmp_path, env, fails, shown):
    # A stand-in "tensorflow" that writes to file descriptor 2 as the C++ library does.
    (tmp_path / "tensorflow.py").write_text(FAKE_TENSORFLOW)
    # As a tool: quiet_tensorflow() after parsing, then the package imports TensorFlow and uses it.
    code = ("from detect.cli import quiet_tensorflow; quiet_tensorflow(); "
            "import tensorflow as tf; tf.config.list_physical_devices(); print('after')")
    base = {k: v for k, v in os.environ.items() if k != "DETECT_TF_LOGS"}
    env = {**base, **env, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    if fails:
        env["FAKE_TF_FAILS"] = "1"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert ("fake start-up line" in proc.stderr) == shown, proc.stderr
    if fails:
        assert proc.returncode != 0 and "fake tensorflow cannot load" in proc.stderr
        assert proc.stderr.index("fake start-up line") < proc.stderr.index("Traceback")
    else:
        assert proc.returncode == 0 and proc.stdout == "after\n"
        assert ("fake device line" in proc.stderr) == shown


def test_coco_perfect_detections(good_runs):
    rc, stdout, err, out = good_runs["coco_perfect"]
    assert rc == 0, err
    assert " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000" in stdout
    assert " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] =" in stdout
    summary = json.loads((out / "coco.json").read_text())
    assert set(summary) == COCO_KEYS and summary["metric"] == "coco"
    assert summary["AP"] == pytest.approx(1.0) and summary["AP50"] == pytest.approx(1.0)
    assert summary["per_class"] == {"dog": pytest.approx(1.0), "cat": pytest.approx(1.0)}
    assert list(summary["per_class"]) == ["dog", "cat"]  # category id order: dog=2, cat=5
    plots = sorted(p.name for p in (out / "coco_plots").iterdir())
    assert plots == [MARKER, "ap_per_class.png", "pr_000_dog.png", "pr_001_cat.png"]  # MARKER: the tool's folder


def test_voc_perfect_detections(good_runs):
    rc, stdout, err, out = good_runs["voc_perfect"]
    assert rc == 0, err
    assert "mAP" in stdout
    summary = json.loads((out / "voc.json").read_text())
    assert set(summary) == {"metric", "mAP", "per_class"} and summary["metric"] == "voc12"
    assert summary["mAP"] == pytest.approx(1.0)
    # Default class list: the 20 VOC names; classes without ground truth are null.
    assert len(summary["per_class"]) == 20 and summary["per_class"]["horse"] is None
    assert summary["per_class"]["dog"] == pytest.approx(1.0) and summary["per_class"]["cat"] == pytest.approx(1.0)
    # The only person is difficult: no countable ground truth.
    assert summary["per_class"]["person"] is None
    assert len(list((out / "voc_plots").glob("pr_*.png"))) == 20


def test_coco_no_detections_is_ap_zero(files, capsys, tmp_path):
    rc, _, err = run_main(["--gt", files["gt"], "--dets", files["empty"], "--json", tmp_path / "s.json"], capsys)
    assert rc == 0, err
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["AP"] == 0 and summary["AR100"] == 0


def test_voc07_no_detections_is_zero(files, capsys, tmp_path):
    rc, _, err = run_main(["--gt", files["voc"], "--dets", files["empty"], "--metric", "voc07",
                           "--json", tmp_path / "s.json"], capsys)
    assert rc == 0, err
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["metric"] == "voc07" and summary["mAP"] == 0


def test_voc_custom_classes(files, capsys, tmp_path):
    rc, _, err = run_main(["--gt", files["voc"], "--dets", files["voc_indices"], "--classes", "cat,dog,person",
                           "--split", "test", "--json", tmp_path / "s.json"], capsys)
    assert rc == 0, err
    summary = json.loads((tmp_path / "s.json").read_text())
    assert list(summary["per_class"]) == ["cat", "dog", "person"]
    assert summary["mAP"] == pytest.approx(1.0) and summary["per_class"]["person"] is None


def test_profile_lists_each_step_on_stderr(files, capsys, tmp_path):
    argv = ["--gt", files["gt"], "--dets", files["perfect"], "--json", tmp_path / "s.json"]
    rc, plain_out, plain_err = run_main(argv, capsys)
    assert rc == 0 and plain_err == ""
    rc, out, err = run_main([*argv, "--overwrite", "--profile"], capsys)
    assert rc == 0 and out == plain_out  # the report itself is unchanged
    lines = err.splitlines()
    assert lines[0] == "tools/eval.py --profile: wall time per step"
    steps = [line.rsplit("  ", 1)[0].strip() for line in lines[1:]]
    # Called in a process that has TensorFlow already: the files load here, not in a forked process.
    assert steps == ["TensorFlow import", "parse JSON: ground truth", "check + index: ground truth",
                     "parse JSON: detections", "check + index: detections", "metric", "report"]
    assert all(line.endswith(" s") for line in lines[1:])


KERAS_LATER = """
import sys
from detect.cli import quiet_tensorflow
quiet_tensorflow(keras=False)
import tensorflow as tf
print("keras" in sys.modules, "matplotlib" in sys.modules, float(tf.reduce_sum(tf.constant([1.0, 2.0]))))
from detect.ops import coco_map  # what tools/eval.py --gt runs
print("keras" in sys.modules)
import keras
print(tf.keras.layers.Dense is keras.layers.Dense, type(keras.layers.Dense(2)).__name__)
from detect.ops import RoIAlign
print(RoIAlign.__mro__[1] is keras.layers.Layer)
"""


def test_tensorflow_without_its_own_keras_import():
    # tools/eval.py --gt/--dets imports TensorFlow without the Keras (and matplotlib) it loads on its own;
    # Keras, tf.keras and our Keras layers still load when asked for.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", KERAS_LATER], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:4] == ["False False 3.0", "False", "True Dense", "True"]
