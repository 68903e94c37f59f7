"""The train suite (``tools/benchmark.py train``): the engine's training step against a bare Keras step,
then the config's input pipeline; also the bare step's rate the data suite compares with."""

import tempfile
import time
from pathlib import Path

import numpy as np

from detect.bench.timing import alternating_rounds


def _bare_step(task, optimizer, variables, mode=None):
    """A ``tf.function`` training step with nothing around it: forward (in ``mode``, a stage's), loss,
    gradients, update."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def step(batch):
        with tf.GradientTape() as tape:
            loss = task.losses(task.forward(batch, training=True, mode=mode), batch)["loss"]
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return step


def _config_task_and_data(config_path, overrides):
    """(config, its task, ``train_data(epoch, batch_size=None)`` of its training pipeline)."""
    from detect.models.registry import build_task
    from detect.train.data import class_names_of, load_records, prepare_data
    from detect.train.experiment import load_experiment
    from detect.train.run import make_datasets

    config = load_experiment(config_path, overrides)
    prepare_data(config.data)
    names = class_names_of(config.data)
    records = load_records(config.data, config.data.train_split, names)
    task = build_task(config.model, len(names))
    train_data, _, _ = make_datasets(config, records, records, strategy=None)
    return config, task, train_data


def training_step_rate(config_path, overrides=(), steps=10, rounds=3):
    """(images/s of a config's bare training step on cached batches of its own pipeline, a label)."""
    from detect.train.optimizer import build_optimizer

    config, task, train_data = _config_task_and_data(config_path, overrides)
    iterator = iter(train_data(0).repeat())
    batches = [next(iterator) for _ in range(steps)]
    del iterator
    variables = task.model.trainable_variables
    optimizer = build_optimizer(config.train, steps, 1)
    optimizer.build(variables)
    step = _bare_step(task, optimizer, variables)
    times = []
    for _ in range(rounds + 1):  # the first round traces
        start = time.perf_counter()
        for batch in batches:
            loss = step(batch)
        float(loss)
        times.append(time.perf_counter() - start)
    images = steps * config.train.batch_size
    return images / float(np.median(times[1:])), f"{Path(config_path).name} (batch {config.train.batch_size})"


def _bench_trainer(task, config, batches, steps, batch_size, run_dir):
    """A ``Trainer`` whose every epoch is the ``steps`` cached ``batches`` (train_images: its steps per epoch)."""
    from detect.train.engine import Trainer

    return Trainer(task, config.train, run_dir, lambda epoch, batch_size=None: batches, steps,
                   images_per_batch=config.train.batch_size, train_images=steps * batch_size, progress=False)


def engine_round_fn(task, config, batches, steps, batch_size, run_dir):
    """A no-argument function running one engine epoch (the first stage) over the cached ``batches``."""
    trainer = _bench_trainer(task, config, batches, steps, batch_size, run_dir)
    stage = trainer.stages[trainer.stage_index]
    return lambda: trainer._run_epoch(0, stage)


def bench_train(config_path, steps, overrides=(), rounds=5, stage=None):
    """A config's training step: the engine against a bare Keras step, then the input pipeline.

    Engine overhead: ``Trainer``'s epoch loop (its step, loss read-back, NaN
    check, logs) over ``steps`` cached batches, against a bare
    ``tf.function`` step over the same task forward pass, loss, optimizer
    settings and trained variables on the same batches, with no engine
    around it; rounds alternate, and the medians (and the best rounds, the
    least disturbed on a shared machine, as timeit uses) are compared (goal:
    <= 10%). Then the step fed by the config's own pipeline, and the
    pipeline alone. Any registered model type; a multi-stage schedule
    (Faster R-CNN's alternating steps) is timed in ``stage`` (a stage name;
    default the first).
    """
    import tensorflow as tf

    from detect.errors import InputError
    from detect.train.optimizer import build_optimizer

    config, task, train_data = _config_task_and_data(config_path, overrides)
    # The timed stage's images per step: a task's own stage may set them (the engine's default stages do not).
    own = [s for s in task.stages(config.train) or [] if s.name == stage or stage is None][:1]
    batch_size = (own[0].batch_size if own else None) or config.train.batch_size
    model = config.model
    kind = model.display_name()
    size = (f"{config.data.image_size} px" if config.data.resize == "letterbox"
            else f"shortest side {config.data.min_side}, longest <= {config.data.max_side}")
    print(f"{config.name}: {kind} {model.backbone} at {size}, batch {batch_size}, "
          f"{task.model.count_params() / 1e6:.2f} M parameters; {steps} steps per round, {rounds} rounds", flush=True)
    iterator = iter(train_data(0, batch_size=batch_size).repeat())
    cached = [next(iterator) for _ in range(steps)]
    batches = tf.data.Dataset.from_tensors(cached[0])
    for batch in cached[1:]:
        batches = batches.concatenate(tf.data.Dataset.from_tensors(batch))
    trainer = _bench_trainer(task, config, batches, steps, batch_size, tempfile.mkdtemp(prefix="detect-bench-train-"))
    stage_names = [s.name for s in trainer.stages]
    if stage is not None:
        if stage not in stage_names:
            raise InputError("benchmark.py", f"--stage {stage!r}: the schedule's stages are {', '.join(stage_names)}")
        trainer._enter_stage(stage_names.index(stage))
    timed = trainer.stages[trainer.stage_index]
    if len(stage_names) > 1:
        print(f"stage {timed.name!r} of {', '.join(stage_names)}", flush=True)
    bare_optimizer = build_optimizer(timed.train_config(config.train), steps, 1)
    variables = trainer.variables
    bare_optimizer.build(variables)

    bare_step = _bare_step(task, bare_optimizer, variables, mode=timed.mode)

    def bare_round():
        for batch in batches:
            loss = bare_step(batch)
        float(loss)

    def engine_round():
        trainer._run_epoch(0, timed)

    rounds_of = {"engine": engine_round, "bare": bare_round}
    cold, timings = alternating_rounds(rounds_of, rounds)
    median = {k: float(np.median(v)) for k, v in timings.items()}
    best = {k: min(v) for k, v in timings.items()}
    labels = {"engine": "engine step (Trainer epoch loop)",
              "bare": "bare Keras step (tf.function, same model, loss, optimizer, batches)"}
    for key, label in labels.items():
        rate = steps * batch_size / median[key]
        print(f"{label}: cold {cold[key]:.1f} s (tracing), warm {median[key] / steps * 1e3:.0f} ms/step median, "
              f"{best[key] / steps * 1e3:.0f} ms/step best ({rate:.{3 if rate < 1 else 1}f} images/s median)")
    print(f"engine overhead: {100 * (median['engine'] / median['bare'] - 1):+.1f}% median, "
          f"{100 * (best['engine'] / best['bare'] - 1):+.1f}% best round (goal <= 10%)", flush=True)

    start = time.perf_counter()
    for _ in range(steps):
        loss = bare_step(next(iterator))
    float(loss)
    fed = steps * batch_size / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    data_only = steps * batch_size / (time.perf_counter() - start)
    print(f"training step fed by its pipeline: {fed:.1f} images/s | pipeline alone: {data_only:.1f} images/s "
          f"(x{data_only / (steps * batch_size / median['bare']):.1f} the step)")
    return 0
