from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from detect.data import VOC_CLASSES, Record, read_voc, voc_class_names_in
from detect.errors import InputError

BCCD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "BCCD"


def voc_object(name, xmin, ymin, xmax, ymax, difficult=None):
    diff = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    return (f"<object><name>{name}</name>{diff}<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")


def write_voc(root, images, splits, width=100, height=80):
    """A VOCdevkit-layout dataset: images = {id: [object xml, ...]}, splits = {name: [ids]}."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for image_id, objects in images.items():
        xml = (f"<annotation><filename>{image_id}.jpg</filename><size><width>{width}</width>"
               f"<height>{height}</height><depth>3</depth></size>{''.join(objects)}</annotation>")
        (root / "Annotations" / f"{image_id}.xml").write_text(xml)
    for name, ids in splits.items():
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


@pytest.fixture
def tiny(tmp_path):
    return write_voc(tmp_path / "voc", {
        "000001": [voc_object("dog", 1, 1, 10, 20), voc_object("person", 5, 6, 7, 8, difficult=1)],
        "000002": [voc_object("cat", 11.5, 2, 30, 40, difficult=0)],
        "000003": [],
    }, {"train": ["000002", "000001"], "test": ["000003"]})


def test_voc_classes_standard_order():
    assert len(VOC_CLASSES) == 20 and len(set(VOC_CLASSES)) == 20
    assert VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[14] == "person" and VOC_CLASSES[-1] == "tvmonitor"


def test_coordinate_convention_difficult_and_order(tiny):
    records = read_voc(tiny, "train")
    assert [r.image_id for r in records] == ["000002", "000001"]  # split-file order
    rec = records[1]
    assert isinstance(rec, Record)
    assert (rec.height, rec.width) == (80, 100)
    assert rec.boxes.dtype == np.float32 and rec.classes.dtype == np.int32 and rec.ignore.dtype == bool
    # Devkit xmin=1, xmax=10 covers 10 pixels: continuous edges 0 .. 10.
    np.testing.assert_array_equal(rec.boxes, [[0, 0, 10, 20], [4, 5, 7, 8]])
    assert rec.boxes[0, 2] - rec.boxes[0, 0] == 10 - 1 + 1
    assert rec.classes.tolist() == [VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")]
    assert rec.ignore.tolist() == [False, True]
    assert rec.class_names == VOC_CLASSES
    assert rec.image_path == str(tiny / "JPEGImages" / "000001.jpg")
    # Fractional corners and a missing <difficult> (= 0) are accepted.
    np.testing.assert_array_equal(records[0].boxes, [[10.5, 1, 30, 40]])
    assert records[0].ignore.tolist() == [False]


def test_image_without_objects(tiny):
    (rec,) = read_voc(tiny, "test")
    assert rec.boxes.shape == (0, 4) and rec.classes.shape == (0,) and rec.ignore.shape == (0,)


def test_unknown_class_lists_known_names(tiny):
    with pytest.raises(InputError) as info:
        read_voc(tiny, "train", class_names=["dog", "person"])
    message = str(info.value)
    assert "000002.xml" in message and "object[0]" in message and "'cat'" in message
    assert "dog, person" in message


def test_skip_unknown_and_custom_class_list(tiny):
    records = read_voc(tiny, "train", class_names=["person", "dog"], skip_unknown=True)
    assert records[0].boxes.shape == (0, 4)  # the cat was dropped
    assert records[1].classes.tolist() == [1, 0]
    assert records[1].class_names == ("person", "dog")


def test_class_names_in(tiny):
    assert voc_class_names_in(tiny) == ["cat", "dog", "person"]
    assert voc_class_names_in(tiny, "test") == []
    assert voc_class_names_in(tiny, "train") == ["cat", "dog", "person"]


def test_degenerate_boxes_are_kept(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": [voc_object("cat", 5, 5, 5, 5), voc_object("cat", 9, 9, 3, 3)]},
                     {"train": ["a"]})
    (rec,) = read_voc(root, "train")
    np.testing.assert_array_equal(rec.boxes, [[4, 4, 5, 5], [8, 8, 3, 3]])


@pytest.mark.parametrize("xml, expected", [
    ("<annotation><size><width>10</width>", "malformed XML at line 1"),
    ("<annotation><object><name>cat</name></object></annotation>", "missing <size/width>"),
    ("<annotation><size><width>10</width><height>10</height></size>"
     "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax></bndbox></object>"
     "</annotation>", "object[0] (cat): missing <bndbox/ymax>"),
    ("<annotation><size><width>10</width><height>10</height></size>"
     "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>one</ymin><xmax>2</xmax><ymax>2</ymax>"
     "</bndbox></object></annotation>", "object[0] (cat): <bndbox/ymin> is 'one', not a number"),
    ("<annotation><size><width>10</width><height>10</height></size>"
     "<object><bndbox><xmin>1</xmin></bndbox></object></annotation>", "object[0]: missing <name>"),
    ("<annotation><size><width>wide</width><height>10</height></size></annotation>",
     "<size/width> is 'wide', not a number"),
])
def test_bad_xml_names_file_and_field(tmp_path, xml, expected):
    root = write_voc(tmp_path / "voc", {"a": []}, {"train": ["a"]})
    (root / "Annotations" / "a.xml").write_text(xml)
    with pytest.raises(InputError) as info:
        read_voc(root, "train", class_names=["cat"])
    assert str(info.value).startswith(str(root / "Annotations" / "a.xml") + ": ")
    assert expected in str(info.value)


def test_missing_split_annotation_and_root(tmp_path, tiny):
    with pytest.raises(InputError, match="available splits: test, train"):
        read_voc(tiny, "val")
    (tiny / "ImageSets" / "Main" / "val.txt").write_text("000009\n")
    with pytest.raises(InputError, match=r"000009\.xml: annotation file not found"):
        read_voc(tiny, "val")
    with pytest.raises(InputError, match="not a VOC dataset root"):
        read_voc(tmp_path / "nowhere", "train")


def test_record_validates_lengths():
    with pytest.raises(ValueError, match="must be equal"):
        Record("x", 1, 1, np.zeros((2, 4)), np.zeros(1), np.zeros(2), ("a",))


# ---- the real BCCD dataset ------------------------------------------------------

BCCD_CLASSES = ["RBC", "WBC", "Platelets"]


@pytest.fixture(scope="module")
def bccd():
    if not (BCCD / "Annotations").is_dir():
        pytest.skip(f"BCCD dataset not found at {BCCD} (expected shared/datasets/BCCD beside the repo)")
    return BCCD


def test_bccd_splits_and_sizes(bccd):
    sizes = {}
    for split, expected in (("train", 205), ("val", 87), ("test", 72), ("trainval", 292)):
        records = read_voc(bccd, split, BCCD_CLASSES)
        assert len(records) == expected, split
        sizes[split] = {r.image_id for r in records}
        assert {(r.height, r.width) for r in records} == {(480, 640)}
    assert sizes["trainval"] == sizes["train"] | sizes["val"]
    assert len(sizes["trainval"] | sizes["test"]) == 364


def test_bccd_class_totals_and_degenerate_boxes(bccd):
    records = read_voc(bccd, "trainval", BCCD_CLASSES) + read_voc(bccd, "test", BCCD_CLASSES)
    counts = Counter(BCCD_CLASSES[k] for r in records for k in r.classes)
    assert counts == {"RBC": 4155, "WBC": 372, "Platelets": 361}
    assert voc_class_names_in(bccd) == sorted(BCCD_CLASSES)
    # Two single-pixel annotations (xmin == xmax, ymin == ymax) are kept, not dropped.
    point = [(r.image_id, BCCD_CLASSES[k]) for r in records
             for box, k in zip(r.boxes, r.classes) if box[2] - box[0] <= 1 and box[3] - box[1] <= 1]
    assert sorted(point) == [("BloodImage_00338", "RBC"), ("BloodImage_00343", "RBC")]


def test_broken_annotations_are_collected_when_asked(tmp_path):
    root = write_voc(tmp_path / "voc", {"good": [voc_object("cat", 1, 1, 5, 5)],
                                        "nobox": [], "nan": [voc_object("cat", 1, "nan", 5, 5)],
                                        "text": [voc_object("cat", 1, "one", 5, 5)],
                                        "unknown": [voc_object("unicorn", 1, 1, 5, 5)]},
                     {"train": ["nobox", "good", "nan", "text", "ghost"], "odd": ["unknown", "good"]})
    xml = root / "Annotations" / "nobox.xml"
    xml.write_text(xml.read_text().replace("</size>", "</size><object><name>cat</name></object>"))
    with pytest.raises(InputError, match="nobox.xml: object\\[0\\] \\(cat\\): missing <bndbox/xmin>"):
        read_voc(root, "train", class_names=["cat"])  # without a list, the first broken file raises
    skipped = []
    records = read_voc(root, "train", class_names=["cat"], skipped=skipped)
    assert [r.image_id for r in records] == ["good"]
    assert [Path(e.source).name for e in skipped] == ["nobox.xml", "nan.xml", "text.xml", "ghost.xml"]
    assert "<bndbox/ymin> is 'nan', not a number" in skipped[1].message
    assert "annotation file not found" in skipped[3].message
    # An unknown class means the class list is wrong, not the file: it still raises.
    with pytest.raises(InputError, match="unknown class 'unicorn'"):
        read_voc(root, "odd", class_names=["cat"], skipped=[])


def test_voc_corners_in_one_place(tmp_path):
    """``voc_box`` and its inverse ``voc_corners`` are the only VOC corner conversion."""
    import ast

    import detect
    from detect.data.voc import voc_box, voc_corners
    from detect.data.voc_writer import write_voc as write_records

    corners = np.array([[1, 1, 10, 20], [11.5, 2, 30, 40.25], [10, 10, 10, 40]])
    assert voc_box((1, 1, 10, 20)) == (0.0, 0.0, 10.0, 20.0)  # ten pixels wide: continuous 0 .. 10
    np.testing.assert_array_equal(voc_corners(voc_box(corners)), corners)
    np.testing.assert_array_equal(voc_corners([0, 0, 10, 20]), [1, 1, 10, 20])
    # The writer goes through voc_corners: a written box reads back as itself.
    boxes = voc_box(corners).astype(np.float32)
    record = Record("a", 50, 60, boxes, [0, 1, 0], [False, True, False], ("cat", "dog"), "a.jpg")
    write_records([record], tmp_path, "train")
    back = read_voc(tmp_path, "train", ("cat", "dog"))[0]
    np.testing.assert_array_equal(back.boxes, boxes)
    assert back.ignore.tolist() == [False, True, False]
    # No other module does corner arithmetic with the devkit's 1-pixel offset by hand.
    package = Path(detect.__file__).parent
    for path in package.rglob("*.py"):
        if path.name == "voc.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.List) and [getattr(e, "value", None) for e in node.elts] == [1.0, 1.0, 0.0, 0.0]:
                raise AssertionError(f"{path}: VOC corner offset outside detect/data/voc.py")
