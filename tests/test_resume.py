"""A kill at any point of an epoch's writes, then --resume, leaves a consistent run.

Each case trains a tiny task, raises a ``BaseException`` (standing in for
SIGKILL) before or after the k-th file write that follows an epoch's
validation, resumes with a fresh ``Trainer`` on the same folder, and checks
the run against facts kept outside the engine: the evaluator's scores by
epoch and the weights it saw.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from detect.models.base import TaskBase
from detect.train.config import TrainConfig
from detect.train.engine import Trainer

EPOCHS = 4
# mAP50 by epoch. Epoch 1 stays the best; by epoch 3 it is outside the
# two-checkpoint window, so only its pin keeps its checkpoint.
MAP50 = [0.3, 0.1, 0.2, 0.05]
# The score of the epoch being killed, in the killed run: a new best, so
# its pointer and exports are written, though a re-run may not confirm it.
KILLED_MAP50 = 0.9
CFG = TrainConfig(epochs=EPOCHS, batch_size=4, learning_rate=0.05, warmup_epochs=0)


class Killed(BaseException):
    """The simulated kill (not an ``Exception``, so nothing may swallow it)."""


class TinyTask(TaskBase):
    """One dense layer regressing a target: traces and saves in milliseconds."""

    def __init__(self):
        inputs = keras.Input((4,))
        self.model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))
        rng = np.random.default_rng(0)  # the same start in every process
        self.model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in self.model.weights])

    def forward(self, batch, training=False, mode=None):
        return self.model(batch["image"], training=training)

    def losses(self, outputs, batch):
        return {"loss": tf.reduce_mean(tf.square(outputs - batch["target"]))}


def tiny_data(epoch):
    rng = np.random.default_rng(epoch)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = rng.normal(size=(8, 2)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices({"image": x, "target": y}).batch(4)


def weights_of(model):
    return [w.numpy().copy() for w in model.weights]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def load_weights(path):
    model = TinyTask().model
    model.load_weights(str(path))
    return weights_of(model)


class Killer:
    """Counts file writes while armed and raises ``Killed`` at one of them.

    Kill point ``2 * i`` is just before write ``i``, ``2 * i + 1`` just after.
    """

    def __init__(self, point):
        self.point = point
        self.armed = False
        self.count = 0
        self.fired = False

    def wrap(self, fn):
        def wrapper(*args, **kwargs):
            if not self.armed:
                return fn(*args, **kwargs)
            index = self.count
            self.count += 1
            if 2 * index == self.point:
                self.fired = True
                raise Killed(f"before write {index}")
            result = fn(*args, **kwargs)
            if 2 * index + 1 == self.point:
                self.fired = True
                raise Killed(f"after write {index}")
            return result

        return wrapper


class Facts:
    """What the evaluator saw, by epoch: its latest score and the weights then."""

    def __init__(self):
        self.score = {}
        self.weights = {}


def train(run_dir, facts, resume=False, killer=None, arm_at=None):
    """Fits to EPOCHS; ``arm_at`` is the epoch scored KILLED_MAP50, whose writes ``killer`` counts."""
    holder = {}

    def evaluate(task):
        epoch = int(holder["trainer"].epoch.numpy())
        score = KILLED_MAP50 if epoch == arm_at else MAP50[epoch - 1]
        facts.score[epoch] = score
        facts.weights[epoch] = weights_of(task.model)
        if killer is not None and epoch == arm_at:
            killer.armed = True  # the epoch's writes follow its validation
        return {"mAP50": score, "AP": score / 2}

    def data(epoch):
        if killer is not None:
            killer.armed = False  # the next epoch's training has begun
        return tiny_data(epoch)

    trainer = Trainer(TinyTask(), CFG, run_dir, data, 2, evaluate=evaluate, progress=False)
    holder["trainer"] = trainer
    history = trainer.fit(resume=resume)
    return trainer, history


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The final weights of an uninterrupted run."""
    trainer, _ = train(tmp_path_factory.mktemp("reference"), Facts())
    return weights_of(trainer.task.model)


