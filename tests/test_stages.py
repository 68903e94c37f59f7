"""Multi-stage training in the engine, with a small fake two-stage task.

The task has two parts, ``a`` (say, an RPN) and ``b`` (a head fed by ``a``).
Its schedule has three stages, like the paper's alternation in miniature:
``rpn`` trains ``a`` only and is validated by its own metric, which must not
pick the best checkpoint; ``head`` trains ``b`` only, with another learning
rate; ``joint`` trains both. Checked against facts the test
computes itself: stage names per epoch, frozen variables unchanged to the
bit, a fresh optimizer (step 0, the stage's learning rate) per stage, and a
resume after a kill in each stage that reproduces the uninterrupted run.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import keras

from detect.models.base import TaskBase
from detect.models.protocol import Stage
from detect.train.config import TrainConfig
from detect.train.engine import Trainer

STEPS = 2
EPOCHS = {"rpn": 2, "head": 2, "joint": 2}
RATES = {"rpn": 0.05, "head": 0.02, "joint": 0.01}


def data(epoch, offset=0.0):
    rng = np.random.default_rng(epoch)
    x = rng.normal(size=(8, 4)).astype(np.float32) + offset
    return tf.data.Dataset.from_tensor_slices({"image": x, "target": np.tanh(x[:, :2])}).batch(4)


class TwoPartTask(TaskBase):
    """``a``: Dense(3) with batch norm; ``b``: Dense(2) on top; the loss sees the whole batch."""

    def __init__(self):
        inputs = keras.Input((4,))
        hidden = keras.layers.BatchNormalization(name="a_bn")(keras.layers.Dense(3, name="a")(inputs))
        self.model = keras.Model(inputs, keras.layers.Dense(2, name="b")(hidden))
        rng = np.random.default_rng(0)
        self.model.set_weights([rng.normal(size=w.shape).astype(np.float32) if "moving_variance" not in w.path
                                else np.ones(w.shape, np.float32) for w in self.model.weights])
        self.prepared = []
        self.seen = []  # (stage, optimizer iterations, trainable names, weights) after each epoch

    def part(self, name):
        return [layer for layer in self.model.layers if layer.name.startswith(name)]

    def freeze(self, *frozen):
        def prepare(task):
            task.prepared.append(frozen)
            for layer in task.model.layers:
                layer.trainable = not any(layer.name.startswith(f) for f in frozen)

        return prepare

    def forward(self, batch, training=False, mode=None):
        return self.model(batch["image"], training=training)

    def losses(self, outputs, batch):
        return {"loss": tf.reduce_mean(tf.square(outputs - batch["target"]))}

    def stages(self, train_cfg, validation_data=None):
        return [
            Stage("rpn", EPOCHS["rpn"], prepare=self.freeze("b"), learning_rate=RATES["rpn"],
                  evaluate=self.snapshot("rpn", {"recall": 0.9}), select_best=False),
            Stage("head", EPOCHS["head"], prepare=self.freeze("a"), learning_rate=RATES["head"],
                  evaluate=self.snapshot("head", {"mAP50": 0.3})),
            Stage("joint", EPOCHS["joint"], prepare=self.freeze(), learning_rate=RATES["joint"],
                  evaluate=self.snapshot("joint", {"mAP50": 0.2})),
        ]

    def snapshot(self, name, metrics):
        def evaluate(task):
            task.seen.append((name, [v.path for v in task.model.trainable_variables],
                              [w.numpy().copy() for w in task.model.weights]))
            return {**metrics, "AP": 0.0}

        return evaluate


def trainer(run_dir, task=None):
    cfg = TrainConfig(epochs=1, batch_size=4, optimizer="sgd", learning_rate=1.0, warmup_epochs=0,
                      schedule="cosine", final_lr_factor=1.0, weight_decay=0.0, clip_norm=0.0, log_every=1)
    return Trainer(task or TwoPartTask(), cfg, run_dir, data, STEPS, progress=False)


def weights_by_path(model):
    return {w.path: w.numpy().copy() for w in model.weights}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = trainer(tmp_path_factory.mktemp("stages"))
    optimizers = []
    original = run._enter_stage

    def entering(index):
        original(index)
        optimizers.append((index, run.optimizer, int(run.optimizer.iterations.numpy()),
                           float(run._learning_rate(0))))

    run._enter_stage = entering
    start = weights_by_path(run.task.model)
    history = run.fit()
    return run, history, start, optimizers


def test_stage_boundaries_metrics_and_best(uninterrupted):
    run, history, _, _ = uninterrupted
    assert [e["stage"] for e in history["epochs"]] == ["rpn", "rpn", "head", "head", "joint", "joint"]
    assert history["epochs"][0]["recall"] == 0.9 and "mAP50" not in history["epochs"][0]
    # The RPN stage's metric never competes: the best is the head's first epoch (0.3 > 0.2).
    assert history["best"] == {"epoch": 3, "mAP50": 0.3, "AP": 0.0}
    assert run.store.epoch("best") == 3


def test_frozen_variables_do_not_move_by_a_bit(uninterrupted):
    run, _, start, _ = uninterrupted
    paths = [w.path for w in run.task.model.weights]
    snapshots = {(name, i): dict(zip(paths, weights)) for i, (name, _, weights) in enumerate(run.task.seen)}
    after_rpn, after_head = snapshots[("rpn", 1)], snapshots[("head", 3)]
    b_vars = [p for p in paths if p.startswith("b/")]
    a_vars = [p for p in paths if p.startswith("a")]  # a's kernel, bias and batch-norm statistics
    for p in b_vars:
        np.testing.assert_array_equal(after_rpn[p], start[p])  # rpn froze b
    for p in a_vars:
        np.testing.assert_array_equal(after_head[p], after_rpn[p])  # head froze a, batch norm included
    assert any(not np.array_equal(after_rpn[p], start[p]) for p in a_vars)
    assert any(not np.array_equal(after_head[p], after_rpn[p]) for p in b_vars)
    trained = {name: set(names) for name, names, _ in run.task.seen}
    assert all(p.startswith("a") for p in trained["rpn"]) and all(p.startswith("b/") for p in trained["head"])
    assert trained["joint"] == {v.path for v in run.task.model.trainable_variables}


def test_a_fresh_optimizer_with_its_own_learning_rate_per_stage(uninterrupted):
    run, _, _, optimizers = uninterrupted
    assert [index for index, *_ in optimizers] == [1, 2]  # stage 0 entered in __init__
    assert len({id(opt) for _, opt, _, _ in optimizers} | {id(run.optimizer)}) == 2
    for index, _, iterations, rate in optimizers:
        name = ["rpn", "head", "joint"][index]
        assert iterations == 0 and rate == pytest.approx(RATES[name])
    assert int(run.optimizer.iterations.numpy()) == EPOCHS["joint"] * STEPS
    assert int(run.step.numpy()) == sum(EPOCHS.values()) * STEPS  # the global step goes on


class Killed(BaseException):
    pass


# Epochs (0-based) killed at: inside rpn, at the rpn/head boundary, inside head, inside joint.
@pytest.mark.parametrize("kill_epoch", [1, 2, 3, 5])
def test_resume_after_a_kill_in_each_stage_reproduces_the_run(uninterrupted, tmp_path, kill_epoch):
    run, history, _, _ = uninterrupted
    first = trainer(tmp_path)
    original = first._run_epoch

    def run_epoch(epoch, stage):
        if epoch == kill_epoch:
            raise Killed()
        return original(epoch, stage)

    first._run_epoch = run_epoch
    with pytest.raises(Killed):
        first.fit()
    task = TwoPartTask()
    resumed = trainer(tmp_path, task)
    landed = []
    rebuild = resumed._rebuild_outputs

    def on_restored(history):  # called right after the checkpoint is restored
        landed.append((resumed.stage_index, {v.path for v in task.model.trainable_variables},
                       int(resumed.optimizer.iterations.numpy()),
                       float(resumed._learning_rate(resumed.optimizer.iterations))))
        rebuild(history)

    resumed._rebuild_outputs = on_restored
    result = resumed.fit(resume=True)
    stage, trainable, iterations, rate = landed[0]
    name = ["rpn", "head", "joint"][stage]
    assert stage == resumed._stage_index(kill_epoch)
    assert trainable == {p for n, names, _ in run.task.seen if n == name for p in names}
    # Inside a stage its optimizer goes on from the checkpoint; at a boundary it starts at 0.
    assert iterations == (kill_epoch - resumed._stage_start(stage)) * STEPS
    assert rate == pytest.approx(RATES[name])
    assert [e["epoch"] for e in result["epochs"]] == [1, 2, 3, 4, 5, 6]
    assert [e["stage"] for e in result["epochs"]] == [e["stage"] for e in history["epochs"]]
    assert result["best"] == history["best"]
    final, reference = weights_by_path(task.model), weights_by_path(run.task.model)
    for path in reference:
        np.testing.assert_allclose(final[path], reference[path], rtol=1e-6, atol=1e-7)


def test_prepare_is_idempotent_and_decides_the_trainable_set(tmp_path):
    task = TwoPartTask()
    stage = task.stages(None)[1]
    for _ in range(2):
        stage.prepare(task)
        assert {v.path for v in task.model.trainable_variables} == {"b/kernel", "b/bias"}


class FourStageTask(TwoPartTask):
    """Four stages of 1, 2, 1, 2 epochs; the third has its own learning rate, the fourth its own decay."""

    def stages(self, train_cfg, validation_data=None):
        return [Stage("s1", 1), Stage("s2", 2), Stage("s3", 1, learning_rate=0.5),
                Stage("s4", 2, step_epochs=(1,))]


def test_step_decay_fires_at_the_run_epochs_across_stages_and_at_a_stage_own(tmp_path):
    """The learning rate of every step against a table written by hand (STEPS = 2 steps per epoch).

    Run schedule: peak 0.1, x0.1 at run epochs 1 and 3 (``train.step_epochs``). Stage s3 (run epoch 3)
    has its own peak 0.5 and starts after both decays: 0.5 x 0.01; s4 has its own decay after its
    first epoch (as each alternating step of Faster R-CNN), from the run's peak.
    On the old engine each stage's optimizer counted the run's epochs from its own start, so the
    decay at epoch 3 never fired in a 1- or 2-epoch stage.
    """
    cfg = TrainConfig(epochs=1, batch_size=4, optimizer="sgd", learning_rate=0.1, warmup_epochs=0,
                      schedule="step", step_epochs=(1, 3), step_factor=0.1, weight_decay=0.0, clip_norm=0.0,
                      log_every=1)
    run = Trainer(FourStageTask(), cfg, tmp_path, data, STEPS, progress=False)
    rates = []
    step = run.train_step

    def recording(batch):
        rates.append(float(run._learning_rate(run._iterations())))
        return step(batch)

    run.train_step = recording
    run.fit()
    table = [0.1, 0.1,                      # s1, run epoch 0
             0.01, 0.01, 0.01, 0.01,        # s2, run epochs 1-2: after the decay at 1
             0.005, 0.005,                  # s3, run epoch 3: its own peak 0.5, after both decays
             0.1, 0.1, 0.01, 0.01]          # s4, run epochs 4-5: its own decay after its epoch 1
    np.testing.assert_allclose(rates, table, rtol=1e-6)


def _alternating(**model):
    from types import SimpleNamespace

    from detect.faster_rcnn.config import FasterRcnnConfig
    from detect.faster_rcnn.stages import training_stages

    train = dict(schedule="step", learning_rate=0.001)
    train.update(model.pop("train", {}))
    task = SimpleNamespace(config=FasterRcnnConfig(backbone="tiny", **model))
    return training_stages(task, TrainConfig(**train))


def test_faster_rcnn_steps_decay_in_their_own_terms_as_the_original_solvers():
    """[16, 8, 16, 8] epochs with decays [12, 6, 12, 6]: each step restarts at the base rate."""
    stages = _alternating(stage_epochs=(16, 8, 16, 8), stage_step_epochs=(12, 6, 12, 0),
                          train=dict(step_epochs=(10,)))  # train.step_epochs: the joint schedule's
    assert [s.step_epochs for s in stages] == [(12,), (6,), (12,), ()]
    for stage, start in zip(stages, (0, 16, 24, 40)):
        cfg = stage.train_config(TrainConfig(schedule="step", learning_rate=0.001, step_epochs=(10,)), start=start)
        assert cfg.learning_rate == 0.001 and cfg.step_epochs == stage.step_epochs and cfg.epochs == stage.epochs
    # Without stage_step_epochs the run's step_epochs hold, counted over the whole run.
    assert [s.step_epochs for s in _alternating(stage_epochs=(2, 1, 2, 1))] == [None] * 4


@pytest.mark.parametrize("model, message", [
    (dict(stage_epochs=(16, 8, 16, 8), stage_step_epochs=(12, 8, 12, 6)),
     r"step 'detector' decays after its epoch 8, but it trains 8 epochs"),
    (dict(stage_epochs=(2, 1, 2, 1), stage_step_epochs=(1, 0, 1, 0), train=dict(schedule="cosine")),
     r"needs train.schedule: step"),
])
def test_faster_rcnn_decays_that_would_never_fire_are_refused(model, message):
    from detect.errors import InputError

    with pytest.raises(InputError, match=message):
        _alternating(**model)


@pytest.mark.parametrize("name, head", [("faster_rcnn_voc", "fc"), ("faster_rcnn_r50c4_voc", "c4")])
def test_the_voc_configs_state_the_original_budget_and_train(name, head, tmp_path, capsys):
    """The original's iterations: 80k / 40k / 80k / 40k at 1 / 2 / 1 / 2 images (16 passes over the 5,011
    images of VOC07 trainval in each step), decays at 60k / 30k, as the plan training prints at its start;
    then 3 steps of step 1 (and, R50-C4, 3 of step 2), from scratch."""
    from detect.models.registry import build_task
    from detect.train.experiment import load_experiment

    config = load_experiment(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml",
                             ["model.backbone_weights=null"])
    model = config.model
    assert model.head == head
    assert model.stage_epochs == (16,) * 4 and model.stage_step_epochs == (12,) * 4
    assert model.stage_batch_sizes == (1, 2, 1, 2) and model.roi_batch == 64 and model.reinit_heads
    assert config.train.step_epochs == (10,) and config.train.epochs == 14 and config.train.schedule == "step"
    train = config.train  # Caffe's SGD (tests/test_sgd_semantics.py)
    assert (train.nesterov, train.weight_decay, train.l2, train.bias_lr_factor, train.clip_norm) == \
        (False, 0.0, 0.0005, 2.0, 0.0)

    # Fewer proposals and RoIs than the config's (the CPU's time): the budget is what is checked here.
    small = dataclasses.replace(model, train_pre_nms=1000, train_post_nms=100, roi_batch=8)
    run = Trainer(build_task(small, 20), train, tmp_path, data, 5011, train_images=5011, progress=False)
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("  ")][1:]
    assert rows == [
        ["rpn", "16", "1", "5,011", "80,176", "60,132"],
        ["detector", "16", "2", "2,505", "40,080", "30,060"],
        ["rpn_shared", "16", "1", "5,011", "80,176", "60,132"],
        ["detector_shared", "16", "2", "2,505", "40,080", "30,060"]]
    # And it trains: three steps of step 1 (one small image), three of step 2 (two images).
    def batch(images):
        return {"image": tf.random.stateless_uniform([images, 96, 128, 3], seed=(1, 2), maxval=1.0),
                "image_hw": tf.constant([[96, 128]] * images),
                "boxes": tf.constant([[[8.0, 10.0, 70.0, 60.0]]] * images), "classes": tf.constant([[3]] * images)}

    losses = [float(run.train_step(batch(1))["loss"]) for _ in range(3)]
    if head == "c4":  # (VGG16's fc6 alone is 103 M parameters; the tiny models' tests train the fc head)
        run._enter_stage(1)
        losses += [float(run.train_step(batch(2))["loss"]) for _ in range(3)]
    assert all(np.isfinite(losses)) and int(run.step.numpy()) == len(losses)


class OwnBatchTask(TwoPartTask):
    """A stage at the run's 4 images per step, then one at its own 2."""

    def stages(self, train_cfg, validation_data=None):
        return [Stage("whole", 1), Stage("halves", 1, batch_size=2)]


