"""Files of one commit of a fetched git directory, and a temporary copy of them for the readers.

``GitSnapshot`` reads a commit's tree and blobs straight from a git
directory (bare or ``.git``; never a work tree, never the network).
``SnapshotFiles`` writes the files a build needs into a temporary folder
beside its output (``detect.outputs.temporary_sibling``, kind ``src``),
laid out as the project's readers (``detect.data.formats``) take them, and
removes it afterwards, also on error. A reader's ``InputError`` names the
temporary file; ``SnapshotFiles.named`` gives it back as the file in the
repository, ``<git dir>@<commit 12>:<path>``. ``mirror_git_dir`` finds the
git directory ``fetch`` made for a repository.
"""

import contextlib
import shutil
import subprocess
from pathlib import Path

from detect.errors import InputError
from detect.outputs import remove_stale_temporaries, temporary_sibling

LFS_POINTER = b"version https://git-lfs"
SOURCE_KIND = "src"  # the temporary sibling's kind: ``.NAME.src-PID``


class GitSnapshot:
    """Files of one commit read from a git directory (bare or ``.git``), through one ``git cat-file --batch``.

    Args:
      git_dir: the git directory (``fetch`` gives ``/work/.mirror/<owner>+<name>/repo``).
      commit: the full commit id.

    Raises:
      InputError: not a git directory, or the commit is not in it.
    """

    def __init__(self, git_dir, commit):
        self.git_dir = Path(git_dir)
        self.commit = commit
        if not self.git_dir.is_dir():
            raise InputError(self.git_dir, "no such git directory")
        probe = self._git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}", check=False)
        if probe.returncode != 0:
            if self._git("rev-parse", "--git-dir", check=False).returncode != 0:
                raise InputError(self.git_dir, "not a git directory")
            raise InputError(self.git_dir, f"commit {commit} is not in this git directory (another repository, "
                                           f"or a snapshot older than the commit: fetch it again)")
        self._batch = None
        self._tree = None

    def _git(self, *args, check=True):
        return subprocess.run(["git", "--git-dir", str(self.git_dir), *args], capture_output=True, check=check)

    def where(self, path):
        """How messages name a file: ``<git dir>@<commit 12>:<path>``."""
        return f"{self.git_dir}@{self.commit[:12]}:{path}"

    @property
    def tree(self):
        """``{path: blob id}`` of every file at the commit."""
        if self._tree is None:
            listing = self._git("ls-tree", "-r", "-z", "--full-tree", self.commit).stdout.decode("utf-8", "replace")
            tree = {}
            for entry in listing.split("\0"):
                if not entry:
                    continue
                meta, path = entry.split("\t", 1)
                _mode, kind, blob = meta.split()
                if kind == "blob":
                    tree[path] = blob
            self._tree = tree
        return self._tree

    def files_under(self, folder):
        """Sorted repository paths of the files directly inside ``folder``."""
        prefix = folder.rstrip("/") + "/"
        return sorted(p for p in self.tree if p.startswith(prefix) and "/" not in p[len(prefix):])

    def blob(self, path):
        """The blob id of ``path``; ``InputError`` if the commit has no such file."""
        try:
            return self.tree[path]
        except KeyError:
            raise InputError(self.where(path), "no such file at this commit") from None

    def read(self, path):
        """The bytes of ``path`` at the commit.

        Raises:
          InputError: no such file, or its blob is missing from the snapshot.
        """
        blob = self.blob(path)
        if self._batch is None:
            self._batch = subprocess.Popen(["git", "--git-dir", str(self.git_dir), "cat-file", "--batch"],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._batch.stdin.write(f"{blob}\n".encode())
        self._batch.stdin.flush()
        header = self._batch.stdout.readline().decode().split()
        if len(header) != 3 or header[1] != "blob":
            raise InputError(self.where(path), "its blob is missing from this snapshot (fetch leaves out files "
                                               "of 4 MiB and more)")
        data = self._batch.stdout.read(int(header[2]))
        self._batch.stdout.read(1)  # the newline after the content
        return data

    def close(self):
        if self._batch is not None:
            self._batch.stdin.close()
            self._batch.wait()
            self._batch = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SnapshotFiles:
    """Context manager: a temporary folder beside ``beside`` holding files of a snapshot, removed on exit.

    The folder is ``temporary_sibling(beside, "src")``; one a killed run left
    behind is removed on entry (``remove_stale_temporaries``).

    Args:
      snapshot: a ``GitSnapshot`` (not closed here).
      beside: the output (or input folder) the temporary folder sits beside.

    Attributes:
      root: the temporary folder (while inside the ``with`` block).
    """

    def __init__(self, snapshot, beside):
        self.snapshot = snapshot
        self.beside = Path(beside)
        self.root = None
        self._origin = {}  # str(path written) -> repository path

    def __enter__(self):
        remove_stale_temporaries(self.beside, kinds=(SOURCE_KIND,))
        self.root = temporary_sibling(self.beside, SOURCE_KIND)
        try:
            self.beside.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir()
        except OSError as error:
            raise InputError(self.beside, f"cannot make a temporary folder beside it "
                                          f"({error.strerror or error})") from None
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.root, ignore_errors=True)

    def write(self, dest, path):
        """Writes the repository file ``path`` to ``root / dest`` (folders made); returns that path.

        Raises:
          InputError: naming the repository file: no such file or blob (``GitSnapshot.read``), or a Git LFS
            pointer in place of the content.
        """
        data = self.snapshot.read(path)
        if data.startswith(LFS_POINTER):
            raise InputError(self.snapshot.where(path), "is a Git LFS pointer, not the file's content (the "
                                                        "snapshot lacks LFS content)")
        target = self.root / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self._origin[str(target)] = path
        return target

    def origin(self, target):
        """The repository path of a file ``write`` wrote."""
        return self._origin[str(target)]

    @contextlib.contextmanager
    def named(self):
        """Context manager: an ``InputError`` naming a file ``write`` wrote is raised again naming the repository file.

        The error keeps its class (``UnknownClassError`` stays one) and its message.
        """
        try:
            yield
        except InputError as error:
            path = self._origin.get(error.source)
            if path is None:
                raise
            raise type(error)(self.snapshot.where(path), error.message) from None


def mirror_git_dir(mirrors, repository):
    """The git directory ``fetch`` made for ``owner/name`` under ``mirrors``: ``owner+name/repo`` or ``owner+name``.

    Raises:
      InputError: neither exists (the line names the fetch to run).
    """
    base = Path(mirrors) / repository.replace("/", "+")
    for candidate in (base / "repo", base):
        if (candidate / "objects").is_dir() or (candidate / "HEAD").is_file():
            return candidate
    raise InputError(base, f"no git directory of {repository} here (fetch github:{repository} first)")


__all__ = ["GitSnapshot", "LFS_POINTER", "SOURCE_KIND", "SnapshotFiles", "mirror_git_dir"]
