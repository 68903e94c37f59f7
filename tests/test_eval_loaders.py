import json
import math

import numpy as np
import pytest

from detect.data import VOC_CLASSES
from detect.errors import InputError
from detect.eval.loaders import load_coco_dets, load_coco_gt, load_voc_dets, load_voc_gt, resolve_voc_split
from test_voc_reader import BCCD, voc_object, write_voc


def coco_gt_dict():
    return {
        "images": [{"id": 5, "file_name": "b.jpg"}, {"id": 2}, {"id": 9}],
        "categories": [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}],
        "annotations": [
            {"id": 40, "image_id": 9, "category_id": 7, "bbox": [1, 2, 3, 4], "area": 50.5, "iscrowd": 0},
            {"id": 41, "image_id": 2, "category_id": 3, "bbox": [0.5, 0, 10, 20], "iscrowd": 1},
            {"id": 42, "image_id": 5, "category_id": 3, "bbox": [0, 0, 0, 0]},
        ],
    }


def write_json(path, data):
    path.write_text(json.dumps(data))
    return path


def test_coco_gt_sorting_mapping_area_and_crowd():
    gt = load_coco_gt(coco_gt_dict())
    assert gt.image_ids == [2, 5, 9]  # pycocotools visits sorted(getImgIds())
    assert gt.class_names == ["three", "seven"] and gt.category_ids == [3, 7]
    assert gt.image_index.tolist() == [2, 0, 1] and gt.image_index.dtype == np.int32
    assert gt.classes.tolist() == [1, 0, 0] and gt.classes.dtype == np.int32
    assert gt.boxes_xywh.dtype == np.float64
    np.testing.assert_array_equal(gt.boxes_xywh, [[1, 2, 3, 4], [0.5, 0, 10, 20], [0, 0, 0, 0]])
    np.testing.assert_array_equal(gt.area, [50.5, 200.0, 0.0])  # the field, else w * h
    assert gt.ignore.tolist() == [False, True, False]
    assert gt.source == "<memory>" and gt.num_images == 3 and gt.num_classes == 2


def test_coco_gt_from_file_and_empty_annotations(tmp_path):
    data = coco_gt_dict()
    data["annotations"] = []
    path = write_json(tmp_path / "gt.json", data)
    gt = load_coco_gt(path)
    assert gt.source == str(path)
    assert gt.boxes_xywh.shape == (0, 4) and gt.area.shape == (0,) and gt.image_index.shape == (0,)


def _break(mutate):
    data = coco_gt_dict()
    mutate(data)
    return data


def ann_with(i, **changes):
    """Ground truth whose annotations[i] has ``changes`` applied."""
    return _break(lambda d: d["annotations"][i].update(changes))


@pytest.mark.parametrize("data, expected", [
    ([], "expected a JSON object"),
    (_break(lambda d: d.pop("categories")), "missing key 'categories'"),
    (_break(lambda d: d["annotations"][1].pop("bbox")), "annotations[1] (id 41): missing key 'bbox'"),
    (ann_with(1, image_id=77), "annotations[1] (id 41): image_id 77 is not in 'images'"),
    (ann_with(2, category_id=1), "annotations[2] (id 42): category_id 1 is not in 'categories'"),
    (ann_with(2, bbox=[0, 0, -1, 5]), "annotations[2] (id 42): bbox width is negative (-1)"),
    (ann_with(0, bbox=[0, 0, 1, -5]), "annotations[0] (id 40): bbox height is negative (-5)"),
    (ann_with(0, bbox=[0, math.nan, 1, 5]), "annotations[0] (id 40): bbox is not finite"),
    (ann_with(0, bbox=[0, 1, 5]), "annotations[0] (id 40): bbox must be a list of 4 numbers"),
    (ann_with(0, bbox=[0, "1", 5, 5]), "annotations[0] (id 40): bbox must be a list of 4 numbers"),
    (ann_with(0, area=math.inf), "annotations[0] (id 40): area is not finite"),
    (ann_with(0, area=-3), "annotations[0] (id 40): area is negative"),
    (ann_with(0, iscrowd=2), "annotations[0] (id 40): iscrowd must be 0 or 1"),
    (_break(lambda d: d["annotations"].append(3)), "annotations[3]: expected an object"),
    (_break(lambda d: d["images"].append({"id": 5})), "images[3]: duplicate id 5"),
    (_break(lambda d: d["images"][0].pop("id")), "images[0]: missing key 'id'"),
    (_break(lambda d: d["categories"][1].update(name="seven")), "categories[1] (id 3): name 'seven' is also used"),
])
def test_coco_gt_bad_input_names_file_and_entry(tmp_path, data, expected):
    path = write_json(tmp_path / "gt.json", data)
    with pytest.raises(InputError) as info:
        load_coco_gt(path)
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)


