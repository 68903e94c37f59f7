"""A trained run's detections on a split of its config's dataset, and their scores.

Every ``data.format`` works: the split is read by the training dispatcher
(``detect.train.data``), predicted through the validation pipeline
(``detect.train.run.make_datasets``) and scored by the loaders and metrics
behind ``tools/eval.py``:

- voc, shapes: the VOC folder (``load_voc_gt``); default metric voc12.
- coco: the split's instances JSON (``load_coco_gt``); default metric coco.
- yolo, tfrecord: the split's records (``records_ground_truth``), having
  no ground-truth file of their own; default metric coco.
"""

import json
import re
import warnings
from pathlib import Path

from detect.data.formats import VOC_LAYOUT_FORMATS, split_source
from detect.errors import InputError
from detect.outputs import write_text_atomic
from detect.train.data import class_names_of, dataset_root, load_records, prepare_data
from detect.train.evaluation import predict_dataset
from detect.train.experiment import ExperimentConfig, load_experiment


def resolve_weights(path):
    """A ``.weights.h5`` file, or a run directory's best (else last) weights."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.weights.h5", "last.weights.h5"):
            if (path / name).exists():
                return path / name
        raise InputError(path, "no best.weights.h5 or last.weights.h5 in this run directory")
    if not path.exists():
        raise InputError(path, "weights file not found")
    return path


# Per-class output widths, for naming the class count of weights that do not fit: YOLO's
# anchors x (5 + C), Faster R-CNN's C + 1 scores and 4 x (C + 1) box deltas.
_PER_CLASS_OFFSETS = (5, 1)
_SHAPES = re.compile(r"variable\.shape=\(([^)]*)\), Received: value\.shape=\(([^)]*)\)")
_VARIABLE = re.compile(r"Target variable: <Variable path=([^,\s]+)")


def load_weights(model, path, num_classes=None):
    """Loads a ``.weights.h5`` file into ``model``; a file that is not one, or does not fit, is one line.

    Keras' warnings while loading are passed on only if the load succeeds.

    Args:
      model: the Keras model a config builds.
      path: the weights file.
      num_classes: the config's class count, for the message when shapes differ.

    Raises:
      InputError: naming ``path``: empty, truncated or not HDF5; or weights
      of other shapes (e.g. "the weights hold 3 classes, the config 4").
    """
    path = Path(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(str(path))
        except OSError as error:  # h5py: "file signature not found", "truncated file: eof = ..."
            raise InputError(path, f"not a readable weights file (empty, truncated or not HDF5: "
                                   f"{error.strerror or error})") from None
        except ValueError as error:
            raise InputError(path, _mismatch(str(error), num_classes)) from None
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _mismatch(text, num_classes):
    """One line for Keras' "could not be loaded" error (which dumps the variable's values)."""
    shapes, variable = _SHAPES.search(text), _VARIABLE.search(text)
    if shapes is None:
        return (f"the weights do not fit the config's model (another model or class list?): "
                f"{' '.join(text.split('Target variable')[0].split())[:300]}")
    model_shape, file_shape = ([int(v) for v in part.split(",") if v.strip()] for part in shapes.groups())
    name = variable.group(1) if variable else "a variable"
    where = f"{name} is {tuple(file_shape)} in the file, {tuple(model_shape)} in the model"
    counts = set()
    if num_classes and len(model_shape) == len(file_shape) and model_shape[:-1] == file_shape[:-1]:
        for offset in _PER_CLASS_OFFSETS:
            unit = num_classes + offset
            if model_shape[-1] % unit == 0 and file_shape[-1] % (model_shape[-1] // unit) == 0:
                counts.add(file_shape[-1] // (model_shape[-1] // unit) - offset)
    if len(counts) == 1 and min(counts) >= 1:
        return (f"the weights hold {min(counts)} classes, the config {num_classes} ({where}); load them with "
                f"the config they were trained with")
    return f"the weights do not fit the config's model (another model or class list?): {where}"


def split_name(data_cfg, split):
    """``val`` / ``test`` / ``train`` name the config's splits; anything else is literal."""
    if split is None or split == "val":
        return data_cfg.val_split
    if split == "test":
        return data_cfg.test_split or split
    if split == "train":
        return data_cfg.train_split
    return split


