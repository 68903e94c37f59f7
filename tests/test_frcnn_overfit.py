"""Learning works: a small Faster R-CNN overfits a handful of shapes images.

CI's proof for the two-stage family, as ``test_yolo_overfit`` is YOLO's: 8
synthetic images (128 px; stride 8 and 16-64 px anchors, as
faster_rcnn_shapes.yaml at half its size), joint training from scratch with Adam on that one
batch (RPN and detector losses together, proposals and RoI sampling as in
training), then the real evaluation path (shortest-side pipeline, proposals,
RoI pooling, per-class NMS, mapping back to the image, VOC mAP) must reach
mAP@0.5 >= MIN_MAP50 on those same images.
"""

import tensorflow as tf
import keras

from detect.data.pipeline import build_dataset
from detect.data.shapes import SHAPES_CLASSES, make_shapes
from detect.data.transforms import unmap_boxes
from detect.data.voc import read_voc
from detect.faster_rcnn import stages
from detect.faster_rcnn.config import FasterRcnnConfig
from detect.faster_rcnn.model import FasterRcnnTask
from detect.train.evaluation import evaluate_predictions, predict_dataset

# Measured at seed 0: mAP@0.5 0.95 after 100 steps, 0.998 after 200, 0.96 after 400.
STEPS = 200
MIN_MAP50 = 0.9


def test_tiny_faster_rcnn_overfits_a_few_shapes_images(tmp_path):
    root = make_shapes(tmp_path / "shapes", "voc", num_images=10, size=128, seed=3, val_fraction=0.2)
    records = read_voc(root, "train", class_names=list(SHAPES_CLASSES))
    dataset = build_dataset(records, training=False, batch_size=len(records), resize="shortest_side",
                            min_side=128, max_side=128, size_divisor=16, max_boxes=8)
    batch = next(iter(dataset))

    tf.keras.utils.set_random_seed(0)
    task = FasterRcnnTask(3, FasterRcnnConfig(
        backbone="tiny", training="joint", feature_level="C3", anchor_scales=(2, 4, 8), rpn_min_size=4,
        rpn_width=64, fc_width=128, fc_dropout=0.0,
        rpn_batch=64, roi_batch=32, train_pre_nms=600, train_post_nms=128, test_pre_nms=300, test_post_nms=64))
    stages.prepare_joint(task)
    # As overfit.py for YOLO: so few steps are too few for the default moving averages (0.99) to settle.
    for layer in task.model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    optimizer = keras.optimizers.Adam(1e-3)
    variables = task.model.trainable_variables

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = task.losses(task.forward(batch, training=True), batch)["loss"]
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    first = float(step(batch))
    for _ in range(STEPS - 2):
        step(batch)
    last = float(step(batch))
    assert last < 0.25 * first, (first, last)

    summary, _ = evaluate_predictions(predict_dataset(task, dataset, unmap_boxes), records, list(SHAPES_CLASSES))
    assert summary["mAP50"] >= MIN_MAP50, summary
