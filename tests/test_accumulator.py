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
