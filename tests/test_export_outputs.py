"""What ``tools/export.py`` and ``Detector.export`` may write over (issue #18: nothing a user has is destroyed).

The rule is ``detect.outputs``'s: a SavedModel replaces only an earlier
export (or an empty folder) unless ``--overwrite``, and only once the new one
is complete; a ``.tflite`` and its JSON replace existing files only with
``--overwrite``; the run directory and the dataset are never outputs; bad
thresholds and unwritable paths are one line, before any work. Every check
compares file contents (sha256) before and after.

Most tests replace Keras' ``ExportArchive`` with a fake that writes a
SavedModel-shaped folder at once (the rules are about files, not graphs);
one real SavedModel and one real TFLite conversion check the loading side.
"""

import hashlib
import importlib.util
import json
import logging
import shutil
from pathlib import Path

import keras
import pytest
import yaml

from detect import Detector
from detect.data.shapes import SHAPES_CLASSES, make_shapes
from detect.errors import InputError
from detect.export import tflite
from detect.inference.tflite_backend import meta_path
from detect.outputs import MARKER, folder_kind

REPO = Path(__file__).resolve().parents[1]
SIZE = 64
TRAIN_IMAGES = 3


def tree_digest(folder):
    """{relative path: sha256} of every file under ``folder`` (an independent record of its content)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``runs/tiny``: config.yaml and best.weights.h5 of a tiny random YOLO on a 4-image shapes dataset."""
    base = tmp_path_factory.mktemp("export_outputs")
    root = make_shapes(base / "shapes", "voc", num_images=TRAIN_IMAGES + 1, size=SIZE, seed=0, val_fraction=0.25)
    run = base / "runs" / "tiny"
    run.mkdir(parents=True)
    config = {"name": "tiny", "data": {"format": "voc", "root": str(root), "image_size": SIZE, "max_boxes": 8,
                                       "classes": list(SHAPES_CLASSES)},
              "model": {"type": "yolo", "version": "v3", "backbone": "tiny", "head_width": 16},
              "train": {"batch_size": 2}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    keras.utils.set_random_seed(0)
    Detector.from_config(run / "config.yaml")._backend.task.model.save_weights(str(run / "best.weights.h5"))
    return run


@pytest.fixture(scope="module")
def det(run):
    return Detector.load(run)


@pytest.fixture(scope="module")
def tool():
    """``tools/export.py`` as a module: ``tool.main(argv)`` runs it in this process (no TF start-up per call)."""
    spec = importlib.util.spec_from_file_location("export_tool", REPO / "tools" / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(tool, capsys, *args):
    """(exit status, stderr lines) of ``tools/export.py args``."""
    capsys.readouterr()
    code = tool.main([str(a) for a in args])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


class FakeArchive:
    """Keras' ``ExportArchive`` as far as ``export_saved_model`` uses it; writes a SavedModel-shaped folder."""

    made = 0
    fail = False  # write part of the folder, then fail (a full disk, a Ctrl-C)

    def __init__(self):
        FakeArchive.made += 1

    def track(self, model):
        pass

    def add_endpoint(self, name, fn, input_signature=None):
        pass

    def write_out(self, path, verbose=False):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)  # as the real one does
        (path / "saved_model.pb").write_bytes(b"new graph")
        if FakeArchive.fail:
            raise RuntimeError("no space left on device")
        (path / "variables").mkdir()
        (path / "variables" / "variables.index").write_bytes(b"new variables")


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(keras.export, "ExportArchive", FakeArchive)
    monkeypatch.setattr(FakeArchive, "made", 0)
    monkeypatch.setattr(FakeArchive, "fail", False)
    return FakeArchive


def siblings(path):
    """Temporaries left beside ``path`` (``.NAME.tmp-PID`` / ``.NAME.old-PID``)."""
    return sorted(p.name for p in Path(path).parent.glob(f".{Path(path).name}.*"))


# ---- SavedModel: what may be replaced ---------------------------------------------------

def test_saved_model_replaces_an_earlier_export_and_refuses_a_foreign_folder(det, fake, tmp_path):
    out = tmp_path / "model"
    assert det.export(out) == out
    assert folder_kind(out) == "saved_model" and (out / "saved_model.pb").read_bytes() == b"new graph"
    det.export(out, score_threshold=0.5)  # an earlier export of ours: replaced without --overwrite
    assert json.loads((out / "detect.json").read_text())["score_threshold"] == 0.5
    assert siblings(out) == []

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"irreplaceable")
    before = tree_digest(foreign)
    with pytest.raises(InputError, match="photos: --out exists and was not created by tools/export.py.*--overwrite"):
        det.export(foreign)
    assert tree_digest(foreign) == before and fake.made == 2  # refused before any work
    det.export(foreign, overwrite=True)
    assert not (foreign / "holiday.jpg").exists() and folder_kind(foreign) == "saved_model"
    empty = tmp_path / "empty"
    empty.mkdir()
    det.export(empty)
    assert (empty / MARKER).exists()


