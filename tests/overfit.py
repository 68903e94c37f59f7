"""Overfitting a small YOLO on one batch: the trained model tests can afford.

Used by test_yolo_overfit (learning works), test_detector and test_tflite
(a model that really finds known objects).
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
