"""EMA of the weights (``train.ema``) and the spread of validation mAP (``last5``).

Every EMA check compares the engine with facts the test keeps itself: the
raw weights after each step (for a NumPy EMA with the warm-up ramp), what
the evaluator saw, what the exported files hold, and an uninterrupted run
for the resumed ones.
"""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from detect.models.base import TaskBase
from detect.models.protocol import Stage
from detect.train.config import TrainConfig
from detect.train.engine import Trainer
from detect.train.history import summary_table, validation_spread

DECAY, TAU = 0.9, 3.0  # a short ramp, so the few steps of a test cross it


def ema_config(**overrides):
    base = dict(epochs=3, batch_size=4, optimizer="sgd", learning_rate=0.1, warmup_epochs=0, weight_decay=0.0,
                clip_norm=0.0, schedule="cosine", final_lr_factor=1.0, ema=True, ema_decay=DECAY, ema_tau=TAU)
    return TrainConfig(**{**base, **overrides})


class BnTask(TaskBase):
    """Dense -> batch norm -> Dense, regressing a target: fast, and with moving statistics to average."""

    def __init__(self):
        inputs = keras.Input((4,))
        hidden = keras.layers.BatchNormalization(name="a_bn")(keras.layers.Dense(3, name="a")(inputs))
        self.model = keras.Model(inputs, keras.layers.Dense(2, name="b")(hidden))
        rng = np.random.default_rng(0)  # the same start in every instance
        self.model.set_weights([rng.normal(size=w.shape).astype(np.float32) if "moving_variance" not in w.path
                                else np.ones(w.shape, np.float32) for w in self.model.weights])

    def forward(self, batch, training=False, mode=None):
        return self.model(batch["image"], training=training)

    def losses(self, outputs, batch):
        return {"loss": tf.reduce_mean(tf.square(tf.cast(outputs, tf.float32) - batch["target"]))}


def data(epoch):
    rng = np.random.default_rng(epoch)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices({"image": x, "target": np.tanh(x[:, :2])}).batch(4)


def weights(model):
    return [w.numpy().copy() for w in model.weights]


def averages(trainer):
    return [a.numpy().copy() for a in trainer.ema.averages]


def untimed(history):
    """``history`` without the timings, which differ between runs."""
    return {**history, "epochs": [{k: v for k, v in e.items() if k not in ("seconds", "images_per_second")}
                                  for e in history["epochs"]]}


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def assert_close(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def load(path, task=None):
    model = (task or BnTask)().model
    model.load_weights(str(path))
    return weights(model)


def numpy_ema(trajectory, decay=DECAY, tau=TAU):
    """The EMA of a list of weight lists (start, after step 1, ...), as YOLOv5 computes it, in float32."""
    average = [w.copy() for w in trajectory[0]]
    for n, step in enumerate(trajectory[1:], start=1):
        d = np.float32(decay * (1 - math.exp(-n / tau)))
        average = [w + d * (a - w) for a, w in zip(average, step)]
    return average


@pytest.mark.parametrize("distribute,precision", [("default", "none"), ("mirrored", "none"),
                                                  ("default", "float16")])
def test_ema_after_n_steps_is_the_numpy_reference(tmp_path, distribute, precision):
    """Trainable weights and batch-norm statistics alike; one device, two replicas, loss scaling."""
    if distribute == "mirrored" and len(tf.config.list_logical_devices("CPU")) < 2:
        pytest.skip("needs two logical CPU devices (conftest)")
    # Reduced on one device, not by collectives: two strategies with CPU collectives in one
    # process collide on their instance keys (test_train_engine has the other).
    strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                               cross_device_ops=tf.distribute.ReductionToOneDevice())
                if distribute == "mirrored" else tf.distribute.get_strategy())
    keras.mixed_precision.set_global_policy("mixed_float16" if precision == "float16" else "float32")
    try:
        with strategy.scope():
            task = BnTask()
        trainer = Trainer(task, ema_config(mixed_precision=precision), tmp_path, data, 2, strategy=strategy,
                          progress=False)
        if precision == "float16":
            assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
        trajectory = [weights(task.model)]
        for epoch in range(3):
            for batch in strategy.experimental_distribute_dataset(data(epoch)):
                trainer.train_step(batch)
                trajectory.append(weights(task.model))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert int(trainer.ema.updates.numpy()) == 6
    assert [a.shape for a in trainer.ema.averages] == [w.shape for w in task.model.weights]
    moved = [p for p, a, b in zip([w.path for w in task.model.weights], trajectory[0], trajectory[-1])
             if not np.array_equal(a, b)]
    assert any("moving_mean" in p for p in moved) and any("kernel" in p for p in moved)
    expected = numpy_ema(trajectory)
    assert_close(averages(trainer), expected)
    # Not the raw weights, nor a fixed-decay average without the ramp.
    assert max(np.abs(a - w).max() for a, w in zip(expected, trajectory[-1])) > 1e-3
    no_ramp = numpy_ema(trajectory, tau=1e-9)
    assert max(np.abs(a - b).max() for a, b in zip(expected, no_ramp)) > 1e-3
    # Swapping the averages in and out reaches every replica's copy.
    with strategy.scope():
        with trainer.ema.swapped_in():
            for variable, average in zip(task.model.weights, expected):
                for copy in strategy.experimental_local_results(variable.value):
                    np.testing.assert_allclose(copy.numpy(), average, rtol=1e-6, atol=1e-7)
    for variable, raw in zip(task.model.weights, trajectory[-1]):
        for copy in strategy.experimental_local_results(variable.value):
            np.testing.assert_array_equal(copy.numpy(), raw)


