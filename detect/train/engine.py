"""The training engine: model-agnostic loop, stages, checkpoints, validation, logs.

A *task* supplies the detector (``detect.models.build_task`` makes one from a
config):

- ``task.model``: the ``keras.Model`` whose variables are trained and saved.
- ``task.forward(batch, training)``: the batch-level forward pass. It gets
  the whole batch (images, ground truth, ``image_hw``), so a two-stage
  detector can sample RoIs from the ground truth inside its forward pass;
  returns the raw outputs. The loss never runs the model.
- ``task.losses(outputs, batch) -> dict``: a total ``loss`` and its named
  parts (``loss_obj``, ``loss_rpn_cls``, ...).
- ``task.postprocess(outputs, image_hw) -> dict``: the padded
  ``batched_nms`` dict; ``image_hw`` [B, 2] is each image's valid extent in
  the padded batch (for clipping proposals and boxes).
- optionally ``task.stages(train_cfg, validation_data) -> [Stage]``: a
  multi-stage schedule (Faster R-CNN's 4-step alternation);
  ``validation_data`` is the trainer's ``fn() -> dataset`` of validation
  batches (or None), for stages that measure something other than mAP.
  The default is one stage of ``train.epochs``, or the stages of ``train.freeze``.
- optionally ``task.parts()``: ``{"backbone": [layers], "head": [layers]}``
  (top-level layers of ``task.model``), which ``train.freeze`` freezes
  around (``detect.train.freeze``); a task with its own ``stages`` takes
  ``train.freeze: none``.
- optionally ``task.class_dependent_layers()``: names of the layers whose
  shapes follow the class count, re-initialised when ``model.init_weights``
  comes from a model of another class count (``detect.train.transfer``).
- optionally ``task.inference_key()``: a hashable naming the parts that
  inference uses now (a stage may change them); compiled predict functions
  are cached per key (``detect.train.evaluation.make_predict_fn``).

Stages. Each stage has its own epochs, learning rate (peak, schedule,
warm-up), optimizer, training data, trained variables and validation
metric. On entering a stage the engine calls ``prepare(task)`` (freeze or
copy weights; it must be idempotent, since a resume calls it again), then
builds a fresh optimizer over the variables the stage trains, so momentum
never leaks across stages and un-freezing never meets Keras 3's "Unknown
variable". The optimizer's step, and so the learning-rate schedule, starts
at 0 in each stage; the checkpoint keeps a global step for the logs.
``--resume`` lands in the stage of the next epoch: it runs that stage's
``prepare``, builds its optimizer, and restores the optimizer state only when
the saved epoch belongs to the same stage (a stage boundary starts afresh,
and runs ``prepare`` again on the restored weights, as the uninterrupted run
did: a ``prepare`` that copies weights must copy the trained ones).

Steps. The loop does not read values back from the device every step: loss
values are fetched, checked for NaN/Inf and logged every
``train.log_every`` steps and at the end of an epoch, so steps on a GPU
pipeline. A NaN is reported with the step and loss part where it first
appeared.

EMA of the weights (``train.ema``). With it on, the engine keeps an
exponential moving average of the model's weights (YOLOv5/v8's ``ModelEMA``,
``ModelEMA`` below): after every step ``ema = d * ema + (1 - d) * w`` with
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

Several machines. Under ``multi_worker`` every worker runs the same writes
(checkpoint saving involves collective operations), but only the chief
writes into the run directory; the others write into a temporary folder that
is removed at the end (the TensorFlow convention).
"""

import contextlib
import dataclasses
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import keras
import tensorflow as tf
import yaml

from detect.config import to_dict
from detect.errors import InputError
from detect.outputs import write_text_atomic
from detect.train.checkpoints import (CheckpointStore, checkpoint_mismatch, read_json, save_weights_atomic,
                                      write_json_atomic)
