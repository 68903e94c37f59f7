"""``Detector``: a trained model for applications.

    from detect import Detector

    det = Detector.load("runs/yolo_shapes")          # a run directory
    for d in det(["a.jpg", "b.png"]):                  # paths, arrays, PIL images
        print(d.labels, d.boxes, d.scores)            # original-image pixels

A detector is backed either by the Keras model of a config (a run
directory, a weights file with its config, or ``from_config``) or by an
exported SavedModel (``tools/export.py``); both run the graph of
``detect.inference.graph`` and give the same boxes.

Inputs of one size go through the model together (``batch_size`` at a
time); the compiled function takes any batch and any image size, so a video
stream (or a folder of photos of mixed sizes) never retraces. Calls from
several threads are safe.

A list of files is decoded one batch at a time: their sizes come from the
file headers (``peek_size``), so 160 photos cost the memory of
``batch_size`` decoded ones, not of 160. Every input meets a pixel budget
(``max_pixels``, about 100 megapixels by default) before it is decoded.
"""

import dataclasses
import numbers
from pathlib import Path

import numpy as np

from detect.config import PRECISIONS, keras_policy
from detect.errors import InputError
from detect.inference.backends import KerasBackend, saved_model_backend
from detect.inference.detections import Detections
from detect.inference.images import DEFAULT_MAX_PIXELS, describe, peek_size, read_image


# Applications want confident detections; evaluation (mAP) wants them all,
# hence the configs' own score_threshold of 0.001.
DEFAULT_SCORE_THRESHOLD = 0.25
DEFAULT_BATCH_SIZE = 8


