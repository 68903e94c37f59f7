"""The overwrite rule in the dataset and evaluation tools (issue #18): each refusal is one line,
exit 2, with the user's files byte-identical (sha256) afterwards.

The tools' ``main`` runs in this process (the same code path as the command line).
"""

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from detect.data.shapes import make_shapes
from detect.outputs import MARKER

ROOT = Path(__file__).resolve().parents[1]

GT = {"images": [{"id": 1, "width": 100, "height": 100}], "categories": [{"id": 1, "name": "cat"}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 40], "area": 1200,
                       "iscrowd": 0}]}
DETS = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 40], "score": 0.9}]


def tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}_outputs", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def hashes(folder):
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture
def eval_files(tmp_path):
    (tmp_path / "gt.json").write_text(json.dumps(GT))
    (tmp_path / "dets.json").write_text(json.dumps(DETS))
    return tmp_path


def test_eval_never_replaces_a_file_it_did_not_write(eval_files, capsys):
    main, folder = tool("eval"), eval_files
    gt, dets, report = folder / "gt.json", folder / "dets.json", folder / "report.json"
    report.write_text("my notes")
    before = hashes(folder)
    cases = [
        (["--json", report], "already exists; choose a new --json or pass --overwrite"),
        (["--json", dets, "--overwrite"], "--json is an input of this command"),  # the detections themselves
        (["--plots", folder], "--plots holds an input of this command"),
    ]
    for extra, message in cases:
        assert main(["--gt", str(gt), "--dets", str(dets), *map(str, extra)]) == 2
        assert message in one_line_error(capsys)
        assert hashes(folder) == before
    assert main(["--gt", str(gt), "--dets", str(dets), "--json", str(report), "--overwrite"]) == 0
    assert json.loads(report.read_text())["AP50"] == pytest.approx(1.0)
    # Plots: a new folder is the tool's; it is written into again, a foreign one only with --overwrite.
    plots = folder / "plots"
    for _ in range(2):
        assert main(["--gt", str(gt), "--dets", str(dets), "--plots", str(plots)]) == 0
    mine = folder / "mine"
    mine.mkdir()
    (mine / "a.txt").write_text("keep")
    assert main(["--gt", str(gt), "--dets", str(dets), "--plots", str(mine)]) == 2
    assert "was not created by tools/eval.py" in one_line_error(capsys)
    assert sorted(p.name for p in mine.iterdir()) == ["a.txt"]


@pytest.fixture(scope="module")
def shapes_voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("tool_outputs") / "shapes"
    make_shapes(root, "voc", num_images=4, size=64, seed=3)
    return root


def test_convert_refuses_its_input_and_foreign_folders(shapes_voc, tmp_path, capsys):
    main, before = tool("convert"), hashes(shapes_voc)
    base = ["--format", "voc", "--root", str(shapes_voc), "--split", "train"]
    assert main(base + ["--to", "tfrecord", "--out", str(shapes_voc)]) == 2
    assert "--out is an input of this command" in one_line_error(capsys)
    assert main(base + ["--to", "coco", "--out", str(shapes_voc / "ImageSets" / "Main" / "train.txt"),
                        "--overwrite"]) == 2
    assert "--out is inside an input of this command" in one_line_error(capsys)
    assert hashes(shapes_voc) == before
    # A folder of shards this tool made takes another split beside the first; a foreign one is refused.
    out = tmp_path / "tfr"
    assert main(base + ["--to", "tfrecord", "--out", str(out), "--shards", "2"]) == 0
    assert main(["--format", "voc", "--root", str(shapes_voc), "--split", "val", "--to", "tfrecord",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MARKER, "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord", "train.json",
         "val-00000-of-00001.tfrecord", "val.json"])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "train-00000-of-00001.tfrecord").write_bytes(b"someone's data")
    assert main(base + ["--to", "tfrecord", "--out", str(mine)]) == 2
    assert "was not created by tools/convert.py" in one_line_error(capsys)
    assert (mine / "train-00000-of-00001.tfrecord").read_bytes() == b"someone's data"
    coco = tmp_path / "train.json"
    coco.write_text("mine")
    assert main(base + ["--to", "coco", "--out", str(coco)]) == 2
    assert "already exists" in one_line_error(capsys) and coco.read_text() == "mine"


def test_check_dataset_draws_only_into_a_new_or_its_own_folder(shapes_voc, tmp_path, capsys):
    main, before = tool("check_dataset"), hashes(shapes_voc)
    assert main([str(shapes_voc), "--show", "2", "--out", str(shapes_voc)]) == 2
    assert "--out is an input of this command" in one_line_error(capsys)
    report = shapes_voc / "Annotations" / "000001.xml"
    assert main([str(shapes_voc), "--json", str(report), "--overwrite"]) == 2
    assert "--json is inside an input of this command" in one_line_error(capsys)
    assert hashes(shapes_voc) == before
    out = tmp_path / "check"
    for _ in range(2):
        assert main([str(shapes_voc), "--show", "2", "--out", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 2


def test_convert_darknet_refuses_an_existing_output_before_reading_anything(tmp_path, capsys):
    main = tool("convert_darknet")
    out = tmp_path / "yolo.weights.h5"
    out.write_bytes(b"my earlier conversion")
    assert main(["--weights", str(tmp_path / "missing.weights"), "--config", str(ROOT / "configs" / "yolo_shapes.yaml"),
                 "--out", str(out)]) == 2
    assert "already exists; choose a new --out or pass --overwrite" in one_line_error(capsys)
    assert out.read_bytes() == b"my earlier conversion"
