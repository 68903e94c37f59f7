"""Learning-rate schedule: linear burn-in, then cosine or step decay."""

import math

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="detect")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate as a pure function of the step (so resuming restores it).

    Args:
      peak: learning rate at the end of warm-up.
      total_steps: steps of the whole run.
      warmup_steps: linear rise from ``start_factor * peak`` to ``peak``.
      start_factor: fraction of the peak at step 0.
      kind: "cosine" (to ``final_factor * peak`` at ``total_steps``) or
        "step" (times ``step_factor`` at each of ``boundaries`` steps).
    """

    def __init__(self, peak, total_steps, warmup_steps=0, start_factor=0.01, kind="cosine", final_factor=0.05,
                 boundaries=(), step_factor=0.1):
        super().__init__()
        self.peak = float(peak)
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = int(warmup_steps)
        self.start_factor = float(start_factor)
        self.kind = kind
        self.final_factor = float(final_factor)
        self.boundaries = tuple(int(b) for b in boundaries)
        self.step_factor = float(step_factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = float(max(self.warmup_steps, 1))
        warm_lr = self.peak * (self.start_factor + (1.0 - self.start_factor) * tf.minimum(step / warm, 1.0))
        if self.kind == "cosine":
            span = float(max(self.total_steps - self.warmup_steps, 1))
            progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
            cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
            decayed = self.peak * (self.final_factor + (1.0 - self.final_factor) * cosine)
        else:
            passed = tf.add_n([tf.cast(step >= b, tf.float32) for b in self.boundaries]) if self.boundaries \
                else tf.constant(0.0)
            decayed = self.peak * tf.pow(self.step_factor, passed)
        return tf.where(step < self.warmup_steps, warm_lr, decayed)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "start_factor": self.start_factor, "kind": self.kind, "final_factor": self.final_factor,
                "boundaries": list(self.boundaries), "step_factor": self.step_factor}
