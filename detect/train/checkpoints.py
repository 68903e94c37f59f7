"""Atomic checkpoints and run files.

An epoch is saved as one unit. Its checkpoint (model, optimizer, counters)
and ``history.json`` (the metrics history as of that epoch: what
``metrics.json`` should then hold) are written into a new staging folder,
which is renamed into place (``epoch_NNNN``); then the pointer files switch
to it by ``os.replace``, which is atomic: ``best.json`` (on a new best),
then ``last.json``. Writing ``last.json`` is the one commit: it publishes
the weights and the history together. Everything else is derived from the
committed checkpoint and is rebuilt on resume (``CheckpointStore.reconcile``
and the engine): a folder or ``best.json`` written ahead of the commit, and
``metrics.json`` and the ``*.weights.h5`` exports written after it. So a
kill at any moment leaves either the previous epoch committed or the new
one, never a history without its weights or the reverse. (Writing ``best``
before ``last`` is not needed for that; it only means that once an epoch is
committed, ``best.json`` already agrees with it.)

Pruning never deletes a folder that ``last.json``, ``best.json`` or the
committed history's best epoch names, so the best checkpoint the history
promises is there to re-point ``best.json`` to and to export from.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from detect.outputs import atomic_path, default_mode, write_json_atomic  # noqa: F401 (write_json_atomic: re-exported)

HISTORY = "history.json"  # a checkpoint folder's metrics history as of its epoch


def read_json(path):
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def _folder(epoch):
    return f"epoch_{int(epoch):04d}"


class CheckpointStore:
    """Checkpoints of one run under ``<run>/checkpoints``.

    Args:
      run_dir: the run directory.
      checkpoint: a ``tf.train.Checkpoint`` of model, optimizer and counters.
      keep: how many recent checkpoints to keep (the best is always kept).
      create: create the folder now; False for a store only read (another
        worker's run directory, which may not exist yet).
    """

    def __init__(self, run_dir, checkpoint, keep=2, create=True):
        self.root = Path(run_dir) / "checkpoints"
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        self.checkpoint = checkpoint
        self.keep = keep

    def save(self, epoch, pointers=("last",), history=None):
        """Writes the checkpoint for ``epoch`` (with ``history``) and points ``pointers`` at it.

        ``last`` is written after the other pointers: it commits the epoch,
        and only derived files may follow it.
        """
        name = _folder(epoch)
        final = self.root / name
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}."))
        os.chmod(staging, default_mode(folder=True))  # mkdtemp's 0700 would make the checkpoint private
        self.checkpoint.write(str(staging / "ckpt"))
        if history is not None:
            write_json_atomic(staging / HISTORY, history)
        if final.exists():  # a killed run's uncommitted folder (or an earlier run's)
            shutil.rmtree(final)
        os.replace(staging, final)
        for pointer in sorted(pointers, key=lambda p: p == "last"):
            self.point(pointer, epoch)
        self._prune()
        return final

    def point(self, pointer, epoch):
        """Atomically points ``pointer`` (``last`` / ``best``) at ``epoch``'s checkpoint."""
        write_json_atomic(self.root / f"{pointer}.json", {"epoch": int(epoch), "path": _folder(epoch)})

    def unpoint(self, pointer):
        """Removes ``pointer`` (a no-op when there is none)."""
        (self.root / f"{pointer}.json").unlink(missing_ok=True)

    def epoch(self, pointer="last"):
        """The epoch ``pointer`` names, or None."""
        info = read_json(self.root / f"{pointer}.json")
        return int(info["epoch"]) if info else None

    def path(self, pointer="last"):
        """The checkpoint prefix a pointer names, or None."""
        info = read_json(self.root / f"{pointer}.json")
        if not info:
            return None
        prefix = self.root / info["path"] / "ckpt"
        return prefix if Path(f"{prefix}.index").exists() else None

    def has(self, epoch):
        """Whether ``epoch``'s checkpoint folder is there and complete."""
        return (self.root / _folder(epoch) / "ckpt.index").exists()

    def history(self, pointer="last"):
        """The history embedded in the pointed checkpoint, or None (none, or an older run)."""
        info = read_json(self.root / f"{pointer}.json")
        return read_json(self.root / info["path"] / HISTORY) if info else None

    def restore(self, pointer="last", checkpoint=None):
        """Restores the pointed checkpoint; returns its epoch or None.

        ``checkpoint``: restore into this object instead of the store's own
        (e.g. one without the optimizer, when a new stage starts afresh).
        """
        prefix = self.path(pointer)
        if prefix is None:
            return None
        (checkpoint or self.checkpoint).read(str(prefix)).expect_partial()
        return read_json(self.root / f"{pointer}.json")["epoch"]

    def reconcile(self, best_epoch):
        """After a kill: makes ``best.json`` agree with the committed history, then prunes.

        Args:
          best_epoch: the committed history's best epoch, or None (no best
            yet: ``best.json`` is removed).

        Returns:
          Whether ``best.json`` now names ``best_epoch``'s complete
          checkpoint (False when there is no best, or when an older run
          pruned it).
        """
        if best_epoch is None:
            self.unpoint("best")
        elif self.has(best_epoch):
            if self.epoch("best") != best_epoch:
                self.point("best", best_epoch)
        self._prune()
        return best_epoch is not None and self.epoch("best") == best_epoch and self.has(best_epoch)

    def _prune(self):
        pinned = {(read_json(self.root / f"{p}.json") or {}).get("path") for p in ("last", "best")}
        best = (self.history("last") or {}).get("best")
        if best:
            pinned.add(_folder(best["epoch"]))
        last = self.epoch("last") or 0
        epochs = sorted((int(p.name[len("epoch_"):]), p) for p in self.root.glob("epoch_*")
                        if p.is_dir() and p.name[len("epoch_"):].isdigit())
        old = {path for _, path in (epochs[:-self.keep] if self.keep else epochs)}
        for epoch, path in epochs:
            # Past "last": written but never committed (a killed run's).
            if path.name not in pinned and (epoch > last or path in old):
                shutil.rmtree(path, ignore_errors=True)
        for stale in self.root.glob(".epoch_*"):  # staging folders of a killed run
            shutil.rmtree(stale, ignore_errors=True)


def checkpoint_mismatch(model, prefix):
    """How ``model`` differs from the model saved in the checkpoint at ``prefix``, or None if it fits.

    Compares the model's variables, named by their path in the object
    graph below the checkpoint's ``model`` (the names TensorFlow matches on
    restore; a value may be stored under another key, e.g. the optimizer's,
    when the optimizer reaches the variable first), and their shapes: a
    freshly written checkpoint of ``model`` (in a temporary folder; nothing
    is restored, so the model is untouched) against the saved one.

    Returns:
      None, or one line naming the first variable missing, extra or of another shape.
    """
    saved = _model_variable_shapes(prefix)
    with tempfile.TemporaryDirectory(prefix="detect-fit-") as tmp:
        current = _model_variable_shapes(tf.train.Checkpoint(model=model).write(str(Path(tmp) / "ckpt")))
    for name in sorted(set(saved) | set(current)):
        if name not in current:
            return f"the checkpoint holds {name} {list(saved[name])}, which the model lacks"
        if name not in saved:
            return f"the model has {name} {list(current[name])}, which the checkpoint lacks"
        if saved[name] != current[name]:
            return f"{name} is {list(saved[name])} in the checkpoint, {list(current[name])} in the model"
    return None


def _model_variable_shapes(prefix):
    """{object-graph path below ``model``: shape} of every variable a checkpoint saved for its model."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(str(prefix))
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    shapes = reader.get_variable_to_shape_map()
    roots = [child.node_id for child in graph.nodes[0].children if child.local_name == "model"]
    found, seen = {}, set()
    queue = [(node_id, "") for node_id in roots]
    while queue:  # breadth first, children in saved order: the same model gives the same paths
        node_id, path = queue.pop(0)
        if node_id in seen:
            continue
        seen.add(node_id)
        node = graph.nodes[node_id]
        for attribute in node.attributes:
            if attribute.name == "VARIABLE_VALUE":
                found[path] = tuple(shapes[attribute.checkpoint_key])
        queue += [(child.node_id, f"{path}/{child.local_name}".lstrip("/")) for child in node.children]
    return found


def save_weights_atomic(model, path):
    """``model.save_weights`` through a temporary file and ``os.replace``."""
    with atomic_path(path) as tmp:
        model.save_weights(str(tmp))


def checkpoint_of(model, optimizer, **counters):
    """A ``tf.train.Checkpoint`` of model, optimizer and ``tf.Variable`` counters."""
    return tf.train.Checkpoint(model=model, optimizer=optimizer, **counters)
