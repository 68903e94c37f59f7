"""File paths taken from annotations, confined to the dataset root.

An annotation names its image (COCO ``file_name``, VOC ``<filename>``) and
a YOLO dataset is a folder tree that may hold symbolic links. Joined to the
root as they are, ``../../etc/passwd``, an absolute path or a link that
points elsewhere would make the readers, the converter and the training
pipeline read any file the user can read, and copy it into TFRecords. So
every such path is resolved (``..`` and links followed) and refused unless
it stays under the resolved root. A dataset whose files really live
elsewhere opts in with ``allow_outside_root`` (``data.allow_outside_root``
in a config, ``--allow-outside-root`` in the tools).
"""

import os
from pathlib import Path

from detect.errors import InputError

OPT_IN = "data.allow_outside_root: true (--allow-outside-root)"


class OutsideRootError(InputError):
    """A path from an annotation leads outside the dataset root."""


def confined_path(root, name, source, where, allow_outside_root=False):
    """``root / name``, refused if it resolves to a place outside ``root``.

    Args:
      root: the dataset root (or the folder names are relative to).
      name: the path as the annotation gives it (str or Path); absolute
        paths and ``..`` are allowed only while they stay inside.
      source: the file that names it, for the error.
      where: the entry in that file (``"images[3] (id 7): file_name"``).
      allow_outside_root: skip the check (the path is returned as joined).

    Returns:
      ``Path(root) / name``, not resolved (so paths keep the form the user
      gave the root in).

    Raises:
      OutsideRootError: naming ``source``, ``where``, the path and where it
        resolves to.
    """
    path = Path(root) / name
    if allow_outside_root or is_inside(path, root):
        return path
    raise OutsideRootError(
        source, f"{where}: {str(name)!r} resolves to {os.path.realpath(path)}, outside the dataset "
                f"root {os.path.realpath(root)}; refused (set {OPT_IN} if that is intended)")


def is_inside(path, root):
    """True if ``path`` resolves (links and ``..`` followed) to ``root`` or below it."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


__all__ = ["OPT_IN", "OutsideRootError", "confined_path", "is_inside"]
