"""What every format's check ends with: image and box checks, counts, the ``DatasetReport``.

The per-format checks (``detect.data.checker.voc``, ``.coco``, ``.yolo``,
``.tfrecord``) turn a dataset into records and format-specific problems;
``finish_report`` does the rest the same way for all of them.
"""

from collections import Counter

import numpy as np

from detect.data.checker.boxes import check_boxes, size_histogram
from detect.data.checker.images import check_images
from detect.data.checker.report import OUTSIDE_ROOT, PROBLEM_TITLES, DatasetReport, Problem, SplitSummary
from detect.data.paths import OutsideRootError


def confined(problems, resolve, *args):
    """``str(resolve(*args))``, or None with an ``OUTSIDE_ROOT`` problem if it leaves the root."""
    try:
        return str(resolve(*args))
    except OutsideRootError as error:
        problems.append(Problem(OUTSIDE_ROOT, error.source, error.message))
        return None


def finish_report(source, fmt, class_names, classes_from, split_keys, records, problems, notes,
                  decode_images):
    """Image and box checks over ``records``, counts, and the report.

    Args:
      split_keys: {split: [record key, ...]} (keys of ``records``; a key
        without a record, from an unreadable annotation, counts as an image
        with no boxes).
      records: {key: (Record, annotation source, [where per box] or None)}.
    """
    items = list(records.values())
    sizes = check_images([record for record, _, _ in items], decode_images, problems, notes)
    for (record, ann_source, where), size in zip(items, sizes):
        check_boxes(record, ann_source, where, size, problems)

    def summary(keys):
        counts = np.zeros(len(class_names), np.int64)
        for key in keys:
            if key in records:
                counts += np.bincount(records[key][0].classes, minlength=len(class_names))
        return SplitSummary(images=len(keys), boxes=int(counts.sum()),
                            boxes_per_class={n: int(c) for n, c in zip(class_names, counts)})

    split_summaries = {split: summary(set(keys)) for split, keys in sorted(split_keys.items())}
    union_keys = {key for keys in split_keys.values() for key in keys}
    order = {kind: i for i, kind in enumerate(PROBLEM_TITLES)}
    problems.sort(key=lambda p: order[p.kind])  # Stable: within a kind, discovery order.
    return DatasetReport(
        dataset=str(source),
        format=fmt,
        class_names=tuple(class_names),
        classes_from=classes_from,
        splits=split_summaries,
        union=summary(union_keys),
        size_histogram=size_histogram([record for record, _, _ in items], class_names),
        image_sizes=Counter(size for size in sizes if size is not None),
        problems=problems,
        notes=notes,
        records=[record for record, _, _ in items],
    )
