"""What the dataset checker reports: problem kinds, ``Problem`` and ``DatasetReport``.

Every other module of ``detect.data.checker`` builds on these types; this
one imports nothing of the package.
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from detect.data.records import Record

# Problem kinds, in the order reports list them.
OUTSIDE_ROOT = "outside_root"
MISSING_IMAGE = "missing_image"
CORRUPT_IMAGE = "corrupt_image"
TRUNCATED_IMAGE = "truncated_image"
SIZE_MISMATCH = "size_mismatch"
MALFORMED_ANNOTATION = "malformed_annotation"
MISSING_ANNOTATION = "missing_annotation"
UNKNOWN_CLASS = "unknown_class"
DEGENERATE_BOX = "degenerate_box"
TINY_BOX = "tiny_box"
OUT_OF_BOUNDS_BOX = "out_of_bounds_box"
DUPLICATE_ID = "duplicate_id"
SPLIT_OVERLAP = "split_overlap"

TINY_BOX_PX = 1.0

PROBLEM_TITLES = {
    OUTSIDE_ROOT: "path outside the dataset root (refused by the readers)",
    MISSING_IMAGE: "missing image",
    CORRUPT_IMAGE: "corrupt image",
    TRUNCATED_IMAGE: "truncated image (usable: training decodes what is there and counts it as repaired)",
    SIZE_MISMATCH: "image size differs from the annotation",
    MALFORMED_ANNOTATION: "malformed annotation",
    MISSING_ANNOTATION: "image listed in a split without an annotation",
    UNKNOWN_CLASS: "unknown class",
    DEGENERATE_BOX: "degenerate box (x2 <= x1 or y2 <= y1)",
    TINY_BOX: f"tiny box (<= {TINY_BOX_PX:g} px)",
    OUT_OF_BOUNDS_BOX: "box outside the image",
    DUPLICATE_ID: "duplicate image id",
    SPLIT_OVERLAP: "image in two splits that should be disjoint",
}

# Upper edges of the box-size buckets, on sqrt(area) in pixels.
SIZE_BUCKET_EDGES = (16, 32, 64, 128, 256)
SIZE_BUCKETS = tuple(
    [f"<{SIZE_BUCKET_EDGES[0]}"]
    + [f"{lo}-{hi}" for lo, hi in zip(SIZE_BUCKET_EDGES[:-1], SIZE_BUCKET_EDGES[1:])]
    + [f">={SIZE_BUCKET_EDGES[-1]}"])

ALL_SPLITS = "all"  # split name when a VOC root has no ImageSets/Main files
UNION = "union"     # every image once, whatever splits list it


@dataclass(frozen=True)
class Problem:
    """One problem found in a dataset.

    Attributes:
      kind: one of the ``PROBLEM_TITLES`` keys, e.g. ``TINY_BOX``.
      source: the file the problem is in (annotation, image or split file).
      message: what is wrong and where in the file.
    """

    kind: str
    source: str
    message: str


@dataclass
class SplitSummary:
    """Images and boxes of one split (or of the union of splits).

    Attributes:
      images: number of distinct image ids listed.
      boxes: number of boxes of known classes on those images.
      boxes_per_class: {class name: number of boxes}, every class present.
    """

    images: int
    boxes: int
    boxes_per_class: Dict[str, int]


@dataclass
class DatasetReport:
    """What ``check_dataset`` found.

    Attributes:
      dataset: the path checked.
      format: "voc", "coco", "yolo", "tfrecord" or "shapes".
      class_names: classes in class-id order.
      classes_from: where the class list came from, in words.
      splits: {split name: SplitSummary}, in name order.
      union: SplitSummary over every image once.
      size_histogram: {class name: [count per SIZE_BUCKETS]} over the
        union's boxes by sqrt(area) in pixels (degenerate boxes count as 0).
      image_sizes: Counter {(width, height): images} of the decoded images.
      problems: every problem found, ordered by kind.
      notes: remarks that are not problems (what was not checked, ...).
      records: the union's ``Record`` objects (unknown-class boxes left
        out), for drawing; not part of the JSON.
    """

    dataset: str
    format: str
    class_names: Tuple[str, ...]
    classes_from: str
    splits: Dict[str, SplitSummary]
    union: SplitSummary
    size_histogram: Dict[str, List[int]]
    image_sizes: Counter
    problems: List[Problem]
    notes: List[str] = field(default_factory=list)
    records: List[Record] = field(default_factory=list, repr=False)

    @property
    def ok(self):
        """True when no problem was found."""
        return not self.problems

    def problems_by_kind(self):
        """{kind: [Problem, ...]} for the kinds that occur, in report order."""
        grouped = {}
        for problem in self.problems:
            grouped.setdefault(problem.kind, []).append(problem)
        return grouped
