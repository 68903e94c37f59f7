"""Starting a training from weights trained elsewhere: ``model.init_weights``.

Sources:

- a run directory of ``tools/train.py``: its best (else last) weights,
  built with the run's own ``config.yaml`` (its model and class list);
- a detector's ``.weights.h5`` file: in a run directory, or with its
  config beside it as ``<name>.config.yaml`` (``weights_config_path``;
  ``tools/convert_darknet.py`` writes one);
- ``imagenet`` (Keras downloads it) or a Keras-applications ``.h5`` file
  (the ``*_notop.h5`` files Keras caches, copied under ``weights/`` to work
  offline): the backbone alone, every backbone of the task (both of Faster
  R-CNN's alternating steps).

Each tensor is found by its key, the names of the layers that lead to it
(``variable_keys``: ``tiny/tiny_s1_down_conv/kernel``, ``out3_pred/bias``,
``detector_backbone/block1_conv1/kernel``), and its shape:

- same key, same shape: loaded;
- a layer of ``task.class_dependent_layers()`` (YOLO's prediction
  convolutions, Faster R-CNN's classifier and box regressor) of another
  shape, or absent from the source: re-initialised (left as built);
- any other tensor of another shape or absent from the source: an error
  naming the first and both shapes, unless ``model.init_skip_mismatch``,
  which leaves them as built (skipped);
- source tensors the model lacks are counted as unused.

A side model of the task (``training_state``: Faster R-CNN's step-2
backbone, which weights files do not hold) takes its own keys from the
source, else those of its twin (``backbone/...``).

A backbone source is matched against the backbones' tensors only.
``TransferReport.table`` is what training prints.
"""

import dataclasses
from pathlib import Path

import keras
import numpy as np

from detect.errors import InputError

IMAGENET = "imagenet"
WEIGHTS_SUFFIX = ".weights.h5"
CONFIG_SUFFIX = ".config.yaml"  # beside a detector's weights file: the experiment config it was built with
LOADED, REINITIALISED, SKIPPED = "loaded", "re-initialised", "skipped"


def variable_keys(model):
    """``[(key, variable)]`` of every weight of ``model``, each once, keyed by the layer names leading to it.

    Nested models (a backbone, Faster R-CNN's parts) add their name:
    ``tiny/tiny_s1_down_conv/kernel``. Keys are unique where layer names
    are unique within each model, which explicit layer names give.
    """
    found, seen = [], set()

    def walk(layer, prefix):
        sublayers = getattr(layer, "layers", None)
        if isinstance(layer, keras.Model) and sublayers is not None:
            for sub in sublayers:
                walk(sub, f"{prefix}{sub.name}/")
            return
        for variable in layer.weights:
            if id(variable) not in seen:
                seen.add(id(variable))
                found.append((f"{prefix}{variable.name}", variable))

    for layer in model.layers:
        walk(layer, f"{layer.name}/")
    return found


def weights_config_path(weights):
    """The experiment config that goes with a detector's ``.weights.h5`` file outside a run directory."""
    weights = Path(weights)
    stem = weights.name[:-len(WEIGHTS_SUFFIX)] if weights.name.endswith(WEIGHTS_SUFFIX) else weights.stem
    return weights.with_name(stem + CONFIG_SUFFIX)


@dataclasses.dataclass
class TransferReport:
    """What ``init_from`` did: ``(key, shape)`` lists per outcome, and the source."""

    source: str
    loaded: list = dataclasses.field(default_factory=list)
    reinitialised: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    unused: int = 0

    def table(self):
        """The lines training prints: tensors and parameters per outcome, the re-initialised layers named."""
        def params(entries):
            return sum(int(np.prod(shape)) for _, shape in entries)

        rows = [(LOADED, self.loaded), (REINITIALISED, self.reinitialised), (SKIPPED, self.skipped)]
        width = len("unused (source only)")
        lines = [f"init_weights: {self.source}", f"  {'':{width}}{'tensors':>9}  {'parameters':>12}"]
        for name, entries in rows:
            layers = sorted({key.rsplit('/', 1)[0] for key, _ in entries})
            named = f"  ({', '.join(layers[:6])}{', ...' if len(layers) > 6 else ''})" \
                if entries and name != LOADED else ""
            lines.append(f"  {name:{width}}{len(entries):>9}  {params(entries):>12,}{named}")
        lines.append(f"  {'unused (source only)':{width}}{self.unused:>9}")
        return "\n".join(lines)


def init_from(task, model_config):
    """Loads ``model_config.init_weights`` into ``task.model`` (module notes); returns the ``TransferReport``.

    Raises:
      InputError: naming the source: not found, no config beside a weights
        file, or (without ``init_skip_mismatch``) tensors that do not fit.
    """
    spec = model_config.init_weights
    if spec == IMAGENET or (Path(spec).is_file() and not Path(spec).name.endswith(WEIGHTS_SUFFIX)):
        values, source = _backbone_values(spec, task, model_config)
        scopes = tuple(f"{backbone.name}/" for backbone in _backbones(task))
    else:
        values, source = _detector_values(spec)
        scopes = ("",)
    return load_matching(task, values, source, scopes, model_config.init_skip_mismatch)


