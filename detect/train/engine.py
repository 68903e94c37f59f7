"""The training engine: model-agnostic loop, stages, checkpoints, validation, logs.

A *task* supplies the detector (``detect.models.registry.build_task`` makes one from a
config); what the engine calls on it is the task protocol,
``detect.models.protocol.Task``: ``model``, ``forward(batch, training,
mode)``, ``losses(outputs, batch)``, ``stages(train_cfg, validation_data)``
(None: the stages of ``train.freeze``, ``detect.train.freeze``, one stage of
``train.epochs`` without it) and, for ``train.freeze``, ``parts()``.

Stages (``detect.models.protocol.Stage``). Each stage has its own epochs,
learning rate, optimizer, forward mode, trained variables and validation
metric. On entering a stage the engine calls ``prepare(task)`` (freeze or
copy weights; it must be idempotent, since a resume calls it again), then
builds a fresh optimizer over the variables the stage trains, so momentum
never leaks across stages and un-freezing never meets Keras 3's "Unknown
variable", and a fresh training step, traced anew, that passes the stage's
``mode`` to ``task.forward``: no traced step reads state of the task that a
stage changes. The optimizer's step, and so the learning-rate schedule, starts
at 0 in each stage (warm-up and cosine are the stage's own; the run's
``train.step_epochs`` are restated in the stage's terms, ``Stage.train_config``,
unless the stage has its own); the checkpoint keeps a global step for the logs.
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

EMA of the weights (``train.ema``): validation and the weight exports use
an exponential moving average of the weights, restarted at each stage
(``detect.train.ema``).

Several machines (``detect.train.distribute``): every worker trains, saves
and restores alike, but only the chief writes the run directory and
validates; the others write into a scratch folder of their own, removed at
the end. ``--resume`` restores every worker from the run directory's last
checkpoint (the chief's), after checking that all of them found the same
one. With several replicas, BatchNormalization uses the global batch's
statistics (``train.sync_batchnorm``).
"""

import contextlib
import math
import shutil
import time
from pathlib import Path

import keras
import tensorflow as tf
import yaml

from detect.errors import InputError
from detect.outputs import write_text_atomic
from detect.train.checkpoints import (CheckpointStore, checkpoint_mismatch, read_json, save_weights_atomic,
                                      write_json_atomic)
