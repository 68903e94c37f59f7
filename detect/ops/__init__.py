"""Graph-compiled detection operations shared by every detector.

Pure TensorFlow (numpy for index bookkeeping around the mAP walk); imports
nothing else from ``detect``. Boxes are ``xyxy`` in
absolute pixels unless a name says otherwise. Every op runs eagerly, inside
``tf.function`` and under ``tf.function(jit_compile=True)``.
"""

from detect.ops.anchors import anchor_grid, generate_anchors
from detect.ops.boxes import (
    BOX_FORMATS,
    DEFAULT_SCALE_CLAMP,
    IOU_KINDS,
    aligned_iou,
    box_area,
    clip_boxes,
    convert_boxes,
    decode_boxes,
    encode_boxes,
    iou,
)
from detect.ops.coco_map import coco_evaluate, coco_per_class_ap, coco_summarize
from detect.ops.losses import smooth_l1
from detect.ops.matching import IGNORE, NEGATIVE, NO_MATCH, POSITIVE, match
from detect.ops.nms import PAD_CLASS, batched_nms

# After the module detect.ops.nms is loaded: the package's ``nms`` is the function.
from detect.ops.nms_greedy import PAD_INDEX, nms
from detect.ops.nms_xla import without_xla
from detect.ops.sampling import NO_SAMPLE, sample_balanced
from detect.ops.voc_map import voc_evaluate

# detect.ops.roi defines Keras layers, and importing Keras costs about a second;
# its names load on first use, so code that needs no Keras (mAP evaluation,
# tools/eval.py) never imports it.
_ROI_NAMES = ("RoIAlign", "RoIPool", "roi_align", "roi_pool")


def __getattr__(name):
    if name in _ROI_NAMES:
        from detect.ops import roi

        return getattr(roi, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_ROI_NAMES])


__all__ = [
    "BOX_FORMATS",
    "DEFAULT_SCALE_CLAMP",
    "IGNORE",
    "IOU_KINDS",
    "NEGATIVE",
    "NO_MATCH",
    "NO_SAMPLE",
    "PAD_CLASS",
    "PAD_INDEX",
    "POSITIVE",
    "RoIAlign",
    "RoIPool",
    "aligned_iou",
    "anchor_grid",
    "batched_nms",
    "box_area",
    "clip_boxes",
    "coco_evaluate",
    "coco_per_class_ap",
    "coco_summarize",
    "convert_boxes",
    "decode_boxes",
    "encode_boxes",
    "generate_anchors",
    "iou",
    "match",
    "nms",
    "roi_align",
    "roi_pool",
    "sample_balanced",
    "smooth_l1",
    "voc_evaluate",
    "without_xla",
]