def test_a_failing_export_leaves_the_previous_one_intact(det, fake, tool, capsys, run, tmp_path):
    out = tmp_path / "model"
    det.export(out)
    before = tree_digest(out)
    fake.fail = True
    with pytest.raises(RuntimeError, match="no space left"):
        det.export(out)
    assert tree_digest(out) == before and siblings(out) == []
    fake.fail = False
    code, lines = run_tool(tool, capsys, "--run", run, "--out", out, "--max-det", "0")
    assert code == 2 and lines == ["max_detections: 0 is not a whole number >= 1"]
    assert tree_digest(out) == before


@pytest.mark.parametrize("where", ["run", "runs", "weights", "dataset"])
def test_the_run_and_its_dataset_are_never_outputs_even_with_overwrite(fake, tool, capsys, run, where):
    out = {"run": run, "runs": run.parent, "weights": run / "best.weights.h5",
           "dataset": run.parents[1] / "shapes"}[where]
    run_before, data_before = tree_digest(run), tree_digest(run.parents[1] / "shapes")
    for extra in ([], ["--overwrite"]):
        code, lines = run_tool(tool, capsys, "--run", run, "--out", out, *extra)
        assert code == 2 and len(lines) == 1, lines
        assert lines[0].startswith(f"{out}: --out ") and "input" in lines[0], lines
    assert tree_digest(run) == run_before and tree_digest(run.parents[1] / "shapes") == data_before
    assert fake.made == 0


@pytest.mark.parametrize("args, message", [
    (["--score", "2.0"], "score_threshold: 2.0 is not a number in [0, 1]"),
    (["--iou", "-1"], "iou_threshold: -1.0 is not a number in [0, 1]"),
    (["--max-det", "0"], "max_detections: 0 is not a whole number >= 1"),
    (["--format", "tflite", "--score", "2.0"], "score_threshold: 2.0 is not a number in [0, 1]"),
])
def test_bad_thresholds_are_one_line_before_any_work(fake, tool, capsys, run, tmp_path, args, message):
    out = tmp_path / ("m.tflite" if "tflite" in args else "model")
    code, lines = run_tool(tool, capsys, "--run", run, "--out", out, *args)
    assert (code, lines) == (2, [message])
    assert not out.exists() and fake.made == 0


def test_a_non_integer_max_detections_is_refused_not_truncated(det, fake, tmp_path):
    for format in ("saved_model", "tflite"):
        with pytest.raises(InputError, match="max_detections: 2.7 is not a whole number"):
            det.export(tmp_path / "m.tflite" if format == "tflite" else tmp_path / "model", format=format,
                       max_detections=2.7)
    assert list(tmp_path.iterdir()) == [] and fake.made == 0


@pytest.mark.parametrize("format, name", [("saved_model", "model"), ("tflite", "m.tflite")])
def test_an_unwritable_out_is_one_line(fake, tool, capsys, run, tmp_path, format, name):
    (tmp_path / "file").write_text("a file, not a folder")
    out = tmp_path / "file" / name
    code, lines = run_tool(tool, capsys, "--run", run, "--format", format, "--out", out)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"{out}: --out: cannot write here"), lines
    assert fake.made == 0


