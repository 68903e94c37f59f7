"""Datasets: readers that turn annotation formats into ``Record`` objects.

Importing this package does not import TensorFlow.
"""

from detect.data.records import Record
from detect.data.voc import VOC_CLASSES, is_voc_root, read_split, read_voc, voc_class_names_in, voc_splits

__all__ = ["VOC_CLASSES", "Record", "is_voc_root", "read_split", "read_voc", "voc_class_names_in", "voc_splits"]