class Recorder:
    """An evaluator with preset scores that records what it saw: the model's weights and the EMA's."""

    def __init__(self, scores):
        self.scores = scores
        self.trainer = None
        self.seen = {}  # epoch -> (model weights, EMA averages)

    def __call__(self, task):
        epoch = int(self.trainer.epoch.numpy())
        self.seen[epoch] = (weights(task.model), averages(self.trainer) if self.trainer.ema else None)
        score = self.scores[epoch - 1]
        return {"mAP50": score, "AP": score / 2}


def fit(run_dir, cfg, scores, resume=False, task=None):
    recorder = Recorder(scores)
    trainer = Trainer(task or BnTask(), cfg, run_dir, data, 2, evaluate=recorder, progress=False)
    recorder.trainer = trainer
    history = trainer.fit(resume=resume)
    return trainer, history, recorder


SCORES = [0.2, 0.5, 0.3]  # epoch 2 is the best


def test_validation_and_exports_use_the_ema_while_training_goes_on_raw(tmp_path):
    trainer, history, recorder = fit(tmp_path / "ema", ema_config(), SCORES)
    raw = weights(trainer.task.model)
    for epoch, (seen, ema) in recorder.seen.items():
        assert_same(seen, ema)  # the evaluator saw the averages
    assert max(np.abs(a - w).max() for a, w in zip(averages(trainer), raw)) > 1e-3
    assert history["best"]["epoch"] == 2
    assert_same(load(tmp_path / "ema" / "last.weights.h5"), averages(trainer))
    assert_same(load(tmp_path / "ema" / "best.weights.h5"), recorder.seen[2][1])
    # The checkpoint keeps the raw weights (to train on) with the averages.
    fresh = BnTask().model
    tf.train.Checkpoint(model=fresh).read(str(trainer.store.path("last"))).expect_partial()
    assert_same(weights(fresh), raw)
    # The raw trajectory is the one of a run without the EMA, to the bit.
    plain, plain_history, plain_recorder = fit(tmp_path / "plain", ema_config(ema=False), SCORES)
    assert plain.ema is None
    assert_same(weights(plain.task.model), raw)
    assert_same(plain_recorder.seen[3][0], raw)
    assert_same(load(tmp_path / "plain" / "last.weights.h5"), raw)
    assert not any(name.startswith("ema/") for name, _ in tf.train.list_variables(str(plain.store.path("last"))))


class Killed(BaseException):
    pass