class Detector:
    """A trained detector: images in, ``Detections`` in original pixels out.

    Build one with ``Detector.load`` or ``Detector.from_config``.

    Args:
      max_pixels: the pixel budget of one input image, checked from a file's
        header before it is decoded (default ``DEFAULT_MAX_PIXELS``); None
        disables it. Also a keyword of ``load`` and ``from_config``.
      inputs: the files and folders the detector was read from (``load``
        and ``from_config`` fill it in): ``export`` never writes over them.

    Attributes:
      class_names: list of str, indexed by class id.
      config: the ``ExperimentConfig`` (None for a SavedModel).
    """

    def __init__(self, backend, class_names, config=None, source=None, batch_size=DEFAULT_BATCH_SIZE,
                 max_pixels=DEFAULT_MAX_PIXELS, inputs=()):
        self._backend = backend
        self.class_names = list(class_names)
        self.config = config
        self.source = source
        self.batch_size = _whole_number(batch_size, "batch_size")
        if max_pixels is not None:
            max_pixels = _whole_number(max_pixels, "max_pixels")
        self.max_pixels = max_pixels
        self.inputs = tuple(Path(p) for p in inputs)

    # ---- construction -------------------------------------------------------------
    @classmethod
    def load(cls, path, config=None, **kwargs):
        """A detector from a run directory, a weights file (with ``config``) or a SavedModel directory.

        Args:
          path: a ``tools/train.py`` run directory (its ``config.yaml`` and
            best, else last, weights), a ``.weights.h5`` file, or a
            directory written by ``tools/export.py --format saved_model``.
          config: for a weights file: its experiment config (a YAML path or
            an ``ExperimentConfig``; default: ``<name>.config.yaml`` beside
            it, as ``tools/convert_darknet.py`` writes); for a run directory
            it overrides the run's ``config.yaml``.
          kwargs: ``batch_size``, ``max_pixels``; ``precision`` (see
            ``from_config``) for a run directory or weights file.

        Raises:
          InputError: the path is none of those, or its files are broken:
          weights that are truncated or of another class count than the
          config, a SavedModel without its variables, an export whose JSON
          lists another class count than the model holds.
        """
        path = Path(path)
        if path.is_dir() and (path / "saved_model.pb").exists():
            return cls(*saved_model_backend(path), source=str(path), inputs=[path], **kwargs)
        if path.suffix == ".tflite":
            from detect.inference.tflite_backend import meta_path, tflite_backend

            return cls(*tflite_backend(path), source=str(path), inputs=[path, meta_path(path)], **kwargs)
        if path.is_dir():
            if config is None:
                if not (path / "config.yaml").exists():
                    raise InputError(path, "not a run directory (no config.yaml) nor a SavedModel "
                                           "(no saved_model.pb)")
                config = path / "config.yaml"
        elif not path.exists():
            raise InputError(path, "no such file or directory")
        elif config is None:
            from detect.train.transfer import weights_config_path

            config = weights_config_path(path)  # written beside it, e.g. by tools/convert_darknet.py
            if not config.is_file():
                raise InputError(path, f"a weights file needs its config: Detector.load(weights, config=...), "
                                       f"or {config.name} beside it")
        from detect.train.weights import resolve_weights

        return cls.from_config(config, weights=resolve_weights(path), inputs=[path], **kwargs)

    @classmethod
    def from_config(cls, config, weights=None, class_names=None, precision="float32", inputs=(), **kwargs):
        """A detector built from an experiment config, with weights or freshly initialised.

        Args:
          config: a YAML path or an ``ExperimentConfig``.
          weights: a ``.weights.h5`` file (or a run directory), or None.
          class_names: overrides the config's class list.
          precision: ``float32``, or ``bfloat16`` / ``float16`` to compute
            the network in that precision (Keras mixed precision; weights stay
            float32, decoding and NMS run in float32). bfloat16 pays on CPUs
            with AVX-512 BF16 or AMX, float16 on GPUs.
          inputs: more paths the detector was read from (``Detector``'s
            ``inputs``; the config file and weights are added).
          kwargs: ``batch_size``, ``max_pixels``.

        Raises:
          InputError: a bad config, or weights that are unreadable or do not
          fit the config's model (another class count, another model).
        """
        import keras

        from detect.models.registry import build_task
        from detect.train.experiment import ExperimentConfig, load_experiment

        if precision not in PRECISIONS:
            raise InputError("precision", f"{precision!r}; one of {', '.join(PRECISIONS)}")
        inputs = list(inputs)
        if not isinstance(config, ExperimentConfig):
            inputs.append(Path(config))
            config = load_experiment(config)
        names = list(class_names) if class_names is not None else _config_class_names(config)
        previous = keras.mixed_precision.global_policy()
        # Layers take the policy in force when they are built; the global one is restored after.
        keras.mixed_precision.set_global_policy(keras_policy(precision))
        try:
            task = build_task(config.model, len(names), input_shape=(None, None, 3))
        finally:
            keras.mixed_precision.set_global_policy(previous)
        source = None
        if weights is not None:
            from detect.train.weights import load_weights, resolve_weights

            source = str(resolve_weights(weights))
            load_weights(task.model, source, len(names))
            inputs.append(Path(source))
        return cls(KerasBackend(task, config), names, config=config, source=source, inputs=inputs, **kwargs)

    # ---- prediction ---------------------------------------------------------------
    @property
    def num_classes(self):
        return len(self.class_names)

    def predict(self, images, score_threshold=None, iou_threshold=None, max_detections=None, classes=None,
                bgr=False, skip_bad=False):
        """Detections of one image or a list of images.

        Args:
          images: an image (file path, its encoded bytes, [H, W, 3] uint8
            array, PIL image) or a list of them. PIL images may also be
            16-bit grey (``I;16``, as the path reader gives the file); float
            ones (mode ``F``) are refused like float arrays (see
            ``detect.inference.images``).
          score_threshold: keep detections scoring above it, in [0, 1]
            (default ``DEFAULT_SCORE_THRESHOLD``).
          iou_threshold: per-class NMS threshold, in [0, 1] (default: the config's).
          max_detections: per image, a whole number >= 1 (default: the config's).
          classes: class names or ids (ints, numpy ints) to keep, one or a
            list (None: all); applied before NMS.
          bgr: arrays are BGR (OpenCV frames).
          skip_bad: for a list, a bad input gives empty ``Detections`` with
            its ``error`` set instead of raising.

        Returns:
          ``Detections`` for one image; a list of them (in input order) for a list.

        Raises:
          InputError: naming a bad argument, or a bad input: unreadable
          path, more pixels than ``max_pixels``, not [H, W, 3] uint8,
          zero-size (all found before any image is run), or a file that
          does not decode (found when its batch is decoded, as files are
          decoded one batch at a time).
        """
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        if not items:
            raise InputError("images", "empty list: nothing to detect")
        options = self.resolve_options(score_threshold, iou_threshold, max_detections, classes)
        results = [None] * len(items)

        def bad(i, error):
            if single or not skip_bad:
                raise error
            results[i] = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32),
                                    [], None, describe(items[i]))
            results[i].error = error

        # Sizes (and the budget) from the headers first: a batch is decoded only when it runs.
        sizes = {}
        for i, item in enumerate(items):
            try:
                sizes[i] = peek_size(item, self.max_pixels)
            except InputError as error:
                bad(i, error)
        for indices in _same_size_groups(sizes, self.batch_size):
            arrays = {}
            for i in indices:
                try:
                    arrays[i] = read_image(items[i], bgr=bgr, max_pixels=self.max_pixels)
                except InputError as error:
                    bad(i, error)
            # Batched by the decoded shapes: a header's size only plans the batches.
            for same in _same_size_groups({i: a.shape for i, a in arrays.items()}, self.batch_size):
                out = self._backend.run(np.stack([arrays[i] for i in same]), *options)
                for row, i in enumerate(same):
                    results[i] = self._detections(out, row, arrays[i].shape[:2], describe(items[i]))
        return results[0] if single else results

    __call__ = predict

    def resolve_options(self, score_threshold=None, iou_threshold=None, max_detections=None, classes=None):
        """``predict``'s options with defaults filled in: (score, iou, max_detections, class mask [C]).

        ``export`` checks its thresholds here too, before any work.

        Raises:
          InputError: a threshold that is not a number in [0, 1], a
          ``max_detections`` that is not a whole number >= 1 (2.7 is refused,
          not truncated), an unknown class or a class that is neither a name
          nor an integer id.
        """
        score = DEFAULT_SCORE_THRESHOLD if score_threshold is None else _fraction(score_threshold, "score_threshold")
        iou = self._backend.iou_threshold if iou_threshold is None else _fraction(iou_threshold, "iou_threshold")
        max_det = (self._backend.max_detections if max_detections is None
                   else _whole_number(max_detections, "max_detections"))
        mask = np.ones(self.num_classes, np.float32)
        if classes is not None:
            mask[:] = 0.0
            if isinstance(classes, np.ndarray):
                classes = classes.tolist()  # numpy ids to Python ones (a 0-d array to one id)
            if isinstance(classes, (str, numbers.Number, np.generic)):
                classes = [classes]  # one name or id
            for c in classes:
                mask[self._class_id(c)] = 1.0
        return score, iou, max_det, mask

    def _class_id(self, c):
        if isinstance(c, str):
            if c not in self.class_names:
                raise InputError("classes", f"unknown class {c!r}; known: {', '.join(self.class_names)}")
            return self.class_names.index(c)
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, numbers.Integral):
            raise InputError("classes", f"{c!r} is neither a class name nor an integer class id")
        if not 0 <= int(c) < self.num_classes:
            raise InputError("classes", f"class id {c} is not in [0, {self.num_classes})")
        return int(c)

    def _detections(self, out, row, image_size, source):
        n = int(out["num_detections"][row])
        classes = out["classes"][row, :n].astype(np.int32)
        return Detections(out["boxes"][row, :n].astype(np.float32), out["scores"][row, :n].astype(np.float32),
                          classes, [self.class_names[c] for c in classes], tuple(int(v) for v in image_size),
                          source)

    # ---- the rest of the application's needs ------------------------------------------
    def draw(self, image, detections, bgr=False):
        """An annotated copy of an image: boxes, class names and scores.

        Args:
          image: what ``predict`` takes (path, array, PIL image).
          detections: its ``Detections``.
          bgr: the array is BGR, and so is the result.

        Returns:
          [H, W, 3] uint8, RGB (BGR with ``bgr=True``).
        """
        from detect.data.drawing import draw_boxes

        rgb = read_image(image, bgr=bgr, max_pixels=self.max_pixels)
        drawn = draw_boxes(rgb[..., ::-1], detections.boxes, detections.classes, self.class_names,
                           scores=detections.scores)
        return drawn if bgr else np.ascontiguousarray(drawn[..., ::-1])

    def evaluate(self, data=None, split="val", metric=None, save_dets=None):
        """mAP on a split of the config's dataset (or another), as ``tools/eval.py`` scores it.

        A Keras-backed detector runs the evaluation pipeline itself, so the
        numbers are those of ``tools/eval.py --config ... --weights ...``;
        an exported one (SavedModel, TFLite) predicts each image through its
        own graph and is scored the same way.

        Args:
          data: None for the config's dataset; a dataset root folder (the
            config's ``data`` section pointed at it); or an experiment config
            (YAML path or ``ExperimentConfig``) whose ``data`` section is used.
          split: ``val``, ``test``, ``train`` or a split name.
          metric: ``coco``, ``voc07``, ``voc12`` (default: by data format).
          save_dets: write the detections here (COCO results JSON).

        Returns:
          ``CocoResult`` or ``VocResult`` (``summary()``, ``mAP50``...).
        """
        if self.config is None:
            raise InputError(self.source or "Detector", "evaluate() needs the experiment config")
        from detect.train.experiment import ExperimentConfig, load_experiment
        from detect.eval.predict import evaluate_split

        config = self.config
        if isinstance(data, ExperimentConfig) or (data is not None and Path(data).is_file()):
            other = data if isinstance(data, ExperimentConfig) else load_experiment(data)
            config = dataclasses.replace(config, data=other.data)
        elif data is not None:
            if not Path(data).is_dir():
                raise InputError(data, "no such dataset folder or config file")
            config = dataclasses.replace(config, data=dataclasses.replace(config.data, root=str(data)))
        if self._backend.task is not None:
            return evaluate_split(config, None, split=split, metric=metric, save_dets=save_dets,
                                  task=self._backend.task)
        return self._evaluate_by_predict(config, split, metric, save_dets)

    def _evaluate_by_predict(self, config, split, metric, save_dets):
        from detect.eval.predict import score_results
        from detect.train.data import load_records, prepare_data, split_name

        prepare_data(config.data)
        split = split_name(config.data, split)
        records = load_records(config.data, split, self.class_names, skipped=[])
        results = []
        for start in range(0, len(records), self.batch_size):
            chunk = records[start:start + self.batch_size]
            found = self.predict([r.image_path if r.image_path is not None else r.image_bytes for r in chunk],
                                 score_threshold=config.model.score_threshold, skip_bad=True)
            for record, detections in zip(chunk, found):
                for entry in detections.to_coco(record.image_id, category_ids=self.class_names):
                    results.append(entry)
        return score_results(config, split, self.class_names, records, results, metric, save_dets)

    def export(self, out, format="saved_model", overwrite=False, **kwargs):
        """Writes the detector for serving or mobile; see ``detect.export``.

        Args:
          out: the SavedModel folder or ``.tflite`` file.
          format: ``saved_model`` or ``tflite``.
          overwrite: also replace a folder or file that is not an earlier
            export (never one of ``inputs``); see ``detect.export``.
          kwargs: the thresholds, and TFLite's options.

        Returns:
          the written path.
        """
        from detect import export

        return export.export(self, out, format=format, overwrite=overwrite, **kwargs)


