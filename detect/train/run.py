"""``train_from_config``: the path from a YAML file to a trained, evaluated run."""

import contextlib
from pathlib import Path

import tensorflow as tf

from detect.errors import InputError
from detect.models.registry import build_task
from detect.train.experiment import load_experiment
from detect.train.data import class_names_of, load_records, prepare_data
from detect.train.distribute import is_chief, make_strategy
from detect.train.engine import Trainer
from detect.train.history import summary_table
from detect.train.optimizer import set_precision
from detect.train.snapshot import config_snapshot
from detect.train.evaluation import evaluate_predictions, make_predict_fn, predict_dataset
from detect.train.rundir import open_run_dir


def make_datasets(config, train_records, val_records, strategy, train_skipped=()):
    """(train_data(epoch, batch_size=None) -> dataset, val dataset, steps per epoch).

    ``train_skipped``: the ``InputError`` of each training image left out
    when the split was read; each epoch counts them among its skipped
    images, so the end-of-epoch summary names them with the others.

    Close mosaic: the last ``data.augment.close_mosaic`` of ``train.epochs``
    (0-based ``epoch``) train without mosaic and mixup
    (``AugmentConfig.for_epoch``).

    Several replicas: ``train.batch_size`` is the global batch, split evenly
    over the replicas (``distribute_dataset``). Each worker reads its own
    share of the images, dealt out before the shuffle (image ``i`` to
    worker ``i mod W``), so an epoch trains on every image once, across the
    workers, less the remainder of the global batch that one device also
    leaves out (fewer than ``train.batch_size`` images, a different few each
    epoch): each worker's share holds at least ``steps`` of its batches.
    """
    from detect.data.bad_input import pipeline_stats
    from detect.data.fit_cache import FitCache
    from detect.data.pipeline import build_dataset, distribute_dataset

    data, train = config.data, config.train

    geometry = dict(image_size=data.image_size, resize=data.resize, min_side=data.min_side,
                    max_side=data.max_side, size_divisor=data.size_divisor)

    replicas = 1 if strategy is None else strategy.num_replicas_in_sync  # None: evaluation, no training
    if train.batch_size % replicas:
        raise InputError("train.batch_size", f"{train.batch_size} images cannot be split evenly over "
                                             f"{replicas} replicas; use a multiple of {replicas}")

    # One for the whole run: every epoch's pipeline reads the images the first one fitted.
    fit_cache = FitCache(data.fit_cache_mb << 20) if data.fit_cache_mb else None

    def train_data(epoch, batch_size=None):
        batch_size = batch_size or train.batch_size  # a stage's own (Stage.batch_size), else the run's
        for error in train_skipped:
            pipeline_stats().skip(error.source, error.message, strict=False)

        def make(batch_size, input_context=None):
            return build_dataset(
                train_records, training=True, batch_size=batch_size, max_boxes=data.max_boxes,
                augment=data.augment.for_epoch(epoch, train.epochs), multiscale_sizes=data.multiscale_sizes or None,
                multiscale_every=data.multiscale_every, min_sides=data.min_sides, seed=train.seed + epoch,
                strict=data.strict, input_context=input_context, augment_workers=data.augment_workers,
                fit_cache=fit_cache, **geometry)

        return make(batch_size) if replicas == 1 else distribute_dataset(strategy, make, batch_size)

    def val_data():
        return build_dataset(val_records, training=False, batch_size=train.batch_size, max_boxes=data.max_boxes,
                             seed=train.seed, strict=data.strict, cache=data.cache, **geometry)

    steps = max(len(train_records) // train.batch_size, 1)
    return train_data, val_data, steps


def train_from_config(config_path, overrides=(), out_dir=None, resume=False, progress=True):
    """Trains the experiment a config file describes.

    Returns:
      The metrics history (``metrics.json``'s content).
    """
    config = load_experiment(config_path, overrides)
    run_dir = Path(out_dir) if out_dir else Path("runs") / config.name
    strategy = make_strategy(config.train.distribute)
    # Only the chief writes the run directory (the others write into a temporary folder).
    claim = open_run_dir(run_dir, resume) if is_chief(strategy) else contextlib.nullcontext()
    with claim:
        return _train(config, run_dir, strategy, resume, progress)


def _train(config, run_dir, strategy, resume, progress):
    tf.keras.utils.set_random_seed(config.train.seed)
    set_precision(config.train.mixed_precision)
    prepare_data(config.data)
    class_names = class_names_of(config.data)
    # Broken annotations are skipped and counted, or with data.strict stop the run here.
    train_skipped = None if config.data.strict else []
    val_skipped = None if config.data.strict else []
    train_records = load_records(config.data, config.data.train_split, class_names, train_skipped)
    val_records = load_records(config.data, config.data.val_split, class_names, val_skipped)
    print(f"{config.name}: {len(train_records)} training and {len(val_records)} validation images, "
          f"{len(class_names)} classes; run directory {run_dir}", flush=True)
    for split, skipped in (("training", train_skipped), ("validation", val_skipped)):
        for error in skipped or ():
            print(f"warning: {split} image skipped, broken annotation: {error}", flush=True)
    with strategy.scope():
        task = build_task(config.model, len(class_names))
    snapshot = config_snapshot(config)
    if config.model.init_weights:
        from detect.train.transfer import IMAGENET, init_from

        if not (resume and (Path(run_dir) / "checkpoints" / "last.json").exists()):  # else its checkpoint
            print(init_from(task, config.model).table(), flush=True)
        if config.model.init_weights != IMAGENET:  # the run records where it started, wherever it is run from
            snapshot["model"]["init_weights"] = str(Path(config.model.init_weights).resolve())
    train_data, val_data, steps = make_datasets(config, train_records, val_records, strategy, train_skipped or ())
    from detect.data.transforms import unmap_boxes

    predict_fn = make_predict_fn(task)

    def evaluate(task):
        predictions = predict_dataset(task, val_data(), unmap_boxes, predict_fn)
        summary, _ = evaluate_predictions(predictions, val_records, class_names)
        return summary

    from detect.data.bad_input import input_errors, pipeline_stats

    def epoch_report():
        # Skipped or repaired inputs of the epoch, then start counting afresh.
        stats = pipeline_stats()
        counts = stats.as_dict()
        events = stats.num_skipped + counts["truncated_boxes"] + counts["clipped_boxes"] + counts["degenerate_boxes"]
        text = stats.summary() if events else None
        stats.reset()
        return text

    # The run names its classes, so applications (Detector.load) need no dataset.
    snapshot["data"]["classes"] = list(class_names)
    trainer = Trainer(task, config.train, run_dir, train_data, steps, evaluate=evaluate, strategy=strategy,
                      config_snapshot=snapshot, images_per_batch=config.train.batch_size,
                      progress=progress, epoch_report=epoch_report, validation_data=val_data,
                      train_images=len(train_records))
    with input_errors():  # data.strict: the bad file as one line, not a TensorFlow traceback
        history = trainer.fit(resume=resume)
    print(summary_table(history), flush=True)
    best = history.get("best")
    if best:
        print(f"validation mAP@0.5 = {best['mAP50']:.4f} (epoch {best['epoch']}), "
              f"COCO AP@[.5:.95] = {best['AP']:.4f}", flush=True)
    return history
