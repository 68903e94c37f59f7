"""Datasets: readers that turn annotation formats into ``Record`` objects.

Importing this package does not import TensorFlow.
"""

from detect.data.checker.dataset import check_dataset
from detect.data.checker.report import DatasetReport, Problem
from detect.data.coco import read_coco, records_to_coco, write_coco
from detect.data.formats import convert_dataset, read_dataset
from detect.data.imagesize import image_size
from detect.data.records import Record
from detect.data.shapes import SHAPES_CLASSES, ensure_shapes, make_shapes, render_shapes_image
from detect.data.voc import (VOC_CLASSES, default_voc_classes, is_voc_root, read_split, read_voc,
                             voc_class_names_in, voc_splits)
from detect.data.voc_writer import write_voc
from detect.data.yolo_txt import is_yolo_root, read_yolo, yolo_class_names, yolo_splits

# detect.data.tfrecord (TFRecord writer and parser) imports TensorFlow, so it
# is not imported here; import it directly.

__all__ = ["SHAPES_CLASSES", "VOC_CLASSES", "DatasetReport", "Problem", "Record", "check_dataset",
           "convert_dataset", "default_voc_classes", "ensure_shapes", "image_size", "is_voc_root",
           "is_yolo_root", "make_shapes", "read_coco", "read_dataset", "read_split", "read_voc", "read_yolo",
           "records_to_coco", "render_shapes_image", "voc_class_names_in", "voc_splits",
           "write_coco", "write_voc", "yolo_class_names", "yolo_splits"]
