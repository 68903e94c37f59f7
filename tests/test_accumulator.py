"""The batch accumulator against pycocotools and the VOC devkit port."""

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detect.eval.accumulator import DetectionAccumulator
from voc_devkit import voc_eval_class

CLASSES = ["a", "b", "c"]


def padded_batches(seed, num_batches=3, batch=4, max_gt=6, max_det=12):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num_batches):
        gt_boxes = np.zeros((batch, max_gt, 4), np.float32)
        gt_classes = np.full((batch, max_gt), -1, np.int32)
        det_boxes = np.zeros((batch, max_det, 4), np.float32)
        det_scores = np.zeros((batch, max_det), np.float32)
        det_classes = np.full((batch, max_det), -1, np.int32)
        num_dets = rng.integers(0, max_det + 1, batch)
        for b in range(batch):
            n = rng.integers(0, max_gt + 1)
            xy = rng.uniform(0, 300, (n, 2))
            wh = rng.uniform(8, 120, (n, 2))
            gt_boxes[b, :n] = np.concatenate([xy, xy + wh], 1)
            gt_classes[b, :n] = rng.integers(0, 3, n)
            for k in range(num_dets[b]):
                if n and rng.random() < 0.7:
                    g = rng.integers(n)
                    det_boxes[b, k] = gt_boxes[b, g] + rng.normal(0, 6, 4)
                    det_classes[b, k] = gt_classes[b, g] if rng.random() < 0.9 else rng.integers(0, 3)
                else:
                    x, y = rng.uniform(0, 300, 2)
                    det_boxes[b, k] = [x, y, x + rng.uniform(8, 100), y + rng.uniform(8, 100)]
                    det_classes[b, k] = rng.integers(0, 3)
                det_scores[b, k] = rng.random()
            # Slots past num_detections hold garbage that must be ignored.
            det_classes[b, num_dets[b]:] = rng.integers(0, 3, max_det - num_dets[b])
        out.append((gt_boxes, gt_classes, det_boxes, det_scores, det_classes, num_dets))
    return out


def to_coco(batches):
    images, anns, dets = [], [], []
    image_id = 0
    for gt_boxes, gt_classes, det_boxes, det_scores, det_classes, num_dets in batches:
        for b in range(len(gt_classes)):
            image_id += 1
            images.append({"id": image_id})
            for box, cls in zip(gt_boxes[b], gt_classes[b]):
                if cls >= 0:
                    w, h = float(box[2] - box[0]), float(box[3] - box[1])
                    anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": int(cls) + 1,
                                 "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h, "iscrowd": 0})
            for k in range(num_dets[b]):
                box = det_boxes[b, k].astype(np.float64)
                dets.append({"image_id": image_id, "category_id": int(det_classes[b, k]) + 1,
                             "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                             "score": float(det_scores[b, k])})
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]
    return {"images": images, "categories": cats, "annotations": anns}, dets


@pytest.mark.parametrize("seed", [0, 1])
def test_accumulated_batches_equal_pycocotools_and_devkit(seed):
    batches = padded_batches(seed)
    acc = DetectionAccumulator(CLASSES)
    for batch in batches:
        acc.add(*batch[:5], num_detections=batch[5])
    assert acc.num_images == 12
    summary = acc.summary()

    gt_dict, dets = to_coco(batches)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(dets), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    np.testing.assert_allclose([summary[k] for k in names], evaluator.stats, atol=1e-6)

    # mAP50: the devkit's all-point AP per class, averaged. Our boxes are
    # continuous; the devkit's 1-based corners are (x1 + 1, y1 + 1, x2, y2).
    aps = []
    for c in range(3):
        gts = {}
        for a in gt_dict["annotations"]:
            if a["category_id"] == c + 1:
                x, y, w, h = a["bbox"]
                boxes, flags = gts.get(a["image_id"], (np.zeros((0, 4)), np.zeros(0, bool)))
                gts[a["image_id"]] = (np.vstack([boxes, [x + 1, y + 1, x + w, y + h]]), np.append(flags, False))
        class_dets = [(d["image_id"], d["score"], [d["bbox"][0] + 1, d["bbox"][1] + 1,
                                                    d["bbox"][0] + d["bbox"][2], d["bbox"][1] + d["bbox"][3]])
                      for d in dets if d["category_id"] == c + 1]
        ap, _, _ = voc_eval_class(gts, class_dets, use_07_metric=False)
        if not np.isnan(ap):
            aps.append(ap)
    assert summary["mAP50"] == pytest.approx(np.mean(aps), abs=1e-6)


def test_reset_and_empty():
    acc = DetectionAccumulator(CLASSES)
    acc.add(np.zeros((1, 2, 4)), np.array([[0, -1]]), np.zeros((1, 3, 4)), np.zeros((1, 3)), np.full((1, 3), -1))
    acc.reset()
    assert acc.num_images == 0
    acc.add(np.array([[[0, 0, 10, 10]]], np.float32), np.array([[1]]), np.zeros((1, 0, 4)), np.zeros((1, 0)),
            np.zeros((1, 0), np.int32))
    summary = acc.summary()
    assert summary["AP"] == 0.0 and summary["mAP50"] == 0.0


def test_one_pad_class():
    """``detect.ops.PAD_CLASS`` is the one definition; eval (and data) import it."""
    import ast
    from pathlib import Path

    import detect.eval.accumulator as accumulator
    from detect.ops import PAD_CLASS

    package = Path(accumulator.__file__).resolve().parents[1]
    defined = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            if any(isinstance(t, ast.Name) and t.id == "PAD_CLASS" for t in targets):
                defined.append(path.relative_to(package.parent).as_posix())
    assert defined == ["detect/ops/nms.py"]
    from detect.data import batching

    assert accumulator.PAD_CLASS is PAD_CLASS and batching.PAD_CLASS is PAD_CLASS


def coco_with_segment_areas(seed, num_images=12):
    """A COCO ground truth whose ``area`` (a segment's) differs from the box area, and detections.

    Coordinates are multiples of 1/4 px, exact in float32, so the records'
    float32 boxes equal the JSON's float64 ones.
    """
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    cat_ids = [4, 9, 17]
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id * 3, "file_name": f"{image_id}.jpg", "width": 640, "height": 480})
        for _ in range(rng.integers(1, 7)):
            side = rng.choice([20.0, 30.0, 40.0, 70.0, 90.0, 110.0, 200.0])
            w, h = side + rng.integers(-8, 9) / 4, side + rng.integers(-8, 9) / 4
            x, y = rng.integers(0, 400 * 4) / 4, rng.integers(0, 250 * 4) / 4
            cat = int(rng.choice(cat_ids))
            # A segment covers 40-100 % of its box: many objects change size range.
            anns.append({"id": len(anns) + 1, "image_id": image_id * 3, "category_id": cat, "bbox": [x, y, w, h],
                         "area": float(w * h * rng.uniform(0.4, 1.0)), "iscrowd": int(rng.random() < 0.1)})
            if rng.random() < 0.8:
                jitter = rng.integers(-12, 13, 4) / 4
                dets.append({"image_id": image_id * 3, "category_id": cat if rng.random() < 0.9 else cat_ids[0],
                             "bbox": [x + jitter[0], y + jitter[1], max(w + jitter[2], 1.0), max(h + jitter[3], 1.0)],
                             "score": float(rng.random())})
        for _ in range(rng.integers(0, 3)):
            dets.append({"image_id": image_id * 3, "category_id": int(rng.choice(cat_ids)),
                         "bbox": [int(rng.integers(0, 500)), int(rng.integers(0, 400)), 40.0, 30.0],
                         "score": float(rng.random())})
    cats = [{"id": c, "name": f"class{c}"} for c in cat_ids]
    return {"images": images, "annotations": anns, "categories": cats}, dets


