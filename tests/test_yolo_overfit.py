"""Learning works: a small YOLO overfits a handful of shapes images.

The proof CI can afford: 8 synthetic images (128 px, 32 objects), 200 Adam
steps from scratch, then the real evaluation path (letterbox pipeline,
decoding, NMS, mapping back to the image, VOC mAP) must reach mAP@0.5 >= 0.9
on those same images.
"""

import tensorflow as tf

from detect.data.pipeline import build_dataset
from detect.data.shapes import SHAPES_CLASSES, make_shapes
from detect.data.transforms import unmap_boxes
from detect.data.voc import read_voc
from detect.train.evaluation import evaluate_predictions, predict_dataset
from detect.yolo.loss import YoloLossConfig
from detect.yolo.config import YoloConfig
from detect.yolo.model import YoloTask
from overfit import SMALL_ANCHORS, overfit



def test_tiny_yolo_overfits_a_few_shapes_images(tmp_path):
    root = make_shapes(tmp_path / "shapes", "voc", num_images=10, size=128, seed=3, val_fraction=0.2)
    records = read_voc(root, "train", class_names=list(SHAPES_CLASSES))
    assert len(records) == 8
    dataset = build_dataset(records, training=False, batch_size=len(records), image_size=128, max_boxes=8)
    batch = next(iter(dataset))

    tf.keras.utils.set_random_seed(0)
    detector = YoloTask(3, YoloConfig(version="v3", backbone="tiny", head_width=32, anchors=SMALL_ANCHORS,
                                          loss=YoloLossConfig(lambda_coord=1.0, lambda_noobj=1.0)))
    first, last = overfit(detector, batch)
    assert last < 0.1 * first

    summary, _ = evaluate_predictions(predict_dataset(detector, dataset, unmap_boxes), records,
                                      list(SHAPES_CLASSES))
    assert summary["mAP50"] >= 0.9, summary
