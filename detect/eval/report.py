"""Readable tables, JSON summaries and plots of evaluation results."""

import math
import re
from pathlib import Path

import numpy as np

from detect.eval.types import CocoResult, VocResult
from detect.outputs import atomic_path

# The 12 COCO summary numbers: name -> (kind, IoU, area range, max detections),
# in pycocotools' order and wording.
COCO_STATS = {
    "AP": ("AP", "0.50:0.95", "all", 100),
    "AP50": ("AP", "0.50", "all", 100),
    "AP75": ("AP", "0.75", "all", 100),
    "APs": ("AP", "0.50:0.95", "small", 100),
    "APm": ("AP", "0.50:0.95", "medium", 100),
    "APl": ("AP", "0.50:0.95", "large", 100),
    "AR1": ("AR", "0.50:0.95", "all", 1),
    "AR10": ("AR", "0.50:0.95", "all", 10),
    "AR100": ("AR", "0.50:0.95", "all", 100),
    "ARs": ("AR", "0.50:0.95", "small", 100),
    "ARm": ("AR", "0.50:0.95", "medium", 100),
    "ARl": ("AR", "0.50:0.95", "large", 100),
}

# pycocotools marks undefined entries (no ground truth) with -1.
UNDEFINED = -1

# Index of the "all" area range and of the last (largest) maxDets setting in
# COCO's precision array [T, R, K, A, M].
_AREA_ALL = 0
_MAX_DETS_LAST = -1

_TITLES = {"AP": "Average Precision  (AP)", "AR": "Average Recall     (AR)"}


def metric_name(result):
    """``"coco"``, ``"voc07"`` or ``"voc12"``."""
    if isinstance(result, CocoResult):
        return "coco"
    return "voc07" if result.use_07_metric else "voc12"


def format_coco_table(result: CocoResult) -> str:
    """The 12 COCO numbers as pycocotools prints them, then AP per class.

    Args:
      result: ``CocoResult``.

    Returns:
      multi-line str, no trailing newline.
    """
    lines = []
    for name, (kind, iou, area, max_dets) in COCO_STATS.items():
        value = float(result.stats.get(name, UNDEFINED))
        lines.append(f" {_TITLES[kind]} @[ IoU={iou:<9} | area={area:>6} | maxDets={max_dets:>3} ]"
                     f" = {value:0.3f}")
    names = _coco_class_names(result)
    ap50 = coco_class_ap_at(result, 0.5)
    width = _name_width(names)
    lines += ["", f"{'class':<{width}}  {'AP':>6}  {'AP50':>6}"]
    for k, name in enumerate(names):
        lines.append(f"{name:<{width}}  {_cell(result.per_class[name], 6, 3, UNDEFINED)}"
                     f"  {_cell(ap50[k], 6, 3, UNDEFINED)}")
    return "\n".join(lines)


def format_voc_table(result: VocResult) -> str:
    """Per-class AP and the mAP of a VOC evaluation.

    Args:
      result: ``VocResult``.

    Returns:
      multi-line str, no trailing newline; a class without ground truth
      shows ``-``.
    """
    method = "VOC2007 11-point" if result.use_07_metric else "VOC2012 all-point"
    names = list(result.per_class)
    width = _name_width(names + ["mAP"])
    lines = [f"Pascal VOC AP ({method}) @ IoU > 0.5, difficult ignored", "",
             f"{'class':<{width}}  {'AP':>6}"]
    lines += [f"{name:<{width}}  {_cell(result.per_class[name], 6, 4)}" for name in names]
    lines += ["-" * (width + 8), f"{'mAP':<{width}}  {_cell(result.mAP, 6, 4)}"]
    return "\n".join(lines)


def format_table(result):
    """``format_coco_table`` or ``format_voc_table``, by result type."""
    return format_coco_table(result) if isinstance(result, CocoResult) else format_voc_table(result)


def result_to_json(result):
    """A JSON-safe summary (NaN and infinities become None).

    Returns:
      COCO: ``{"metric": "coco", "AP", "AP50", "AP75", "APs", "APm", "APl",
      "AR1", "AR10", "AR100", "ARs", "ARm", "ARl", "per_class": {name: AP}}``
      (-1 where pycocotools reports -1). VOC: ``{"metric": "voc07" or
      "voc12", "mAP", "per_class": {name: AP}}``.
    """
    out = {"metric": metric_name(result)}
    if isinstance(result, CocoResult):
        out.update((name, _json_float(result.stats.get(name, UNDEFINED))) for name in COCO_STATS)
    else:
        out["mAP"] = _json_float(result.mAP)
    out["per_class"] = {str(name): _json_float(ap) for name, ap in result.per_class.items()}
    return out