from detect.train.distribute import agree_on_start, is_chief, scratch_dir, synchronize_batchnorm
from detect.train.ema import ModelEMA, checkpoint_has_ema
from detect.train.freeze import freeze_stages
from detect.train.history import best_of, metrics_line, validation_spread
from detect.train.optimizer import build_optimizer, l2_penalty, scale_bias_gradients
from detect.train.snapshot import changed_keys, read_yaml


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message says which and what to try."""


def _divergence_message(name, value, step):
    return (f"{name} became {value} at step {step}. Training stopped; the last good checkpoint is kept. "
            f"Likely causes: a learning rate too high for this batch size (try --set "
            f"train.learning_rate=<smaller> or a longer train.warmup_epochs), boxes in the wrong format "
            f"(check the data with tools/check_dataset.py --show), or float16 overflow (train.mixed_precision).")


class Trainer:
    """Runs a task's training with stages, validation, checkpoints and logs.

    Args:
      task: the detector task (``detect.models.protocol.Task``).
      train_cfg: ``TrainConfig``.
      run_dir: output folder (config snapshot, ``tb/`` logs, ``checkpoints/``,
        ``last.weights.h5``, ``best.weights.h5``, ``metrics.json``); the
        last three are exports of the committed checkpoint, rebuilt on resume.
        Several workers: the chief writes it, every worker resumes from it.
      train_data: ``fn(epoch) -> tf.data.Dataset`` of training batches; the
        epoch seeds its order, so a resumed epoch sees the same data. Called
        ``fn(epoch, batch_size=n)`` in a stage with its own ``batch_size``.
      steps_per_epoch: batches of ``train.batch_size`` per epoch.
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
      train_images: training images per epoch; needed by stages with their
        own ``batch_size`` (their steps per epoch).
    """

    def __init__(self, task, train_cfg, run_dir, train_data, steps_per_epoch, evaluate=None, strategy=None,
                 config_snapshot=None, images_per_batch=None, progress=True, epoch_report=None,
                 validation_data=None, train_images=None):
        self.task = task
        self.cfg = train_cfg
        self.strategy = strategy or tf.distribute.get_strategy()
        self.is_chief = is_chief(self.strategy)
        self.run_dir = Path(run_dir)  # the run: every worker resumes from it, the chief writes it
        self.out_dir = self.run_dir if self.is_chief else scratch_dir()  # where this process writes
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.train_data = train_data
        self.steps_per_epoch = int(steps_per_epoch)
        self.evaluate = evaluate
        self.images_per_batch = self.run_batch = images_per_batch or train_cfg.batch_size
        self.train_images = train_images
        self.progress = progress
        self.epoch_report = epoch_report
        side_models = [side.model for side in task.training_state().values()]
        synced = sum(synchronize_batchnorm(model, self.strategy, train_cfg.sync_batchnorm)
                     for model in [task.model, *side_models])
        if synced:
            print(f"{synced} BatchNormalization layers use the statistics of the global batch "
                  f"({self.strategy.num_replicas_in_sync} replicas; train.sync_batchnorm)", flush=True)
        self.stages = self._plan_stages(task, train_cfg, validation_data)
        self.total_epochs = sum(stage.epochs for stage in self.stages)
        replicas = self.strategy.num_replicas_in_sync
        for stage in self.stages:
            if stage.batch_size and stage.batch_size % replicas:
                raise InputError(f"stage {stage.name!r}", f"{stage.batch_size} images per step cannot be split "
                                                          f"evenly over {replicas} replicas; use a multiple of "
                                                          f"{replicas}")
        if len(self.stages) > 1 and self.is_chief:
            print(self.plan(), flush=True)
        with self.strategy.scope():
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            averaged = task.model.weights + [w for model in side_models for w in model.weights]
            self.ema = ModelEMA(averaged, train_cfg.ema_decay, train_cfg.ema_tau) if train_cfg.ema else None
        self.store = CheckpointStore(self.out_dir, None)  # this process's saves
        # The run's committed checkpoints, read on resume (the chief's own store on the chief).
        self.saved = self.store if self.is_chief else CheckpointStore(self.run_dir, None, create=False)
        self.stage_index = None
        self._enter_stage(0)
        self.config_snapshot = config_snapshot  # written by fit(), once a resume is known to fit the run
        self.metrics_path = self.out_dir / "metrics.json"
        self.writer = None  # TensorBoard's; created by fit(), after a resume is known to fit the run

    # ---- stages ---------------------------------------------------------------------
    @staticmethod
    def _plan_stages(task, train_cfg, validation_data):
        """The task's own stages, else the stages of ``train.freeze`` (one ``train`` stage without it)."""
        stages = task.stages(train_cfg, validation_data=validation_data)
        if stages is None:
            return freeze_stages(task, train_cfg)
        if train_cfg.freeze != "none":
            raise InputError("train.freeze", f"{train_cfg.freeze!r}: {type(task).__name__} has its own stages, "
                                             f"which decide what trains; use train.freeze: none")
        return list(stages)

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
            self.optimizer = build_optimizer(stage.train_config(self.cfg, start=self._stage_start(index)),
                                             self._stage_steps(stage), stage.epochs)
            self.optimizer.build(variables)
        self.variables = variables
        self.stage_index = index
        self.images_per_batch = self._own_batch(stage) or self.run_batch
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
        parts.update({name: side.model for name, side in self.task.training_state().items()})
        if self.ema is not None:
            parts["ema"] = self.ema.checkpoint()
        if with_optimizer:
            parts["optimizer"] = self.optimizer
        return tf.train.Checkpoint(**parts)

    def _restore(self, pointer):
        """Restores a committed checkpoint; its optimizer state only if it belongs to the current stage."""
        epoch = self.saved.epoch(pointer)
        same_stage = epoch is not None and epoch > 0 and self._stage_index(epoch - 1) == self.stage_index
        restored = self.saved.restore(pointer, checkpoint=self._checkpoint(with_optimizer=same_stage))
        if restored is not None and self.ema is not None and not checkpoint_has_ema(self.saved.path(pointer)):
            self.ema.reset()  # a run trained without the EMA: it starts here
        return restored

    def _averaged(self):
        """Context in which the model holds the weights to validate and export (the EMA's, if on)."""
        return self.ema.swapped_in() if self.ema is not None else contextlib.nullcontext()

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

    def _own_batch(self, stage):
        """``stage``'s images per step where they differ from the run's, else None."""
        return stage.batch_size if stage.batch_size not in (None, self.run_batch) else None

    def _stage_steps(self, stage):
        """Training steps per epoch of ``stage`` (its own batch size, else the run's)."""
        own = self._own_batch(stage)
        if own is None:
            return self.steps_per_epoch
        if self.train_images is None:
            raise ValueError(f"stage {stage.name!r} has its own batch size; the Trainer needs train_images")
        return max(self.train_images // own, 1)

    def plan(self):
        """The stages as a table: epochs, images per step, steps per epoch, iterations, and the
        iterations after which the learning rate steps down (``train.schedule: step``)."""
        lines = ["training plan (an epoch is one pass over the training images):",
                 f"  {'stage':16}{'epochs':>7}{'images/step':>13}{'steps/epoch':>13}{'iterations':>12}  decays after"]
        for index, stage in enumerate(self.stages):
            steps = self._stage_steps(stage)
            decays = stage.train_config(self.cfg, start=self._stage_start(index)).step_epochs \
                if self.cfg.schedule == "step" else ()
            after = ", ".join(f"{e * steps:,}" for e in decays) or "-"
            lines.append(f"  {stage.name:16}{stage.epochs:>7}{self._own_batch(stage) or self.run_batch:>13}{steps:>13,}"
                         f"{stage.epochs * steps:>12,}  {after}")
        return "\n".join(lines)

    # ---- one step -----------------------------------------------------------------
    def _make_train_step(self):
        """A new traced step for the current stage: its optimizer, variables and forward ``mode``."""
        task, optimizer, strategy, variables, ema = self.task, self.optimizer, self.strategy, self.variables, self.ema
        mode = self.stages[self.stage_index].mode
        replicas = strategy.num_replicas_in_sync
        scale_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        l2, bias_factor = self.cfg.l2, self.cfg.bias_lr_factor

        def step_fn(batch):
            with tf.GradientTape() as tape:
                outputs = task.forward(batch, training=True, mode=mode)
                losses = task.losses(outputs, batch)
                # Each replica's loss is a mean over its share; the sum of the
                # replicas' gradients must be the global mean's gradient.
                loss = (losses["loss"] + l2_penalty(variables, l2)) / replicas
                if scale_loss:
                    loss = optimizer.scale_loss(loss)
            grads = scale_bias_gradients(tape.gradient(loss, variables), variables, bias_factor)
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
            saved = self.saved.epoch("last") if self.saved.path("last") is not None else None
            if saved is not None:
                self._check_resumable()  # before anything is written
        self._write_config()
        if self.writer is None:
            self.writer = tf.summary.create_file_writer(str(self.out_dir / "tb"))
        if resume:
            if saved is None:
                print(f"--resume: no checkpoint in {self.saved.root}; starting from scratch", flush=True)
                self.store.reconcile(None)
            else:
                if self._stage_index(saved) != self.stage_index:
                    self._enter_stage(self._stage_index(saved))
                self._restore("last")
                start_epoch = int(self.epoch.numpy())
                history = self._committed_history(start_epoch)
                if self.is_chief:  # the derived files are the chief's (a non-chief's scratch has none)
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
            agree_on_start(self.strategy, start_epoch, self.run_dir)
        try:
            for epoch in range(start_epoch, self.total_epochs):
                self._train_epoch(epoch, history)
        finally:
            self.writer.flush()
            if not self.is_chief:
                shutil.rmtree(self.out_dir, ignore_errors=True)
        return history

    def _write_config(self):
        if self.config_snapshot is not None:
            write_text_atomic(self.out_dir / "config.yaml", yaml.safe_dump(self.config_snapshot, sort_keys=False))

    def _check_resumable(self):
        """Refuses a resume whose model does not fit the run's last checkpoint (a changed architecture).

        Raises:
          InputError: naming the run directory, the model keys that changed
            (from the run's ``config.yaml``) and the first variable that differs.
        """
        for record in (self.saved.history("last") or {}).get("epochs", []):
            planned = self.stages[self._stage_index(record["epoch"] - 1)].name
            if record.get("stage", planned) != planned:
                raise InputError(self.run_dir, f"--resume: epoch {record['epoch']} was trained in stage "
                                               f"{record['stage']!r}, but the config now schedules it in stage "
                                               f"{planned!r} (the stages' epochs changed). Nothing was written: "
                                               f"keep the earlier stages' epochs (set model.stage_epochs), or "
                                               f"train into a new --out")
        problem = checkpoint_mismatch(self.task.model, self.saved.path("last"))
        if problem is None:
            return
        changed = changed_keys(read_yaml(self.run_dir / "config.yaml"), self.config_snapshot, "model")
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
        if stage.validate and evaluate is not None and due and self.is_chief:  # the chief's history is the run's
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
            print(metrics_line(epoch + 1, metrics), flush=True)
        history["epochs"].append(record)
        history["last5"] = validation_spread(history)
        self.store.save(epoch + 1, pointers, history=history)  # the commit (raw weights and EMA)
        # Derived from the commit; a kill here is repaired by --resume.
        with self._averaged():
            save_weights_atomic(self.task.model, self.out_dir / "last.weights.h5")
            if "best" in pointers:
                save_weights_atomic(self.task.model, self.out_dir / "best.weights.h5")
        write_json_atomic(self.metrics_path, history)

    def _committed_history(self, epoch):
        """The history committed with the restored checkpoint of ``epoch``.

        Runs from before histories were embedded fall back to ``metrics.json``
        cut at ``epoch`` (an epoch whose record was never written stays lost).
        """
        history = self.saved.history("last")
        if history is not None:
            return history
        old = read_json(self.run_dir / "metrics.json") or {}
        records = [e for e in old.get("epochs", []) if e["epoch"] <= epoch]
        best = old.get("best")
        if best is None or best["epoch"] > epoch:
            best = best_of(records)
        history = {"epochs": records, "best": best}
        history["last5"] = validation_spread(history)
        return history

    def _rebuild_outputs(self, history):
        """Rewrites ``best.json``, the weight exports and ``metrics.json`` from the committed state.

        Every write is idempotent, so a kill during this is repaired by the
        next resume. Leaves the model and optimizer as the last checkpoint.
        """
        best = history["best"]
        best_path = self.out_dir / "best.weights.h5"
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
            save_weights_atomic(self.task.model, self.out_dir / "last.weights.h5")
        write_json_atomic(self.metrics_path, history)

    def _run_epoch(self, epoch, stage):
        """Trains one epoch; returns (mean loss parts, seconds, images)."""
        own = self._own_batch(stage)
        dataset = self.train_data(epoch) if own is None else self.train_data(epoch, batch_size=own)
        dist = self.strategy.experimental_distribute_dataset(dataset) \
            if not isinstance(dataset, tf.distribute.DistributedDataset) else dataset
        steps = self._stage_steps(stage)
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
