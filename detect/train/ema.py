"""The exponential moving average of a model's weights (``train.ema``).

With ``train.ema`` on, the engine (``detect.train.engine``) keeps an
exponential moving average of the model's weights (YOLOv5/v8's ``ModelEMA``,
``ModelEMA`` here): after every step ``ema = d * ema + (1 - d) * w`` with
``d = train.ema_decay * (1 - exp(-updates / train.ema_tau))``, a warm-up
ramp that lets the average follow the young weights closely at first.
Validation runs on the averaged weights, and ``last.weights.h5`` and
``best.weights.h5`` hold them (what users load); the training itself goes
on from the raw weights, which the checkpoints keep together with the
averages (so ``--resume`` continues both exactly). Keras' own
``use_ema`` is not used: it has no warm-up ramp (on a small run of ~1,100
steps a fixed 0.9999 keeps ~90% of the random initial weights), it averages
only the trained variables, and it lives in the optimizer, which each stage
replaces. Every floating-point weight is averaged, batch-norm moving
statistics included, as YOLOv5 does with its buffers: statistics measured
under the raw weights of the last steps alone would not match the averaged
weights' activations, while their average over the same window tracks them.
A stage's frozen weights stay equal to the bit. The average restarts at
each stage (from the weights its ``prepare`` leaves; the warm-up ramp
restarts too): a stage may train other parts, or copy weights, so an
average across stages would mix different models. A stage's validation and
exports use that stage's average; the next stage starts from the raw
weights.
"""

import contextlib

import tensorflow as tf


class ModelEMA:
    """Exponential moving average of a model's floating-point weights (module docstring).

    ``update()`` after each step: ``updates += 1``, then every average
    becomes ``w + d * (average - w)`` (= ``d * average + (1 - d) * w``,
    and exact for a weight that did not move) with
    ``d = decay * (1 - exp(-updates / tau))``. Create it, and call
    ``update`` and ``swapped_in``, in the strategy's scope or cross-replica
    context: the averages are mirrored like the weights.

    Args:
      variables: the model's weights (``model.weights``); integer ones
        (counters, seeds) are left out.
      decay: the decay the ramp tends to, in [0, 1).
      tau: the ramp's time constant in steps (YOLOv5: 2000).
    """

    def __init__(self, variables, decay=0.9999, tau=2000.0):
        self.variables = [v for v in variables if tf.as_dtype(v.dtype).is_floating]
        self.decay, self.tau = float(decay), float(tau)
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="ema_updates")
        self.averages = [tf.Variable(tf.convert_to_tensor(v), trainable=False, name=f"ema_{i}")
                         for i, v in enumerate(self.variables)]

    def checkpoint(self):
        """The trackable state (averages and update count) for a ``tf.train.Checkpoint``."""
        return tf.train.Checkpoint(averages=self.averages, updates=self.updates)

    def decay_at(self, updates):
        """``d`` for the ``updates``-th update (a float64 tensor)."""
        return self.decay * (1.0 - tf.exp(-tf.cast(updates, tf.float64) / self.tau))

    def update(self):
        updates = self.updates.assign_add(1)
        d = self.decay_at(updates)
        for variable, average in zip(self.variables, self.averages):
            value = tf.convert_to_tensor(variable)
            average.assign(value + tf.cast(d, average.dtype) * (average - value))

    def reset(self):
        """Starts afresh: every average becomes its weight, and the ramp restarts."""
        self.updates.assign(0)
        for variable, average in zip(self.variables, self.averages):
            average.assign(tf.convert_to_tensor(variable))

    @contextlib.contextmanager
    def swapped_in(self):
        """Context manager: the model holds the averages inside it, its raw weights again after it.

        The raw weights wait on the host (they are equal on every replica).
        """
        backups = [variable.numpy() for variable in self.variables]
        try:
            for variable, average in zip(self.variables, self.averages):
                variable.assign(tf.convert_to_tensor(average))
            yield
        finally:
            for variable, backup in zip(self.variables, backups):
                variable.assign(backup)


def checkpoint_has_ema(prefix):
    """Whether the checkpoint at ``prefix`` holds EMA variables (runs trained without them do not)."""
    return prefix is not None and any(name.startswith("ema/") for name, _ in tf.train.list_variables(str(prefix)))
