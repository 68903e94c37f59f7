"""The optimizer of a training stage and the mixed-precision policy (``train`` config)."""

import keras
import tensorflow as tf

from detect.config import keras_policy
from detect.train.schedule import WarmupSchedule


# Variables that no weight decay or L2 penalty reaches, by name (convolution and dense kernels are
# decayed, as detection recipes and py-faster-rcnn's prototxts do: biases have decay_mult 0 there).
NOT_DECAYED = ("bias", "gamma", "beta", "_bn")


def is_decayed(variable):
    """Whether ``train.weight_decay`` / ``train.l2`` applies to ``variable``."""
    return not any(name in variable.name for name in NOT_DECAYED)


def is_bias(variable):
    """Whether ``train.bias_lr_factor`` applies to ``variable`` (a layer's additive bias)."""
    return variable.name == "bias"


def l2_penalty(variables, l2):
    """Caffe's coupled weight decay as a loss term: ``0.5 * l2 * sum(w^2)`` over the decayed variables.

    Its gradient, ``l2 * w``, joins the loss gradient before momentum (Caffe's
    ``weight_decay``), unlike Keras' ``weight_decay``, which shrinks the weights
    apart from the gradient and is about ten times weaker at momentum 0.9.
    """
    decayed = [v for v in variables if is_decayed(v)]
    if not l2 or not decayed:
        return 0.0
    return 0.5 * l2 * tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in decayed])


def scale_bias_gradients(grads, variables, factor):
    """Caffe's ``lr_mult: 2`` on biases: their gradients times ``factor`` (for SGD, the same as their rate)."""
    if factor == 1:
        return grads
    return [g * factor if g is not None and is_bias(v) else g for g, v in zip(grads, variables)]


def build_optimizer(train_cfg, steps_per_epoch, total_epochs):
    """SGD-momentum or AdamW with decoupled weight decay and the warm-up schedule.

    ``train.l2`` and ``train.bias_lr_factor`` act on the loss and gradients
    in the training step (``l2_penalty``, ``scale_bias_gradients``).
    """
    schedule = WarmupSchedule(
        peak=train_cfg.learning_rate, total_steps=steps_per_epoch * total_epochs,
        warmup_steps=int(round(train_cfg.warmup_epochs * steps_per_epoch)),
        start_factor=train_cfg.warmup_start_factor, kind=train_cfg.schedule, final_factor=train_cfg.final_lr_factor,
        boundaries=[e * steps_per_epoch for e in train_cfg.step_epochs], step_factor=train_cfg.step_factor)
    clip = train_cfg.clip_norm or None
    if train_cfg.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=train_cfg.weight_decay,
                                           beta_1=train_cfg.momentum, global_clipnorm=clip)
    else:
        optimizer = keras.optimizers.SGD(schedule, momentum=train_cfg.momentum, nesterov=train_cfg.nesterov,
                                         weight_decay=train_cfg.weight_decay, global_clipnorm=clip)
    optimizer.exclude_from_weight_decay(var_names=list(NOT_DECAYED))
    if train_cfg.mixed_precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def set_precision(mode):
    """Global Keras dtype policy for ``train.mixed_precision`` (before building models)."""
    keras.mixed_precision.set_global_policy(keras_policy(mode))
