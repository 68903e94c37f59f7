"""Loading a trained run's weights into the model a config builds, with one-line errors."""

import re
import warnings
from pathlib import Path

from detect.errors import InputError


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
