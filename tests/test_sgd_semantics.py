"""The original Faster R-CNN's SGD (Caffe's) through the engine: coupled L2, classical momentum, 2x bias rate.

A linear model trained by ``Trainer`` for a few steps against a numpy
transcription of Caffe's ``SGDSolver`` update (``sgd_solver.cpp``:
``Regularize`` adds ``weight_decay * decay_mult * w`` to the gradient, then
``v = momentum * v + lr * lr_mult * g``, ``w -= v``), with py-faster-rcnn's
multipliers: weights ``lr_mult 1, decay_mult 1``, biases ``lr_mult 2,
decay_mult 0``.
"""

import numpy as np
import pytest
import keras
import tensorflow as tf

from detect.models.base import TaskBase
from detect.train.config import TrainConfig
from detect.train.engine import Trainer

STEPS, BATCH, LR, MOMENTUM, L2 = 3, 4, 0.1, 0.9, 0.01


def batches(epoch):
    rng = np.random.default_rng(10 + epoch)
    x = rng.normal(size=(STEPS * BATCH, 3)).astype(np.float32)
    t = rng.normal(size=(STEPS * BATCH, 2)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices({"image": x, "target": t}).batch(BATCH)


class LinearTask(TaskBase):
    def __init__(self, kernel, bias):
        inputs = keras.Input((3,))
        self.model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(inputs))
        self.model.set_weights([kernel, bias])

    def forward(self, batch, training=False, mode=None):
        return self.model(batch["image"], training=training)

    def losses(self, outputs, batch):
        return {"loss": tf.reduce_mean(tf.square(outputs - batch["target"]))}


def caffe_sgd(kernel, bias, epochs, l2, bias_lr_mult):
    """Caffe's SGDSolver, step by step, on the same batches."""
    w, b = kernel.astype(np.float64), bias.astype(np.float64)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    for epoch in range(epochs):
        for batch in batches(epoch).as_numpy_iterator():
            x, t = batch["image"].astype(np.float64), batch["target"].astype(np.float64)
            residual = x @ w + b - t
            gw = 2.0 * x.T @ residual / residual.size + l2 * w  # Regularize: decay_mult 1
            gb = 2.0 * residual.sum(axis=0) / residual.size  # decay_mult 0
            vw = MOMENTUM * vw + LR * gw
            vb = MOMENTUM * vb + LR * bias_lr_mult * gb
            w, b = w - vw, b - vb
    return w, b


@pytest.mark.parametrize("l2, bias_lr_factor", [(L2, 2.0), (0.0, 1.0)])
def test_engine_sgd_matches_caffe(tmp_path, l2, bias_lr_factor):
    rng = np.random.default_rng(0)
    kernel, bias = rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)
    cfg = TrainConfig(epochs=2, batch_size=BATCH, optimizer="sgd", learning_rate=LR, momentum=MOMENTUM,
                      nesterov=False, weight_decay=0.0, l2=l2, bias_lr_factor=bias_lr_factor, clip_norm=0.0,
                      warmup_epochs=0, schedule="step", log_every=1)
    task = LinearTask(kernel, bias)
    Trainer(task, cfg, tmp_path, batches, STEPS, progress=False).fit()
    w, b = caffe_sgd(kernel, bias, 2, l2, bias_lr_factor)
    np.testing.assert_allclose(task.model.get_weights()[0], w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(task.model.get_weights()[1], b, rtol=1e-5, atol=1e-6)


def test_keras_weight_decay_and_nesterov_are_not_caffe(tmp_path):
    """What the keys change: the defaults (Nesterov, decoupled decay) end elsewhere than Caffe."""
    rng = np.random.default_rng(0)
    kernel, bias = rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)
    cfg = TrainConfig(epochs=2, batch_size=BATCH, optimizer="sgd", learning_rate=LR, momentum=MOMENTUM,
                      weight_decay=L2, clip_norm=0.0, warmup_epochs=0, schedule="step", log_every=1)
    task = LinearTask(kernel, bias)
    Trainer(task, cfg, tmp_path, batches, STEPS, progress=False).fit()
    w, _ = caffe_sgd(kernel, bias, 2, L2, 1.0)
    assert not np.allclose(task.model.get_weights()[0], w, rtol=1e-3)
