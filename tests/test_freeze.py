"""``train.freeze``: each mode trains exactly the variables it names, and ``head_then_all`` resumes.

A small task with a nested "backbone" model (Dense + BatchNormalization,
whose moving statistics a training step would move) and a two-layer head
is trained by the engine; the variables are compared with copies taken
before, to the bit. A kill inside either stage of ``head_then_all``,
then a resume with a fresh task and trainer, must end with the weights of
the uninterrupted run.
"""

import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from detect.errors import InputError
from detect.models.base import TaskBase
from detect.train.config import TrainConfig
from detect.train.engine import Trainer

STEPS = 2
LEARNING_RATE = 0.05


class Killed(BaseException):
    """A simulated kill (not an ``Exception``, so nothing may swallow it)."""


class PartsTask(TaskBase):
    """backbone (nested: Dense 6 + BN) -> neck (Dense 5) -> head (Dense 4 -> Dense 2)."""

    def __init__(self):
        inputs = keras.Input((4,))
        backbone_in = keras.Input((4,))
        features = keras.layers.BatchNormalization(name="bb_bn")(keras.layers.Dense(6, name="bb_dense")(backbone_in))
        self.backbone = keras.Model(backbone_in, features, name="backbone")
        x = keras.layers.Dense(5, activation="relu", name="neck")(self.backbone(inputs))
        x = keras.layers.Dense(4, activation="relu", name="head_hidden")(x)
        self.model = keras.Model(inputs, keras.layers.Dense(2, name="head_pred")(x))
        rng = np.random.default_rng(0)  # the same start in every instance
        self.model.set_weights([rng.normal(size=w.shape).astype(np.float32) + (2.0 if "variance" in w.path else 0)
                                for w in self.model.weights])
        self.seen = []  # (epoch, weights) at each validation

    def parts(self):
        return {"backbone": [self.backbone],
                "head": [self.model.get_layer("head_hidden"), self.model.get_layer("head_pred")]}

    def forward(self, batch, training=False, mode=None):
        return self.model(batch["image"], training=training)

    def losses(self, outputs, batch):
        return {"loss": tf.reduce_mean(tf.square(outputs - batch["target"]))}


def data(epoch):
    rng = np.random.default_rng(epoch)
    x = rng.normal(size=(8, 4)).astype(np.float32) * 3 + 1  # far from the BN statistics: a step moves them
    return tf.data.Dataset.from_tensor_slices({"image": x, "target": np.tanh(x[:, :2])}).batch(4)


def weights(task):
    return {w.path: w.numpy().copy() for w in task.model.weights}


def config(mode, epochs=2, freeze_epochs=0):
    return TrainConfig(epochs=epochs, batch_size=4, learning_rate=LEARNING_RATE, warmup_epochs=0, freeze=mode,
                       freeze_epochs=freeze_epochs, unfreeze_lr_factor=0.5)


def fit(run_dir, cfg, kill_at=None, resume=False):
    task = PartsTask()

    def evaluate(task):
        task.seen.append(weights(task))
        return {"mAP50": 0.5, "AP": 0.25}

    def train_data(epoch):
        if epoch == kill_at:
            raise Killed(f"killed in epoch {epoch + 1}")
        return data(epoch)

    trainer = Trainer(task, cfg, run_dir, train_data, STEPS, evaluate=evaluate, progress=False)
    return trainer, trainer.fit(resume=resume), task


BACKBONE = ("bb_dense", "bb_bn")
HEAD = ("head_hidden", "head_pred")


def changed_layers(before, after):
    """The layers (first path part) with a variable that differs, moving BN statistics included."""
    return {path.split("/")[0] for path in before if not np.array_equal(before[path], after[path])}