def test_coco_gt_malformed_json_and_missing_file(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(InputError, match=r"gt\.json: malformed JSON at line 2, column 12"):
        load_coco_gt(path)
    with pytest.raises(InputError, match=r"missing\.json: file not found"):
        load_coco_gt(tmp_path / "missing.json")


# ---- COCO detections -------------------------------------------------------------


def test_coco_dets_file_order_and_mapping(tmp_path):
    gt = load_coco_gt(coco_gt_dict())
    dets = [
        {"image_id": 9, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.5},
        {"image_id": 2, "category_id": 7, "bbox": [0, 0, 1.5, 1], "score": 0.5, "extra": "ignored"},
        {"image_id": 5, "category_id": 3, "bbox": [0, 0, 0, 0], "score": 0.9},
    ]
    out = load_coco_dets(write_json(tmp_path / "dets.json", dets), gt)
    assert out.image_index.tolist() == [2, 0, 1] and out.image_index.dtype == np.int32
    assert out.classes.tolist() == [0, 1, 0] and out.classes.dtype == np.int32
    np.testing.assert_array_equal(out.boxes_xywh, [[1, 2, 3, 4], [0, 0, 1.5, 1], [0, 0, 0, 0]])
    np.testing.assert_array_equal(out.scores, [0.5, 0.5, 0.9])
    assert out.source == str(tmp_path / "dets.json")


def test_coco_dets_empty_list_is_valid(tmp_path):
    out = load_coco_dets(write_json(tmp_path / "dets.json", []), load_coco_gt(coco_gt_dict()))
    assert out.scores.shape == (0,) and out.boxes_xywh.shape == (0, 4)


GOOD_DET = {"image_id": 9, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.5}


@pytest.mark.parametrize("bad, expected", [
    ({"image_id": 10}, "[1]: image_id 10 is not an image of the ground truth"),
    ({"image_id": "9"}, '[1]: image_id "9" is not an image of the ground truth'),
    ({"category_id": 4}, "[1]: category_id 4 is not a category id of the ground truth"),
    ({"bbox": [1, 2, -3, 4]}, "[1]: bbox width is negative (-3)"),
    ({"bbox": [1, 2, 3, -0.5]}, "[1]: bbox height is negative (-0.5)"),
    ({"bbox": [1, math.inf, 3, 4]}, "[1]: bbox is not finite"),
    ({"bbox": [1, 2, 3]}, "[1]: bbox must be a list of 4 numbers"),
    ({"bbox": None}, "[1]: bbox must be a list of 4 numbers"),
    ({"score": math.nan}, "[1]: score is not finite (nan)"),
    ({"score": "high"}, '[1]: score must be a number, got "high"'),
    ({"score": None}, "[1]: score must be a number, got null"),
    ({"image_id": [9]}, "[1]: image_id [9] is not an image"),
])
def test_coco_dets_bad_entry_names_file_and_index(tmp_path, bad, expected):
    gt = load_coco_gt(coco_gt_dict())
    path = write_json(tmp_path / "dets.json", [GOOD_DET, {**GOOD_DET, **bad}, GOOD_DET])
    with pytest.raises(InputError) as info:
        load_coco_dets(path, gt)
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)


