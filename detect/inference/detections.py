"""``Detections``: one image's detections, in its own pixels."""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Detections:
    """What a detector found in one image, by descending score.

    Attributes:
      boxes: [N, 4] float32 xyxy in the original image's pixels (continuous
        edges: a box covers ``x1 <= x < x2``).
      scores: [N] float32.
      classes: [N] int32 class ids (indices into the detector's class names).
      labels: N class names.
      image_size: (height, width) of the image, or None.
      source: what the image was (a path, ``"array"``, ...), for messages.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    labels: list = field(default_factory=list)
    image_size: tuple = None
    source: str = None

    def __len__(self):
        return len(self.scores)

    def to_coco(self, image_id, category_ids=None):
        """COCO results entries: ``image_id``, ``category_id``, ``bbox`` [x, y, w, h], ``score``.

        Args:
          image_id: the image's id in the results file.
          category_ids: class id -> COCO category id (a list or dict); None
            keeps the class ids.
        """
        out = []
        for box, score, cls in zip(self.boxes, self.scores, self.classes):
            x1, y1, x2, y2 = (float(v) for v in box)
            category = int(cls) if category_ids is None else category_ids[int(cls)]
            out.append({"image_id": image_id, "category_id": category, "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": float(score)})
        return out

    def to_dict(self):
        """Plain lists (JSON-ready): ``boxes``, ``scores``, ``classes``, ``labels``, ``image_size``."""
        return {"boxes": self.boxes.tolist(), "scores": self.scores.tolist(), "classes": self.classes.tolist(),
                "labels": list(self.labels), "image_size": list(self.image_size) if self.image_size else None}

    def filter(self, keep):
        """The detections where ``keep`` [N] bool is True."""
        keep = np.asarray(keep, bool)
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep],
                          [label for label, k in zip(self.labels, keep) if k], self.image_size, self.source)
