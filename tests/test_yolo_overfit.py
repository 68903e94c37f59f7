"""Learning works: a small YOLO overfits a handful of shapes images.

The proof CI can afford: 8 synthetic images (128 px, 32 objects), 200 Adam
steps from scratch, then the real evaluation path (letterbox pipeline,
decoding, NMS, mapping back to the image, VOC mAP) must reach mAP@0.5 >= 0.9
on those same images.
"""

import keras
import tensorflow as tf

from detect.data.pipeline import build_dataset
from detect.data.shapes import SHAPES_CLASSES, make_shapes
from detect.data.transforms import unmap_boxes
from detect.data.voc import read_voc
from detect.train.evaluation import evaluate_predictions, predict_dataset
from detect.yolo.loss import YoloLossConfig
from detect.yolo.model import YoloConfig, YoloDetector

ANCHORS = ((12, 12), (16, 16), (20, 20), (26, 26), (32, 32), (40, 40), (48, 48), (56, 56), (64, 64))


def test_tiny_yolo_overfits_a_few_shapes_images(tmp_path):
    root = make_shapes(tmp_path / "shapes", "voc", num_images=10, size=128, seed=3, val_fraction=0.2)
    records = read_voc(root, "train", class_names=list(SHAPES_CLASSES))
    assert len(records) == 8
    dataset = build_dataset(records, training=False, batch_size=len(records), image_size=128, max_boxes=8)
    batch = next(iter(dataset))

    tf.keras.utils.set_random_seed(0)
    detector = YoloDetector(3, YoloConfig(version="v3", backbone="tiny", head_width=32, anchors=ANCHORS,
                                          loss=YoloLossConfig(lambda_coord=1.0, lambda_noobj=1.0)))
    # 200 steps are too few for the default moving averages (0.99) to settle;
    # evaluation uses them.
    for layer in detector.model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    optimizer = keras.optimizers.Adam(3e-3)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            losses = detector.losses(detector.model(batch["image"], training=True), batch)
        variables = detector.model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(losses["loss"], variables), variables))
        return losses["loss"]

    first = float(step(batch))
    for _ in range(199):
        last = float(step(batch))
    assert last < 0.1 * first

    summary, _ = evaluate_predictions(predict_dataset(detector, dataset, unmap_boxes), records,
                                      list(SHAPES_CLASSES))
    assert summary["mAP50"] >= 0.9, summary