def test_coco_dets_bad_file(tmp_path):
    gt = load_coco_gt(coco_gt_dict())
    path = tmp_path / "dets.json"
    path.write_text('[{"image_id": 9, "score": }]')
    with pytest.raises(InputError, match=r"dets\.json: malformed JSON at line 1, column 27"):
        load_coco_dets(path, gt)
    with pytest.raises(InputError, match=r"dets\.json: expected a JSON list of detections, got an object"):
        load_coco_dets(write_json(path, {"annotations": []}), gt)
    with pytest.raises(InputError, match=r"dets\.json: \[0\]: missing key 'score'"):
        load_coco_dets(write_json(path, [{"image_id": 9, "category_id": 3, "bbox": [0, 0, 1, 1]}]), gt)
    with pytest.raises(InputError, match=r"dets\.json: \[1\]: expected an object, got a list"):
        load_coco_dets(write_json(path, [GOOD_DET, [1, 2]]), gt)


def test_coco_dets_many_entries_vectorised():
    rng = np.random.default_rng(0)
    gt = load_coco_gt(coco_gt_dict())
    n = 20000
    image_ids, cats = rng.choice([2, 5, 9], n), rng.choice([3, 7], n)
    boxes, scores = rng.uniform(0, 50, (n, 4)), rng.random(n)
    dets = [{"image_id": int(i), "category_id": int(c), "bbox": b.tolist(), "score": float(s)}
            for i, c, b, s in zip(image_ids, cats, boxes, scores)]
    out = load_coco_dets(dets, gt)
    np.testing.assert_array_equal(np.array(gt.image_ids)[out.image_index], image_ids)
    np.testing.assert_array_equal(np.array(gt.category_ids)[out.classes], cats)
    np.testing.assert_array_equal(out.boxes_xywh, boxes)
    np.testing.assert_array_equal(out.scores, scores)


# ---- VOC -----------------------------------------------------------------------


@pytest.fixture
def voc(tmp_path):
    return write_voc(tmp_path / "voc", {
        "b": [voc_object("dog", 1, 1, 10, 20), voc_object("person", 5, 6, 7, 8, difficult=1)],
        "a": [voc_object("cat", 3, 3, 3, 5)],
        "c": [],
    }, {"val": ["b", "a"], "trainval": ["c"]})


def test_voc_gt_default_split_sorted_ids_and_boxes(voc):
    assert resolve_voc_split(voc) == "val"  # no test split: falls back to val
    (voc / "ImageSets" / "Main" / "test.txt").write_text("c\n")
    assert resolve_voc_split(voc) == "test" and resolve_voc_split(voc, "trainval") == "trainval"
    gt = load_voc_gt(voc, split="val")
    assert gt.image_ids == ["a", "b"]
    assert gt.class_names == list(VOC_CLASSES) and gt.category_ids == list(range(20))
    assert gt.image_index.tolist() == [0, 1, 1]
    assert [gt.class_names[k] for k in gt.classes] == ["cat", "dog", "person"]
    # Continuous edges: devkit (1, 1, 10, 20) is x=0, y=0, w=10, h=20.
    np.testing.assert_array_equal(gt.boxes_xywh, [[2, 2, 1, 3], [0, 0, 10, 20], [4, 5, 3, 3]])
    np.testing.assert_array_equal(gt.area, [3, 200, 9])
    assert gt.ignore.tolist() == [False, False, True]
    assert gt.source == str(voc)


def test_voc_gt_class_names_rule(voc):
    (voc / "Annotations" / "z.xml").write_text(
        "<annotation><size><width>9</width><height>9</height></size>"
        f"{voc_object('zebra', 1, 1, 2, 2)}</annotation>")
    # A name outside VOC anywhere in Annotations/: the sorted names found, whatever the split.
    gt = load_voc_gt(voc, split="trainval")
    assert gt.class_names == ["cat", "dog", "person", "zebra"]
    gt = load_voc_gt(voc, split="val", class_names=["person", "dog", "cat"])
    assert gt.classes.tolist() == [2, 1, 0] and gt.category_ids == [0, 1, 2]
    with pytest.raises(InputError, match="unknown class 'cat'; known classes: person, dog"):
        load_voc_gt(voc, split="val", class_names=["person", "dog"])
    with pytest.raises(InputError, match="no test or val split; choose one of: trainval"):
        (voc / "ImageSets" / "Main" / "val.txt").unlink()
        load_voc_gt(voc)


