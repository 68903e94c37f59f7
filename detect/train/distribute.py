"""The ``tf.distribute`` strategy of ``train.distribute``, and what several replicas must share.

Several machines (``multi_worker``, TensorFlow's conventions, as Keras'
``BackupAndRestore``):

- **Who writes.** Every worker runs the same training, saves and restores
  (the collectives of a step need all of them), but only the chief writes
  into the run directory. The others write into a scratch folder of their
  own (``scratch_dir``), removed at the end; a worker killed before that
  leaves it behind, and the next training on that machine removes it
  (the folder names its process, which is then gone).
- **Resume.** Every worker reads the run directory (``--out`` must be a
  folder all of them see: a shared or cloud filesystem) and restores the
  chief's last committed checkpoint: the same step, stage, optimizer state,
  EMA and epoch seeds everywhere. ``agree_on_start`` checks that they
  found the same epoch before the first step, since workers that disagree
  would otherwise wait on each other's collectives until one aborts.
- **BatchNorm.** With several replicas, every BatchNormalization layer
  normalises with the statistics of the global batch (``synchronize_batchnorm``;
  ``train.sync_batchnorm``), so the moving averages, and what is saved, are
  the same on every replica. Without it each replica's averages follow its
  own share of the data and only the chief's are saved.
- **Data.** Each worker reads its own share of the training images
  (``detect.data.pipeline.distribute_dataset``); see ``detect.train.run``.
"""

import tempfile
from pathlib import Path

import tensorflow as tf

from detect.backbones import batchnorm_layers
from detect.errors import InputError
from detect.outputs import remove_stale_temporaries, temporary_sibling

# ``<tmp>/.detect-worker.scratch-<pid>``: a non-chief worker's writes (``scratch_dir``).
_SCRATCH_BASE = "detect-worker"
_SCRATCH_KIND = "scratch"


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


def num_workers(strategy):
    """How many processes train together (1 unless ``multi_worker`` with a cluster in ``TF_CONFIG``)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or getattr(resolver, "task_type", None) is None:
        return 1
    cluster = resolver.cluster_spec()
    return sum(cluster.num_tasks(job) for job in ("chief", "worker") if job in cluster.jobs)


def scratch_dir():
    """A new scratch folder for this process's writes, after removing those of dead workers.

    Returns:
      ``Path`` of ``<tmp>/.detect-worker.scratch-<pid>`` (created).
    """
    base = Path(tempfile.gettempdir()) / _SCRATCH_BASE
    remove_stale_temporaries(base, kinds=(_SCRATCH_KIND,))
    path = temporary_sibling(base, _SCRATCH_KIND)
    path.mkdir(parents=True, exist_ok=True)
    return path


def synchronize_batchnorm(model, strategy, enabled=True):
    """Makes ``model``'s BatchNormalization layers use the global batch's statistics; returns how many.

    Only with several replicas in sync (one replica: nothing to share, and
    the layers keep Keras' one-device formula). Keras reads ``synchronized``
    and the moments when the layer is called, so this must run before the
    training step is traced. The moments are Keras' synchronized ones in one
    all-reduce (``_packed_global_moments``).

    Args:
      model: a Keras model.
      strategy: the training's ``tf.distribute.Strategy``.
      enabled: ``train.sync_batchnorm``.
    """
    if not enabled or strategy.num_replicas_in_sync < 2:
        return 0
    layers = batchnorm_layers(model)
    for layer in layers:
        layer.synchronized = True
        layer._moments = _packed_global_moments(layer)
    return len(layers)


def _packed_global_moments(layer):
    """``layer._moments`` over the global batch with one all-reduce instead of Keras' three.

    Keras' synchronized moments (TensorFlow backend) all-reduce the sum, the
    sum of squares and the count one after the other; each all-reduce is a
    round trip between the workers, and a backbone has dozens of these
    layers per step. This sends the three in one tensor and keeps Keras'
    formula (``var = E[x^2] - E[x]^2``, clipped at 0, in float32).
    """
    keras_moments = layer._moments

    def moments(inputs, mask):
        context = tf.distribute.get_replica_context()
        if mask is not None or context is None:  # Keras' own path (masks are not used by our models)
            return keras_moments(inputs, mask)
        x = tf.cast(inputs, tf.float32)
        axes = list(layer._reduction_axes)
        count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), tf.float32)
        sums = [tf.reshape(tf.reduce_sum(x, axes), [-1]), tf.reshape(tf.reduce_sum(tf.square(x), axes), [-1])]
        local = tf.concat(sums + [tf.reshape(count, [1])], axis=0)
        total = context.all_reduce(tf.distribute.ReduceOp.SUM, local)
        channels = (tf.shape(total)[0] - 1) // 2
        mean = total[:channels] / total[-1]
        variance = tf.maximum(total[channels:2 * channels] / total[-1] - tf.square(mean), 0.0)
        return tf.cast(mean, inputs.dtype), tf.cast(variance, inputs.dtype)

    return moments


def agree_on_start(strategy, epoch, run_dir):
    """Checks that every worker starts at the same ``epoch`` (their views of the run directory agree).

    One collective; a no-op with one worker.

    Raises:
      InputError: naming the run directory and the epoch each worker found.
    """
    if num_workers(strategy) < 2:
        return

    @tf.function
    def gather():
        local = strategy.run(lambda: tf.constant([epoch], tf.int64))
        return strategy.gather(local, axis=0)

    found = [int(e) for e in gather().numpy()]
    if len(set(found)) > 1:
        raise InputError(run_dir, f"--resume: the workers found different checkpoints in the run directory "
                                  f"(epoch per replica: {found}); --out must be one folder that every "
                                  f"worker reads, e.g. on a shared filesystem")