@pytest.mark.parametrize("where", ["training epoch 3", "exporting epoch 2"])
def test_resume_after_a_kill_gives_the_uninterrupted_ema(tmp_path, monkeypatch, where):
    cfg = ema_config(epochs=4)
    scores = [0.2, 0.5, 0.3, 0.4]
    reference, reference_history, _ = fit(tmp_path / "reference", cfg, scores)
    run_dir = tmp_path / "killed"
    with monkeypatch.context() as patch:
        if where == "training epoch 3":
            original = Trainer._run_epoch

            def run_epoch(self, epoch, stage):
                if epoch == 2:
                    raise Killed()
                return original(self, epoch, stage)

            patch.setattr(Trainer, "_run_epoch", run_epoch)
        else:  # after epoch 2's commit, while the averages are in the model for the export
            save = keras.Model.save_weights
            calls = []

            def save_weights(self, path, *args, **kwargs):
                calls.append(path)
                if len(calls) == 3:  # epoch 1: last, best; epoch 2: last
                    raise Killed()
                return save(self, path, *args, **kwargs)

            patch.setattr(keras.Model, "save_weights", save_weights)
        with pytest.raises(Killed):
            fit(run_dir, cfg, scores)
    resumed, history, _ = fit(run_dir, cfg, scores, resume=True)
    assert untimed(history) == untimed(reference_history)
    assert int(resumed.ema.updates.numpy()) == int(reference.ema.updates.numpy()) == 8
    assert_close(averages(resumed), averages(reference))
    assert_close(weights(resumed.task.model), weights(reference.task.model))
    for name in ("last.weights.h5", "best.weights.h5"):
        assert_close(load(run_dir / name), load(tmp_path / "reference" / name))


def test_a_run_without_ema_resumed_with_it_starts_the_average_there(tmp_path):
    fit(tmp_path, ema_config(epochs=2, ema=False), SCORES)
    trainer, history, recorder = fit(tmp_path, ema_config(epochs=3), SCORES, resume=True)
    assert int(trainer.ema.updates.numpy()) == 2  # epoch 3's steps only
    assert history["best"]["epoch"] == 2
    assert_same(load(tmp_path / "last.weights.h5"), averages(trainer))


class CopyTask(BnTask):
    """Stage ``first`` trains ``a``; ``second`` copies ``a`` into ``a2`` (as Faster R-CNN's step 3 copies
    a backbone) and trains both; ``a2`` sees twice the input, so the two part ways again."""

    def __init__(self):
        inputs = keras.Input((4,))
        a = keras.layers.Dense(3, name="a")
        a2 = keras.layers.Dense(3, name="a2")
        twice = keras.layers.Rescaling(2.0, name="twice")(inputs)
        hidden = keras.layers.BatchNormalization(name="a_bn")(keras.layers.Add()([a(inputs), a2(twice)]))
        self.model = keras.Model(inputs, keras.layers.Dense(2, name="b")(hidden))
        rng = np.random.default_rng(0)
        self.model.set_weights([rng.normal(size=w.shape).astype(np.float32) if "moving_variance" not in w.path
                                else np.ones(w.shape, np.float32) for w in self.model.weights])

    def layer(self, name):
        return self.model.get_layer(name)

    def stages(self, train_cfg, validation_data=None):
        def first(task):
            for layer in task.model.layers:
                layer.trainable = layer.name != "a2"

        def second(task):
            for source, target in zip(task.layer("a").weights, task.layer("a2").weights):
                target.assign(source)
            for layer in task.model.layers:
                layer.trainable = True

        return [Stage("first", 2, prepare=first), Stage("second", 2, prepare=second)]


def test_stages_restart_the_average_and_a_resume_at_the_boundary_reproduces_the_run(tmp_path, monkeypatch):
    cfg = ema_config(epochs=4)
    scores = [0.2, 0.5, 0.3, 0.4]
    reference, reference_history, recorder = fit(tmp_path / "reference", cfg, scores, task=CopyTask())
    assert int(reference.ema.updates.numpy()) == 4  # the second stage's steps only
    # The second stage trained a and a2 apart from the copy its prepare made.
    paths = [w.path for w in reference.task.model.weights]
    seen = dict(zip(paths, recorder.seen[3][0]))
    assert not np.array_equal(seen["a/kernel"], seen["a2/kernel"])  # both trained since
    original = Trainer._run_epoch

    def run_epoch(self, epoch, stage):
        if epoch == 2:  # the second stage's first epoch: epochs 1-2 committed
            raise Killed()
        return original(self, epoch, stage)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_run_epoch", run_epoch)
        with pytest.raises(Killed):
            fit(tmp_path / "killed", cfg, scores, task=CopyTask())
    resumed, history, _ = fit(tmp_path / "killed", cfg, scores, resume=True, task=CopyTask())
    assert untimed(history) == untimed(reference_history)
    assert_close(weights(resumed.task.model), weights(reference.task.model))
    assert_close(averages(resumed), averages(reference))
    for name in ("last.weights.h5", "best.weights.h5"):
        assert_close(load(tmp_path / "killed" / name, CopyTask), load(tmp_path / "reference" / name, CopyTask))