def test_truncated_weights_are_named_by_tools_export(tool, capsys, run, tmp_path):
    broken = tmp_path / "broken_run"
    broken.mkdir()
    shutil.copy(run / "config.yaml", broken / "config.yaml")
    data = (run / "best.weights.h5").read_bytes()
    (broken / "best.weights.h5").write_bytes(data[:len(data) // 3])
    code, lines = run_tool(tool, capsys, "--run", broken, "--out", tmp_path / "model")
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"{broken / 'best.weights.h5'}: not a readable weights file"), lines


# ---- a real SavedModel: loading what may be broken ------------------------------------

@pytest.mark.slow
def test_real_saved_model_export_and_broken_copies_of_it(tool, capsys, run, tmp_path):
    out = tmp_path / "model"
    code, lines = run_tool(tool, capsys, "--run", run, "--out", out)
    assert code == 0, lines
    assert Detector.load(out).class_names == list(SHAPES_CLASSES)  # the marker inside harms nothing

    no_variables = tmp_path / "no_variables"
    shutil.copytree(out, no_variables)
    shutil.rmtree(no_variables / "variables")
    with pytest.raises(InputError, match="no_variables: a SavedModel without its variables/ folder"):
        Detector.load(no_variables)

    other_json = tmp_path / "other_json"
    shutil.copytree(out, other_json)
    meta = json.loads((other_json / "detect.json").read_text())
    meta["class_names"].append("star")
    (other_json / "detect.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="detect.json: lists 4 classes, the SavedModel holds 3"):
        Detector.load(other_json)


# ---- TFLite ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tflite_model(det, tmp_path_factory):
    """A real float32 ``.tflite`` export (one conversion for the module)."""
    return det.export(tmp_path_factory.mktemp("tflite") / "m.tflite", format="tflite")


def test_tflite_replaces_existing_files_only_with_overwrite(det, tflite_model, tmp_path, monkeypatch):
    out = tmp_path / "m.tflite"
    shutil.copy(tflite_model, out)
    shutil.copy(meta_path(tflite_model), meta_path(out))
    before = tree_digest(tmp_path)
    converted = []
    monkeypatch.setattr(tflite, "_convert", lambda *args: converted.append(1) or tflite_model.read_bytes())
    with pytest.raises(InputError, match=r"m.tflite: already exists; choose a new --out or pass --overwrite"):
        det.export(out, format="tflite")
    meta_path(out).rename(tmp_path / "kept.json")
    (tmp_path / "other.json").write_text("{}")  # a user's file where the JSON would go
    with pytest.raises(InputError, match=r"other.json: already exists"):
        det.export(tmp_path / "other.tflite", format="tflite")
    (tmp_path / "kept.json").rename(meta_path(out))
    assert tree_digest(tmp_path) == {**before, "other.json": tree_digest(tmp_path)["other.json"]}
    assert converted == []  # refused before the conversion

    det.export(out, format="tflite", overwrite=True, score_threshold=0.5)
    assert json.loads(meta_path(out).read_text())["score_threshold"] == 0.5
    assert converted == [1] and sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.tflite", "other.json"]


def test_tflite_json_of_another_class_count_is_one_line(tflite_model, tmp_path):
    out = tmp_path / "m.tflite"
    shutil.copy(tflite_model, out)
    meta = json.loads(meta_path(tflite_model).read_text())
    meta["class_names"].append("star")
    meta_path(out).write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"m.json: lists 4 classes, m.tflite holds 3"):
        Detector.load(out)


def test_int8_calibration_on_fewer_images_than_asked_says_so(det, tflite_model, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(tflite, "_convert", lambda *args: tflite_model.read_bytes())
    out = tmp_path / "m.tflite"
    with caplog.at_level(logging.WARNING, logger="detect"):
        det.export(out, format="tflite", quantize="int8", calibration_images=100)
    assert f"int8 calibration on all {TRAIN_IMAGES} images of the training split" in caplog.text
    assert json.loads(meta_path(out).read_text())["calibration_images"] == TRAIN_IMAGES
