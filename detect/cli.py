"""Small helpers shared by the command-line tools."""

import argparse
import importlib.abc
import importlib.machinery
import os
import signal
import sys

# Exit statuses every tool shares: done, and bad input (a named file or
# argument, reported on one line). check_dataset adds 1, problems found.
EXIT_OK = 0
EXIT_BAD_INPUT = 2
# 128 + SIGINT, the shell's status for a command stopped by Ctrl-C; a tool
# stopped by SIGTERM (``StopSignals``) ends the same way, after the same clean-up.
EXIT_INTERRUPTED = 130


def parse_class_names(items):
    """Class names from ``"a,b,c"`` or a list of such strings (commas or spaces).

    Raises:
      ValueError: no name given.
    """
    if isinstance(items, str):
        items = [items]
    names = [name for item in items for name in item.replace(",", " ").split()]
    if not names:
        raise ValueError("--classes is empty")
    return names


def class_names_arg(text):
    """argparse ``type=`` for a comma-separated class list."""
    try:
        return parse_class_names(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def os_error_line(error, path="", action=""):
    """One line for an ``OSError``: the file it names (else ``path``), then
    ``action`` (e.g. "cannot write") when given, then the reason."""
    prefix = f"{action}: " if action else ""
    return f"{error.filename or path}: {prefix}{error.strerror or error}"


def exit_now(code):
    """Ends a tool with ``code`` once its output is flushed, skipping interpreter teardown.

    tf.data threads running Python (``tf.numpy_function``) can abort the
    teardown with "terminate called without an active exception", turning a
    finished run into a failed exit status.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class StopSignals:
    """Ctrl-C (SIGINT) and SIGTERM ask the run to stop after the current frame or batch (``received``).

    The handler only records the signal, so no exception can cut a write in
    half; Python runs it between bytecodes, once the model call in progress
    returns, and the loops look at ``received`` between frames.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received = None
        self._previous = {}

    def _handle(self, signum, frame):
        self.received = signum

    def __enter__(self):
        self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for number, handler in self._previous.items():
            signal.signal(number, handler)


# Set to 1 to see TensorFlow's own start-up lines (C++ and absl logging).
VERBOSE_ENV = "DETECT_TF_LOGS"


class _KerasLater(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """While installed, importing the ``keras`` package fails with ImportError; finding it still works.

    ``import tensorflow`` imports Keras eagerly (``keras.src.optimizers``,
    and matplotlib with it: about a second on 2 cores) and goes on without
    it when that raises ImportError. TensorFlow still finds the package (it
    puts Keras' folders on ``tensorflow.__path__`` for ``tf.keras``), so the
    spec keeps the real location. Once this finder is removed, ``import
    keras`` (and ``tf.keras``) load Keras as usual.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        real = importlib.machinery.PathFinder.find_spec(name)
        return real and importlib.machinery.ModuleSpec(name, self, origin=real.origin)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise ImportError("keras: not loaded with TensorFlow (detect.cli.quiet_tensorflow(keras=False))")


def quiet_tensorflow(keras=True):
    """Imports TensorFlow with its start-up lines kept off the terminal.

    TensorFlow's C++ start-up logs ("Could not find cuda drivers", cuInit
    failures, oneDNN notes) go to file descriptor 2 before absl's logging is
    initialised, so ``TF_CPP_MIN_LOG_LEVEL`` does not hold them back; a user
    reads them as errors. They are written while the library loads and the
    devices are first listed, so both happen here with descriptor 2 pointed
    at a temporary file, which is replayed if the import fails. Call it in a
    tool's ``main`` after argument parsing (``--help`` stays fast).
    ``DETECT_TF_LOGS=1`` shows everything.

    ``keras=False`` leaves out the Keras import TensorFlow makes on its own
    (``_KerasLater``), for tools that build no Keras model (``tools/eval.py
    --gt/--dets``); a later ``import keras`` loads it then.
    """
    if keras or "tensorflow" in sys.modules or "keras" in sys.modules:
        return _import_tensorflow_quietly()
    later = _KerasLater()
    sys.meta_path.insert(0, later)
    try:
        _import_tensorflow_quietly()
        import tensorflow  # noqa: F401 -- already done unless DETECT_TF_LOGS=1 left it to the caller
    finally:
        sys.meta_path.remove(later)


def _import_tensorflow_quietly():
    """quiet_tensorflow's body: the import with descriptor 2 captured."""
    if os.environ.get(VERBOSE_ENV, "") not in ("", "0"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, 2)
            captured.seek(0)
            os.write(2, captured.read())
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