from detect.train.schedule import WarmupSchedule


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message says which and what to try."""


@dataclass(frozen=True)
class Stage:
    """One stage of a multi-stage schedule (see the module docstring).

    Attributes:
      name: shown in logs and recorded with each epoch.
      epochs: epochs of this stage.
      prepare: ``fn(task)`` run on entering the stage (also on resume), e.g.
        to freeze layers or copy weights; must be idempotent. None: nothing.
      trainable: ``fn(task) -> [tf.Variable]``, the variables this stage
        trains; None: ``task.model.trainable_variables`` after ``prepare``.
      learning_rate, warmup_epochs, schedule: this stage's peak learning
        rate, warm-up and decay; None: the ``train`` config's.
      data: ``fn(epoch) -> tf.data.Dataset``, the stage's own training data
        (e.g. a detector trained on proposals precomputed by the previous
        stage); None: the trainer's.
      steps_per_epoch: batches per epoch of ``data``; None: the trainer's.
      validate: run validation after this stage's epochs (every
        ``train.eval_every`` epochs and at its last epoch).
      evaluate: ``fn(task) -> dict`` replacing the trainer's for this stage
        (e.g. proposal recall for an RPN-only stage); None: the trainer's.
      select_best: this stage's ``mAP50`` competes for the best checkpoint;
        False for stages whose metric is not the detector's mAP.
    """

    name: str
    epochs: int
    prepare: Optional[Callable] = None
    trainable: Optional[Callable] = None
    learning_rate: Optional[float] = None
    warmup_epochs: Optional[float] = None
    schedule: Optional[str] = None
    data: Optional[Callable] = None
    steps_per_epoch: Optional[int] = None
    validate: bool = True
    evaluate: Optional[Callable] = None
    select_best: bool = True

    def train_config(self, train_cfg):
        """``train_cfg`` with this stage's epochs and learning-rate overrides (and no ``freeze`` schedule)."""
        overrides = {k: v for k, v in (("learning_rate", self.learning_rate), ("warmup_epochs", self.warmup_epochs),
                                       ("schedule", self.schedule)) if v is not None}
        # The stage is one step of the freeze schedule, not a schedule of its own.
        return dataclasses.replace(train_cfg, epochs=self.epochs, freeze="none", freeze_epochs=0, **overrides)


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


def build_optimizer(train_cfg, steps_per_epoch, total_epochs):
    """SGD-momentum or AdamW with decoupled weight decay and the warm-up schedule."""
    schedule = WarmupSchedule(
        peak=train_cfg.learning_rate, total_steps=steps_per_epoch * total_epochs,
        warmup_steps=int(round(train_cfg.warmup_epochs * steps_per_epoch)),
        start_factor=train_cfg.warmup_start_factor, kind=train_cfg.schedule, final_factor=train_cfg.final_lr_factor,
        boundaries=[e * steps_per_epoch for e in train_cfg.step_epochs], step_factor=train_cfg.step_factor)
    clip = train_cfg.clip_norm or None
    if train_cfg.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=train_cfg.weight_decay,
                                           beta_1=train_cfg.momentum, global_clipnorm=clip)
    else:
        optimizer = keras.optimizers.SGD(schedule, momentum=train_cfg.momentum, nesterov=True,
                                         weight_decay=train_cfg.weight_decay, global_clipnorm=clip)
    # Decay only convolution kernels, as detection recipes do.
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "_bn"])
    if train_cfg.mixed_precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def set_precision(mode):
    """Global Keras dtype policy for ``train.mixed_precision`` (before building models)."""
    policy = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}[mode]
    keras.mixed_precision.set_global_policy(policy)


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


def _divergence_message(name, value, step):
    return (f"{name} became {value} at step {step}. Training stopped; the last good checkpoint is kept. "
            f"Likely causes: a learning rate too high for this batch size (try --set "
            f"train.learning_rate=<smaller> or a longer train.warmup_epochs), boxes in the wrong format "
            f"(check the data with tools/check_dataset.py --show), or float16 overflow (train.mixed_precision).")