def test_each_stage_starts_its_average_from_the_weights_its_prepare_leaves(tmp_path, monkeypatch):
    task = CopyTask()
    trainer = Trainer(task, ema_config(epochs=4), tmp_path, data, 2, progress=False)
    entered = []
    original = Trainer._run_epoch

    def run_epoch(self, epoch, stage):
        if epoch in (0, 2):
            entered.append((stage.name, int(self.ema.updates.numpy()), averages(self), weights(task.model)))
        return original(self, epoch, stage)

    monkeypatch.setattr(Trainer, "_run_epoch", run_epoch)
    trainer.fit()
    assert [(name, updates) for name, updates, _, _ in entered] == [("first", 0), ("second", 0)]
    for _, _, ema, raw in entered:
        assert_same(ema, raw)
    paths = [w.path for w in task.model.weights]
    second = dict(zip(paths, entered[1][2]))
    np.testing.assert_array_equal(second["a2/kernel"], second["a/kernel"])


def test_spread_of_the_last_five_evaluated_epochs():
    maps = [0.1, 0.6, 0.2, 0.5, 0.55, 0.4, 0.45, 0.9]
    epochs = [{"epoch": i + 1, "stage": "train", "loss": 1.0, "images_per_second": 10.0}
              | ({"mAP50": m, "AP": m / 2} if i != 5 else {}) for i, m in enumerate(maps)]  # epoch 6 not evaluated
    history = {"epochs": epochs, "best": {"epoch": 8, "mAP50": 0.9, "AP": 0.45}}
    spread = validation_spread(history)
    last = [0.2, 0.5, 0.55, 0.45, 0.9]  # epochs 3, 4, 5, 7, 8
    assert spread["epochs"] == [3, 4, 5, 7, 8]
    assert spread["mean"] == pytest.approx(np.mean(last))
    assert spread["std"] == pytest.approx(np.std(last, ddof=1))
    assert (spread["min"], spread["max"]) == (0.2, 0.9)
    table = summary_table(history).splitlines()
    assert table[-2].startswith("best: epoch 8")
    assert table[-1] == (f"last 5 evaluated (epochs 3-8): mAP@0.5 mean {np.mean(last):.4f}  min-max 0.2000-0.9000 "
                         f"(0.7000)  std {np.std(last, ddof=1):.4f}")
    # Only the last evaluated stage counts; one epoch has no spread; none evaluated: no line.
    staged = {"epochs": [{**e, "stage": "first" if e["epoch"] < 8 else "second"} for e in epochs], "best": None}
    assert validation_spread(staged) == {"epochs": [8], "mean": 0.9, "std": 0.0, "min": 0.9, "max": 0.9}
    assert "last 1 evaluated (epoch 8)" in summary_table(staged)
    bare = {"epochs": [{k: v for k, v in e.items() if k not in ("mAP50", "AP")} for e in epochs], "best": None}
    assert validation_spread(bare) is None and "last" not in summary_table(bare)


def test_metrics_json_records_the_spread(tmp_path):
    scores = [0.1, 0.6, 0.2, 0.5, 0.55, 0.4, 0.45]
    trainer, history, _ = fit(tmp_path, ema_config(epochs=7, ema=False), scores)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["last5"] == history["last5"] == {
        "epochs": [3, 4, 5, 6, 7], "mean": pytest.approx(np.mean(scores[2:])),
        "std": pytest.approx(np.std(scores[2:], ddof=1)), "min": 0.2, "max": 0.55}
    assert "last 5 evaluated (epochs 3-7)" in summary_table(history)


def test_config_keys_default_off_and_ranges(tmp_path):
    from detect.errors import InputError
    from detect.train.experiment import load_experiment

    path = tmp_path / "x.yaml"
    path.write_text("# all defaults\n")
    config = load_experiment(path)
    assert (config.train.ema, config.train.ema_decay, config.train.ema_tau) == (False, 0.9999, 2000.0)
    config = load_experiment(path, ["train.ema=true", "train.ema_decay=0", "train.ema_tau=0.5"])
    assert (config.train.ema, config.train.ema_decay, config.train.ema_tau) == (True, 0.0, 0.5)
    for override, message in [("train.ema_decay=1", r"train.ema_decay must be in \[0, 1\), got 1.0"),
                              ("train.ema_decay=-0.1", r"train.ema_decay must be in \[0, 1\), got -0.1"),
                              ("train.ema_tau=0", "train.ema_tau must be > 0, got 0.0"),
                              ("train.ema=2", "train.ema")]:
        with pytest.raises(InputError, match=message):
            load_experiment(path, [override])