def _same_size_groups(sizes, batch_size):
    """Indices of the images that can go through the model together: one size, at most batch_size.

    Args:
      sizes: dict image index -> its size (any hashable), or None for an
        unknown size (such an image goes alone).
    """
    groups = {}
    for i, size in sizes.items():
        groups.setdefault(("alone", i) if size is None else size, []).append(i)
    for indices in groups.values():
        for start in range(0, len(indices), batch_size):
            yield indices[start:start + batch_size]


def _fraction(value, name):
    """A threshold: a real number in [0, 1] (NaN and bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise InputError(name, f"{value!r} is not a number in [0, 1]")
    return float(value)


def _whole_number(value, name):
    """A count: a whole number >= 1 (3.0 passes as 3; 2.7, bools and NaN are refused, not truncated)."""
    whole = isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and float(value).is_integer())
    if isinstance(value, (bool, np.bool_)) or not whole or value < 1:
        raise InputError(name, f"{value!r} is not a whole number >= 1")
    return int(value)


def _config_class_names(config):
    """The class list a config trains with; needs the dataset when the config does not list them."""
    if config.data.classes:
        return list(config.data.classes)
    from detect.train.data import class_names_of

    try:
        return class_names_of(config.data)
    except (InputError, OSError) as error:
        raise InputError("data.classes", f"the config does not list its classes and the dataset cannot "
                                         f"tell them ({error}); pass class_names=") from None