class Trainer:
    """Runs a task's training with stages, validation, checkpoints and logs.

    Args:
      task: the detector task (see the module docstring).
      train_cfg: ``TrainConfig``.
      run_dir: output folder (config snapshot, ``tb/`` logs, ``checkpoints/``,
        ``last.weights.h5``, ``best.weights.h5``, ``metrics.json``); the
        last three are exports of the committed checkpoint, rebuilt on resume.
      train_data: ``fn(epoch) -> tf.data.Dataset`` of training batches; the
        epoch seeds its order, so a resumed epoch sees the same data.
      steps_per_epoch: batches per epoch.
      evaluate: ``fn(task) -> dict`` with at least ``mAP50`` and ``AP``, or
        None for no validation.
      strategy: a ``tf.distribute.Strategy`` (the task built in its scope).
      config_snapshot: dict written to ``config.yaml``.
      images_per_batch: global batch size, for throughput.
      progress: show a progress bar per epoch.
      epoch_report: optional ``fn() -> str or None`` printed after each
        training epoch (e.g. the input pipeline's skipped-image summary).
      validation_data: optional ``fn() -> dataset`` of validation batches,
        handed to ``task.stages``.
    """

    def __init__(self, task, train_cfg, run_dir, train_data, steps_per_epoch, evaluate=None, strategy=None,
                 config_snapshot=None, images_per_batch=None, progress=True, epoch_report=None,
                 validation_data=None):
        self.task = task
        self.cfg = train_cfg
        self.strategy = strategy or tf.distribute.get_strategy()
        self.is_chief = is_chief(self.strategy)
        self.run_dir = Path(run_dir) if self.is_chief else Path(tempfile.mkdtemp(prefix="detect-worker-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.train_data = train_data
        self.steps_per_epoch = int(steps_per_epoch)
        self.evaluate = evaluate
        self.images_per_batch = images_per_batch or train_cfg.batch_size
        self.progress = progress
        self.epoch_report = epoch_report
        self.stages = self._plan_stages(task, train_cfg, validation_data)
        self.total_epochs = sum(stage.epochs for stage in self.stages)
        with self.strategy.scope():
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.ema = ModelEMA(task.model.weights, train_cfg.ema_decay, train_cfg.ema_tau) if train_cfg.ema else None
        self.store = CheckpointStore(self.run_dir, None)
        self.stage_index = None
        self._enter_stage(0)
        self.config_snapshot = config_snapshot  # written by fit(), once a resume is known to fit the run
        self.metrics_path = self.run_dir / "metrics.json"
        self.writer = None  # TensorBoard's; created by fit(), after a resume is known to fit the run

    # ---- stages ---------------------------------------------------------------------
    @staticmethod
    def _plan_stages(task, train_cfg, validation_data):
        """The task's own stages, else the stages of ``train.freeze`` (one ``train`` stage without it)."""
        from detect.train.freeze import freeze_stages  # it builds on Stage, defined here

        if not hasattr(task, "stages"):
            return freeze_stages(task, train_cfg)
        if train_cfg.freeze != "none":
            raise InputError("train.freeze", f"{train_cfg.freeze!r}: {type(task).__name__} has its own stages, "
                                             f"which decide what trains; use train.freeze: none")
        return list(task.stages(train_cfg, validation_data=validation_data))

    def _enter_stage(self, index):
        """Prepares stage ``index`` and gives it a fresh optimizer over the variables it trains."""
        stage = self.stages[index]
        if stage.prepare is not None:
            stage.prepare(self.task)
        if self.ema is not None:
            self.ema.reset()  # each stage averages its own steps (module docstring)
        variables = list(stage.trainable(self.task) if stage.trainable is not None
                         else self.task.model.trainable_variables)
        with self.strategy.scope():
            self.optimizer = build_optimizer(stage.train_config(self.cfg), self._steps(stage), stage.epochs)
            self.optimizer.build(variables)
        self.variables = variables
        self.stage_index = index
        self.store.checkpoint = self._checkpoint(with_optimizer=True)
        self._train_step = None

    def _prepare_again(self):
        """Re-runs the current stage's ``prepare`` and restarts the EMA from the weights it leaves."""
        stage = self.stages[self.stage_index]
        if stage.prepare is not None:
            stage.prepare(self.task)
        if self.ema is not None:
            self.ema.reset()

    def _checkpoint(self, with_optimizer):
        parts = dict(model=self.task.model, epoch=self.epoch, step=self.step)
        if self.ema is not None:
            parts["ema"] = self.ema.checkpoint()
        if with_optimizer:
            parts["optimizer"] = self.optimizer
        return tf.train.Checkpoint(**parts)

    def _restore(self, pointer):
        """Restores a committed checkpoint; its optimizer state only if it belongs to the current stage."""
        epoch = self.store.epoch(pointer)
        same_stage = epoch is not None and epoch > 0 and self._stage_index(epoch - 1) == self.stage_index
        restored = self.store.restore(pointer, checkpoint=self._checkpoint(with_optimizer=same_stage))
        if restored is not None and self.ema is not None and not _has_ema(self.store.path(pointer)):
            self.ema.reset()  # a run trained without the EMA: it starts here
        return restored

    def _averaged(self):
        """Context in which the model holds the weights to validate and export (the EMA's, if on)."""
        return self.ema.swapped_in() if self.ema is not None else contextlib.nullcontext()

    def _steps(self, stage):
        return int(stage.steps_per_epoch or self.steps_per_epoch)

    def _stage_index(self, epoch):
        """Index of the stage that trains (0-based) ``epoch``; the last stage past the end."""
        start = 0
        for index, stage in enumerate(self.stages):
            start += stage.epochs
            if epoch < start:
                return index
        return len(self.stages) - 1

    def _stage_start(self, index):
        return sum(stage.epochs for stage in self.stages[:index])

    # ---- one step -----------------------------------------------------------------
    def _make_train_step(self):
        task, optimizer, strategy, variables, ema = self.task, self.optimizer, self.strategy, self.variables, self.ema
        replicas = strategy.num_replicas_in_sync
        scale_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

        def step_fn(batch):
            with tf.GradientTape() as tape:
                outputs = task.forward(batch, training=True)
                losses = task.losses(outputs, batch)
                # Each replica's loss is a mean over its share; the sum of the
                # replicas' gradients must be the global mean's gradient.
                loss = losses["loss"] / replicas
                if scale_loss:
                    loss = optimizer.scale_loss(loss)
            grads = tape.gradient(loss, variables)
            optimizer.apply_gradients(zip(grads, variables))
            return losses

        @tf.function(reduce_retracing=True)
        def train_step(batch):
            per_replica = strategy.run(step_fn, args=(batch,))
            self.step.assign_add(1)
            if ema is not None:
                ema.update()  # cross-replica context, after the step's updates (automatic control deps)
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

        return train_step

    def train_step(self, batch):
        """One optimisation step on a (distributed) batch; returns the loss parts (tensors)."""
        if self._train_step is None:
            self._train_step = self._make_train_step()
        return self._train_step(batch)

    # ---- the loop -------------------------------------------------------------------
    def fit(self, resume=False):
        """Trains to ``total_epochs``; returns the metrics history dict.

        Each epoch is committed as one unit: its checkpoint folder holds the
        model, optimizer, counters and the history as of that epoch, and
        ``last.json`` publishes them together (see ``checkpoints``). Only
        then are the derived files written: ``last.weights.h5``, maybe
        ``best.weights.h5``, and ``metrics.json``. With ``resume``, the last
        committed checkpoint is restored into the stage it leads to, and
        every derived file (``best.json`` too) is rebuilt from it, so a kill
        at any point loses at most the uncommitted epoch, which is trained
        again; no record is lost or repeated.
        """
        history = {"epochs": [], "best": None}
        start_epoch = 0
        saved = None
        if resume:
            saved = self.store.epoch("last") if self.store.path("last") is not None else None
            if saved is not None:
                self._check_resumable()  # before anything is written
        self._write_config()
        if self.writer is None:
            self.writer = tf.summary.create_file_writer(str(self.run_dir / "tb"))
        if resume:
            if saved is None:
                print(f"--resume: no checkpoint in {self.store.root}; starting from scratch", flush=True)
                self.store.reconcile(None)
            else:
                if self._stage_index(saved) != self.stage_index:
                    self._enter_stage(self._stage_index(saved))
                self._restore("last")
                start_epoch = int(self.epoch.numpy())
                history = self._committed_history(start_epoch)
                self._rebuild_outputs(history)
                if start_epoch > 0 and self._stage_index(start_epoch - 1) != self.stage_index:
                    # A stage boundary: its prepare ran before the restore; redo it on the
                    # restored weights (it may copy some), as the uninterrupted run did.
                    self._prepare_again()
                print(f"resumed from epoch {start_epoch} (step {int(self.step.numpy())}), stage "
                      f"{self.stages[self.stage_index].name!r}", flush=True)
                if start_epoch >= self.total_epochs:
                    print(f"--resume: the run has trained all {self.total_epochs} epochs of its schedule; "
                          f"nothing to train (raise train.epochs, or the last stage's epochs, to go on)", flush=True)
        try:
            for epoch in range(start_epoch, self.total_epochs):
                self._train_epoch(epoch, history)
        finally:
            self.writer.flush()
            if not self.is_chief:
                shutil.rmtree(self.run_dir, ignore_errors=True)
        return history

    def _write_config(self):
        if self.config_snapshot is not None:
            write_text_atomic(self.run_dir / "config.yaml", yaml.safe_dump(self.config_snapshot, sort_keys=False))

    def _check_resumable(self):
        """Refuses a resume whose model does not fit the run's last checkpoint (a changed architecture).

        Raises:
          InputError: naming the run directory, the model keys that changed
            (from the run's ``config.yaml``) and the first variable that differs.
        """
        for record in (self.store.history("last") or {}).get("epochs", []):
            planned = self.stages[self._stage_index(record["epoch"] - 1)].name
            if record.get("stage", planned) != planned:
                raise InputError(self.run_dir, f"--resume: epoch {record['epoch']} was trained in stage "
                                               f"{record['stage']!r}, but the config now schedules it in stage "
                                               f"{planned!r} (the stages' epochs changed). Nothing was written: "
                                               f"keep the earlier stages' epochs (set model.stage_epochs), or "
                                               f"train into a new --out")
        problem = checkpoint_mismatch(self.task.model, self.store.path("last"))
        if problem is None:
            return
        changed = _changed_keys(read_yaml(self.run_dir / "config.yaml"), self.config_snapshot, "model")
        because = f"model keys changed since the run started: {', '.join(changed)}; " if changed else ""
        raise InputError(self.run_dir, f"--resume: the model no longer fits the run's checkpoint ({because}"
                                       f"{problem}). Nothing was written: resume with the run's own config, "
                                       f"or train the new model into a new --out")

    def _train_epoch(self, epoch, history):
        index = self._stage_index(epoch)
        if index != self.stage_index:
            self._enter_stage(index)
        stage = self.stages[index]
        losses, seconds, images = self._run_epoch(epoch, stage)
        report = self.epoch_report() if self.epoch_report is not None else None
        if report:
            print(report, flush=True)
        self.epoch.assign(epoch + 1)
        record = {"epoch": epoch + 1, "stage": stage.name, "seconds": round(seconds, 2),
                  "images_per_second": round(images / seconds, 2), **losses}
        pointers = ["last"]
        stage_epoch = epoch + 1 - self._stage_start(index)
        evaluate = stage.evaluate or self.evaluate
        due = stage_epoch % max(self.cfg.eval_every, 1) == 0 or stage_epoch == stage.epochs
        if stage.validate and evaluate is not None and due:
            with self._averaged():
                metrics = {k: float(v) for k, v in evaluate(self.task).items()}
            record.update(metrics)
            best = history["best"]
            if stage.select_best and "mAP50" in metrics and (best is None or metrics["mAP50"] > best["mAP50"]):
                history["best"] = {"epoch": epoch + 1, "mAP50": metrics["mAP50"], "AP": metrics.get("AP", 0.0)}
                pointers.append("best")
            with self.writer.as_default():
                for key, value in metrics.items():
                    tf.summary.scalar(f"val/{key}", value, step=epoch + 1)
            keys = [k for k in _METRIC_NAMES if k in metrics] + [
                k for k in metrics if k not in _METRIC_NAMES and k not in _COCO_STATS]
            shown = "  ".join(f"{_METRIC_NAMES.get(k, k)} {metrics[k]:.4f}" for k in keys)
            print(f"epoch {epoch + 1}: {shown}", flush=True)
        history["epochs"].append(record)
        history["last5"] = validation_spread(history)
        self.store.save(epoch + 1, pointers, history=history)  # the commit (raw weights and EMA)
        # Derived from the commit; a kill here is repaired by --resume.
        with self._averaged():
            save_weights_atomic(self.task.model, self.run_dir / "last.weights.h5")
            if "best" in pointers:
                save_weights_atomic(self.task.model, self.run_dir / "best.weights.h5")
        write_json_atomic(self.metrics_path, history)

    def _committed_history(self, epoch):
        """The history committed with the restored checkpoint of ``epoch``.

        Runs from before histories were embedded fall back to ``metrics.json``
        cut at ``epoch`` (an epoch whose record was never written stays lost).
        """
        history = self.store.history("last")
        if history is not None:
            return history
        old = read_json(self.metrics_path) or {}
        records = [e for e in old.get("epochs", []) if e["epoch"] <= epoch]
        best = old.get("best")
        if best is None or best["epoch"] > epoch:
            best = _best_of(records)
        history = {"epochs": records, "best": best}
        history["last5"] = validation_spread(history)
        return history

    def _rebuild_outputs(self, history):
        """Rewrites ``best.json``, the weight exports and ``metrics.json`` from the committed state.

        Every write is idempotent, so a kill during this is repaired by the
        next resume. Leaves the model and optimizer as the last checkpoint.
        """
        best = history["best"]
        best_path = self.run_dir / "best.weights.h5"
        if self.store.reconcile(best["epoch"] if best else None):
            self._restore("best")
            with self._averaged():
                save_weights_atomic(self.task.model, best_path)
            self._restore("last")
        elif best is None:
            best_path.unlink(missing_ok=True)
        else:
            print(f"--resume: the checkpoint of the best epoch ({best['epoch']}) is gone; "
                  f"best.weights.h5 is left as it is", flush=True)
        with self._averaged():
            save_weights_atomic(self.task.model, self.run_dir / "last.weights.h5")
        write_json_atomic(self.metrics_path, history)

    def _run_epoch(self, epoch, stage):
        """Trains one epoch; returns (mean loss parts, seconds, images)."""
        dataset = (stage.data or self.train_data)(epoch)
        dist = self.strategy.experimental_distribute_dataset(dataset) \
            if not isinstance(dataset, tf.distribute.DistributedDataset) else dataset
        steps = self._steps(stage)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{self.total_epochs} [{stage.name}]",
                       unit="batch", dynamic_ncols=True, leave=True)
        # Counters kept on the host, so that a step needs no read-back (module docstring).
        window = _StepWindow(step=int(self.step.numpy()), iteration=int(self._iterations().numpy()))
        start = time.perf_counter()
        count = 0
        for batch in dist:
            window.add(self.train_step(batch))
            count += 1
            if bar is not None:
                bar.update(1)
            if len(window.pending) >= max(self.cfg.log_every, 1) or count >= steps:
                self._drain(window, bar, count, start)
            if count >= steps:
                break
        self._drain(window, bar, count, start)
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - start
        means = {k: v / max(window.count, 1) for k, v in window.sums.items()}
        return means, seconds, count * self.images_per_batch

    def _drain(self, window, bar, count, start):
        """Reads the pending steps' losses: NaN check, sums, TensorBoard, progress bar."""
        if not window.pending:
            return
        log_every = max(self.cfg.log_every, 1)
        logged = [(step, it) for step, it, _ in window.pending if step % log_every == 0]
        rates = {step: float(self._learning_rate(it)) for step, it in logged}
        values = None
        for step, _, losses in window.pending:
            values = {k: float(v) for k, v in losses.items()}
            for name, value in values.items():
                if not math.isfinite(value):
                    raise TrainingDiverged(_divergence_message(name, value, step))
            for k, v in values.items():
                window.sums[k] = window.sums.get(k, 0.0) + v
            window.count += 1
            if step in rates:
                with self.writer.as_default():
                    for k, v in values.items():
                        tf.summary.scalar(f"train/{k}", v, step=step)
                    tf.summary.scalar("train/learning_rate", rates[step], step=step)
        if bar is not None:
            lr = float(self._learning_rate(window.pending[-1][1]))
            elapsed = time.perf_counter() - start
            bar.set_postfix({**{k.replace("loss_", ""): f"{v:.3f}" for k, v in values.items()},
                             "lr": f"{lr:.2e}", "img/s": f"{count * self.images_per_batch / elapsed:.1f}"})
        window.pending = []

    def _iterations(self):
        return getattr(self.optimizer, "inner_optimizer", self.optimizer).iterations

    def _learning_rate(self, iteration):
        inner = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        schedule = inner._learning_rate
        return schedule(iteration) if callable(schedule) else schedule


class _StepWindow:
    """Steps trained since the losses were last read (``Trainer._drain``)."""

    def __init__(self, step, iteration):
        self.step, self.iteration = step, iteration
        self.pending = []  # (global step, optimizer iteration it used, loss tensors)
        self.sums, self.count = {}, 0

    def add(self, losses):
        self.pending.append((self.step + 1, self.iteration, losses))
        self.step += 1
        self.iteration += 1


_METRIC_NAMES = {"mAP50": "mAP@0.5", "AP": "AP@[.5:.95]"}
_COCO_STATS = ("AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _best_of(records):
    """The first record with the highest mAP50, as a history's ``best`` (None without any)."""
    best = None
    for e in records:
        if "mAP50" in e and (best is None or e["mAP50"] > best["mAP50"]):
            best = {"epoch": e["epoch"], "mAP50": float(e["mAP50"]), "AP": float(e["AP"])}
    return best


def _has_ema(prefix):
    """Whether the checkpoint at ``prefix`` holds EMA variables (runs trained without them do not)."""
    return prefix is not None and any(name.startswith("ema/") for name, _ in tf.train.list_variables(str(prefix)))


SPREAD_EPOCHS = 5  # evaluated epochs behind the spread of validation mAP (``validation_spread``)


def validation_spread(history, last=SPREAD_EPOCHS):
    """The spread of validation mAP@0.5 over the last ``last`` evaluated epochs, or None without any.

    Only the epochs of the last evaluated epoch's stage count (an earlier
    stage's mAP is another model's). Returns a dict: ``epochs`` (the epochs
    used), ``mean``, ``std`` (the sample standard deviation, 0 for one
    epoch), ``min`` and ``max`` of their ``mAP50``. Stored in the history as
    ``last5``, so a best epoch far above the mean shows as luck.
    """
    records = [e for e in history["epochs"] if "mAP50" in e]
    if not records:
        return None
    stage = records[-1].get("stage")
    values = [e for e in records if e.get("stage") == stage][-last:]
    maps = [float(e["mAP50"]) for e in values]
    mean = sum(maps) / len(maps)
    std = math.sqrt(sum((m - mean) ** 2 for m in maps) / (len(maps) - 1)) if len(maps) > 1 else 0.0
    return {"epochs": [e["epoch"] for e in values], "mean": mean, "std": std, "min": min(maps), "max": max(maps)}


def spread_line(history):
    """The summary line of ``validation_spread`` (computed from the records if the history lacks it), or None."""
    spread = history.get("last5") or validation_spread(history)
    if not spread:
        return None
    epochs = spread["epochs"]
    span = f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]}-{epochs[-1]}"
    return (f"last {len(epochs)} evaluated ({span}): mAP@0.5 mean {spread['mean']:.4f}  "
            f"min-max {spread['min']:.4f}-{spread['max']:.4f} ({spread['max'] - spread['min']:.4f})  "
            f"std {spread['std']:.4f}")