def test_a_stage_with_its_own_batch_size_steps_through_every_image(tmp_path, capsys):
    cfg = TrainConfig(epochs=1, batch_size=4, optimizer="sgd", learning_rate=0.1, warmup_epochs=0,
                      schedule="step", weight_decay=0.0, clip_norm=0.0, log_every=1)
    calls, sizes = [], []

    def sized_data(epoch, batch_size=4):
        calls.append((epoch, batch_size))
        return data(epoch).unbatch().batch(batch_size)

    run = Trainer(OwnBatchTask(), cfg, tmp_path, sized_data, STEPS, train_images=8, progress=False)
    assert "halves                1            2            4           4" in capsys.readouterr().out
    step = run.train_step

    def recording(batch):
        sizes.append(int(batch["image"].shape[0]))
        return step(batch)

    run.train_step = recording
    run.fit()
    assert calls == [(0, 4), (1, 2)]
    assert sizes == [4, 4, 2, 2, 2, 2]  # 8 images in each epoch


def test_a_stage_batch_that_the_replicas_cannot_split_is_refused_before_training(tmp_path):
    from detect.errors import InputError

    class OddBatchTask(TwoPartTask):
        def stages(self, train_cfg, validation_data=None):
            return [Stage("whole", 1), Stage("odd", 1, batch_size=3)]

    cfg = TrainConfig(epochs=1, batch_size=4, optimizer="sgd", learning_rate=0.1, warmup_epochs=0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])  # tests/conftest.py's two logical CPUs
    with pytest.raises(InputError, match=r"stage 'odd': 3 images per step cannot be split evenly over 2 replicas"):
        Trainer(OddBatchTask(), cfg, tmp_path, data, STEPS, strategy=strategy, train_images=8, progress=False)
    assert not (tmp_path / "checkpoints").exists()
