"""A trained run's detections on a split of its config's dataset, and their scores (``tools/eval.py --config``).

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

from detect.data.formats import VOC_LAYOUT_FORMATS, split_source
from detect.outputs import write_text_atomic
from detect.train.data import class_names_of, dataset_root, load_records, prepare_data, split_name
from detect.train.evaluation import predict_dataset
from detect.train.experiment import ExperimentConfig, load_experiment
from detect.train.weights import load_weights, resolve_weights


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
    from detect.models.registry import build_task
    from detect.train.run import make_datasets

    if task is None:
        task = build_task(config.model, len(class_names))
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
