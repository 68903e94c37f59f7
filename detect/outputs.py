"""What a tool may write: a new path or one it created itself, never one of its inputs.

The rule every tool follows (README, "Bad input"):

- A folder output (a run directory, a SavedModel, ``tools/detect.py``'s
  annotated images, plots) is written only if it does not exist, is empty,
  or holds this project's ``MARKER`` file of the same kind, written when the
  tool created it. Anything else is refused with one line naming the path
  and the option; ``--overwrite`` (replace) or ``--exist-ok`` (write into)
  says otherwise where a tool offers them.
- A file output (``--json``, ``--save-dets``, a ``.tflite``, a weights
  file) is written only if it does not exist; ``--overwrite`` allows
  replacing an existing one.
- An output never replaces an input, ``--overwrite`` or not: paths are
  compared resolved, and by inode where both exist (hard and symbolic links).
- Files are written to a temporary sibling and renamed into place when
  complete (``os.replace``, atomic), so a failed or killed write leaves the
  previous file intact. A folder that is replaced as a whole (a SavedModel)
  is built in a temporary sibling folder and swapped in at the end.

Temporary siblings are named ``.NAME.KIND-PID``; those whose process is
gone (a killed run) are removed by the next writer
(``remove_stale_temporaries``), those of a live process are kept.
"""

import contextlib
import glob
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from detect.errors import InputError

# Written into every folder a tool creates: {"kind": ..., "tool": ...}.
MARKER = ".detect-output.json"
# A run directory's lock while a training writes it: {"pid": ..., "host": ...}.
LOCK = ".lock"


# ---- processes and temporaries ----------------------------------------------------

def pid_alive(pid):
    """Whether process ``pid`` exists on this machine (True when that cannot be told)."""
    if os.name == "nt":
        return True  # os.kill would terminate it there, not probe it
    if pid <= 0:  # os.kill(0 or negative) would signal process groups
        return False
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. PermissionError: it exists, owned by another user
    return True


def temporary_sibling(path, kind, pid=None):
    """``path``'s temporary sibling ``.NAME.KIND-PID`` (this process's by default)."""
    path = Path(path)
    return path.parent / f".{path.name}.{kind}-{os.getpid() if pid is None else pid}"


def remove_stale_temporaries(path, kinds=("tmp", "old")):
    """Removes ``temporary_sibling``s of ``path`` whose process is gone (killed mid-write)."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    for kind in kinds:
        for temp in path.parent.glob(f".{glob.escape(path.name)}.{kind}-*"):
            pid = temp.name.rsplit("-", 1)[1]
            # A live pid is a concurrent writer (or a recycled pid: keeping it is the safe side).
            if pid.isdigit() and not pid_alive(int(pid)):
                _remove(temp)


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# ---- atomic files -------------------------------------------------------------------

def _umask():
    mask = os.umask(0o022)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import: changing it briefly later could race other threads' writes


def default_mode(folder=False):
    """The permissions ``open`` or ``mkdir`` would give a new file (folder) under the process's umask."""
    return (0o777 if folder else 0o666) & ~_UMASK