def load_matching(task, values, source, scopes=("",), skip_mismatch=False):
    """Assigns ``values`` ({key: array}) to the matching tensors of ``task.model``.

    Args:
      task: the task whose model receives the values.
      values: source tensors by ``variable_keys`` key.
      source: the source's name, for the report and messages.
      scopes: key prefixes of the tensors to match ("" = all of them).
      skip_mismatch: leave non-fitting tensors as built instead of raising.

    Returns:
      ``TransferReport``.

    Raises:
      InputError: a tensor outside the class-dependent layers does not fit
        (``skip_mismatch`` off); nothing is assigned then.
    """
    class_dependent = set(task.class_dependent_layers())
    report = TransferReport(source)
    assignments, mismatches, used = [], [], set()
    for key, variable, twin_key in _task_variable_keys(task):
        if not key.startswith(scopes):
            continue
        shape = tuple(variable.shape)
        layer = key.split("/")[-2]  # a key is layer names, then the variable's name
        found = key if key in values else twin_key  # a side model starts as its twin where the source lacks it
        value = values.get(found)
        if value is not None:
            used.add(found)
        if value is not None and tuple(value.shape) == shape:
            assignments.append((variable, value))
            report.loaded.append((key, shape))
        elif layer in class_dependent:
            report.reinitialised.append((key, shape))
        else:
            mismatches.append((key, shape, None if value is None else tuple(value.shape)))
    if mismatches and not skip_mismatch:
        key, shape, theirs = mismatches[0]
        where = "is absent from the source" if theirs is None else f"is {list(theirs)} in the source"
        raise InputError(source, f"init_weights: {len(mismatches)} tensor(s) do not fit the model; the first, "
                                 f"{key} {list(shape)} in the model, {where}. Start from weights of the same "
                                 f"architecture, or set model.init_skip_mismatch: true to leave them as built")
    report.skipped = [(key, shape) for key, shape, _ in mismatches]
    report.unused = len(set(values) - used)
    for variable, value in assignments:
        variable.assign(np.asarray(value, dtype=variable.dtype))
    return report


def _task_variable_keys(task):
    """``[(key, variable, twin key)]`` of ``task.model`` (twin key None) and of its side models
    (``training_state``; keys prefixed with the side model's name, twin keys with its twin's)."""
    found = [(key, variable, None) for key, variable in variable_keys(task.model)]
    for name, side in task.training_state().items():
        found += [(f"{name}/{key}", variable, f"{side.twin}/{key}") for key, variable in variable_keys(side.model)]
    return found


def _backbones(task):
    backbones = task.backbones()
    if not backbones:
        raise InputError("model.init_weights", f"{type(task).__name__} names no backbone to load weights into")
    return backbones


def _backbone_values(spec, task, model_config):
    """Keys (relative to a backbone) and values of the config's backbone built with ``spec``'s weights."""
    from detect.backbones import build_backbone

    try:
        backbone = build_backbone(model_config.backbone, weights=spec)
    except (ValueError, OSError) as error:
        raise InputError(spec, f"init_weights: cannot load into backbone {model_config.backbone!r} "
                               f"({' '.join(str(error).split())[:300]})") from None
    values = {key: variable.numpy() for key, variable in variable_keys(backbone)}
    prefixed = {f"{b.name}/{key}": value for b in _backbones(task) for key, value in values.items()}
    return prefixed, f"{spec} (backbone {model_config.backbone})"


def _detector_values(spec):
    """Keys and values of the detector a run directory or weights file holds, built with its own config."""
    from detect.models.registry import build_task
    from detect.train.experiment import load_experiment
    from detect.train.weights import load_weights, resolve_weights

    path = Path(spec)
    if not path.exists():
        raise InputError(spec, "init_weights: no such run directory or weights file")
    weights = resolve_weights(path)
    config_path = path / "config.yaml" if path.is_dir() else weights.parent / "config.yaml"
    if path.is_file() and weights_config_path(weights).is_file():
        config_path = weights_config_path(weights)
    if not config_path.is_file():
        raise InputError(spec, f"init_weights: no config for these weights: a run directory's config.yaml, or "
                               f"{weights_config_path(weights).name} beside the file (the experiment config "
                               f"it was built with)")
    config = load_experiment(config_path)
    classes = list(config.data.classes)
    if not classes:
        raise InputError(config_path, "init_weights: the config does not list its classes (data.classes)")
    task = build_task(config.model, len(classes), input_shape=(None, None, 3))
    load_weights(task.model, weights, len(classes))
    values = {key: variable.numpy() for key, variable in variable_keys(task.model)}
    return values, f"{weights} ({len(classes)} classes: {', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})"
