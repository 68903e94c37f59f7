"""Box checks of the dataset checker: degenerate, tiny and out-of-bounds boxes; box sizes."""

import numpy as np

from detect.data.checker.report import (DEGENERATE_BOX, OUT_OF_BOUNDS_BOX, SIZE_BUCKET_EDGES, SIZE_BUCKETS,
                                        TINY_BOX, TINY_BOX_PX, Problem)


def check_boxes(record, source, where, image_size, problems):
    """Degenerate, tiny and out-of-bounds boxes of one record.

    Bounds are the decoded image's size when known (the pixels the boxes
    are drawn on), else the annotation's.
    """
    boxes = record.boxes
    if not len(boxes):
        return
    width, height = image_size if image_size is not None else (record.width, record.height)
    box_w = boxes[:, 2] - boxes[:, 0]
    box_h = boxes[:, 3] - boxes[:, 1]
    degenerate = (box_w <= 0) | (box_h <= 0)
    tiny = ~degenerate & ((box_w <= TINY_BOX_PX) | (box_h <= TINY_BOX_PX))
    known_size = width > 0 and height > 0
    outside = (boxes[:, 0] < 0) | (boxes[:, 1] < 0)
    if known_size:
        outside |= (boxes[:, 2] > width) | (boxes[:, 3] > height)
    for j in np.flatnonzero(degenerate | tiny | outside):
        name = record.class_names[record.classes[j]]
        label = where[j] if where is not None else f"image {record.image_id!r} box[{j}] ({name})"
        corners = ", ".join(f"{v:g}" for v in boxes[j])
        shape = f"{box_w[j]:g} x {box_h[j]:g} px box [{corners}] (xyxy)"
        if degenerate[j]:
            problems.append(Problem(DEGENERATE_BOX, source, f"{label}: {shape}"))
        elif tiny[j]:
            problems.append(Problem(TINY_BOX, source, f"{label}: {shape}"))
        if outside[j]:
            bounds = f"{width} x {height}" if known_size else "the image"
            problems.append(Problem(OUT_OF_BOUNDS_BOX, source, f"{label}: {shape} outside {bounds}"))


def size_histogram(records, class_names):
    """{class name: counts per SIZE_BUCKETS}, by sqrt(area) in pixels."""
    counts = np.zeros((len(class_names), len(SIZE_BUCKETS)), np.int64)
    for record in records:
        if not len(record.boxes):
            continue
        wh = np.clip(record.boxes[:, 2:] - record.boxes[:, :2], 0, None)
        bucket = np.searchsorted(SIZE_BUCKET_EDGES, np.sqrt(wh[:, 0] * wh[:, 1]), side="right")
        np.add.at(counts, (record.classes, bucket), 1)
    return {name: counts[k].tolist() for k, name in enumerate(class_names)}
