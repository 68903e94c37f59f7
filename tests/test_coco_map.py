"""COCO mAP against hand-computed cases and pycocotools' COCOeval."""

import contextlib
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detect.eval import evaluate_coco
from detect.eval.loaders import load_coco_dets, load_coco_gt
from detect.ops.coco_map import STAT_NAMES


def dataset(images, categories, annotations):
    anns = []
    for i, a in enumerate(annotations):
        x, y, w, h = a["bbox"]
        anns.append({"id": i + 1, "area": w * h, "iscrowd": 0, **a})
    return {"images": [{"id": i, "width": 640, "height": 480} for i in images],
            "categories": [{"id": c, "name": f"c{c}"} for c in categories], "annotations": anns}


def ours(gt_dict, dets):
    gt = load_coco_gt(gt_dict)
    return evaluate_coco(gt, load_coco_dets(dets, gt))


def reference(gt_dict, dets):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(dets) if dets else COCO(), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def assert_equals_pycocotools(gt_dict, dets):
    result = ours(gt_dict, dets)
    ref = reference(gt_dict, dets)
    np.testing.assert_allclose([result.stats[k] for k in STAT_NAMES], ref.stats, atol=1e-6, rtol=0)
    np.testing.assert_allclose(result.precision, ref.eval["precision"], atol=1e-9, rtol=0)
    np.testing.assert_allclose(result.recall, ref.eval["recall"], atol=1e-9, rtol=0)
    return result


def det(image, cat, bbox, score):
    return {"image_id": image, "category_id": cat, "bbox": list(bbox), "score": score}


BOX = [100.0, 100.0, 100.0, 50.0]  # area 5000: "medium"


# ---- cases computed on paper ---------------------------------------------------

def test_perfect_detections_score_one():
    gt = dataset([1, 2], [1, 2], [{"image_id": 1, "category_id": 1, "bbox": BOX},
                                  {"image_id": 2, "category_id": 2, "bbox": [10, 10, 20, 20]}])
    result = assert_equals_pycocotools(gt, [det(1, 1, BOX, 0.9), det(2, 2, [10, 10, 20, 20], 0.8)])
    one = pytest.approx(1.0, abs=1e-12)  # tp / (tp + fp + eps) is 1 - 2e-16
    assert result.stats["AP"] == one and result.stats["AP50"] == one and result.stats["AR100"] == one
    # One small and one medium object; no large one: APl undefined.
    assert result.stats["APs"] == one and result.stats["APm"] == one and result.stats["APl"] == -1.0


def test_duplicate_after_true_positive_costs_nothing():
    gt = dataset([1], [1], [{"image_id": 1, "category_id": 1, "bbox": BOX}])
    result = assert_equals_pycocotools(gt, [det(1, 1, BOX, 0.9), det(1, 1, BOX, 0.8)])
    assert result.stats["AP"] == pytest.approx(1.0, abs=1e-12)


def test_false_positive_above_true_positive_halves_precision():
    gt = dataset([1], [1], [{"image_id": 1, "category_id": 1, "bbox": BOX}])
    result = assert_equals_pycocotools(gt, [det(1, 1, [400, 300, 50, 50], 0.9), det(1, 1, BOX, 0.8)])
    # The only true positive comes second: precision 1/2 at every recall.
    assert result.stats["AP50"] == pytest.approx(0.5)
    assert result.stats["AP"] == pytest.approx(0.5)


def test_crowd_absorbs_detections_and_image_without_gt_counts():
    gt = dataset([1, 2], [1], [
        {"image_id": 1, "category_id": 1, "bbox": BOX},
        {"image_id": 1, "category_id": 1, "bbox": [300, 300, 200, 100], "iscrowd": 1},
    ])
    dets = [
        det(1, 1, [320, 320, 50, 50], 0.99),  # inside the crowd region: ignored
        det(1, 1, [310, 310, 60, 40], 0.98),  # crowd may absorb many
        det(1, 1, BOX, 0.7),
        det(2, 1, BOX, 0.95),  # image without ground truth: a false positive
    ]
    result = assert_equals_pycocotools(gt, dets)
    assert result.stats["AP50"] == pytest.approx(0.5)


