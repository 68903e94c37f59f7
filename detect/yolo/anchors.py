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
    """Sets ``model.anchors`` in a YAML config, leaving every other byte of the file as it was.

    The anchors replace the text of an existing ``model.anchors`` value, or
    go in as the first key of ``model`` (a ``model:`` section is appended
    when there is none), so the file's comments, order and layout survive.
    The file is replaced atomically, and only after the edited text reads
    back as the same config with the new anchors.

    Args:
      config_path: the YAML config to edit.
      anchors: [K, 2] widths and heights.

    Raises:
      InputError: the file is unreadable, not YAML, or its ``model`` is not a mapping.
    """
    from pathlib import Path

    import yaml

    from detect.errors import InputError
    from detect.outputs import write_text_atomic

    path = Path(config_path)
    try:
        text = path.read_text()
        before = yaml.safe_load(text)
        root = yaml.compose(text)
    except OSError as error:
        raise InputError(path, f"cannot read: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise InputError(path, f"malformed YAML: {error}") from None
    value = "[" + ", ".join(f"[{float(w):g}, {float(h):g}]" for w, h in anchors) + "]"
    key, model = _mapping_entry(root, "model", path) if root is not None else (None, None)
    if model is None:  # no model section: a new block at the end
        text = (text if not text or text.endswith("\n") else text + "\n") + f"model:\n  anchors: {value}\n"
    elif isinstance(model, yaml.ScalarNode) and model.tag.endswith(":null"):  # "model:" and nothing
        at = text.index(":", key.end_mark.index) + 1
        text = text[:at] + f"\n  anchors: {value}" + text[at:]
    elif not isinstance(model, yaml.MappingNode):
        raise InputError(path, "model is not a mapping; cannot set model.anchors")
    else:
        key, current = _mapping_entry(model, "anchors", path)
        if current is not None:
            if not current.flow_style and isinstance(current, yaml.SequenceNode) and current.value:
                # A block list: the value goes on the key's line; from its colon to the last item's end.
                start = text.index(":", key.end_mark.index) + 1
                text = text[:start] + f" {value}" + text[_block_end(current):]
            else:
                text = text[:current.start_mark.index] + value + text[current.end_mark.index:]
        elif model.flow_style:
            at = model.start_mark.index + 1  # just after "{"
            text = text[:at] + f"anchors: {value}" + (", " if model.value else "") + text[at:]
        else:
            first = model.value[0][0]
            at = first.start_mark.index - first.start_mark.column  # the start of its line
            text = text[:at] + " " * first.start_mark.column + f"anchors: {value}\n" + text[at:]
    try:
        after = yaml.safe_load(text)
    except yaml.YAMLError:
        after = None
    expected = dict(before or {})
    expected["model"] = {**((before or {}).get("model") or {}), "anchors": [[float(w), float(h)] for w, h in anchors]}
    if after != expected:  # a layout this edit does not know; the file is left as it was
        raise InputError(path, "cannot place model.anchors in this file's layout; add them by hand: "
                               f"anchors: {value}")
    write_text_atomic(path, text)


def _block_end(node):
    """Where a block node's last value ends in the text (a block node's own end mark lies past
    the comments and line break that follow it)."""
    import yaml

    while isinstance(node, (yaml.SequenceNode, yaml.MappingNode)) and not node.flow_style and node.value:
        node = node.value[-1] if isinstance(node, yaml.SequenceNode) else node.value[-1][1]
    return node.end_mark.index


def _mapping_entry(node, key, path):
    """(key node, value node) of ``key`` in a YAML mapping node, or (None, None)."""
    import yaml

    from detect.errors import InputError

    if not isinstance(node, yaml.MappingNode):
        raise InputError(path, "the config must be a mapping of sections")
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return k, v
    return None, None