@contextlib.contextmanager
def atomic_path(path):
    """Context manager: a temporary path to write ``path``'s new content to; renamed into place on success.

    The temporary keeps ``path``'s suffixes (writers such as ``cv2.imwrite``
    or Keras' ``save_weights`` pick the format by them). On an exception
    (Ctrl-C included) it is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{''.join(path.suffixes)}")
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, default_mode())  # mkstemp's 0600 would make every replaced file private
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path, data):
    """Writes ``data`` (bytes) to ``path`` through a temporary sibling and ``os.replace``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def write_text_atomic(path, text):
    """Writes ``text`` (UTF-8) to ``path`` atomically (``write_bytes_atomic``)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, data, indent=2):
    """Writes ``data`` as JSON to ``path`` atomically; NaN is refused, numpy scalars become floats."""
    write_text_atomic(path, json.dumps(data, indent=indent, allow_nan=False, default=float))


class JsonListFile:
    """A JSON list written while it grows; ``path`` holds a complete, valid list at every moment.

    Every write is a snapshot of the whole list, written to a temporary
    sibling and renamed into place (``write_bytes_atomic``): a reader, or
    whatever a kill leaves behind (SIGKILL and power loss included), sees
    the previous list or the new one, never a part of one. Appending in
    place (overwriting the closing ``]``) cannot promise that: Linux checks
    for a fatal signal between the page-sized chunks of one ``write``, so a
    kill can cut a write that crosses a page boundary, and a reader can see
    a write half done.

    A snapshot costs time in proportion to the file's size, so ``extend``
    writes one only once the time since the previous snapshot is at least
    ``SNAPSHOT_COST_RATIO`` times what that snapshot took: after every call
    while the file is small, and never more than 1/(1 + ratio) of the time
    once it is large. A kill loses at most the entries of that interval;
    ``flush`` (and ``close``) writes everything now.

    Args:
      path: the file; created now (``[]``), so an unwritable path fails
        before any work. Check it first (``check_file_output``).
      cost_ratio: the ratio above.
    """

    SNAPSHOT_COST_RATIO = 20

    def __init__(self, path, cost_ratio=SNAPSHOT_COST_RATIO):
        self.path = Path(path)
        self.cost_ratio = cost_ratio
        self._body = bytearray()  # the entries, comma-separated, one per line
        self._count = self._written = 0
        self._last_end = self._last_cost = 0.0
        self.flush()

    def __len__(self):
        return self._count

    def extend(self, entries):
        """Adds ``entries`` (JSON-ready values; NaN refused, numpy scalars as floats); a snapshot if due."""
        encoded = [json.dumps(entry, allow_nan=False, default=float).encode("utf-8") for entry in entries]
        for text in encoded:  # after encoding them all: a refused entry leaves the list as it was
            if self._count:
                self._body += b",\n"
            self._body += text
            self._count += 1
        if time.monotonic() - self._last_end >= self.cost_ratio * self._last_cost:
            self.flush()

    def flush(self):
        """Writes a snapshot of every entry so far (nothing if none was added since the last)."""
        if self._written == self._count and self._last_end:
            return
        start = time.monotonic()
        write_bytes_atomic(self.path, b"[\n" + bytes(self._body) + b"\n]\n")
        self._last_end = time.monotonic()
        self._last_cost = self._last_end - start
        self._written = self._count

    close = flush


# ---- inputs are never outputs --------------------------------------------------------

def same_path(a, b):
    """Whether two paths name the same file or folder: resolved equal, or the same inode."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def check_not_input(out, inputs, option="--out"):
    """Refuses an output path that is one of ``inputs`` or holds one of them.

    Args:
      out: the output file or folder.
      inputs: input files and folders.
      option: the option that named ``out``, for the message.

    Raises:
      InputError: ``out`` is an input, an input lies inside it (a folder
        output replaced as a whole would take the input with it), or it
        exists inside an input folder (so it is part of that input).
    """
    out = Path(out)
    resolved = out.resolve()
    for source in inputs:
        source = Path(source)
        if same_path(out, source):
            raise InputError(out, f"{option} is an input of this command ({source}); outputs never "
                                  f"overwrite inputs: choose another {option}")
        if resolved in source.resolve().parents:
            raise InputError(out, f"{option} holds an input of this command ({source}); outputs never "
                                  f"overwrite inputs: choose another {option}")
        if source.is_dir() and source.resolve() in resolved.parents and (out.exists() or out.is_symlink()):
            # Everything already inside an input folder (a dataset root) is input; new paths there are not.
            raise InputError(out, f"{option} is inside an input of this command ({source}); outputs never "
                                  f"overwrite inputs: choose another {option}")


