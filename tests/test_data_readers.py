"""COCO and YOLO readers, the COCO writer, image sizes and tools/convert.py (no TensorFlow)."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from detect.data import (Record, image_size, read_coco, read_dataset, read_yolo, records_to_coco,
                         write_coco, yolo_class_names)
from detect.data.coco import default_image_dir
from detect.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


# ---- COCO -------------------------------------------------------------------------


def coco_dict(images=None, annotations=None, categories=None):
    return {
        "images": images if images is not None else [
            {"id": 5, "file_name": "b.jpg", "width": 100, "height": 80},
            {"id": 2, "file_name": "a.jpg", "width": 60, "height": 40},
            {"id": 9, "file_name": "empty.jpg", "width": 30, "height": 20},
        ],
        "annotations": annotations if annotations is not None else [
            {"id": 1, "image_id": 5, "category_id": 7, "bbox": [10, 20, 30, 40], "area": 1200,
             "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 3, "bbox": [1.5, 2.5, 3, 4], "iscrowd": 1},
            {"id": 3, "image_id": 5, "category_id": 12, "bbox": [0, 0, 100, 80]},
        ],
        "categories": categories if categories is not None else [
            {"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}, {"id": 12, "name": "bird"}],
    }


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_coco_categories_boxes_crowd_and_order(tmp_path):
    path = write_json(tmp_path / "ann.json", coco_dict())
    records = read_coco(path)
    # Image ids sorted; category ids 3, 7, 12 become classes 0, 1, 2.
    assert [r.image_id for r in records] == [2, 5, 9]
    assert records[0].class_names == ("cat", "dog", "bird")
    a, b, empty = records
    np.testing.assert_array_equal(a.boxes, [[1.5, 2.5, 4.5, 6.5]])
    assert a.classes.tolist() == [0] and a.ignore.tolist() == [True]
    np.testing.assert_array_equal(b.boxes, [[10, 20, 40, 60], [0, 0, 100, 80]])
    assert b.classes.tolist() == [1, 2] and b.ignore.tolist() == [False, False]
    assert (b.height, b.width) == (80, 100)
    assert b.boxes.dtype == np.float32 and b.classes.dtype == np.int32 and b.ignore.dtype == bool
    # Images without annotations stay as negatives unless dropped.
    assert empty.num_boxes == 0 and empty.boxes.shape == (0, 4)
    assert [r.image_id for r in read_coco(path, drop_empty=True)] == [2, 5]


def test_coco_image_dir_defaults(tmp_path):
    flat = write_json(tmp_path / "flat" / "ann.json", coco_dict())
    assert read_coco(flat)[0].image_path == str(tmp_path / "flat" / "a.jpg")
    (tmp_path / "flat" / "images").mkdir()
    assert read_coco(flat)[0].image_path == str(tmp_path / "flat" / "images" / "a.jpg")
    # The usual root/annotations/x.json with root/images/.
    nested = write_json(tmp_path / "root" / "annotations" / "x.json", coco_dict())
    (tmp_path / "root" / "images").mkdir()
    assert default_image_dir(nested) == tmp_path / "root" / "images"
    assert read_coco(nested, image_dir="/data/imgs")[0].image_path == str(Path("/data/imgs/a.jpg"))


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d.pop("images"), "missing key 'images'"),
    (lambda d: d["annotations"][1].update(image_id=77), "annotations[1] (id 2): image_id 77"),
    (lambda d: d["annotations"][2].update(category_id=4), "annotations[2] (id 3): category_id 4"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "annotations[0] (id 1): bbox must be"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, "3", 4]), "annotations[0] (id 1): bbox must"),
    (lambda d: d["annotations"][0].pop("bbox"), "annotations[0] (id 1): missing key 'bbox'"),
    (lambda d: d["annotations"][0].pop("id"), "annotations[0]: missing key 'id'"),
    (lambda d: d["annotations"][0].update(iscrowd=2), "iscrowd must be 0 or 1"),
    (lambda d: d["images"][1].update(id=5), "images[1]: duplicate id 5"),
    (lambda d: d["images"][0].update(width=-3), "images[0] (id 5): width must be a positive"),
    (lambda d: d["images"][0].pop("file_name"), "images[0] (id 5): missing key 'file_name'"),
    (lambda d: d["categories"][1].update(name="dog"), "name 'dog' is also used by categories[0]"),
])
def test_coco_bad_input_names_file_and_entry(tmp_path, mutate, expected):
    data = coco_dict()
    mutate(data)
    path = write_json(tmp_path / "bad.json", data)
    with pytest.raises(InputError) as info:
        read_coco(path)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_coco_broken_images_are_collected_when_asked(tmp_path):
    data = coco_dict()
    data["annotations"][0]["bbox"] = [10, float("nan"), 30, 40]  # image 5 (JSON allows NaN)
    data["images"][2]["height"] = 0  # image 9
    path = write_json(tmp_path / "ann.json", data)
    with pytest.raises(InputError, match="images\\[2\\] \\(id 9\\): height must be a positive integer"):
        read_coco(path)
    skipped = []
    records = read_coco(path, skipped=skipped)
    assert [r.image_id for r in records] == [2]
    assert sorted(e.message.split(":")[0] for e in skipped) == ["annotations[0] (id 1)", "images[2] (id 9)"]
    # A structural fault is no per-image matter: it still raises.
    data["annotations"][1]["image_id"] = 77
    with pytest.raises(InputError, match="image_id 77 is not in 'images'"):
        read_coco(write_json(tmp_path / "bad.json", data), skipped=[])


def test_coco_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_coco(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(InputError, match=r"bad.json: malformed JSON at line 1"):
        read_coco(bad)
    bad.write_text("[]")
    with pytest.raises(InputError, match="expected a JSON object"):
        read_coco(bad)


def test_coco_round_trip_preserves_boxes_and_categories(tmp_path):
    path = write_json(tmp_path / "ann.json", coco_dict())
    records = read_coco(path)
    out = records_to_coco(records)
    assert [c["name"] for c in out["categories"]] == ["cat", "dog", "bird"]
    assert [c["id"] for c in out["categories"]] == [1, 2, 3]
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in out["images"]] == [
        (2, "a.jpg", 60, 40), (5, "b.jpg", 100, 80), (9, "empty.jpg", 30, 20)]
    # Each original annotation comes back with the same box, name and crowd flag.
    names = {c["id"]: c["name"] for c in out["categories"]}
    original_names = {c["id"]: c["name"] for c in coco_dict()["categories"]}
    key = lambda a, n: (a["image_id"], n[a["category_id"]], tuple(a["bbox"]), a.get("iscrowd", 0))
    assert sorted(key(a, names) for a in out["annotations"]) == \
        sorted(key(a, original_names) for a in coco_dict()["annotations"])
    ann = next(a for a in out["annotations"] if a["image_id"] == 2)
    assert ann["bbox"] == [1.5, 2.5, 3.0, 4.0] and ann["area"] == 12.0 and ann["iscrowd"] == 1
    # And reading the written file gives the same records.
    again = read_coco(write_coco(records, tmp_path / "out.json"))
    for r, s in zip(records, again):
        assert (r.image_id, r.height, r.width, r.class_names) == (s.image_id, s.height, s.width,
                                                                   s.class_names)
        np.testing.assert_array_equal(r.boxes, s.boxes)
        np.testing.assert_array_equal(r.classes, s.classes)
        np.testing.assert_array_equal(r.ignore, s.ignore)


def test_records_to_coco_is_loadable_by_pycocotools_and_needs_one_class_list():
    from pycocotools.coco import COCO

    record = Record("img1", 50, 60, [[0, 0, 10.1, 20]], [1], [False], ("a", "b"), "/x/img1.png")
    data = records_to_coco([record])
    assert data["annotations"][0]["bbox"] == [0.0, 0.0, 10.1, 20.0]  # shortest float32 decimal
    assert data["images"][0]["file_name"] == "img1.png"
    coco = COCO()
    coco.dataset = data
    coco.createIndex()
    assert coco.loadCats(2)[0]["name"] == "b" and coco.getAnnIds(imgIds=["img1"]) == [1]
    other = Record("img2", 5, 5, [], [], [], ("a",))
    with pytest.raises(ValueError, match="img2"):
        records_to_coco([record, other])
    with pytest.raises(ValueError):
        records_to_coco([])
    assert records_to_coco([], class_names=("a",))["categories"] == [
        {"id": 1, "name": "a", "supercategory": "none"}]


# ---- YOLO -------------------------------------------------------------------------


def write_image(path, height, width, ext=".png"):
    path = path.with_suffix(ext)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.zeros((height, width, 3), np.uint8))
    return path


@pytest.fixture
def yolo_root(tmp_path):
    root = tmp_path / "yolo"
    write_image(root / "images" / "train" / "b", 100, 200)
    write_image(root / "images" / "train" / "a", 50, 40, ".jpg")
    write_image(root / "images" / "train" / "nolabel", 10, 10)
    write_image(root / "images" / "val" / "v", 10, 10)
    labels = root / "labels" / "train"
    labels.mkdir(parents=True)
    (labels / "b.txt").write_text("0 0.5 0.5 0.2 0.4\n\n2 0.1 0.2 0.1 0.1\n")
    (labels / "a.txt").write_text("")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnc: 3\n"
                                    "names: [red, green, blue]\n")
    return root


def test_yolo_normalised_to_pixels_by_hand(yolo_root):
    records = read_yolo(yolo_root, "train")
    assert [r.image_id for r in records] == ["a", "b", "nolabel"]
    a, b, nolabel = records
    assert (b.height, b.width) == (100, 200) and (a.height, a.width) == (50, 40)
    # 0: cx 0.5*200=100, cy 0.5*100=50, w 0.2*200=40, h 0.4*100=40 -> 80 30 120 70.
    # 2: cx 20, cy 20, w 20, h 10 -> 10 15 30 25.
    np.testing.assert_allclose(b.boxes, [[80, 30, 120, 70], [10, 15, 30, 25]], atol=1e-5)
    assert b.classes.tolist() == [0, 2] and b.ignore.tolist() == [False, False]
    assert b.class_names == ("red", "green", "blue")
    assert b.image_path == str(yolo_root / "images" / "train" / "b.png")
    # Empty and missing label files both mean "no boxes".
    assert a.num_boxes == 0 and nolabel.num_boxes == 0 and a.boxes.shape == (0, 4)
    renamed = read_yolo(yolo_root, "train", class_names=["x", "y", "z"])
    assert renamed[1].class_names == ("x", "y", "z")


def test_yolo_class_name_sources(yolo_root):
    (yolo_root / "data.yaml").write_text("names:\n  1: green\n  0: red\n  2: blue\n")
    assert yolo_class_names(yolo_root) == ["red", "green", "blue"]
    (yolo_root / "data.yaml").unlink()
    (yolo_root / "names.txt").write_text("red\ngreen\n\nblue\n")
    assert yolo_class_names(yolo_root) == ["red", "green", "blue"]
    (yolo_root / "names.txt").unlink()
    with pytest.raises(InputError, match="no class names"):
        read_yolo(yolo_root, "train")
    (yolo_root / "data.yaml").write_text("names: [a, b]\nnc: 3\n")
    with pytest.raises(InputError, match="nc is 3"):
        yolo_class_names(yolo_root)
    (yolo_root / "data.yaml").write_text("names: {0: a, 2: b}\n")
    with pytest.raises(InputError, match="keys must be the class ids 0..1"):
        yolo_class_names(yolo_root)


@pytest.mark.parametrize("text, expected", [
    ("0 0.5 0.5 0.2 0.4\n1 0.5 0.5 0.2\n", "line 2: expected 5 fields 'class cx cy w h', got 4"),
    ("0 0.5 0.5 0.2 0.4 0.9\n", "line 1: expected 5 fields 'class cx cy w h', got 6"),
    ("0 0.5 abc 0.2 0.4\n", "line 1: cy is 'abc', not a finite number"),
    ("0 0.5 0.5 nan 0.4\n", "line 1: w is 'nan', not a finite number"),
    ("\n\n3 0.5 0.5 0.2 0.4\n", "line 3: class 3 is out of range 0..2"),
    ("-1 0.5 0.5 0.2 0.4\n", "line 1: class -1 is out of range 0..2"),
    ("x 0.5 0.5 0.2 0.4\n", "line 1: class is 'x', not an integer"),
    ("1.5 0.5 0.5 0.2 0.4\n", "line 1: class is '1.5', not an integer"),
])
def test_yolo_bad_lines_name_file_and_line(yolo_root, text, expected):
    label = yolo_root / "labels" / "train" / "b.txt"
    label.write_text(text)
    with pytest.raises(InputError) as info:
        read_yolo(yolo_root, "train")
    assert str(info.value) == f"{label}: {expected}"


def test_yolo_broken_files_are_collected_when_asked(yolo_root):
    (yolo_root / "labels" / "train" / "b.txt").write_text("0 0.5 abc 0.2 0.4\n")
    (yolo_root / "images" / "train" / "a.jpg").write_bytes(b"not an image")
    skipped = []
    records = read_yolo(yolo_root, "train", skipped=skipped)
    assert [r.image_id for r in records] == ["nolabel"]
    assert sorted(Path(e.source).name for e in skipped) == ["a.jpg", "b.txt"]
    (yolo_root / "labels" / "train" / "b.txt").write_text("3 0.5 0.5 0.2 0.4\n")
    with pytest.raises(InputError, match="line 1: class 3 is out of range 0..2"):
        read_yolo(yolo_root, "train", skipped=[])  # a wrong class list is not a broken file


def test_yolo_tolerates_float_class_and_reports_bad_layout(yolo_root, tmp_path):
    (yolo_root / "labels" / "train" / "b.txt").write_text("2.0 0.5 0.5 0.2 0.4\n")
    assert read_yolo(yolo_root, "train")[1].classes.tolist() == [2]
    with pytest.raises(InputError, match="no such split folder; available splits: train, val"):
        read_yolo(yolo_root, "test")
    with pytest.raises(InputError, match=r"labels[/\\]val: no such label folder"):
        read_yolo(yolo_root, "val")
    with pytest.raises(InputError, match="not a YOLO dataset root"):
        read_yolo(tmp_path / "nowhere", "train")


def test_image_size_reads_headers_like_opencv(tmp_path):
    for ext, params in ((".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".png", []),
                        (".bmp", [])):
        path = tmp_path / f"img{len(params)}{ext}"
        cv2.imwrite(str(path), np.zeros((37, 53, 3), np.uint8), params)
        assert image_size(path) == (37, 53), path
    with pytest.raises(InputError, match="image file not found"):
        image_size(tmp_path / "missing.jpg")
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(InputError, match="not a readable image"):
        image_size(tmp_path / "junk.jpg")


# ---- read_dataset and tools/convert.py ---------------------------------------------


def test_read_dataset_dispatch(yolo_root, tmp_path):
    assert len(read_dataset("yolo", yolo_root, "train")) == 3
    coco_root = tmp_path / "coco"
    write_json(coco_root / "annotations" / "instances_val.json", coco_dict())
    assert [r.image_id for r in read_dataset("coco", coco_root, "val")] == [2, 5, 9]
    with pytest.raises(InputError, match="unknown dataset format"):
        read_dataset("kitti", yolo_root, "train")
    with pytest.raises(InputError, match="a VOC split is required"):
        read_dataset("voc", yolo_root)


def test_convert_tool_to_coco_and_bad_input(yolo_root, tmp_path):
    tool = [sys.executable, str(ROOT / "tools" / "convert.py")]
    out = tmp_path / "out.json"
    ok = subprocess.run(tool + ["--format", "yolo", "--root", str(yolo_root), "--split", "train",
                                "--to", "coco", "--out", str(out)],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    data = json.loads(out.read_text())
    assert [c["name"] for c in data["categories"]] == ["red", "green", "blue"]
    assert len(data["images"]) == 3 and len(data["annotations"]) == 2
    (yolo_root / "labels" / "train" / "b.txt").write_text("7 0.5 0.5 0.2 0.4\n")
    bad = subprocess.run(tool + ["--format", "yolo", "--root", str(yolo_root), "--split", "train",
                                 "--to", "coco", "--out", str(out), "--overwrite"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == \
        f"{yolo_root / 'labels' / 'train' / 'b.txt'}: line 1: class 7 is out of range 0..2"
    assert "Traceback" not in bad.stderr


# ---- the YOLO-txt module's name and Record.area --------------------------------------


def test_yolo_txt_module_name():
    import importlib.util

    import detect.data.yolo_txt as yolo_txt

    assert importlib.util.find_spec("detect.data.yolo") is None  # detect.yolo is the model, not a format
    assert read_yolo is yolo_txt.read_yolo and yolo_class_names is yolo_txt.yolo_class_names


def test_record_area_from_coco_else_the_box(tmp_path):
    records = read_coco(write_json(tmp_path / "ann.json", coco_dict()))
    # Image 5: the annotation's own area (1200), and w * h where the annotation has none.
    np.testing.assert_array_equal(records[1].area, [1200.0, 8000.0])
    assert records[1].area.dtype == np.float64 and records[2].area.shape == (0,)
    segment = coco_dict()
    segment["annotations"][0]["area"] = 517.25  # a segment's area, less than its box's
    records = read_coco(write_json(tmp_path / "segment.json", segment))
    assert records[1].area[0] == 517.25
    # Written back as it was read; other formats' records have the box area (0 if degenerate).
    out = records_to_coco(records)
    assert sorted(a["area"] for a in out["annotations"]) == [12.0, 517.25, 8000.0]
    record = Record("x", 9, 9, [[1, 1, 4.5, 3], [5, 5, 4, 8]], [0, 0], [False, False], ("a",))
    np.testing.assert_array_equal(record.area, [7.0, 0.0])
    with pytest.raises(ValueError, match="area must be 2 finite numbers"):
        Record("x", 9, 9, [[1, 1, 4.5, 3], [5, 5, 4, 8]], [0, 0], [False, False], ("a",), area=[1.0, np.nan])
