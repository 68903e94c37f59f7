"""The optimizer of a training stage and the mixed-precision policy (``train`` config)."""

import keras

from detect.config import keras_policy
from detect.train.schedule import WarmupSchedule


def build_optimizer(train_cfg, steps_per_epoch, total_epochs):
    """SGD-momentum or AdamW with decoupled weight decay and the warm-up schedule."""
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
        optimizer = keras.optimizers.SGD(schedule, momentum=train_cfg.momentum, nesterov=True,
                                         weight_decay=train_cfg.weight_decay, global_clipnorm=clip)
    # Decay only convolution kernels, as detection recipes do.
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "_bn"])
    if train_cfg.mixed_precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def set_precision(mode):
    """Global Keras dtype policy for ``train.mixed_precision`` (before building models)."""
    keras.mixed_precision.set_global_policy(keras_policy(mode))