@pytest.mark.parametrize("mode, trained", [
    ("none", set(BACKBONE) | {"neck"} | set(HEAD)),
    ("backbone", {"neck"} | set(HEAD)),
    ("all_but_head", set(HEAD)),
])
def test_each_mode_trains_exactly_its_variables(tmp_path, mode, trained):
    before = weights(PartsTask())
    _, history, task = fit(tmp_path / "run", config(mode))
    assert changed_layers(before, weights(task)) == trained
    assert {e["stage"] for e in history["epochs"]} == {{"none": "train", "backbone": "frozen_backbone",
                                                          "all_but_head": "head"}[mode]}


def test_head_then_all_trains_the_head_then_everything_at_the_lower_rate(tmp_path):
    before = weights(PartsTask())
    trainer, history, task = fit(tmp_path / "run", config("head_then_all", epochs=3, freeze_epochs=1))
    assert [e["stage"] for e in history["epochs"]] == ["head", "all", "all"]
    after_head, after_all = task.seen[0], task.seen[-1]
    assert changed_layers(before, after_head) == set(HEAD)  # the backbone's BN statistics too are untouched
    assert changed_layers(after_head, after_all) == set(BACKBONE) | {"neck"} | set(HEAD)
    # The second stage has its own optimizer, at unfreeze_lr_factor x the rate (no warm-up, constant here).
    assert trainer.stage_index == 1
    assert float(trainer._learning_rate(0)) == pytest.approx(LEARNING_RATE * 0.5)


@pytest.mark.parametrize("kill_at", [1, 3], ids=["in-head-stage", "in-all-stage"])
def test_head_then_all_resumed_after_a_kill_ends_as_the_uninterrupted_run(tmp_path, kill_at):
    cfg = config("head_then_all", epochs=4, freeze_epochs=2)
    _, reference_history, reference = fit(tmp_path / "reference", cfg)
    with pytest.raises(Killed):
        fit(tmp_path / "run", cfg, kill_at=kill_at)
    _, history, resumed = fit(tmp_path / "run", cfg, resume=True)
    want, got = weights(reference), weights(resumed)
    assert want.keys() == got.keys()
    for path in want:
        np.testing.assert_array_equal(got[path], want[path], err_msg=path)
    assert [e["stage"] for e in history["epochs"]] == [e["stage"] for e in reference_history["epochs"]]


def test_freeze_refusals():
    with pytest.raises(ValueError, match="freeze_epochs must be in \\[1, epochs - 1\\]"):
        config("head_then_all", epochs=3, freeze_epochs=3)

    class StagedTask(PartsTask):
        def stages(self, train_cfg, validation_data=None):
            return []

    with pytest.raises(InputError, match="has its own stages"):
        Trainer(StagedTask(), config("backbone"), "/nonexistent", data, STEPS)

    class NoParts(TaskBase):
        def __init__(self):
            task = PartsTask()
            self.model, self.forward, self.losses = task.model, task.forward, task.losses

    with pytest.raises(InputError, match="names its backbone and head"):
        Trainer(NoParts(), config("backbone"), "/nonexistent", data, STEPS)


def test_yolo_names_its_backbone_and_head():
    from detect.models.registry import build_task
    from detect.train.experiment import load_experiment
    from detect.train.freeze import trainable_only

    cfg = load_experiment(Path(__file__).resolve().parents[1] / "configs" / "yolo_shapes.yaml")
    for version in ("v3", "v2"):
        task = build_task(dataclasses.replace(cfg.model, version=version), 3)
        parts = task.parts()
        assert [b.name for b in parts["backbone"]] == [cfg.model.backbone]
        trainable_only(parts["head"])(task)
        names = sorted({v.path.split("/")[0] for v in task.model.trainable_variables})
        want = (["out3_pred", "out4_pred", "out5_pred", "p3_head_bn", "p3_head_conv", "p4_head_bn", "p4_head_conv",
                 "p5_head_bn", "p5_head_conv"] if version == "v3" else ["head_c_bn", "head_c_conv", "out_pred"])
        assert names == want
        assert sorted(task.class_dependent_layers()) == [n for n in want if n.endswith("_pred")]
