"""Evaluation from a config (``tools/eval.py --config``) for data formats other than VOC.

A randomly initialised tiny YOLO is run over the validation split of a tiny
COCO and a tiny YOLO-txt shapes dataset; the score must equal a direct
computation on the very detections it saved.
"""

import contextlib
import io
import json

import numpy as np
import pytest

from detect.data import make_shapes, read_yolo
from detect.eval import CocoResult
from detect.eval.accumulator import DetectionAccumulator
from detect.eval.files import evaluate_files
from detect.eval.predict import evaluate_split

NUM, SIZE = 10, 64  # 2 validation images
STATS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def tiny_run(tmp_path, fmt, **data):
    """(config path, random-init weights path) for a shapes dataset in ``fmt``."""
    root = make_shapes(tmp_path / fmt, fmt, NUM, SIZE)
    lines = ["name: tiny", "data:", f"  format: {fmt}", f"  image_size: {SIZE}", "  max_boxes: 16"]
    lines += [f"  {key}: {value.format(root=root)}" for key, value in data.items()]
    # A random-init head scores about 1e-4 (its prior), below the default threshold.
    lines += ["model:", "  version: v3", "  backbone: tiny", "  head_width: 16", "  score_threshold: 0.00001",
              "train:", "  batch_size: 2"]
    config = tmp_path / f"{fmt}.yaml"
    config.write_text("\n".join(lines) + "\n")

    from detect.train.experiment import load_experiment
    from detect.models.registry import build_task

    task = build_task(load_experiment(config).model, 3)
    weights = tmp_path / f"{fmt}.weights.h5"
    task.model.save_weights(str(weights))
    return config, weights, root


def test_coco_config_scores_like_tools_eval_on_the_json(tmp_path):
    config, weights, root = tiny_run(tmp_path, "coco", root="{root}/images",
                                     train_split="../annotations/instances_train.json",
                                     val_split="../annotations/instances_val.json")
    dets_path = tmp_path / "dets.json"
    result = evaluate_split(config, weights, save_dets=dets_path)
    assert isinstance(result, CocoResult)  # coco is the default metric for COCO data
    dets = json.loads(dets_path.read_text())
    assert dets and {d["image_id"] for d in dets} <= {9, 10}  # the JSON's own image ids ...
    assert {d["category_id"] for d in dets} <= {1, 2, 3}  # ... and category ids
    gt_json = root / "annotations" / "instances_val.json"
    direct = evaluate_files(gt_json, dets_path)  # tools/eval.py --gt instances_val.json --dets dets.json
    assert [result.stats[k] for k in STATS] == [direct.stats[k] for k in STATS]

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_json))
        evaluator = COCOeval(coco, coco.loadRes(str(dets_path)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    np.testing.assert_allclose([result.stats[k] for k in STATS], evaluator.stats, atol=1e-6)
    voc = evaluate_split(config, weights, metric="voc12")
    assert 0 <= voc.mAP <= 1


def test_yolo_config_scores_like_training_validation(tmp_path):
    config, weights, root = tiny_run(tmp_path, "yolo", root="{root}")
    dets_path = tmp_path / "dets.json"
    result = evaluate_split(config, weights, save_dets=dets_path)
    assert isinstance(result, CocoResult)
    dets = json.loads(dets_path.read_text())
    assert dets and {d["image_id"] for d in dets} <= {"000009", "000010"}
    # The same detections through training's validation accumulator, on the reader's records.
    records = read_yolo(root, "val")
    acc = DetectionAccumulator(records[0].class_names)
    for record in sorted(records, key=lambda r: r.image_id):
        mine = [d for d in dets if d["image_id"] == record.image_id]
        xywh = np.array([d["bbox"] for d in mine], np.float64).reshape(-1, 4)
        acc.add(record.boxes[None], record.classes[None],
                np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)[None],
                np.array([d["score"] for d in mine])[None],
                np.array([record.class_names.index(d["category_id"]) for d in mine], np.int32)[None],
                gt_ignore=record.ignore[None], gt_area=record.area[None])
    summary = acc.summary()
    np.testing.assert_allclose([result.stats[k] for k in STATS], [summary[k] for k in STATS], atol=1e-9)


def test_unknown_split_is_one_line(tmp_path):
    from detect.errors import InputError

    config, weights, root = tiny_run(tmp_path, "yolo", root="{root}")
    with pytest.raises(InputError, match=r"images/nosuch"):
        evaluate_split(config, weights, split="nosuch")


def test_voc_layout_config_keeps_voc12_and_the_tool_agrees(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from detect.eval import VocResult

    config, weights, root = tiny_run(tmp_path, "voc", root="{root}")
    dets_path = tmp_path / "dets.json"
    result = evaluate_split(config, weights, save_dets=dets_path)
    assert isinstance(result, VocResult)  # voc12 stays the default for VOC layout
    direct = evaluate_files(root, dets_path, split="val", class_names=["circle", "square", "triangle"])
    assert result.mAP == direct.mAP and result.per_class == direct.per_class
    # tools/eval.py --config prints and writes the same numbers.
    tool = Path(__file__).resolve().parents[1] / "tools" / "eval.py"
    out = tmp_path / "summary.json"
    # The config points elsewhere; --set gives the tool the root the model was trained with.
    config.write_text(config.read_text().replace(f"root: {root}", f"root: {tmp_path / 'moved'}"))
    tool_dets = tmp_path / "tool_dets.json"
    args = [sys.executable, str(tool), "--config", str(config), "--weights", str(weights), "--json", str(out)]
    proc = subprocess.run(args + ["--set", f"data.root={root}", "--save-dets", str(tool_dets)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # Exact against its own detections. (A random-init head scores every box about the same, so
    # another process's float rounding may reorder near-ties: compare the two runs loosely.)
    tool_direct = evaluate_files(root, tool_dets, split="val", class_names=["circle", "square", "triangle"])
    assert json.loads(out.read_text())["mAP"] == pytest.approx(tool_direct.mAP, abs=1e-12)
    assert json.loads(out.read_text())["mAP"] == pytest.approx(result.mAP, abs=0.01)
    proc = subprocess.run(args + ["--overwrite"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "moved" in proc.stderr


def test_voc_images_outside_the_root_need_the_same_opt_in_as_training(tmp_path):
    # A dataset folder whose JPEGImages is a link to another folder (a subset of a
    # dataset kept elsewhere): training reads it with data.allow_outside_root, and
    # so must the evaluation's ground truth.
    from detect.errors import InputError

    config, weights, root = tiny_run(tmp_path, "voc", root="{root}")
    subset = tmp_path / "subset"
    subset.mkdir()
    for name in ("Annotations", "ImageSets"):
        (subset / name).symlink_to(root / name, target_is_directory=True)
    (subset / "JPEGImages").symlink_to(root / "JPEGImages", target_is_directory=True)
    config.write_text(config.read_text().replace(f"root: {root}", f"root: {subset}"))
    with pytest.raises(InputError, match="outside the dataset root"):
        evaluate_split(config, weights)
    allowed = evaluate_split(config, weights, overrides=["data.allow_outside_root=true"])
    direct = evaluate_split(config, weights, overrides=[f"data.root={root}"])
    assert allowed.mAP == direct.mAP
