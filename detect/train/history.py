"""The metrics history of a run: its records, the best epoch, the spread of validation mAP, summaries.

A history is the dict ``metrics.json`` holds and each checkpoint commits:
``epochs`` (one record per trained epoch: ``epoch``, ``stage``, ``seconds``,
``images_per_second``, the mean loss parts and, when validated, the
metrics), ``best`` (``epoch``, ``mAP50``, ``AP`` of the best validated
epoch, or None) and ``last5`` (``validation_spread``).
"""

import math

METRIC_NAMES = {"mAP50": "mAP@0.5", "AP": "AP@[.5:.95]"}
COCO_STATS = ("AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def best_of(records):
    """The first record with the highest mAP50, as a history's ``best`` (None without any)."""
    best = None
    for e in records:
        if "mAP50" in e and (best is None or e["mAP50"] > best["mAP50"]):
            best = {"epoch": e["epoch"], "mAP50": float(e["mAP50"]), "AP": float(e["AP"])}
    return best


def metrics_line(epoch, metrics):
    """The line printed after an epoch's validation: the named metrics first, COCO's others left out."""
    keys = [k for k in METRIC_NAMES if k in metrics] + [
        k for k in metrics if k not in METRIC_NAMES and k not in COCO_STATS]
    shown = "  ".join(f"{METRIC_NAMES.get(k, k)} {metrics[k]:.4f}" for k in keys)
    return f"epoch {epoch}: {shown}"


SPREAD_EPOCHS = 5  # evaluated epochs behind the spread of validation mAP (``validation_spread``)


def validation_spread(history, last=SPREAD_EPOCHS):
    """The spread of validation mAP@0.5 over the last ``last`` evaluated epochs, or None without any.

    Only the epochs of the last evaluated epoch's stage count (an earlier
    stage's mAP is another model's). Returns a dict: ``epochs`` (the epochs
    used), ``mean``, ``std`` (the sample standard deviation, 0 for one
    epoch), ``min`` and ``max`` of their ``mAP50``. Stored in the history as
    ``last5``, so a best epoch far above the mean shows as luck.
    """
    records = [e for e in history["epochs"] if "mAP50" in e]
    if not records:
        return None
    stage = records[-1].get("stage")
    values = [e for e in records if e.get("stage") == stage][-last:]
    maps = [float(e["mAP50"]) for e in values]
    mean = sum(maps) / len(maps)
    std = math.sqrt(sum((m - mean) ** 2 for m in maps) / (len(maps) - 1)) if len(maps) > 1 else 0.0
    return {"epochs": [e["epoch"] for e in values], "mean": mean, "std": std, "min": min(maps), "max": max(maps)}


def spread_line(history):
    """The summary line of ``validation_spread`` (computed from the records if the history lacks it), or None."""
    spread = history.get("last5") or validation_spread(history)
    if not spread:
        return None
    epochs = spread["epochs"]
    span = f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]}-{epochs[-1]}"
    return (f"last {len(epochs)} evaluated ({span}): mAP@0.5 mean {spread['mean']:.4f}  "
            f"min-max {spread['min']:.4f}-{spread['max']:.4f} ({spread['max'] - spread['min']:.4f})  "
            f"std {spread['std']:.4f}")


def summary_table(history):
    """The final summary: one row per evaluated epoch, the best, then the spread of the last ones."""
    rows = [e for e in history["epochs"] if "mAP50" in e]
    lines = ["epoch   loss      mAP@0.5   AP@[.5:.95]  img/s"]
    for e in rows:
        lines.append(f"{e['epoch']:5d}   {e.get('loss', float('nan')):7.4f}   {e['mAP50']:.4f}    "
                     f"{e['AP']:.4f}       {e['images_per_second']:.1f}")
    best = history.get("best")
    if best:
        lines.append(f"best: epoch {best['epoch']}  mAP@0.5 {best['mAP50']:.4f}  AP@[.5:.95] {best['AP']:.4f}")
    spread = spread_line(history)
    if spread:
        lines.append(spread)
    return "\n".join(lines)