def check_run(run_dir, trainer, history, facts, reference):
    """Each epoch recorded once, with its latest score; best and exports agree with them."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(history))
    assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, EPOCHS + 1))
    scores = [facts.score[e] for e in range(1, EPOCHS + 1)]
    assert [e["mAP50"] for e in metrics["epochs"]] == scores
    best_epoch = int(np.argmax(scores)) + 1
    assert metrics["best"] == {"epoch": best_epoch, "mAP50": scores[best_epoch - 1],
                               "AP": scores[best_epoch - 1] / 2}
    root = run_dir / "checkpoints"
    best = json.loads((root / "best.json").read_text())
    assert best["epoch"] == best_epoch and (root / best["path"]).is_dir()
    assert json.loads((root / "last.json").read_text())["epoch"] == EPOCHS
    final = weights_of(trainer.task.model)
    assert int(trainer.optimizer.iterations.numpy()) == 2 * EPOCHS
    assert_same(final, facts.weights[EPOCHS])
    assert_same(load_weights(run_dir / "best.weights.h5"), facts.weights[best_epoch])
    assert_same(load_weights(run_dir / "last.weights.h5"), final)
    for a, b in zip(final, reference):  # the resumed run is the uninterrupted one
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # A fresh process restoring "last" gets the final model.
    fresh = TinyTask().model
    tf.train.Checkpoint(model=fresh).read(str(root / f"epoch_{EPOCHS:04d}" / "ckpt")).expect_partial()
    assert_same(weights_of(fresh), final)


def kill_and_resume(run_dir, point, arm_at, reference, patch):
    """Kills at ``point`` of epoch ``arm_at``'s writes, resumes, checks; False if nothing was killed."""
    facts = Facts()
    killer = Killer(point)
    with patch.context() as p:
        p.setattr(os, "replace", killer.wrap(os.replace))
        p.setattr(tf.train.Checkpoint, "write", killer.wrap(tf.train.Checkpoint.write))
        p.setattr(keras.Model, "save_weights", killer.wrap(keras.Model.save_weights))
        try:
            train(run_dir, facts, killer=killer, arm_at=arm_at)
        except Killed:
            pass
    if not killer.fired:
        return False
    trainer, history = train(run_dir, facts, resume=True)
    try:
        check_run(run_dir, trainer, history, facts, reference)
    except AssertionError as error:
        raise AssertionError(f"kill point {point} of epoch {arm_at}: {error}") from error
    return True


@pytest.mark.parametrize("arm_at", [1, EPOCHS])
def test_kill_at_every_write_then_resume(tmp_path, monkeypatch, reference, arm_at):
    """Kills before each write of one epoch, and after its last one, then resumes.

    Between two writes only folder deletions happen, so "after write i"
    leaves the files as "before write i + 1" does. Epoch 1: no checkpoint
    yet, a first best. The last epoch: scored a new best that its re-run
    does not confirm, while the old best is pinned outside the window, so
    neither pointers nor exports may outrun the committed history.
    """
    writes = 0
    while kill_and_resume(tmp_path / f"before_{writes}", 2 * writes, arm_at, reference, monkeypatch):
        writes += 1
    assert writes >= 8  # checkpoint, history, folder, pointers, two exports, metrics
    assert kill_and_resume(tmp_path / "after_last", 2 * writes - 1, arm_at, reference, monkeypatch)


def test_resume_of_a_run_without_embedded_histories(tmp_path, monkeypatch, reference):
    """Older runs: metrics.json, cut at the restored epoch, stands in for the history."""
    facts = Facts()
    killer = Killer(0)  # before epoch 3's first write: epochs 1 and 2 committed
    with monkeypatch.context() as p:
        p.setattr(tf.train.Checkpoint, "write", killer.wrap(tf.train.Checkpoint.write))
        with pytest.raises(Killed):
            train(tmp_path, facts, killer=killer, arm_at=3)
    for history in (tmp_path / "checkpoints").glob("epoch_*/history.json"):
        history.unlink()
    # A record past the checkpoint, and a best naming it, must not survive.
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    metrics["epochs"].append({**metrics["epochs"][-1], "epoch": 3, "mAP50": 0.99})
    metrics["best"] = {"epoch": 3, "mAP50": 0.99, "AP": 0.5}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    trainer, history = train(tmp_path, facts, resume=True)
    check_run(tmp_path, trainer, history, facts, reference)
