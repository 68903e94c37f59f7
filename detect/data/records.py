"""One annotated image, the unit every dataset reader produces.

Readers (VOC, COCO, YOLO-txt, TFRecord) convert their format at the edge and
hand out ``Record`` objects with boxes in our one format: ``xyxy``, absolute
pixels, float32, continuous edges (a box covers ``x1 <= x < x2``).
"""

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class Record:
    """An image and its boxes.

    Exactly one of ``image_path`` and ``image_bytes`` is normally set; a
    reader that does not know where the pixels are may leave both ``None``.

    Attributes:
      image_id: identifier of the image (VOC file stem, COCO id, ...).
      height, width: image size in pixels, as the annotation states it.
      boxes: [N, 4] float32 ``xyxy`` pixels. Degenerate boxes (``x2 <= x1``
        or ``y2 <= y1``) are kept as the annotation has them; checking them
        is the data checker's job, not the reader's.
      classes: [N] int32 class ids in ``0 .. len(class_names) - 1``.
      ignore: [N] bool, True for boxes evaluation ignores (VOC
        ``difficult``, COCO ``iscrowd``) and training may skip.
      class_names: the dataset's class names; a class id indexes it.
      image_path: path of the encoded image file, or None.
      image_bytes: the encoded image itself, or None.
      area: [N] float64 area of each object for COCO's small / medium /
        large ranges: COCO's ``area`` field (the segment's area, not the
        box's); None (formats without one) means the box area, 0 for a
        degenerate box. Computed in float64 from the float32 boxes, as the
        evaluation loaders compute it, so size ranges agree to the last bit.
    """

    image_id: object
    height: int
    width: int
    boxes: np.ndarray
    classes: np.ndarray
    ignore: np.ndarray
    class_names: Tuple[str, ...]
    image_path: Optional[str] = None
    image_bytes: Optional[bytes] = field(default=None, repr=False)
    area: Optional[np.ndarray] = field(default=None, repr=False)

    def __post_init__(self):
        # Normalise dtypes and shapes once here so every consumer can rely on them.
        boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        classes = np.asarray(self.classes, np.int32).reshape(-1)
        ignore = np.asarray(self.ignore, bool).reshape(-1)
        if not len(boxes) == len(classes) == len(ignore):
            raise ValueError(
                f"Record {self.image_id!r}: {len(boxes)} boxes, {len(classes)} classes, "
                f"{len(ignore)} ignore flags; they must be equal")
        if self.area is None:
            wh = np.clip(boxes[:, 2:].astype(np.float64) - boxes[:, :2], 0, None)
            area = wh[:, 0] * wh[:, 1]
        else:
            area = np.asarray(self.area, np.float64).reshape(-1)
            if len(area) != len(boxes) or not np.isfinite(area).all():
                raise ValueError(f"Record {self.image_id!r}: area must be {len(boxes)} finite numbers, "
                                 f"got {area.tolist()}")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "ignore", ignore)
        object.__setattr__(self, "area", area)
        object.__setattr__(self, "class_names", tuple(self.class_names))

    @property
    def num_boxes(self):
        return len(self.boxes)
