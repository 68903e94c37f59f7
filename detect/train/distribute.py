"""The ``tf.distribute`` strategy of ``train.distribute``, and which process writes the run.

Several machines. Under ``multi_worker`` every worker runs the same writes
(checkpoint saving involves collective operations), but only the chief
writes into the run directory; the others write into a temporary folder that
is removed at the end (the TensorFlow convention).
"""

import tensorflow as tf


def make_strategy(name):
    """tf.distribute strategy for ``train.distribute``."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """Whether this process writes the run's files (TensorFlow's chief convention).

    One machine: always. ``MultiWorkerMirroredStrategy``: the ``chief`` task,
    else worker 0 when the cluster has no chief.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if resolver is None or task_type is None or task_type == "chief":
        return True
    cluster = resolver.cluster_spec().as_dict()
    return task_type == "worker" and int(resolver.task_id) == 0 and "chief" not in cluster