def test_voc_dets_names_or_indices(voc, tmp_path):
    gt = load_voc_gt(voc, split="val", class_names=["cat", "dog", "person"])
    dets = [{"image_id": "b", "category_id": "dog", "bbox": [0, 0, 10, 20], "score": 0.9},
            {"image_id": "a", "category_id": 0, "bbox": [2, 2, 1, 3], "score": 0.8}]
    out = load_voc_dets(write_json(tmp_path / "d.json", dets), gt)
    assert out.image_index.tolist() == [1, 0] and out.classes.tolist() == [1, 0]
    bad = [dets[0], {**dets[1], "category_id": "horse"}]
    with pytest.raises(InputError, match=r"d\.json: \[1\]: category_id \"horse\" is neither a class name"):
        load_voc_dets(write_json(tmp_path / "d.json", bad), gt)
    bad = [dets[0], {**dets[1], "category_id": 3}]
    with pytest.raises(InputError, match=r"\[1\]: category_id 3 is neither"):
        load_voc_dets(bad, gt)
    with pytest.raises(InputError, match=r"\[0\]: image_id \"c\" is not an image of the ground truth"):
        load_voc_dets([{**dets[0], "image_id": "c"}], gt)


def test_voc_gt_bccd():
    if not (BCCD / "Annotations").is_dir():
        pytest.skip(f"BCCD dataset not found at {BCCD}")
    gt = load_voc_gt(BCCD)  # default split: test
    assert gt.num_images == 72 and gt.image_ids == sorted(gt.image_ids)
    assert gt.class_names == ["Platelets", "RBC", "WBC"]  # not VOC names: sorted names found
    assert len(gt.classes) == len(gt.boxes_xywh) == len(gt.area) == len(gt.ignore) > 0
    assert (gt.boxes_xywh[:, 2:] > 0).all() and not gt.ignore.any()


# ---- one COCO validator: evaluation and the training reader -------------------------


def readable_gt_dict():
    """``coco_gt_dict`` with what the training reader needs too (file names and sizes)."""
    data = coco_gt_dict()
    for image in data["images"]:
        image.update(file_name=f"{image['id']}.jpg", width=64, height=48)
    return data


@pytest.mark.parametrize("mutate", [
    lambda d: d.clear() or d.update(x=1),
    lambda d: d.pop("annotations"),
    lambda d: d.update(images={}),
    lambda d: d["images"].append([5]),
    lambda d: d["images"][1].update(id=2.5),
    lambda d: d["images"][1].update(id="2"),
    lambda d: d["categories"][0].update(id="7"),
    lambda d: d["categories"][1].update(name=3),
    lambda d: d["annotations"][1].update(id=None),
    lambda d: d["annotations"][1].update(id="a", image_id="nine"),
    lambda d: d["annotations"][2].update(category_id=[3]),
    lambda d: d["annotations"][0].update(bbox=[0, 1, 5]),
    lambda d: d["annotations"][0].update(bbox=[0, math.inf, 1, 5]),
    lambda d: d["annotations"][0].update(area="big"),
    lambda d: d["annotations"][0].update(area=math.nan),
    lambda d: d["annotations"][0].update(area=-3.5),
    lambda d: d["annotations"][0].update(iscrowd=True),
])
def test_coco_gt_and_reader_give_one_message_per_fault(tmp_path, mutate):
    from detect.data.coco import read_coco

    data = readable_gt_dict()
    mutate(data)
    path = write_json(tmp_path / "gt.json", data)
    with pytest.raises(InputError) as for_eval:
        load_coco_gt(path)
    with pytest.raises(InputError) as for_training:
        read_coco(path)
    assert str(for_eval.value) == str(for_training.value)
    assert str(for_eval.value).startswith(f"{path}: ") and "\n" not in str(for_eval.value)


def test_one_coco_validator():
    import detect.eval.loaders as loaders
    from detect.data import coco

    assert loaders.validate_coco is coco.validate_coco
    # Evaluation needs no image files: entries without file_name or size are fine there only.
    gt = load_coco_gt(coco_gt_dict())
    assert gt.num_images == 3
    with pytest.raises(InputError, match=r"images\[0\] \(id 5\): missing key 'width'"):
        coco.validate_coco(coco_gt_dict(), "gt.json")
