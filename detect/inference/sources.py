"""What ``tools/detect.py`` reads and where its results go: sources, output names, ``image_id``s.

A source is an image file, a folder (its images, sorted), a glob pattern, a
video file or a camera index; ``expand_sources`` lists them, each file once.
``plan_jobs`` then names every input's results so that no two collide:

- the annotated file keeps the input's path relative to the folder holding
  all inputs (``imgs/1.jpg``, ``imgs2/1.jpg``; one folder: bare names);
  videos and cameras become ``.mp4``, an image OpenCV cannot write ``.png``,
  and a name still taken gets the input's suffix (``a.avi.mp4``) or a
  number (``a-2.jpg``), compared without case (case-insensitive disks);
- ``image_id`` is that relative path without its suffix (a single folder:
  the file stem, i.e. the VOC image id), keeping the suffix where two inputs
  differ only by it; a video frame is ``<video id>:<frame index>``.
"""

import glob
import itertools
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from detect.data.imagesize import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
VIDEO_OUTPUT_SUFFIX = ".mp4"
# An annotated image whose input format OpenCV cannot write.
FALLBACK_IMAGE_SUFFIX = ".png"
# Beside every annotated video while it is written (``detect.inference.video``).
JOURNAL_SUFFIX = ".partial.mkv"


def expand_sources(sources):
    """Sources as ("image", path), ("video", path) or ("camera", index), in the order given, each once.

    Returns:
      (items, problems): problems are (source, reason) for sources that match nothing.
    """
    items, problems = [], []
    for source in sources:
        path = Path(source)
        if source.isdigit() and not path.exists():
            items.append(("camera", int(source)))
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                problems.append((source, "no images in this folder"))
            items += [("image", p) for p in files]
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            items.append(("video", path))
        elif path.exists() or not glob.has_magic(source):
            items.append(("image", path))  # a missing file is reported when it is read
        else:
            matches = sorted(Path(p) for p in glob.glob(source, recursive=True))
            if not matches:
                problems.append((source, "the pattern matches no file"))
            items += [("video" if p.suffix.lower() in VIDEO_SUFFIXES else "image", p) for p in matches]
    seen, unique = set(), []
    for kind, source in items:
        key = source if kind == "camera" else os.path.abspath(source)
        if key not in seen:
            seen.add(key)
            unique.append((kind, source))
    return unique, problems


@dataclass(frozen=True)
class Job:
    """One input and where its results go.

    Attributes:
      kind: "image", "video" or "camera".
      source: the file's Path, or the camera index.
      image_id: its ``image_id`` in the JSON (a video's frames: ``<image_id>:<frame>``).
      output: the annotated file, relative to ``--out``.
    """
    kind: str
    source: object
    image_id: str
    output: PurePosixPath


def common_root(items):
    """The deepest folder holding every existing input file (absolute, links not resolved), or None."""
    folders = [os.path.dirname(os.path.abspath(source)) for kind, source in items
               if kind != "camera" and Path(source).is_file()]
    return Path(os.path.commonpath(folders)) if folders else None


def relative_name(kind, source, root):
    """An input's path relative to ``root`` (posix); a camera is ``camera<index>``, a file outside
    ``root`` (one that does not exist) its bare name."""
    if kind == "camera":
        return PurePosixPath(f"camera{source}")
    absolute = Path(os.path.abspath(source))
    if root is not None and absolute.is_relative_to(root):
        return PurePosixPath(absolute.relative_to(root).as_posix())
    return PurePosixPath(absolute.name)


def image_ids(kinds, names):
    """``image_id`` per input: its relative name without suffix, unique across the run.

    The suffix stays where two inputs differ only by it (``a.jpg`` and
    ``a.png``), and on an image whose id would read as a frame of a video
    (``clip:3.jpg`` beside ``clip.mp4``).

    Args:
      kinds: [N] "image" | "video" | "camera".
      names: [N] ``relative_name``s, distinct.
    """
    bare = [str(name.with_suffix("")) if name.suffix else str(name) for name in names]
    shared = Counter(bare)
    ids = [b if shared[b] == 1 else str(n) for b, n in zip(bare, names)]
    streams = {i for i, kind in zip(ids, kinds) if kind != "image"}
    for k, (kind, name) in enumerate(zip(kinds, names)):
        head, _, tail = ids[k].rpartition(":")
        if kind == "image" and tail.isdigit() and head in streams:
            ids[k] = str(name)
    return ids


def output_suffix(kind, name):
    """The annotated file's suffix: ``.mp4`` for a video or camera, else the image's own if OpenCV writes it."""
    import cv2

    if kind != "image":
        return VIDEO_OUTPUT_SUFFIX
    return name.suffix if name.suffix and cv2.haveImageWriter(f"x{name.suffix}") else FALLBACK_IMAGE_SUFFIX


def name_candidates(name, natural):
    """Output names for input ``name``, best first: ``natural``, then with the input's suffix kept
    (``a.avi`` -> ``a.avi.mp4``) when the suffix changes, then ``<stem>-2<suffix>``, ``-3``, ..."""
    yield natural
    if name.suffix and name.suffix.lower() != natural.suffix.lower():
        yield name.with_name(name.name + natural.suffix)
    for number in itertools.count(2):
        yield natural.with_name(f"{natural.stem}-{number}{natural.suffix}")


def output_names(kinds, names):
    """Annotated file per input, relative to ``--out``: distinct, also on a case-insensitive file system.

    Inputs whose output keeps their own name choose first, in the order
    given, then the others (``name_candidates``): an ``a.mp4`` input keeps
    ``a.mp4`` and an ``a.avi`` beside it becomes ``a.avi.mp4``, whichever
    comes first. A video also reserves its ``journal_path``.

    Args:
      kinds: [N] "image" | "video" | "camera".
      names: [N] ``relative_name``s, distinct.

    Returns:
      [N] PurePosixPath.
    """
    natural = []
    for kind, name in zip(kinds, names):
        suffix = output_suffix(kind, name)
        natural.append(name.with_suffix(suffix) if name.suffix else name.with_name(name.name + suffix))
    taken, outputs = set(), [None] * len(names)
    for k in sorted(range(len(names)), key=lambda k: natural[k] != names[k]):  # a stable sort
        for candidate in name_candidates(names[k], natural[k]):
            reserved = {str(candidate).lower()}
            if kinds[k] != "image":
                reserved.add(str(journal_path(candidate)).lower())
            if taken.isdisjoint(reserved):
                taken |= reserved
                outputs[k] = candidate
                break
    return outputs


def plan_jobs(items):
    """``Job``s for ``expand_sources``'s items: their ``image_id``s and output names."""
    root = common_root(items)
    kinds = [kind for kind, _ in items]
    names = [relative_name(kind, source, root) for kind, source in items]
    ids = image_ids(kinds, names)
    outputs = output_names(kinds, names)
    return [Job(kind, source, image_id, output)
            for (kind, source), image_id, output in zip(items, ids, outputs)]


def journal_path(path):
    """The Matroska file written beside the annotated video ``path`` while it grows."""
    return path.with_name(path.name + JOURNAL_SUFFIX)
