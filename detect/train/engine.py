"""The training engine: model-agnostic loop, checkpoints, validation, logs.

A *task* supplies the detector: ``task.model`` (a ``keras.Model`` from images
to raw outputs), ``task.losses(outputs, batch) -> dict`` (with a total
``loss`` and its named parts) and ``task.postprocess(outputs) -> dict`` (the
padded ``batched_nms`` output). A task may also define ``stages()``: a list
of ``Stage`` (e.g. Faster R-CNN's 4-step alternation), each with its own
epochs and a ``prepare(task)`` hook that freezes or copies weights; the
engine runs them in order and resumes inside the right one.
"""

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import keras
import tensorflow as tf
import yaml

from detect.config import to_dict
from detect.train.checkpoints import CheckpointStore, checkpoint_of, read_json, save_weights_atomic, \
    write_json_atomic
from detect.train.schedule import WarmupSchedule


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message says which and what to try."""


@dataclass(frozen=True)
class Stage:
    """One stage of a multi-stage schedule.

    Attributes:
      name: shown in logs.
      epochs: epochs of this stage.
      prepare: called with the task before the stage's first step (also on
        resume), e.g. to freeze layers; None for nothing.
    """

    name: str
    epochs: int
    prepare: Optional[Callable] = None


def make_strategy(name):
    """tf.distribute strategy for ``train.distribute``."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


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


def _divergence_message(name, value, step):
    return (f"{name} became {value} at step {step}. Training stopped; the last good checkpoint is kept. "
            f"Likely causes: a learning rate too high for this batch size (try --set "
            f"train.learning_rate=<smaller> or a longer train.warmup_epochs), boxes in the wrong format "
            f"(check the data with tools/check_dataset.py --show), or float16 overflow (train.mixed_precision).")


