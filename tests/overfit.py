"""Overfitting a small YOLO on one batch: the trained model tests can afford.

``overfit_shapes_run`` trains conftest's session-wide ``yolo_run`` once for
test_yolo_overfit (learning works), test_detector and test_detect_tool_outputs
(a model that really finds known objects); test_tflite overfits its own
non-square crops with ``overfit``.
"""

import keras
import tensorflow as tf

# Anchors for shapes of 10 to 64 px (images of 128 px).
SMALL_ANCHORS = ((12, 12), (16, 16), (20, 20), (26, 26), (32, 32), (40, 40), (48, 48), (56, 56), (64, 64))


def overfit(task, batch, steps=200, learning_rate=3e-3):
    """Trains ``task`` (a YOLO task: ``model``, ``losses``) on one batch with Adam.

    Returns:
      (first loss, last loss) as floats.
    """
    # So few steps are too few for the default BatchNormalization moving
    # averages (0.97-0.99) to settle, and evaluation uses them.
    for layer in task.model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = task.losses(task.model(batch["image"], training=True), batch)["loss"]
        variables = task.model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    first = float(step(batch))
    for _ in range(steps - 2):
        step(batch)
    return first, float(step(batch))


SHAPES_RUN_SIZE = 128


def overfit_shapes_run(folder, steps=200):
    """A run directory of a tiny YOLO (v3 head, 128 px) that overfits 8 shapes images.

    Args:
      folder: an empty folder for the dataset and the run.

    Returns:
      (run directory with ``config.yaml`` and ``best.weights.h5``, the 8 training records,
      (first loss, last loss) of the training).
    """
    import yaml

    from detect import Detector
    from detect.data.pipeline import build_dataset
    from detect.data.shapes import SHAPES_CLASSES, make_shapes
    from detect.data.voc import read_voc

    size = SHAPES_RUN_SIZE
    root = make_shapes(folder / "shapes", "voc", num_images=10, size=size, seed=3, val_fraction=0.2)
    records = read_voc(root, "train", class_names=list(SHAPES_CLASSES))
    run = folder / "run"
    run.mkdir()
    model = {"type": "yolo", "version": "v3", "backbone": "tiny", "head_width": 32,
             "anchors": [list(a) for a in SMALL_ANCHORS], "loss": {"lambda_coord": 1.0, "lambda_noobj": 1.0}}
    config = {"name": "tiny", "data": {"format": "voc", "root": str(root), "image_size": size, "max_boxes": 8,
                                       "classes": list(SHAPES_CLASSES)}, "model": model, "train": {"batch_size": 8}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    tf.keras.utils.set_random_seed(0)
    task = Detector.from_config(run / "config.yaml")._backend.task
    losses = overfit(task, next(iter(build_dataset(records, training=False, batch_size=8, image_size=size,
                                                   max_boxes=8))), steps=steps)
    task.model.save_weights(str(run / "best.weights.h5"))
    return run, records, losses
