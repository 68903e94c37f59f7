"""Loading evaluation files in a forked process while the caller imports TensorFlow.

A cold ``tools/eval.py`` on COCO-sized files spends seconds on each of two
things that do not depend on each other: importing TensorFlow and parsing
and checking the JSON files (500k detections). Both are single-core Python
work that holds the GIL, so threads cannot overlap them; a forked child can,
on a second core. It runs ``load_files`` and sends back the arrays (about
50 bytes per detection) and its step times; the parent imports TensorFlow
meanwhile.

The child is forked only while TensorFlow is not imported (TensorFlow's
threads do not survive a fork) and where ``fork`` exists; otherwise, and if
the child ends without an answer, ``load_files`` runs in this process when
the result is asked for. Either way the result and any ``InputError`` are
the ones ``load_files`` gives.
"""

import gc
import multiprocessing
import pickle
import signal
import sys
import traceback

from detect.phases import Phases


class BackgroundLoad:
    """``load_files(gt_path, dets_path, split, class_names)``, started at ``__enter__``.

    Use::

        with BackgroundLoad(gt_path, dets_path) as pending:
            import_tensorflow()                 # meanwhile, in the child: parse + check
            gt, dets = pending.result(phases)   # waits; raises InputError like load_files

    Leaving the block without asking for the result stops the child.
    """

    def __init__(self, gt_path, dets_path, split=None, class_names=None):
        self.args = (gt_path, dets_path, split, class_names)
        self.process = None
        self.conn = None

    @property
    def forked(self):
        """Whether a child is loading (False: ``result`` loads here)."""
        return self.process is not None

    def __enter__(self):
        if "tensorflow" not in sys.modules and "fork" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("fork")
            self.conn, child_end = context.Pipe(duplex=False)
            self.process = context.Process(target=_child, args=(child_end, self.conn, self.args), daemon=True)
            self.process.start()
            child_end.close()  # the child's end lives in the child only, so its exit reads as EOF here
        return self

    def result(self, phases=None):
        """(``GroundTruth``, ``DetectionRows``); the loading steps' times go to ``phases``.

        Raises:
          InputError: as ``load_files``.
        """
        phases = phases if phases is not None else Phases()
        if self.forked:
            with phases("wait for the loading process"):
                try:
                    ok, payload, child_phases = self.conn.recv()
                except (EOFError, OSError):  # the child died (killed, out of memory): load here instead
                    ok = None
                finally:
                    self._stop()
            if ok is not None:
                phases.merge(child_phases, prefix="[loading process] ")
                if not ok:
                    raise payload
                return payload
        from detect.eval.files import load_files

        return load_files(*self.args, phases=phases)

    def _stop(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.process is not None:
            if self.process.is_alive():
                self.process.terminate()
            self.process.join()
            self.process = None

    def __exit__(self, *exc):
        self._stop()


def _child(conn, parent_end, args):
    """The forked child: ``load_files`` and one message, (ok, result or exception, Phases)."""
    parent_end.close()
    # Ctrl-C is the parent's to handle (it stops this child on the way out),
    # not a second traceback from here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A short-lived process whose big objects (the parsed JSON) hold no cycles:
    # collections would only walk them.
    gc.disable()
    phases = Phases()
    try:
        from detect.eval.files import load_files

        message = (True, load_files(*args, phases=phases), phases)
    except Exception as error:  # noqa: BLE001 -- raised again in the parent
        message = (False, error, phases)
    try:
        try:
            conn.send(message)
        except (pickle.PicklingError, TypeError, AttributeError):  # an exception that does not pickle: its text
            conn.send((False, RuntimeError("".join(traceback.format_exception(message[1]))), phases))
    except OSError:  # the parent is gone: nobody to tell
        pass
    conn.close()