def coco_class_ap_at(result: CocoResult, iou):
    """Per-class AP at one IoU threshold (area all, largest maxDets).

    Returns:
      [K] float64, -1 for a class without ground truth.
    """
    t = int(np.argmin(np.abs(np.asarray(result.iou_thresholds) - iou)))
    precision = np.asarray(result.precision)[t, :, :, _AREA_ALL, _MAX_DETS_LAST]  # [R, K]
    defined = precision > UNDEFINED
    sums = np.where(defined, precision, 0).sum(axis=0)
    counts = defined.sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), UNDEFINED).astype(np.float64)


def write_plots(result, out_dir):
    """Writes a precision-recall curve per class and an AP bar chart as PNG.

    COCO curves are at IoU 0.5, area all, the largest maxDets; VOC curves are
    the evaluator's own (recall, precision) in score order.

    Args:
      result: ``CocoResult`` or ``VocResult``.
      out_dir: folder, created if needed.

    Returns:
      list of the written ``Path`` objects: ``pr_<index>_<class>.png`` per
      class (the index keeps names unique once unsafe characters are
      replaced), then ``ap_per_class.png``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = _curves(result)
    written = []
    for k, (name, (recall, precision)) in enumerate(curves.items()):
        fig = Figure(figsize=(5, 4.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        if len(recall):
            ax.plot(recall, precision, drawstyle="steps-post")
        else:
            ax.text(0.5, 0.5, "no curve (no ground truth or detections)", ha="center", va="center")
        ap = result.per_class[name]
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
               title=f"{name}: AP {_label(ap, 3, _undefined(result))}")
        ax.grid(alpha=0.3)
        path = out_dir / f"pr_{k:03d}_{_safe_name(name)}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
        written.append(path)

    names = list(result.per_class)
    values = [_plot_value(result.per_class[n], _undefined(result)) for n in names]
    fig = Figure(figsize=(7, 1.5 + 0.28 * max(len(names), 1)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bars = ax.barh(range(len(names)), values)
    ax.bar_label(bars, padding=3, labels=[_label(result.per_class[n], 3, _undefined(result)) for n in names])
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()  # first class on top, as in the tables
    summary = (f"mAP {_label(result.mAP, 4)}" if isinstance(result, VocResult)
               else f"AP {_label(result.stats.get('AP', UNDEFINED), 3, UNDEFINED)}")
    ax.set(xlim=(0, 1.12), xlabel="AP", title=f"AP per class ({metric_name(result)}, {summary})")
    fig.tight_layout()
    path = out_dir / "ap_per_class.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    written.append(path)
    return written


def _curves(result):
    """class name -> (recall [D], precision [D]) to plot."""
    if isinstance(result, VocResult):
        return {name: tuple(np.asarray(a, np.float64) for a in result.curves.get(name, ((), ())))
                for name in result.per_class}
    t = int(np.argmin(np.abs(np.asarray(result.iou_thresholds) - 0.5)))
    recall_thresholds = np.asarray(result.recall_thresholds)
    curves = {}
    for k, name in enumerate(_coco_class_names(result)):
        precision = np.asarray(result.precision)[t, :, k, _AREA_ALL, _MAX_DETS_LAST]
        keep = precision > UNDEFINED
        curves[name] = (recall_thresholds[keep], precision[keep])
    return curves


def _coco_class_names(result):
    return list(result.class_names) or list(result.per_class)


def _undefined(result):
    return UNDEFINED if isinstance(result, CocoResult) else None


def _is_undefined(value, undefined=None):
    value = float(value)
    return not math.isfinite(value) or (undefined is not None and value == undefined)


def _cell(value, width, digits, undefined=None):
    if value is None or _is_undefined(value, undefined):
        return f"{'-':>{width}}"
    return f"{float(value):>{width}.{digits}f}"


def _label(value, digits, undefined=None):
    """A number for a plot, or ``n/a`` when undefined."""
    if value is None or _is_undefined(value, undefined):
        return "n/a"
    return f"{float(value):.{digits}f}"


def _plot_value(value, undefined):
    return 0.0 if value is None or _is_undefined(value, undefined) else float(value)


def _json_float(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _name_width(names):
    # Long names widen the column up to a point, then just push the numbers right.
    return min(max([len(str(n)) for n in names] + [5]), 40)


def _safe_name(name):
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")[:60]
    return safe or "class"
