"""Learning works: a small YOLO overfits a handful of shapes images.

The proof CI can afford: 8 synthetic images (128 px, 32 objects), 200 Adam
steps from scratch (conftest's ``yolo_run``, the model test_detector and
test_detect_tool_outputs use too), then the real evaluation path (letterbox
pipeline, decoding, NMS, mapping back to the image, VOC mAP) must reach
mAP@0.5 >= 0.9 on those same images.
"""

from detect import Detector
from detect.data.pipeline import build_dataset
from detect.data.shapes import SHAPES_CLASSES
from detect.data.transforms import unmap_boxes
from detect.train.evaluation import evaluate_predictions, predict_dataset


def test_tiny_yolo_overfits_a_few_shapes_images(yolo_run):
    run, records, (first, last) = yolo_run
    assert len(records) == 8
    assert last < 0.1 * first

    task = Detector.load(run)._backend.task  # the trained weights, read back from the run
    dataset = build_dataset(records, training=False, batch_size=len(records), image_size=128, max_boxes=8)
    summary, _ = evaluate_predictions(predict_dataset(task, dataset, unmap_boxes), records, list(SHAPES_CLASSES))
    assert summary["mAP50"] >= 0.9, summary
