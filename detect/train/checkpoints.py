"""Atomic checkpoints and run files.

A checkpoint is written into its own new folder; only when it is complete
does a small pointer file (``last.json`` / ``best.json``) switch to it, by
``os.replace``, which is atomic. A kill at any moment leaves the previous
pointer and its complete checkpoint in place.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf


def write_json_atomic(path, data):
    """Writes JSON to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, allow_nan=False, default=float)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path):
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


class CheckpointStore:
    """Checkpoints of one run under ``<run>/checkpoints``.

    Args:
      run_dir: the run directory.
      checkpoint: a ``tf.train.Checkpoint`` of model, optimizer and counters.
      keep: how many recent checkpoints to keep (the best is always kept).
    """

    def __init__(self, run_dir, checkpoint, keep=2):
        self.root = Path(run_dir) / "checkpoints"
        self.root.mkdir(parents=True, exist_ok=True)
        self.checkpoint = checkpoint
        self.keep = keep

    def save(self, epoch, pointers=("last",)):
        """Writes the checkpoint for ``epoch`` and points ``pointers`` at it."""
        name = f"epoch_{epoch:04d}"
        final = self.root / name
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}."))
        self.checkpoint.write(str(staging / "ckpt"))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        for pointer in pointers:
            write_json_atomic(self.root / f"{pointer}.json", {"epoch": epoch, "path": name})
        self._prune()
        return final

    def path(self, pointer="last"):
        """The checkpoint prefix a pointer names, or None."""
        info = read_json(self.root / f"{pointer}.json")
        if not info:
            return None
        prefix = self.root / info["path"] / "ckpt"
        return prefix if Path(f"{prefix}.index").exists() else None

    def restore(self, pointer="last"):
        """Restores the pointed checkpoint; returns its epoch or None."""
        prefix = self.path(pointer)
        if prefix is None:
            return None
        self.checkpoint.read(str(prefix)).expect_partial()
        return read_json(self.root / f"{pointer}.json")["epoch"]

    def _prune(self):
        pinned = {(read_json(self.root / f"{p}.json") or {}).get("path") for p in ("last", "best")}
        epochs = sorted(p for p in self.root.glob("epoch_*") if p.is_dir())
        for old in epochs[:-self.keep] if self.keep else epochs:
            if old.name not in pinned:
                shutil.rmtree(old, ignore_errors=True)
        for stale in self.root.glob(".epoch_*"):  # staging folders of a killed run
            shutil.rmtree(stale, ignore_errors=True)


def save_weights_atomic(model, path):
    """``model.save_weights`` through a temporary file and ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.weights.h5")
    model.save_weights(str(tmp))
    os.replace(tmp, path)


def checkpoint_of(model, optimizer, **counters):
    """A ``tf.train.Checkpoint`` of model, optimizer and ``tf.Variable`` counters."""
    return tf.train.Checkpoint(model=model, optimizer=optimizer, **counters)
