"""A trained run's detections on a split of its config's dataset, and their scores."""

import json
import tempfile
from pathlib import Path

from detect.errors import InputError
from detect.train.data import class_names_of, dataset_root, load_records, prepare_data
from detect.train.evaluation import predict_dataset
from detect.train.experiment import load_experiment


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


def split_name(data_cfg, split):
    """``val`` / ``test`` / ``train`` name the config's splits; anything else is literal."""
    if split is None or split == "val":
        return data_cfg.val_split
    if split == "test":
        return data_cfg.test_split or split
    if split == "train":
        return data_cfg.train_split
    return split


def predict_split(config_path, weights, split=None, overrides=()):
    """Runs a trained model over a split; detections in original-image pixels.

    Returns:
      (config, split, class names, records, list of COCO-style result dicts:
      ``image_id`` (the record's id), ``category_id`` (the class name),
      ``bbox`` x, y, w, h, ``score``).
    """
    config = load_experiment(config_path, overrides)
    prepare_data(config.data)
    class_names = class_names_of(config.data)
    split = split_name(config.data, split)
    records = load_records(config.data, split, class_names)

    from detect.data.pipeline import build_dataset
    from detect.data.transforms import unmap_boxes
    from detect.train.run import build_task

    task = build_task(config, len(class_names))
    task.model.load_weights(str(resolve_weights(weights)))
    dataset = build_dataset(records, training=False, batch_size=config.train.batch_size,
                            image_size=config.data.image_size, max_boxes=config.data.max_boxes)
    results = []
    for image_id, boxes, scores, classes in predict_dataset(task, dataset, unmap_boxes):
        for box, score, cls in zip(boxes, scores, classes):
            x1, y1, x2, y2 = (float(v) for v in box)
            results.append({"image_id": image_id, "category_id": class_names[int(cls)],
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    return config, split, class_names, records, results


def evaluate_split(config_path, weights, split=None, metric=None, overrides=(), save_dets=None):
    """Scores a trained model on a split exactly as ``tools/eval.py --gt --dets`` would.

    For a VOC-layout dataset the detections are written to a results file
    and scored through the same file path as ``tools/eval.py``.

    Returns:
      The ``CocoResult`` or ``VocResult``.
    """
    config, split, class_names, records, results = predict_split(config_path, weights, split, overrides)
    if save_dets:
        Path(save_dets).write_text(json.dumps(results))
    if config.data.format not in ("voc", "shapes"):
        raise InputError(config_path, f"--config evaluation supports VOC-layout data for now, "
                                      f"not data.format={config.data.format!r}; use --save-dets and --gt")
    from detect.eval.files import evaluate_files

    with tempfile.TemporaryDirectory() as tmp:
        dets_path = Path(save_dets) if save_dets else Path(tmp) / "dets.json"
        if not save_dets:
            dets_path.write_text(json.dumps(results))
        return evaluate_files(dataset_root(config.data), dets_path, metric=metric or "voc12", split=split,
                              class_names=class_names)
