"""Dataset checker: counts, box sizes and every problem of a detection dataset.

``check_dataset(source)`` reads a VOC root, a COCO JSON, a YOLO root or a
config YAML (any ``data.format``, read by the training run's rules: see
``check_config``; the caller passes the config loader) and returns a
``DatasetReport``: images and boxes per split and class, a box-size
histogram, and a list of ``Problem`` objects. It does not stop at the first
problem: for VOC each annotation file is parsed on its own and its
``InputError`` becomes a reported problem. Only unusable input (a path that
does not exist, a split that is not there) raises ``InputError``.

Boxes are checked in our convention (``xyxy``, continuous edges, see
``detect.data.records``): ``x2 <= x1`` is degenerate; a box 1 pixel wide or
high is valid but reported as tiny, because annotation tools write such boxes
by a stray click (BCCD's README calls its two "zero-size": VOC
``xmin == xmax`` is one pixel wide in the devkit convention).

Modules: ``report`` (problem kinds, ``Problem``, ``DatasetReport``),
``voc`` / ``coco`` / ``yolo`` / ``tfrecord`` (per-format checks),
``images`` and ``boxes`` (checks every format shares), ``finish`` (counts
and the report), ``dataset`` (the entry points), ``output`` (text and
JSON).

Importing this package does not import TensorFlow or OpenCV; checking a
config (whose loader builds on the model's config) or TFRecords does.
"""

from detect.data.checker.coco import check_coco, check_coco_splits
from detect.data.checker.dataset import check_config, check_data_config, check_dataset
from detect.data.checker.output import format_report, report_to_json
from detect.data.checker.report import (
    ALL_SPLITS, CORRUPT_IMAGE, DEGENERATE_BOX, DUPLICATE_ID, MALFORMED_ANNOTATION, MISSING_ANNOTATION,
    MISSING_IMAGE, OUT_OF_BOUNDS_BOX, OUTSIDE_ROOT, PROBLEM_TITLES, SIZE_BUCKET_EDGES, SIZE_BUCKETS,
    SIZE_MISMATCH, SPLIT_OVERLAP, TINY_BOX, TINY_BOX_PX, TRUNCATED_IMAGE, UNION, UNKNOWN_CLASS, DatasetReport,
    Problem, SplitSummary)
from detect.data.checker.tfrecord import check_tfrecord
from detect.data.checker.voc import check_voc
from detect.data.checker.yolo import check_yolo

__all__ = ["ALL_SPLITS", "CORRUPT_IMAGE", "DEGENERATE_BOX", "DUPLICATE_ID", "MALFORMED_ANNOTATION",
           "MISSING_ANNOTATION", "MISSING_IMAGE", "OUTSIDE_ROOT", "OUT_OF_BOUNDS_BOX", "PROBLEM_TITLES",
           "SIZE_BUCKETS", "SIZE_BUCKET_EDGES", "SIZE_MISMATCH", "SPLIT_OVERLAP", "TINY_BOX", "TINY_BOX_PX",
           "TRUNCATED_IMAGE", "UNION", "UNKNOWN_CLASS", "DatasetReport", "Problem", "SplitSummary",
           "check_coco", "check_coco_splits", "check_config", "check_data_config", "check_dataset",
           "check_tfrecord", "check_voc", "check_yolo", "format_report", "report_to_json"]
