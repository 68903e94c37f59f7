"""Evaluate a detections file against a ground-truth file or dataset folder.

The logic behind ``tools/eval.py``: decide the ground-truth kind from the
path (a folder is a VOC dataset root, a file a COCO instances JSON), load
both sides with the matching loaders and run the requested metric.
"""

from pathlib import Path

from detect.data.voc import ANNOTATIONS_DIR, is_voc_root
from detect.errors import InputError
from detect.eval.loaders import load_coco_dets, load_coco_gt, load_voc_dets, load_voc_gt
from detect.eval.metrics import evaluate_coco, evaluate_voc
from detect.jsonfile import load_json
from detect.phases import Phases

METRICS = ("coco", "voc07", "voc12")


def default_metric(voc_layout):
    """The metric ground truth is scored with unless one is asked for.

    ``"voc12"`` for VOC-layout ground truth (a VOC dataset folder; the voc
    and shapes data formats), ``"coco"`` for everything else (a JSON file;
    COCO, YOLO-txt and TFRecord data).
    """
    return "voc12" if voc_layout else "coco"


def load_files(gt_path, dets_path, split=None, class_names=None, phases=None):
    """Loads ground truth and detections, choosing the format from ``gt_path``.

    Args:
      gt_path: COCO instances JSON, or a VOC dataset root.
      dets_path: COCO-style results JSON (for VOC: image ids are file stems,
        categories are class names or indices).
      split: VOC split (default ``test``, else ``val``).
      class_names: VOC class list (default: see ``load_voc_gt``).
      phases: a ``detect.phases.Phases`` that gets the time of each step
        (parsing and checking each file apart); None for none.

    Returns:
      (``GroundTruth``, ``DetectionRows``).

    Raises:
      InputError: on any bad input, naming the file and the entry.
    """
    phases = phases if phases is not None else Phases()
    gt_path = Path(gt_path)
    if gt_path.is_dir():
        if not is_voc_root(gt_path):
            raise InputError(gt_path, f"a folder but not a VOC dataset root (no {ANNOTATIONS_DIR}/); "
                                      "pass a COCO instances JSON file or a VOC root")
        with phases("read + check ground truth (VOC folder)"):
            gt = load_voc_gt(gt_path, split=split, class_names=class_names)
        load_dets = load_voc_dets
    else:
        if split is not None or class_names is not None:
            raise InputError(gt_path, "a split and a class list apply to VOC dataset folders only, "
                                      "not to a COCO JSON file")
        # Each file is parsed, then checked, in this order, so the first fault
        # reported is the same as when the loaders read the paths themselves.
        with phases("parse JSON: ground truth"):
            data = load_json(gt_path)
        with phases("check + index: ground truth"):
            gt = load_coco_gt(data, name=gt_path)
        load_dets = load_coco_dets
    with phases("parse JSON: detections"):
        data = load_json(dets_path)
    with phases("check + index: detections"):
        return gt, load_dets(data, gt, name=dets_path)


def evaluate(gt, dets, metric):
    """Runs ``metric`` (one of ``METRICS``) on loaded ground truth and detections.

    Returns:
      ``CocoResult`` for ``"coco"``, else ``VocResult``.
    """
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not one of {METRICS}")
    if metric == "coco":
        return evaluate_coco(gt, dets)
    return evaluate_voc(gt, dets, use_07_metric=metric == "voc07")


def evaluate_files(gt_path, dets_path, metric=None, split=None, class_names=None, phases=None):
    """``load_files`` then ``evaluate``; ``metric`` None picks ``default_metric``."""
    phases = phases if phases is not None else Phases()
    gt, dets = load_files(gt_path, dets_path, split=split, class_names=class_names, phases=phases)
    with phases("metric"):
        return evaluate(gt, dets, metric or default_metric(Path(gt_path).is_dir()))
