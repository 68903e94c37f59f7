"""Pascal VOC writer: ``Record`` objects into the VOCdevkit layout.

The inverse of ``detect.data.voc.read_voc``: our continuous-edge box
``x1..x2`` becomes the 1-based inclusive corners ``xmin = x1 + 1``,
``xmax = x2`` (``detect.data.voc.voc_corners``, the inverse of
``voc_box``). Images are not copied; the annotation names the record's
image file, which the caller puts in ``JPEGImages/``.
"""

from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from detect.data.voc import ANNOTATIONS_DIR, IMAGES_DIR, SPLITS_DIR, voc_corners


def write_voc(records, root, split):
    """Writes one annotation XML per record and the split's id list.

    Args:
      records: ``Record`` objects; ``image_id`` becomes the XML file stem.
      root: dataset folder (``Annotations/``, ``ImageSets/Main/`` are
        created, ``JPEGImages/`` too, empty if new).
      split: the split file ``ImageSets/Main/<split>.txt`` is (over)written
        with the records' ids in order.

    Returns:
      ``Path`` of the split file.
    """
    root = Path(root)
    for folder in (ANNOTATIONS_DIR, IMAGES_DIR, SPLITS_DIR):
        (root / folder).mkdir(parents=True, exist_ok=True)
    ids = []
    for record in records:
        image_id = str(record.image_id)
        (root / ANNOTATIONS_DIR / f"{image_id}.xml").write_text(voc_annotation_xml(record))
        ids.append(image_id)
    split_path = root / SPLITS_DIR / f"{split}.txt"
    split_path.write_text("".join(f"{i}\n" for i in ids))
    return split_path


def voc_annotation_xml(record):
    """The VOC annotation XML text of one record (``ignore`` becomes ``difficult``)."""
    filename = Path(record.image_path).name if record.image_path else f"{record.image_id}.jpg"
    corners = voc_corners(record.boxes).reshape(-1, 4)
    objects = []
    for (xmin, ymin, xmax, ymax), k, difficult in zip(corners, record.classes, record.ignore):
        objects.append(
            "  <object>\n"
            f"    <name>{escape(record.class_names[k])}</name>\n"
            "    <pose>Unspecified</pose>\n"
            "    <truncated>0</truncated>\n"
            f"    <difficult>{int(difficult)}</difficult>\n"
            "    <bndbox>\n"
            f"      <xmin>{_number(xmin)}</xmin>\n"
            f"      <ymin>{_number(ymin)}</ymin>\n"
            f"      <xmax>{_number(xmax)}</xmax>\n"
            f"      <ymax>{_number(ymax)}</ymax>\n"
            "    </bndbox>\n"
            "  </object>\n")
    return ("<annotation>\n"
            f"  <folder>{IMAGES_DIR}</folder>\n"
            f"  <filename>{escape(filename)}</filename>\n"
            f"  <size>\n    <width>{int(record.width)}</width>\n"
            f"    <height>{int(record.height)}</height>\n    <depth>3</depth>\n  </size>\n"
            "  <segmented>0</segmented>\n"
            f"{''.join(objects)}"
            "</annotation>\n")


def _number(value):
    # Whole pixels print as integers, as the devkit's files have them.
    value = float(np.float32(value))
    return str(int(value)) if value == int(value) else np.format_float_positional(
        np.float32(value), unique=True)


__all__ = ["voc_annotation_xml", "write_voc"]