def predict_split(config_path, weights, split=None, overrides=(), task=None):
    """Runs a trained model over a split; detections in original-image pixels.

    Args:
      config_path: a YAML path, or an ``ExperimentConfig`` (``overrides``
        then unused).
      weights: a run directory or ``.weights.h5`` file; unused with ``task``.
      task: an already built and loaded task (``Detector.evaluate``).

    Returns:
      (config, split, class names, records, list of COCO-style result dicts:
      ``image_id`` (the record's own id: a VOC / YOLO stem, a COCO id),
      ``category_id`` (the class name), ``bbox`` x, y, w, h, ``score``).
    """
    config = config_path if isinstance(config_path, ExperimentConfig) else load_experiment(config_path, overrides)
    prepare_data(config.data)
    class_names = class_names_of(config.data)
    split = split_name(config.data, split)
    records = load_records(config.data, split, class_names)

    from detect.data.transforms import unmap_boxes
    from detect.train.run import build_task, make_datasets

    if task is None:
        task = build_task(config, len(class_names))
        load_weights(task.model, resolve_weights(weights), len(class_names))
    # The validation pipeline of training itself, so these are the numbers training reported.
    _, val_data, _ = make_datasets(config, records, records, strategy=None)
    # The pipeline carries ids as strings; results name images by the record's own id.
    original_id = {str(r.image_id): r.image_id for r in records}
    results = []
    for image_id, boxes, scores, classes in predict_dataset(task, val_data(), unmap_boxes):
        for box, score, cls in zip(boxes, scores, classes):
            x1, y1, x2, y2 = (float(v) for v in box)
            results.append({"image_id": original_id[image_id], "category_id": class_names[int(cls)],
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    return config, split, class_names, records, results


def evaluate_split(config_path, weights, split=None, metric=None, overrides=(), save_dets=None, task=None):
    """Scores a trained model on a split exactly as ``tools/eval.py --gt --dets`` would.

    Args:
      config_path, weights, split, overrides, task: see ``predict_split``.
      metric: ``"coco"``, ``"voc07"`` or ``"voc12"``; None for
        ``default_metric``.
      save_dets: write the detections (COCO results JSON) here. For COCO
        data they carry the JSON's image and category ids, so
        ``tools/eval.py --gt <the split's JSON> --dets <file>`` gives the
        same numbers; for VOC data the stems and class names that
        ``tools/eval.py --gt <VOC root>`` reads.

    Returns:
      The ``CocoResult`` or ``VocResult``.
    """
    config, split, class_names, records, results = predict_split(config_path, weights, split, overrides, task)
    return score_results(config, split, class_names, records, results, metric, save_dets)


def score_results(config, split, class_names, records, results, metric=None, save_dets=None):
    """Scores ``predict_split``'s results (any detector's, in its format) against the split's ground truth.

    Args:
      config, split, class_names, records, results: as ``predict_split`` returns them.
      metric, save_dets: see ``evaluate_split``.
    """
    from detect.eval.files import default_metric, evaluate
    from detect.eval.loaders import (load_coco_dets, load_coco_gt, load_voc_dets, load_voc_gt,
                                     records_ground_truth)

    data_cfg = config.data
    if data_cfg.format == "coco":
        gt = load_coco_gt(split_source(data_cfg, split))
        category_id = dict(zip(gt.class_names, gt.category_ids))
        results = [dict(r, category_id=category_id[r["category_id"]]) for r in results]
        load_dets = load_coco_dets
    elif data_cfg.format in VOC_LAYOUT_FORMATS:
        gt = load_voc_gt(dataset_root(data_cfg), split, class_names, skip_unknown=data_cfg.skip_unknown,
                         allow_outside_root=data_cfg.allow_outside_root)
        load_dets = load_voc_dets
    else:
        # No ground-truth file of its own: the records the model was run on.
        gt = records_ground_truth(records, class_names, source=str(split_source(data_cfg, split)))
        load_dets = load_voc_dets
    if save_dets:
        write_text_atomic(save_dets, json.dumps(results))
    return evaluate(gt, load_dets(results, gt), metric or default_metric(data_cfg.format in VOC_LAYOUT_FORMATS))
