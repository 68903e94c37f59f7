"""The dataset checker (detect.data.checker) and tools/check_dataset.py.

A hand-made VOC dataset holds one of each problem; BCCD, a real dataset with
two known flawed boxes, must show exactly those. The CLI runs in fresh
interpreters (it imports no TensorFlow, so each run is quick).
"""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from detect.data.checker import (
    CORRUPT_IMAGE, DEGENERATE_BOX, DUPLICATE_ID, MALFORMED_ANNOTATION, MISSING_ANNOTATION,
    MISSING_IMAGE, OUT_OF_BOUNDS_BOX, SIZE_BUCKETS, SIZE_MISMATCH, SPLIT_OVERLAP, TINY_BOX,
    TRUNCATED_IMAGE, UNKNOWN_CLASS, check_dataset, check_voc, format_report)
from detect.data.drawing import draw_boxes, write_examples
from detect.errors import InputError
from detect.outputs import MARKER
from test_voc_reader import voc_object, write_voc

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "check_dataset.py"
BCCD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "BCCD"

WIDTH, HEIGHT = 100, 80  # every annotation's <size> (write_voc's default)
CLASSES = ("cat", "dog")


def run_tool(*args, cwd=ROOT):
    proc = subprocess.run([sys.executable, str(TOOL), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def write_image(path, width=WIDTH, height=HEIGHT):
    image = np.full((height, width, 3), 128, np.uint8)
    assert cv2.imwrite(str(path), image)


# One image per problem kind; the expected problem's file, relative to the root.
EXPECTED = {
    MISSING_IMAGE: "JPEGImages/missing.jpg",
    CORRUPT_IMAGE: "JPEGImages/corrupt.jpg",
    SIZE_MISMATCH: "JPEGImages/resized.jpg",
    MALFORMED_ANNOTATION: "Annotations/broken.xml",
    MISSING_ANNOTATION: "ImageSets/Main/val.txt",
    UNKNOWN_CLASS: "Annotations/unicorn.xml",
    DEGENERATE_BOX: "Annotations/flat.xml",
    TINY_BOX: "Annotations/dot.xml",
    OUT_OF_BOUNDS_BOX: "Annotations/outside.xml",
    DUPLICATE_ID: "ImageSets/Main/train.txt",
}


@pytest.fixture
def flawed(tmp_path):
    """A VOC dataset with exactly one problem of each kind in EXPECTED."""
    good = voc_object("dog", 11, 11, 40, 30)
    images = {
        "good1": [good, voc_object("cat", 50, 20, 90, 70)],
        "good2": [voc_object("cat", 1, 1, 100, 80)],  # touches every edge: in bounds
        "missing": [good],
        "corrupt": [good],
        "resized": [good],
        "broken": [good],
        "unicorn": [good, voc_object("unicorn", 5, 5, 20, 20)],
        "flat": [voc_object("dog", 30, 10, 20, 40)],  # xmax < xmin
        "dot": [voc_object("cat", 10, 10, 10, 40)],  # xmin == xmax: one pixel wide
        "outside": [voc_object("dog", 50, 10, 101, 40)],  # xmax beyond width 100
    }
    root = write_voc(tmp_path / "voc", images, {
        "train": ["good1", "missing", "corrupt", "resized", "broken", "good1"],
        "val": ["good2", "unicorn", "flat", "ghost"],
        "test": ["dot", "outside"],
    })
    for image_id in images:
        if image_id not in ("missing", "corrupt", "resized"):
            write_image(root / "JPEGImages" / f"{image_id}.jpg")
    (root / "JPEGImages" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    write_image(root / "JPEGImages" / "resized.jpg", width=WIDTH + 20)
    (root / "Annotations" / "broken.xml").write_text("<annotation><size><width>100</width>")
    return root


def assert_one_of_each(problems, root):
    found = {}
    for problem in problems:
        found.setdefault(problem["kind"], []).append(problem["source"])
    assert found == {kind: [str(root / path)] for kind, path in EXPECTED.items()}


def problems_of(report):
    return [{"kind": p.kind, "source": p.source, "message": p.message} for p in report.problems]


def test_flawed_dataset_reports_each_problem_once(flawed):
    report = check_voc(flawed, class_names=CLASSES)
    assert_one_of_each(problems_of(report), flawed)
    assert not report.ok
    messages = {p.kind: p.message for p in report.problems}
    assert "'unicorn'" in messages[UNKNOWN_CLASS] and "cat, dog" in messages[UNKNOWN_CLASS]
    assert "line 6" in messages[DUPLICATE_ID] and "line 1" in messages[DUPLICATE_ID]
    assert "'ghost'" in messages[MISSING_ANNOTATION]
    assert "100 x 80" in messages[SIZE_MISMATCH] and "120 x 80" in messages[SIZE_MISMATCH]
    assert "malformed XML" in messages[MALFORMED_ANNOTATION]
    # Continuous edges: VOC xmin = xmax = 10 is [9, 10), one pixel wide.
    assert "1 x 31 px" in messages[TINY_BOX] and "[9, 9, 10, 40]" in messages[TINY_BOX]
    assert "object[0] (dog)" in messages[DEGENERATE_BOX]

    # Counts: a split counts its distinct ids, the union every image once.
    assert {s: v.images for s, v in report.splits.items()} == {"test": 2, "train": 5, "val": 4}
    assert report.union.images == 11
    # unicorn's unknown box and the broken file's boxes are not counted.
    assert report.union.boxes_per_class == {"cat": 3, "dog": 7}
    assert report.splits["train"].boxes_per_class == {"cat": 1, "dog": 4}
    assert sum(map(sum, report.size_histogram.values())) == report.union.boxes


def test_classes_from_annotations_make_unknown_class_impossible(flawed):
    report = check_voc(flawed)
    assert report.class_names == ("cat", "dog", "unicorn")
    assert UNKNOWN_CLASS not in report.problems_by_kind()
    assert any("--classes" in note for note in report.notes)


def test_one_split_and_split_overlap(flawed):
    report = check_voc(flawed, splits=["test"], class_names=CLASSES)
    assert sorted(p.kind for p in report.problems) == sorted([TINY_BOX, OUT_OF_BOUNDS_BOX])
    assert any("none of the checked splits" in note for note in report.notes)
    (flawed / "ImageSets" / "Main" / "test.txt").write_text("dot\noutside\ngood2\n")
    kinds = [p.kind for p in check_voc(flawed, splits=["val", "test"], class_names=CLASSES).problems]
    assert kinds.count(SPLIT_OVERLAP) == 1
    # A split that holds another (trainval holds train) is not an overlap.
    (flawed / "ImageSets" / "Main" / "valtest.txt").write_text("good2\nunicorn\nflat\nghost\ndot\n")
    kinds = [p.kind for p in check_voc(flawed, splits=["val", "valtest"], class_names=CLASSES).problems]
    assert SPLIT_OVERLAP not in kinds


def test_unusable_input_raises(tmp_path, flawed):
    with pytest.raises(InputError, match="no such file"):
        check_dataset(tmp_path / "nowhere")
    with pytest.raises(InputError, match="not a dataset"):
        check_dataset(tmp_path)
    with pytest.raises(InputError, match="available splits: test, train, val"):
        check_dataset(flawed, splits=["nosuch"])


def test_config_yaml_data_section(tmp_path, flawed):
    from detect.train.experiment import load_experiment  # the caller loads a config, as tools/check_dataset.py

    config = tmp_path / "exp.yaml"
    config.write_text(f"name: exp\ndata:\n  format: voc\n  root: {flawed}\n"
                      f"  train_split: train\n  val_split: val\n  classes: [cat, dog]\n")
    report = check_dataset(config, load_config=load_experiment)
    assert set(report.splits) == {"train", "val"} and report.class_names == CLASSES
    assert UNKNOWN_CLASS in report.problems_by_kind()
    assert str(config) in report.notes[0]
    # --set overrides, as tools/train.py applies them.
    report = check_dataset(config, overrides=["data.val_split=test"], load_config=load_experiment)
    assert set(report.splits) == {"train", "test"}
    # The config is loaded as training loads it: every key and value is checked.
    config.write_text("data:\n  format: pascal\n  root: .\n")
    with pytest.raises(InputError, match="data.format must be one of"):
        check_dataset(config, load_config=load_experiment)
    config.write_text(f"model:\n  name: yolo\ndata:\n  root: {flawed}\n")
    with pytest.raises(InputError, match="unknown key 'model.name'"):
        check_dataset(config, load_config=load_experiment)


def test_truncated_jpeg_is_usable_not_corrupt_and_misnamed_png_is_a_note(tmp_path):
    from test_pipeline import gradient_jpeg

    root = write_voc(tmp_path / "voc", {i: [voc_object("dog", 2, 2, 30, 30)] for i in
                                        ("cut", "stub", "png", "fine")}, {"train": ["cut", "stub", "png", "fine"]},
                     width=64, height=96)
    data, _ = gradient_jpeg()
    folder = root / "JPEGImages"
    (folder / "cut.jpg").write_bytes(data[: int(len(data) * 0.8)])  # what the pipeline repairs
    (folder / "stub.jpg").write_bytes(data[: int(len(data) * 0.3)])  # what it skips
    y = np.arange(96, dtype=np.uint8)[:, None, None]
    cv2.imwrite(str(folder / "png.png"), np.broadcast_to(y, (96, 64, 3)))
    (folder / "png.png").rename(folder / "png.jpg")
    (folder / "fine.jpg").write_bytes(data)
    report = check_voc(root, class_names=CLASSES)
    found = {(p.kind, Path(p.source).name) for p in report.problems}
    assert found == {(TRUNCATED_IMAGE, "cut.jpg"), (CORRUPT_IMAGE, "stub.jpg")}
    cut = next(p for p in report.problems if p.kind == TRUNCATED_IMAGE)
    assert "% of its rows decode" in cut.message
    assert any("1 image(s) are in another format" in n and "png.jpg is PNG" in n for n in report.notes)
    assert report.image_sizes[(64, 96)] == 3  # cut, png and fine decoded, at their true size


def test_text_report(flawed):
    text = format_report(check_voc(flawed, class_names=CLASSES))
    assert "union of splits" in text and "Problems: 10" in text
    assert all(bucket in text for bucket in SIZE_BUCKETS)
    assert str(flawed / "Annotations" / "dot.xml") in text


def test_size_histogram_buckets(tmp_path):
    # sqrt(area) of 15, 16, 100 and 300 px boxes: buckets <16, 16-32, 64-128, >=256.
    objects = [voc_object("cat", 1, 1, 15, 15), voc_object("cat", 1, 1, 16, 16),
               voc_object("dog", 1, 1, 100, 100), voc_object("dog", 1, 1, 300, 300)]
    root = write_voc(tmp_path / "voc", {"a": objects}, {"all": ["a"]}, width=300, height=300)
    write_image(root / "JPEGImages" / "a.jpg", 300, 300)
    report = check_voc(root, class_names=["cat", "dog"])
    assert report.ok
    assert report.size_histogram == {"cat": [1, 1, 0, 0, 0, 0], "dog": [0, 0, 0, 1, 0, 1]}


def test_draw_boxes_continuous_edges():
    image = np.zeros((40, 40, 3), np.uint8)
    drawn = draw_boxes(image, [[12, 15, 20, 30]], [0], ["a"])
    assert image.max() == 0  # drawn on a copy
    outline = drawn.any(axis=2)
    # The box covers columns 12..19 and rows 15..29; the label sits above row 16.
    assert outline[29, 12:20].all() and outline[15:30, 12].all() and outline[15:30, 19].all()
    assert not outline[30:, :].any() and not outline[16:, 20:].any() and not outline[16:, :12].any()
    assert not outline[16:29, 13:19].any()  # an outline, not a filled box


def test_cli_flawed_dataset(tmp_path, flawed):
    out_json, show = tmp_path / "report.json", tmp_path / "show"
    code, stdout, stderr = run_tool(flawed, "--classes", "cat,dog", "--json", out_json,
                                    "--show", 2, "--out", show)
    assert code == 1, stderr
    assert "Problems: 10" in stdout and "Traceback" not in stderr
    data = json.loads(out_json.read_text())
    assert data["num_problems"] == 10 and data["format"] == "voc"
    assert data["classes"] == list(CLASSES) and data["box_size_buckets"] == list(SIZE_BUCKETS)
    assert data["union"]["images"] == 11
    assert data["splits"]["val"] == {"images": 4, "boxes": 3, "boxes_per_class": {"cat": 1, "dog": 2}}
    assert_one_of_each([dict(p, kind=kind) for kind, ps in data["problems"].items() for p in ps], flawed)
    written = sorted(p for p in show.iterdir() if p.name != MARKER)  # the marker: the tool made the folder
    assert (show / MARKER).exists()
    assert len(written) == 2 and all(p.suffix == ".png" for p in written)
    assert all(cv2.imread(str(p)) is not None for p in written)


def test_cli_exit_codes(tmp_path):
    code, stdout, stderr = run_tool(tmp_path / "nowhere")
    assert code == 2 and stdout == ""
    assert stderr.strip() == f"{tmp_path / 'nowhere'}: no such file or folder"
    root = write_voc(tmp_path / "voc", {"a": [voc_object("cat", 1, 1, 50, 50)]}, {"train": ["a"]})
    write_image(root / "JPEGImages" / "a.jpg")
    code, stdout, _ = run_tool(root)
    assert code == 0 and "Problems: none" in stdout


def test_write_examples_skips_unreadable_images(flawed, tmp_path):
    records = check_voc(flawed, class_names=CLASSES).records
    written = write_examples(records, 100, tmp_path / "all")
    # 11 images listed, 2 without a readable annotation, 2 without a readable image.
    assert len(written) == 7
    # The choice is deterministic.
    assert [p.name for p in write_examples(records, 3, tmp_path / "a")] == \
        [p.name for p in write_examples(records, 3, tmp_path / "b")]


# ---- COCO and YOLO ------------------------------------------------------------


def test_coco_json(tmp_path):
    pytest.importorskip("detect.data.coco", reason="detect.data.coco not written yet")
    (tmp_path / "images").mkdir()
    for name in ("1.jpg", "3.jpg"):
        write_image(tmp_path / "images" / name)
    coco = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": WIDTH, "height": HEIGHT} for i in (1, 2, 3)],
        "categories": [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [10, 10, 0, 5], "area": 0, "iscrowd": 0},
            {"id": 3, "image_id": 3, "category_id": 3, "bbox": [90, 10, 20, 20], "area": 400, "iscrowd": 0},
        ],
    }
    json_path = tmp_path / "instances.json"
    json_path.write_text(json.dumps(coco))
    report = check_dataset(json_path, image_dir=tmp_path / "images")
    assert report.format == "coco" and report.class_names == CLASSES
    assert report.union.images == 3 and report.union.boxes_per_class == {"cat": 1, "dog": 2}
    assert [(p.kind, Path(p.source).name) for p in report.problems] == [
        (MISSING_IMAGE, "2.jpg"), (DEGENERATE_BOX, "instances.json"), (OUT_OF_BOUNDS_BOX, "instances.json")]
    # A broken image entry is reported and counted as an image without boxes; the rest is checked.
    broken = json.loads(json.dumps(coco))
    broken["annotations"][2]["bbox"] = [90, 10, 20]
    json_path.write_text(json.dumps(broken))
    report = check_dataset(json_path, image_dir=tmp_path / "images")
    assert report.union.images == 3 and report.union.boxes_per_class == {"cat": 1, "dog": 1}
    assert [p.kind for p in report.problems] == [MISSING_IMAGE, MALFORMED_ANNOTATION, DEGENERATE_BOX]
    assert "annotations[2] (id 3): bbox must be a list of 4 numbers" in report.problems[1].message
    # A fault of the file as a whole ends the check: it is reported, with a note.
    coco["annotations"][0]["category_id"] = 7
    json_path.write_text(json.dumps(coco))
    report = check_dataset(json_path, image_dir=tmp_path / "images")
    assert [p.kind for p in report.problems] == [MALFORMED_ANNOTATION]
    assert any("file as a whole" in note for note in report.notes)


def test_yolo_root(tmp_path):
    pytest.importorskip("detect.data.yolo_txt", reason="detect.data.yolo_txt not written yet")
    root = tmp_path / "yolo"
    for folder in ("images/train", "images/val", "labels/train", "labels/val"):
        (root / folder).mkdir(parents=True)
    (root / "data.yaml").write_text("names: [cat, dog]\n")
    write_image(root / "images" / "train" / "a.jpg")
    write_image(root / "images" / "train" / "c.jpg")
    (root / "images" / "train" / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    write_image(root / "images" / "val" / "d.png")
    # Class 5 is unknown; the third box reaches x = 104 in a 100 px wide image.
    (root / "labels" / "train" / "a.txt").write_text(
        "0 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.1 0.1\n1 0.99 0.5 0.1 0.1\n")
    (root / "labels" / "train" / "c.txt").write_text("0 0.5 0.5 0.2\n")
    (root / "labels" / "train" / "ghost.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    report = check_dataset(root)
    assert report.format == "yolo" and report.class_names == CLASSES
    assert {s: v.images for s, v in report.splits.items()} == {"train": 3, "val": 1}
    assert report.union.boxes_per_class == {"cat": 1, "dog": 1}
    found = sorted((p.kind, str(Path(p.source).relative_to(root))) for p in report.problems)
    assert found == sorted([(UNKNOWN_CLASS, "labels/train/a.txt"), (OUT_OF_BOUNDS_BOX, "labels/train/a.txt"),
                            (MALFORMED_ANNOTATION, "labels/train/c.txt"),
                            (MISSING_IMAGE, "labels/train/ghost.txt"), (CORRUPT_IMAGE, "images/train/b.jpg")])
    assert any("no label file" in note for note in report.notes)


# ---- BCCD: a real dataset with two known flawed boxes -------------------------


@pytest.fixture(scope="module")
def bccd_report():
    if not (BCCD / "Annotations").is_dir():
        pytest.skip(f"BCCD dataset not found at {BCCD}")
    return check_dataset(BCCD)


def test_bccd_counts(bccd_report):
    report = bccd_report
    assert report.class_names == ("Platelets", "RBC", "WBC")
    assert report.union.images == 364
    assert report.union.boxes_per_class == {"RBC": 4155, "WBC": 372, "Platelets": 361}
    assert {s: v.images for s, v in report.splits.items()} == \
        {"train": 205, "val": 87, "test": 72, "trainval": 292}
    assert dict(report.image_sizes) == {(640, 480): 364}


def test_bccd_exactly_its_two_flawed_boxes(bccd_report):
    problems = bccd_report.problems
    assert [p.kind for p in problems] == [TINY_BOX, TINY_BOX]
    assert sorted(Path(p.source).name for p in problems) == \
        ["BloodImage_00338.xml", "BloodImage_00343.xml"]
    assert all("(RBC)" in p.message for p in problems)


def test_bccd_cli_with_classes_and_json(tmp_path):
    if not (BCCD / "Annotations").is_dir():
        pytest.skip(f"BCCD dataset not found at {BCCD}")
    out_json = tmp_path / "bccd.json"
    code, stdout, stderr = run_tool(BCCD, "--classes", "RBC,WBC,Platelets", "--json", out_json)
    assert code == 1, stderr
    data = json.loads(out_json.read_text())
    assert data["union"]["boxes_per_class"] == {"RBC": 4155, "WBC": 372, "Platelets": 361}
    assert list(data["problems"]) == [TINY_BOX] and len(data["problems"][TINY_BOX]) == 2


def test_voc_root_without_split_files_checks_every_annotation(tmp_path):
    # No ImageSets/Main: every annotation is checked as one split (this crashed before).
    root = write_voc(tmp_path / "voc", {"a": [voc_object("dog", 11, 11, 40, 30)],
                                        "b": [voc_object("cat", 10, 10, 10, 40)]}, {})
    for image_id in ("a", "b"):
        write_image(root / "JPEGImages" / f"{image_id}.jpg")
    for split_file in (root / "ImageSets" / "Main").glob("*.txt"):
        split_file.unlink()
    report = check_voc(root, class_names=CLASSES)
    assert [(p["kind"], Path(p["source"]).name) for p in problems_of(report)] == [(TINY_BOX, "b.xml")]
    assert any("no split files" in note for note in report.notes)