def read_yaml(path):
    """A YAML file's content, or None if it is missing or unreadable."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None


def _changed_keys(old, new, section):
    """Dotted keys of ``section`` whose values differ between two config dicts (``old`` may be None)."""
    def flat(node, prefix):
        if isinstance(node, dict):
            return {k: v for key, child in node.items() for k, v in flat(child, f"{prefix}.{key}").items()}
        return {prefix: node}

    if not isinstance(old, dict) or not isinstance(new, dict):
        return []
    a, b = flat(old.get(section), section), flat(new.get(section), section)
    return [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def config_snapshot(config):
    """Plain-dict copy of a config dataclass for ``config.yaml``."""
    return to_dict(config)


def summary_table(history):
    """The final summary: one row per evaluated epoch, the best, then the spread of the last ones."""
    rows = [e for e in history["epochs"] if "mAP50" in e]
    lines = ["epoch   loss      mAP@0.5   AP@[.5:.95]  img/s"]
    for e in rows:
        lines.append(f"{e['epoch']:5d}   {e.get('loss', float('nan')):7.4f}   {e['mAP50']:.4f}    "
                     f"{e['AP']:.4f}       {e['images_per_second']:.1f}")
    best = history.get("best")
    if best:
        lines.append(f"best: epoch {best['epoch']}  mAP@0.5 {best['mAP50']:.4f}  AP@[.5:.95] {best['AP']:.4f}")
    spread = spread_line(history)
    if spread:
        lines.append(spread)
    return "\n".join(lines)


