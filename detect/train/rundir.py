"""The run directory of a training: claimed and locked before anything is written into it.

- A new (or empty) folder becomes a run directory (``detect.outputs.MARKER``
  of kind ``run``).
- An existing run directory is only continued with ``--resume``; without it
  the training is refused, so a finished run is never replaced by running
  the same command twice.
- A folder that is not a run directory (not empty, no marker) is refused
  with or without ``--resume``.
- While a training writes the folder it holds ``detect.outputs.FolderLock``;
  a second training into the same folder is refused (the kernel drops the
  lock when its process ends, so a killed training leaves none).

Runs written before markers existed are recognised by their
``checkpoints/`` folder. A marked folder without ``config.yaml`` or
``checkpoints/`` (a training that stopped before its first write) is
taken as new.
"""

import contextlib
from pathlib import Path

from detect.errors import InputError
from detect.outputs import FolderLock, folder_kind, is_empty_folder, mark_folder, refuse_foreign

RUN_KIND = "run"
TOOL = "tools/train.py"


def is_run_dir(path):
    """Whether ``path`` holds a training run: its ``config.yaml`` or ``checkpoints/`` (a run that
    stopped before writing either, e.g. on a bad config value, left nothing to continue)."""
    path = Path(path)
    return path.is_dir() and ((path / "config.yaml").is_file() or (path / "checkpoints").is_dir())


def _check(path, resume):
    if path.exists() and not path.is_dir():
        raise InputError(path, "--out is a file; it names the run directory to write")
    if is_run_dir(path):
        if folder_kind(path) != RUN_KIND and not (path / "checkpoints").is_dir():
            refuse_foreign(path, RUN_KIND, TOOL, "--out")  # someone's config.yaml, not a run
        if not resume:
            raise InputError(path, "holds a training run already; nothing was written. Continue it with "
                                   "--resume, or train into a new --out")
    elif path.is_dir() and not is_empty_folder(path) and folder_kind(path) != RUN_KIND:
        refuse_foreign(path, RUN_KIND, TOOL, "--out")


@contextlib.contextmanager
def open_run_dir(run_dir, resume=False):
    """Context manager: ``run_dir`` claimed (checked, created, marked) and locked while the block runs.

    Args:
      run_dir: the run directory.
      resume: continuing the run is intended (``--resume``).

    Yields:
      ``Path(run_dir)``.

    Raises:
      InputError: before anything is written: the folder is foreign, holds
        a run and ``resume`` is off, or another training holds it.
    """
    path = Path(run_dir)
    _check(path, resume)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(path, f"--out: cannot create the run directory ({error.strerror or error})") from None
    with FolderLock(path, what="another training", option="--out"):
        _check(path, resume)  # again under the lock: another training may have claimed it meanwhile
        if folder_kind(path) != RUN_KIND:
            mark_folder(path, RUN_KIND, TOOL)
        yield path