def test_crowd_only_class_and_class_without_gt_are_left_out():
    gt = dataset([1], [1, 2, 3], [
        {"image_id": 1, "category_id": 1, "bbox": BOX},
        {"image_id": 1, "category_id": 2, "bbox": [300, 300, 200, 100], "iscrowd": 1},
    ])
    dets = [det(1, 1, BOX, 0.9), det(1, 2, [300, 300, 200, 100], 0.9), det(1, 3, BOX, 0.9)]
    result = assert_equals_pycocotools(gt, dets)
    assert result.per_class == pytest.approx({"c1": 1.0, "c2": -1.0, "c3": -1.0}, abs=1e-12)
    assert result.stats["AP"] == pytest.approx(1.0, abs=1e-12)


def test_only_the_best_hundred_detections_per_image_and_class_count():
    boxes = [[i * 6.0, 0.0, 5.0, 5.0] for i in range(100)]
    gt = dataset([1], [1], [{"image_id": 1, "category_id": 1, "bbox": b} for b in boxes])
    # 100 false positives score above the 100 perfect detections.
    dets = [det(1, 1, [500, 400, 20, 20], 0.99 - i * 1e-4) for i in range(100)]
    dets += [det(1, 1, b, 0.5) for b in boxes]
    result = assert_equals_pycocotools(gt, dets)
    assert result.stats["AP"] == 0.0 and result.stats["AR100"] == 0.0


def test_ties_in_score_follow_pycocotools_order():
    gt = dataset([1, 2, 3], [1], [{"image_id": i, "category_id": 1, "bbox": BOX} for i in (1, 2)])
    dets = [det(3, 1, BOX, 0.5), det(2, 1, BOX, 0.5), det(1, 1, [0, 0, 30, 30], 0.5), det(1, 1, BOX, 0.5)]
    assert_equals_pycocotools(gt, dets)


def test_no_detections_at_all():
    gt = dataset([1], [1], [{"image_id": 1, "category_id": 1, "bbox": BOX}])
    result = ours(gt, [])
    assert result.stats["AP"] == 0.0 and result.stats["AR100"] == 0.0


# ---- randomised against pycocotools -----------------------------------------------

def random_case(seed, num_images=25, num_classes=4):
    rng = np.random.default_rng(seed)
    image_ids = [int(i) for i in rng.choice(1000, num_images, replace=False) + 1]
    cat_ids = [int(c) for c in rng.choice(50, num_classes, replace=False) + 1]
    anns, dets = [], []
    for image in image_ids:
        for _ in range(rng.integers(0, 8)):
            x, y = rng.uniform(0, 500, 2)
            w, h = np.exp(rng.uniform(np.log(4), np.log(200), 2))
            cat = cat_ids[rng.integers(num_classes)]
            anns.append({"image_id": image, "category_id": cat, "bbox": [x, y, w, h],
                         "area": float(w * h * rng.uniform(0.5, 1.0)), "iscrowd": int(rng.random() < 0.1)})
            for _ in range(rng.integers(0, 4)):
                j = rng.normal(0, 0.15, 4)
                wrong = cat_ids[rng.integers(num_classes)]
                dets.append(det(image, cat if rng.random() < 0.8 else wrong,
                                [x + j[0] * w, y + j[1] * h, w * np.exp(j[2]), h * np.exp(j[3])],
                                float(np.round(rng.random(), 2))))  # rounded: many ties
        for _ in range(rng.integers(0, 5)):
            x, y = rng.uniform(0, 500, 2)
            w, h = np.exp(rng.uniform(np.log(4), np.log(200), 2))
            dets.append(det(image, cat_ids[rng.integers(num_classes)], [x, y, w, h], float(rng.random())))
    rng.shuffle(dets)
    gt = dataset(image_ids, cat_ids, [])
    gt["annotations"] = [{"id": i + 1, **a} for i, a in enumerate(anns)]
    return gt, dets


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_cases_equal_pycocotools(seed):
    assert_equals_pycocotools(*random_case(seed))


def test_many_detections_per_image_equal_pycocotools():
    gt, dets = random_case(7, num_images=4, num_classes=2)
    rng = np.random.default_rng(0)
    image = gt["images"][0]["id"]
    cat = gt["categories"][0]["id"]
    # Over 100 detections of one class in one image, many near real boxes.
    near = [a["bbox"] for a in gt["annotations"] if a["image_id"] == image] or [[50, 50, 40, 40]]
    for i in range(180):
        x, y, w, h = near[i % len(near)]
        j = rng.normal(0, 0.1, 4)
        dets.append(det(image, cat, [x + j[0] * w, y + j[1] * h, w * np.exp(j[2]), h * np.exp(j[3])],
                        float(rng.random())))
    assert_equals_pycocotools(gt, dets)
