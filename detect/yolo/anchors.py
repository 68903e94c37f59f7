"""YOLO anchor priors and their k-means estimation (YOLOv2's 1 - IoU distance).

Anchors are (width, height) in pixels of the network input.
"""

import numpy as np

# YOLOv3's COCO anchors at 416 x 416, small to large; three per level
# (strides 8, 16, 32).
YOLOV3_ANCHORS = ((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198), (373, 326))
# YOLOv2's VOC anchors (published in grid cells of 32 px), in pixels.
YOLOV2_ANCHORS = tuple((round(w * 32, 2), round(h * 32, 2)) for w, h in (
    (1.3221, 1.73145), (3.19275, 4.00944), (5.05587, 8.09892), (9.47112, 4.84053), (11.2364, 10.0071)))


def wh_iou(wh1, wh2):
    """IoU of boxes given by sizes only, as if they shared one centre.

    Args:
      wh1: [N, 2]; wh2: [M, 2].

    Returns:
      [N, M] float64.
    """
    wh1 = np.asarray(wh1, np.float64)[:, None, :]
    wh2 = np.asarray(wh2, np.float64)[None, :, :]
    inter = np.minimum(wh1[..., 0], wh2[..., 0]) * np.minimum(wh1[..., 1], wh2[..., 1])
    union = wh1[..., 0] * wh1[..., 1] + wh2[..., 0] * wh2[..., 1] - inter
    return inter / np.maximum(union, 1e-12)


def kmeans_anchors(wh, num_anchors=9, seed=0, max_iter=300):
    """k-means over box sizes with distance 1 - IoU (YOLOv2, section 2).

    Centroids start at k distinct random boxes and move to the median of
    their cluster (more robust to outliers than the mean) until no box
    changes cluster.

    Args:
      wh: [N, 2] box widths and heights in pixels (N >= num_anchors).
      num_anchors: k.
      seed: random seed of the initial choice.
      max_iter: iteration cap.

    Returns:
      anchors [k, 2] sorted by area, and the mean best IoU of the boxes
      with them.
    """
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    wh = wh[(wh[:, 0] > 0) & (wh[:, 1] > 0)]
    if len(wh) < num_anchors:
        raise ValueError(f"k-means needs at least {num_anchors} boxes with positive size, got {len(wh)}")
    rng = np.random.default_rng(seed)
    unique = np.unique(wh, axis=0)
    if len(unique) < num_anchors:
        raise ValueError(f"only {len(unique)} distinct box sizes for {num_anchors} anchors")
    centroids = unique[rng.choice(len(unique), num_anchors, replace=False)]
    assignment = None
    for _ in range(max_iter):
        new_assignment = np.argmax(wh_iou(wh, centroids), axis=1)
        if assignment is not None and np.array_equal(new_assignment, assignment):
            break
        assignment = new_assignment
        for k in range(num_anchors):
            members = wh[assignment == k]
            if len(members):
                centroids[k] = np.median(members, axis=0)
    centroids = centroids[np.argsort(centroids[:, 0] * centroids[:, 1])]
    mean_iou = float(wh_iou(wh, centroids).max(axis=1).mean())
    return centroids, mean_iou


def letterbox_box_sizes(records, size):
    """Box sizes as the square letterbox to ``size`` scales them.

    Args:
      records: ``Record`` list.
      size: network input side.

    Returns:
      [N, 2] float64 widths and heights in input pixels (non-ignored boxes).
    """
    sizes = []
    for record in records:
        scale = size / max(record.height, record.width)
        keep = ~record.ignore
        wh = (record.boxes[keep, 2:4] - record.boxes[keep, 0:2]).astype(np.float64) * scale
        sizes.append(wh)
    return np.concatenate(sizes) if sizes else np.zeros((0, 2))


def write_anchors(config_path, anchors):
    """Sets ``model.anchors`` in a YAML config, keeping the rest of the file."""
    import yaml

    from pathlib import Path

    path = Path(config_path)
    data = yaml.safe_load(path.read_text()) or {}
    data.setdefault("model", {})["anchors"] = [list(a) for a in anchors]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