class InputIndex:
    """Input files by resolved path and by inode: is an output one of them, in O(1) per output.

    ``check_not_input`` compares one output with every input; checking an
    output per input (annotated images) that way would be quadratic.

    Args:
      inputs: input files (those that do not exist are matched by path only).
    """

    def __init__(self, inputs):
        self._paths, self._inodes = set(), set()
        for source in inputs:
            source = Path(source)
            self._paths.add(source.resolve())
            try:
                info = source.stat()
            except OSError:
                continue
            self._inodes.add((info.st_dev, info.st_ino))

    def check(self, out, option="--out"):
        """Raises ``InputError`` if writing ``out`` could replace an input: the same resolved path, or the
        same file through a hard or symbolic link."""
        out = Path(out)
        hit = out.resolve() in self._paths
        if not hit:
            try:
                info = out.stat()
                hit = (info.st_dev, info.st_ino) in self._inodes
            except OSError:
                pass
        if hit:
            raise InputError(out, f"this output of {option} is an input of this command (the same file); outputs "
                                  f"never overwrite inputs: choose another {option}")


# ---- file outputs ------------------------------------------------------------------

def check_file_output(path, option, overwrite=False, inputs=()):
    """Checks a single-file output before any work: new (or ``overwrite``), not an input, writable.

    The parent folder is created if missing, and a probe file written and
    removed there, so an unwritable path is found now, not after the work.

    Returns:
      ``Path(path)``.

    Raises:
      InputError: naming the path and ``option``.
    """
    path = Path(path)
    check_not_input(path, inputs, option)
    if path.is_dir():
        raise InputError(path, f"{option} is a folder; it names a file to write")
    if path.exists() and not overwrite:
        raise InputError(path, f"already exists; choose a new {option} or pass --overwrite to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise InputError(path, f"{option}: cannot write here ({error.strerror or error})") from None
    return path


# ---- folder outputs ------------------------------------------------------------------

def folder_kind(path):
    """The kind in ``path``'s ``MARKER`` (the tool that created it), or None."""
    try:
        marker = json.loads((Path(path) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker.get("kind") if isinstance(marker, dict) else None


def is_empty_folder(path):
    """Whether ``path`` is a folder holding nothing (a ``LOCK`` file aside, which is ours)."""
    path = Path(path)
    return path.is_dir() and all(p.name == LOCK for p in path.iterdir())


def mark_folder(path, kind, tool):
    """Writes ``MARKER`` into ``path``: this folder was created by ``tool`` and holds a ``kind``."""
    write_json_atomic(Path(path) / MARKER, {"kind": kind, "tool": tool})


def refuse_foreign(path, kind, tool, option, hint=""):
    """Raises the one-line refusal for an existing folder that ``tool`` did not create."""
    raise InputError(path, f"{option} exists and was not created by {tool} (no {MARKER} of kind {kind!r}); "
                           f"nothing was written. Choose a new {option}{hint}")


def check_folder_output(path, kind, tool, option="--out", exist_ok=False, inputs=(), owned=None,
                        flag="--exist-ok"):
    """Checks a folder output before any work, writing nothing (``claim_folder`` then creates it).

    Args:
      path: the folder.
      kind: what it holds (``MARKER``'s ``kind``), e.g. ``"detect"``.
      tool: who writes it, for messages (``"tools/detect.py"``).
      option: the option that named it, for messages.
      exist_ok: also allow an existing folder that ``tool`` did not create
        (``--exist-ok``); inputs are still protected.
      inputs: input files and folders it must not be, nor hold.
      owned: ``fn(path) -> bool`` recognising a folder of this kind written
        before markers existed.
      flag: the tool's option that sets ``exist_ok``, for the message.

    Returns:
      Whether the folder is foreign (existing, not empty, not ``tool``'s): it is then not marked.

    Raises:
      InputError: it is a file, an input or holds one, or it is foreign and ``exist_ok`` is off.
    """
    path = Path(path)
    check_not_input(path, inputs, option)
    if path.exists() and not path.is_dir():
        raise InputError(path, f"{option} is a file; it names a folder to write")
    foreign = path.is_dir() and not is_empty_folder(path) and folder_kind(path) != kind \
        and not (owned is not None and owned(path))
    if foreign and not exist_ok:
        refuse_foreign(path, kind, tool, option, f" or pass {flag} to write into it")
    return foreign


def claim_folder(path, kind, tool, option="--out", exist_ok=False, inputs=(), owned=None, flag="--exist-ok"):
    """A folder to write files into: created now, or created earlier by ``tool``.

    Args: as ``check_folder_output``.

    Returns:
      ``Path(path)``, existing, and marked as ``tool``'s unless it is a
      foreign folder allowed by ``exist_ok``.

    Raises:
      InputError: as ``check_folder_output``, or the folder cannot be created.
    """
    path = Path(path)
    foreign = check_folder_output(path, kind, tool, option, exist_ok, inputs, owned, flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not foreign and folder_kind(path) != kind:  # a foreign folder (--exist-ok) is not marked ours
            mark_folder(path, kind, tool)
    except OSError as error:
        raise InputError(path, f"{option}: cannot write here ({error.strerror or error})") from None
    return path


@contextlib.contextmanager
def replaced_folder(path, kind, tool, option="--out", overwrite=False, inputs=()):
    """Context manager: builds a whole folder output in a temporary sibling, swapped in on success.

    ``path`` may be new, empty, or a complete earlier output of ``tool``
    (its ``MARKER`` of this ``kind``), which is replaced only once the new
    one is complete: a failure (or Ctrl-C) inside the block leaves it
    untouched. ``overwrite`` also replaces a foreign folder (never an
    input). A kill between the two renames at the end leaves the earlier
    output in ``.NAME.old-PID``.

    Yields:
      the temporary folder (created, empty) to write into.

    Raises:
      InputError: before anything is written, as ``claim_folder``.
    """
    path = Path(path)
    check_not_input(path, inputs, option)
    if path.exists() and not path.is_dir():
        if not overwrite:
            raise InputError(path, f"{option} is a file; it names a folder to write")
    elif path.is_dir() and not is_empty_folder(path) and folder_kind(path) != kind and not overwrite:
        refuse_foreign(path, kind, tool, option, " or pass --overwrite to replace it")
    remove_stale_temporaries(path)
    tmp = temporary_sibling(path, "tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove(tmp)
        tmp.mkdir()
    except OSError as error:
        raise InputError(path, f"{option}: cannot write here ({error.strerror or error})") from None
    try:
        yield tmp
        mark_folder(tmp, kind, tool)
        if path.exists() or path.is_symlink():
            old = temporary_sibling(path, "old")
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    finally:
        _remove(tmp)


# ---- run-directory locks -------------------------------------------------------------

class FolderLock:
    """An exclusive lock on a folder while one process writes it (``LOCK``, holding pid and host).

    The lock is an advisory ``flock`` on the file, which the kernel releases
    when its process ends, however it ends: a killed training leaves no lock
    to clean up. The file's content only names the holder for the message.

    Args:
      folder: the folder to lock (must exist).
      what: what holds the lock, for messages ("a training").
      option: the option that named the folder, for messages.
    """

    def __init__(self, folder, what="another process", option="--out"):
        self.path = Path(folder) / LOCK
        self.what, self.option = what, option
        self._fd = None

    def acquire(self):
        """Takes the lock; raises ``InputError`` naming the holder if another process has it."""
        import fcntl

        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 4096).decode("utf-8", "replace")
                os.close(fd)
                try:
                    holder = json.loads(holder)
                    who = f"pid {holder['pid']} on {holder['host']}"
                except (ValueError, KeyError, TypeError):
                    who = "a process"
                raise InputError(self.path.parent, f"{self.what} ({who}) is writing this folder now; wait for it "
                                                   f"to finish or choose another {self.option}") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder released (and removed) the file between our open and flock
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # before unlocking: a waiter then sees a new file
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
