import json
import math

import numpy as np
import pytest

from detect.eval.report import (
    coco_class_ap_at,
    format_coco_table,
    format_voc_table,
    result_to_json,
    write_plots,
)
from detect.eval.types import CocoResult, VocResult

STAT_NAMES = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
NAMES = ["a/b", "a b", "..", "héron"]  # unsafe and colliding file names on purpose


def coco_result():
    iou = np.linspace(0.5, 0.95, 10)
    rec = np.linspace(0, 1, 101)
    precision = np.full((10, 101, len(NAMES), 4, 3), -1.0)
    precision[:, :, 0] = 0.5
    precision[0, :, 1] = np.where(rec <= 0.6, 0.8, 0.0)[:, None, None]
    precision[1:, :, 1] = 0.2
    # class 2 has no ground truth (-1 everywhere); class 3 only at IoU 0.5
    precision[0, :, 3] = 1.0
    stats = dict(zip(STAT_NAMES, [0.123, 0.5, 0.25, -1.0, 0.3, 0.4, 0.1, 0.2, 0.3, -1.0, 0.5, 0.6]))
    per_class = dict(zip(NAMES, [0.5, 0.2, -1.0, 0.1]))
    return CocoResult(stats, per_class, precision, np.zeros((10, len(NAMES), 4, 3)), iou, rec, list(NAMES))


def voc_result():
    curves = {"cat": (np.array([0.5, 1.0]), np.array([1.0, 0.5])), "dog": (np.zeros(0), np.zeros(0)),
              "a/b": (np.array([1.0]), np.array([1.0]))}
    return VocResult(mAP=0.625, per_class={"cat": 0.75, "dog": math.nan, "a/b": 0.5}, curves=curves,
                     use_07_metric=True)


def test_coco_table_has_pycocotools_wording():
    lines = format_coco_table(coco_result()).splitlines()
    assert lines[0] == " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.123"
    assert lines[1] == " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 0.500"
    assert lines[3] == " Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = -1.000"
    assert lines[4] == " Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = 0.300"
    assert lines[6] == " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.100"
    assert lines[11] == " Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = 0.600"
    table = lines[13:]
    assert table[0].split() == ["class", "AP", "AP50"]
    assert table[1].split() == ["a/b", "0.500", "0.500"]
    assert table[3].split() == ["..", "-", "-"]  # no ground truth


def test_coco_class_ap_at():
    ap50 = coco_class_ap_at(coco_result(), 0.5)
    rec = np.linspace(0, 1, 101)
    np.testing.assert_allclose(ap50, [0.5, 0.8 * np.mean(rec <= 0.6), -1.0, 1.0])


def test_voc_table():
    text = format_voc_table(voc_result())
    assert "VOC2007 11-point" in text
    lines = text.splitlines()
    assert ["cat", "0.7500"] in [line.split() for line in lines]
    assert ["dog", "-"] in [line.split() for line in lines]
    assert lines[-1].split() == ["mAP", "0.6250"]


def test_result_to_json_keys_and_nan():
    coco = result_to_json(coco_result())
    assert set(coco) == {"metric", "per_class", *STAT_NAMES} and coco["metric"] == "coco"
    assert coco["AP"] == 0.123 and coco["APs"] == -1.0
    assert coco["per_class"] == dict(zip(NAMES, [0.5, 0.2, -1.0, 0.1]))
    voc = result_to_json(voc_result())
    assert voc == {"metric": "voc07", "mAP": 0.625, "per_class": {"cat": 0.75, "dog": None, "a/b": 0.5}}
    voc12 = result_to_json(VocResult(math.nan, {"x": math.nan}, {}, False))
    assert voc12 == {"metric": "voc12", "mAP": None, "per_class": {"x": None}}
    json.dumps([coco, voc, voc12], allow_nan=False)  # strictly valid JSON


@pytest.mark.parametrize("make", [coco_result, voc_result])
def test_write_plots(tmp_path, make):
    result = make()
    paths = write_plots(result, tmp_path / "plots" / "nested")
    names = [p.name for p in paths]
    assert names[-1] == "ap_per_class.png"
    assert len(names) == len(set(names)) == len(result.per_class) + 1
    for path in paths:
        assert path.parent == tmp_path / "plots" / "nested"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(name.startswith("pr_") for name in names[:-1])