class Trainer:
    """Runs a task's training with validation, checkpoints and logs.

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
    """

    def __init__(self, task, train_cfg, run_dir, train_data, steps_per_epoch, evaluate=None, strategy=None,
                 config_snapshot=None, images_per_batch=None, progress=True, epoch_report=None):
        self.task = task
        self.cfg = train_cfg
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.train_data = train_data
        self.steps_per_epoch = int(steps_per_epoch)
        self.evaluate = evaluate
        self.strategy = strategy or tf.distribute.get_strategy()
        self.images_per_batch = images_per_batch or train_cfg.batch_size
        self.progress = progress
        self.epoch_report = epoch_report
        self.stages = list(task.stages()) if hasattr(task, "stages") else [Stage("train", train_cfg.epochs)]
        self.total_epochs = sum(stage.epochs for stage in self.stages)
        with self.strategy.scope():
            self.optimizer = build_optimizer(train_cfg, self.steps_per_epoch, self.total_epochs)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.optimizer.build(task.model.trainable_variables)
        self.store = CheckpointStore(self.run_dir, checkpoint_of(task.model, self.optimizer, epoch=self.epoch))
        if config_snapshot is not None:
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(config_snapshot, sort_keys=False))
        self.metrics_path = self.run_dir / "metrics.json"
        self.writer = tf.summary.create_file_writer(str(self.run_dir / "tb"))
        self._train_step = None

    # ---- one step -----------------------------------------------------------------
    def _make_train_step(self):
        task, optimizer, strategy = self.task, self.optimizer, self.strategy
        replicas = strategy.num_replicas_in_sync
        scale_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

        def step_fn(batch):
            with tf.GradientTape() as tape:
                outputs = task.model(batch["image"], training=True)
                losses = task.losses(outputs, batch)
                # Each replica's loss is a mean over its share; the sum of the
                # replicas' gradients must be the global mean's gradient.
                loss = losses["loss"] / replicas
                if scale_loss:
                    loss = optimizer.scale_loss(loss)
            variables = task.model.trainable_variables
            grads = tape.gradient(loss, variables)
            optimizer.apply_gradients(zip(grads, variables))
            return losses

        @tf.function(reduce_retracing=True)
        def train_step(batch):
            per_replica = strategy.run(step_fn, args=(batch,))
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

        return train_step

    def train_step(self, batch):
        """One optimisation step on a (distributed) batch; returns the loss parts."""
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
        committed checkpoint is restored and every derived file (``best.json``
        too) is rebuilt from it, so a kill at any point loses at most the
        uncommitted epoch, which is trained again; no record is lost or
        repeated.
        """
        history = {"epochs": [], "best": None}
        start_epoch = 0
        if resume:
            restored = self.store.restore("last")
            if restored is None:
                print(f"--resume: no checkpoint in {self.store.root}; starting from scratch", flush=True)
                self.store.reconcile(None)
            else:
                start_epoch = int(self.epoch.numpy())
                history = self._committed_history(start_epoch)
                self._rebuild_outputs(history)
                print(f"resumed from epoch {start_epoch} (step {int(self.optimizer.iterations.numpy())})",
                      flush=True)
        for epoch in range(start_epoch, self.total_epochs):
            stage = self._stage_of(epoch)
            if stage.prepare is not None and (epoch == start_epoch or epoch == self._stage_start(stage)):
                stage.prepare(self.task)
                self._train_step = None  # trainable variables may have changed
            losses, seconds = self._run_epoch(epoch, stage)
            report = self.epoch_report() if self.epoch_report is not None else None
            if report:
                print(report, flush=True)
            self.epoch.assign(epoch + 1)
            record = {"epoch": epoch + 1, "stage": stage.name, "seconds": round(seconds, 2),
                      "images_per_second": round(self.steps_per_epoch * self.images_per_batch / seconds, 2),
                      **{k: float(v) for k, v in losses.items()}}
            pointers = ["last"]
            last_epoch = epoch + 1 == self.total_epochs
            if self.evaluate is not None and ((epoch + 1) % max(self.cfg.eval_every, 1) == 0 or last_epoch):
                metrics = self.evaluate(self.task)
                record.update({k: float(v) for k, v in metrics.items()})
                best = history["best"]
                if best is None or metrics["mAP50"] > best["mAP50"]:
                    history["best"] = {"epoch": epoch + 1, "mAP50": float(metrics["mAP50"]),
                                       "AP": float(metrics["AP"])}
                    pointers.append("best")
                with self.writer.as_default():
                    for key in ("mAP50", "AP"):
                        tf.summary.scalar(f"val/{key}", metrics[key], step=epoch + 1)
                print(f"epoch {epoch + 1}: mAP@0.5 {metrics['mAP50']:.4f}  AP@[.5:.95] {metrics['AP']:.4f}",
                      flush=True)
            history["epochs"].append(record)
            self.store.save(epoch + 1, pointers, history=history)  # the commit
            # Derived from the commit; a kill here is repaired by --resume.
            save_weights_atomic(self.task.model, self.run_dir / "last.weights.h5")
            if "best" in pointers:
                save_weights_atomic(self.task.model, self.run_dir / "best.weights.h5")
            write_json_atomic(self.metrics_path, history)
        self.writer.flush()
        return history

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
        return {"epochs": records, "best": best}

    def _rebuild_outputs(self, history):
        """Rewrites ``best.json``, the weight exports and ``metrics.json`` from the committed state.

        Every write is idempotent, so a kill during this is repaired by the
        next resume. Leaves the model and optimizer as the last checkpoint.
        """
        best = history["best"]
        best_path = self.run_dir / "best.weights.h5"
        if self.store.reconcile(best["epoch"] if best else None):
            self.store.restore("best")
            save_weights_atomic(self.task.model, best_path)
            self.store.restore("last")
        elif best is None:
            best_path.unlink(missing_ok=True)
        else:
            print(f"--resume: the checkpoint of the best epoch ({best['epoch']}) is gone; "
                  f"best.weights.h5 is left as it is", flush=True)
        save_weights_atomic(self.task.model, self.run_dir / "last.weights.h5")
        write_json_atomic(self.metrics_path, history)

    def _stage_of(self, epoch):
        for stage in self.stages:
            if epoch < self._stage_start(stage) + stage.epochs:
                return stage
        return self.stages[-1]

    def _stage_start(self, stage):
        start = 0
        for s in self.stages:
            if s is stage:
                return start
            start += s.epochs
        return start

    def _run_epoch(self, epoch, stage):
        dataset = self.train_data(epoch)
        dist = self.strategy.experimental_distribute_dataset(dataset) \
            if not isinstance(dataset, tf.distribute.DistributedDataset) else dataset
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{self.total_epochs} [{stage.name}]",
                       unit="batch", dynamic_ncols=True, leave=True)
        sums, count = {}, 0
        start = time.perf_counter()
        for batch in dist:
            losses = self.train_step(batch)
            step = int(self.optimizer.iterations.numpy())
            values = {k: float(v) for k, v in losses.items()}
            for name, value in values.items():
                if not math.isfinite(value):
                    raise TrainingDiverged(_divergence_message(name, value, step))
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            lr = float(self._learning_rate(step))
            if step % max(self.cfg.log_every, 1) == 0:
                with self.writer.as_default():
                    for k, v in values.items():
                        tf.summary.scalar(f"train/{k}", v, step=step)
                    tf.summary.scalar("train/learning_rate", lr, step=step)
            if bar is not None:
                elapsed = time.perf_counter() - start
                bar.set_postfix({**{k.replace("loss_", ""): f"{v:.3f}" for k, v in values.items()},
                                 "lr": f"{lr:.2e}", "img/s": f"{count * self.images_per_batch / elapsed:.1f}"})
                bar.update(1)
            if count >= self.steps_per_epoch:
                break
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - start
        return {k: v / max(count, 1) for k, v in sums.items()}, seconds

    def _learning_rate(self, step):
        optimizer = self.optimizer
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        schedule = inner._learning_rate
        return schedule(step) if callable(schedule) else schedule


def _best_of(records):
    """The first record with the highest mAP50, as a history's ``best`` (None without any)."""
    best = None
    for e in records:
        if "mAP50" in e and (best is None or e["mAP50"] > best["mAP50"]):
            best = {"epoch": e["epoch"], "mAP50": float(e["mAP50"]), "AP": float(e["AP"])}
    return best


def config_snapshot(config):
    """Plain-dict copy of a config dataclass for ``config.yaml``."""
    return to_dict(config)


def summary_table(history):
    """The final summary: one row per evaluated epoch, then the best."""
    rows = [e for e in history["epochs"] if "mAP50" in e]
    lines = ["epoch   loss      mAP@0.5   AP@[.5:.95]  img/s"]
    for e in rows:
        lines.append(f"{e['epoch']:5d}   {e.get('loss', float('nan')):7.4f}   {e['mAP50']:.4f}    "
                     f"{e['AP']:.4f}       {e['images_per_second']:.1f}")
    best = history.get("best")
    if best:
        lines.append(f"best: epoch {best['epoch']}  mAP@0.5 {best['mAP50']:.4f}  AP@[.5:.95] {best['AP']:.4f}")
    return "\n".join(lines)