@pytest.mark.parametrize("seed", [0, 1])
def test_validation_size_ranges_use_the_annotation_area_like_tools_eval(tmp_path, seed):
    import json

    from detect.data.coco import read_coco
    from detect.eval import evaluate_coco
    from detect.eval.loaders import load_coco_dets, load_coco_gt

    gt_dict, dets = coco_with_segment_areas(seed)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(gt_dict))
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]

    # tools/eval.py --gt instances.json --dets ...
    gt = load_coco_gt(path)
    tools_eval = evaluate_coco(gt, load_coco_dets(dets, gt)).stats
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
        evaluator = COCOeval(coco, coco.loadRes(dets), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    np.testing.assert_allclose([tools_eval[k] for k in names], evaluator.stats, atol=1e-6)

    # Training's validation: the reader's records and the model's detections, batch by batch.
    records = read_coco(path)
    np.testing.assert_array_equal(np.concatenate([r.area for r in records]),
                                  [a["area"] for a in sorted(gt_dict["annotations"], key=lambda a: a["image_id"])])
    class_index = {c: k for k, c in enumerate(sorted(c["id"] for c in gt_dict["categories"]))}

    def validate(with_area):
        acc = DetectionAccumulator(records[0].class_names)
        for record in records:
            mine = [d for d in dets if d["image_id"] == record.image_id]
            xywh = np.array([d["bbox"] for d in mine], np.float64).reshape(-1, 4)
            acc.add(record.boxes[None], record.classes[None],
                    np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)[None],
                    np.array([d["score"] for d in mine])[None],
                    np.array([class_index[d["category_id"]] for d in mine], np.int32)[None],
                    gt_ignore=record.ignore[None], gt_area=record.area[None] if with_area else None)
        return acc.summary()

    validation = validate(with_area=True)
    np.testing.assert_allclose([validation[k] for k in names], [tools_eval[k] for k in names], atol=1e-12)
    # The data is built so that box areas would change the size ranges' numbers.
    box_area = validate(with_area=False)
    assert any(abs(box_area[k] - tools_eval[k]) > 1e-3 for k in ("APs", "APm", "APl"))


def test_training_validation_equals_tools_eval_on_segment_areas(tmp_path):
    """``detect.train.evaluation.evaluate_predictions`` passes ``Record.area`` on (README's promise)."""
    import json

    from detect.data.coco import read_coco
    from detect.eval import evaluate_coco
    from detect.eval.loaders import load_coco_dets, load_coco_gt
    from detect.train.evaluation import evaluate_predictions

    gt_dict, dets = coco_with_segment_areas(0)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(gt_dict))
    gt = load_coco_gt(path)
    tools_eval = evaluate_coco(gt, load_coco_dets(dets, gt)).stats
    records = read_coco(path)
    class_index = {c: k for k, c in enumerate(gt.category_ids)}
    predictions = []
    for record in records:
        mine = [d for d in dets if d["image_id"] == record.image_id]
        xywh = np.array([d["bbox"] for d in mine], np.float64).reshape(-1, 4)
        predictions.append((str(record.image_id), np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1),
                            np.array([d["score"] for d in mine]),
                            np.array([class_index[d["category_id"]] for d in mine], np.int32)))
    summary, _ = evaluate_predictions(predictions, records, records[0].class_names)
    for key in ("AP", "APs", "APm", "APl", "ARs", "ARm", "ARl"):
        assert summary[key] == pytest.approx(tools_eval[key], abs=1e-12), key
