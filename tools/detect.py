#!/usr/bin/env python
"""Run a trained detector on images, folders, globs, videos or a camera.

    python tools/detect.py --model MODEL SOURCE [SOURCE ...] [--out DIR] [--exist-ok] [--json FILE] [--overwrite]
                           [--score 0.25] [--iou I] [--max-det K] [--classes a,b]
                           [--config CFG] [--batch 8] [--max-frames N] [--no-save]

MODEL is what ``Detector.load`` takes: a run directory of tools/train.py, an
exported SavedModel directory or ``.tflite`` file (tools/export.py), or a
``.weights.h5`` file with ``--config``. A SOURCE is an image file, a folder
(its images, sorted), a glob pattern (quote it), a video file, or a camera
index (``0``). A file named twice is processed once.

Annotated images and videos go to ``--out`` (default ``runs/detect``). Each
keeps its input's path relative to the folder that holds all the inputs, so
``imgs/1.jpg`` and ``imgs2/1.jpg`` become ``OUT/imgs/1.jpg`` and
``OUT/imgs2/1.jpg``, and the images of a single folder keep their bare names.
Videos and cameras become ``.mp4`` (``camera0.mp4``); an image whose format
OpenCV cannot write becomes ``.png``. A name still taken by another output
gets its input's suffix (``a.avi`` beside ``a.mp4`` -> ``a.avi.mp4``) or a
number (``a-2.jpg``).

``--json`` writes every detection as a COCO results list (``category_id``:
the class id; boxes in the image's own pixels), which ``tools/eval.py --gt
<VOC root> --dets`` reads. ``image_id`` is the input's path relative to that
same folder, without its suffix (a single folder: the file stem, the VOC
image id), with the suffix where two inputs differ only by it
(``a.jpg``, ``a.png``); a video frame is ``<video id>:<frame index>``.

Nothing is ever overwritten that this tool did not write:
- ``--out`` must be new, empty, or a folder this tool created (it holds
  ``.detect-output.json``); ``--exist-ok`` writes into another existing
  folder, replacing the files there that have an output's name.
- ``--json`` must not exist; ``--overwrite`` replaces it.
- Inputs are never outputs, whatever the flags: ``--out`` may not be or
  hold an input, and no output file may be an input (same path, or the same
  file through a link).
A refusal is one line, before any work, with nothing written.

Interruptions lose nothing finished. The JSON file is a complete, valid
list at every moment: created (``[]``) before the first image, then
rewritten through a temporary file renamed into place after every image or
frame, or, once the file is large, as often as keeps that under 5% of the
run's time. Annotated images are renamed into place once written. A video
is written to ``<name>.mp4`` in a temporary folder and, at the same time,
to ``<name>.mp4.partial.mkv``, which stays readable up to its last few
frames however the run ends; at the end the ``.mp4`` is moved into place
and the ``.partial.mkv`` removed. Ctrl-C or SIGTERM stops after the current
frame (or batch of images), finishes every file and prints one line; after
a kill (SIGKILL, a crash) the JSON holds the frames up to its last rewrite
and the ``.partial.mkv`` is the annotated video.

Unreadable inputs are reported by name and skipped; the rest is processed.
Exit status: 0 when something was processed, 2 for bad arguments, a refused
output, or when no input could be read, 130 when interrupted.
"""

import argparse
import glob
import itertools
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.cli import EXIT_BAD_INPUT, EXIT_OK, class_names_arg, exit_now, os_error_line  # noqa: E402
from detect.data.imagesize import IMAGE_SUFFIXES  # noqa: E402
from detect.errors import InputError  # noqa: E402

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
VIDEO_OUTPUT_SUFFIX = ".mp4"
# An annotated image whose input format OpenCV cannot write.
FALLBACK_IMAGE_SUFFIX = ".png"
# Beside every annotated video while it is written: Matroska needs no closing
# index, so it is readable up to its last buffered frames after a kill, where
# an MP4 without its closing index (moov) cannot be read at all. (OpenCV's
# FFmpeg writer passes OPENCV_FFMPEG_WRITER_OPTIONS to the encoder only, not
# to the muxer, so a fragmented MP4, movflags=frag_keyframe, is out of reach.)
JOURNAL_SUFFIX = ".partial.mkv"
VIDEO_FOURCC = "mp4v"
# 128 + SIGINT, the shell's status for a command stopped by Ctrl-C; SIGTERM
# ends the same way, after the same clean-up.
EXIT_INTERRUPTED = 130
OUTPUT_KIND = "detect"
TOOL = "tools/detect.py"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Outputs keep their inputs' paths below the folder holding them all (a name still taken gets the "
               "input's suffix, a.avi.mp4, or a number, a-2.jpg); image_id is that path without its suffix. "
               "Ctrl-C or SIGTERM stops after the current frame with every file complete (exit 130); after a kill, "
               "NAME.mp4.partial.mkv is the annotated video and the JSON holds the frames up to its last rewrite.")
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="image, folder, glob pattern, video file or camera index")
    parser.add_argument("--model", required=True, help="run directory, SavedModel, .tflite or .weights.h5")
    parser.add_argument("--config", help="the experiment config of a .weights.h5 file")
    parser.add_argument("--out", default="runs/detect",
                        help="folder for annotated images and videos: new, empty, or one tools/detect.py created; "
                             "each output keeps its input's path relative to the inputs' common folder")
    parser.add_argument("--exist-ok", action="store_true",
                        help="write into an existing --out that tools/detect.py did not create, replacing its files "
                             "that have an output's name (inputs are never replaced)")
    parser.add_argument("--json", metavar="FILE",
                        help="write the detections as a COCO results JSON, a valid list at every moment of the run "
                             "(image_id: the input's relative path without suffix; video frames <id>:<frame>)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.add_argument("--no-save", action="store_true", help="do not write annotated images or videos")
    parser.add_argument("--score", type=float, default=None, help="score threshold (default 0.25)")
    parser.add_argument("--iou", type=float, default=None, help="NMS IoU threshold (default: the model's)")
    parser.add_argument("--max-det", type=int, default=None, help="detections per image (default: the model's)")
    parser.add_argument("--classes", type=class_names_arg, help="only these classes (names, comma-separated)")
    parser.add_argument("--batch", type=int, default=8, help="images per model call")
    parser.add_argument("--max-frames", type=int, default=None, help="stop a video or camera after N frames")
    return parser.parse_args(argv)


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


# ---- names ---------------------------------------------------------------------------

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


# ---- outputs ---------------------------------------------------------------------------

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


class AnnotatedVideo:
    """An annotated video: ``path`` (MP4) once ``close``d, and its Matroska journal meanwhile.

    The MP4 is written in a temporary folder (``temporary_sibling``: a
    killed run's is removed by the next one; a folder, because OpenCV
    picks the container by the file's suffix) and renamed into place by
    ``close``. Every frame also goes to ``journal_path(path)``, readable up
    to its last buffered frames however the process ends (``JOURNAL_SUFFIX``);
    ``close`` removes it. Encoding twice costs a few milliseconds a frame.

    Raises:
      OSError: OpenCV cannot open a writer.
    """

    def __init__(self, path, fps, size):
        import cv2

        from detect.outputs import remove_stale_temporaries, temporary_sibling

        self.path, self.journal = Path(path), journal_path(Path(path))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.path)
        self._folder = temporary_sibling(self.path, "tmp")
        self._folder.mkdir(exist_ok=True)
        # Unlinked first: a link left at that name is replaced, never written through.
        self.journal.unlink(missing_ok=True)
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC)
        self._writers = [cv2.VideoWriter(str(self._folder / self.path.name), fourcc, fps, size),
                         cv2.VideoWriter(str(self.journal), fourcc, fps, size)]
        self.frames = 0
        if not all(writer.isOpened() for writer in self._writers):
            self._release()
            self.journal.unlink(missing_ok=True)
            raise OSError(0, f"OpenCV cannot write a {VIDEO_FOURCC} video here", str(self.path))

    def write(self, bgr):
        """Appends one [H, W, 3] uint8 BGR frame."""
        for writer in self._writers:
            writer.write(bgr)
        self.frames += 1

    def _release(self):
        import shutil

        for writer in self._writers:
            writer.release()
        shutil.rmtree(self._folder, ignore_errors=True)

    def close(self):
        """Finishes the MP4, moves it into place, and removes the journal (kept if the move fails)."""
        for writer in self._writers:
            writer.release()
        try:
            if self.frames:
                os.replace(self._folder / self.path.name, self.path)
            self.journal.unlink(missing_ok=True)
        finally:
            self._release()


class Outputs:
    """Where results go (annotated files under ``out``, the JSON list) and counts for the summary."""

    def __init__(self, detector):
        self.detector = detector
        self.out = self.json = self.inputs = None
        self.processed = self.skipped = self.detections = 0

    def claim(self, args, jobs):
        """Checks every output against the rule (``detect.outputs``), then creates them; before any work.

        Raises:
          InputError: a refused output (nothing written then), or one that cannot be created.
        """
        from detect.outputs import (
            InputIndex,
            JsonListFile,
            check_file_output,
            check_folder_output,
            claim_folder,
            same_path,
        )

        files = [job.source for job in jobs if job.kind != "camera"]
        self.inputs = InputIndex(files)
        out = None if args.no_save else Path(args.out)
        if out is not None:
            check_folder_output(out, OUTPUT_KIND, TOOL, "--out", exist_ok=args.exist_ok, inputs=files)
            for job in jobs:
                self.inputs.check(out / job.output)
                if job.kind != "image":
                    self.inputs.check(journal_path(out / job.output))
                if args.json and Path(args.json).name.lower() == job.output.name.lower() \
                        and same_path(args.json, out / job.output):
                    raise InputError(args.json, f"--json is also the annotated output of {job.source}; "
                                                "choose another --json or --out")
        # check_file_output creates the JSON's missing folders: inside a new --out they would make it look
        # foreign (not empty, no marker), so such a JSON is checked once --out is claimed.
        json_in_out = bool(args.json) and out is not None and out.resolve() in Path(args.json).resolve().parents
        if args.json and not json_in_out:
            check_file_output(args.json, "--json", overwrite=args.overwrite, inputs=files)
        if out is not None:
            self.out = claim_folder(out, OUTPUT_KIND, TOOL, "--out", exist_ok=args.exist_ok, inputs=files)
        if json_in_out:
            check_file_output(args.json, "--json", overwrite=args.overwrite, inputs=files)
        if args.json:
            try:
                self.json = JsonListFile(args.json)
            except OSError as error:
                raise InputError(args.json, f"--json: cannot write here ({error.strerror or error})") from None

    def add(self, image_id, found):
        """Counts one processed image or frame and appends its detections to the JSON."""
        self.processed += 1
        self.detections += len(found)
        if self.json is not None:
            self.json.extend(found.to_coco(image_id))

    def image(self, job, rgb, found):
        """Writes the annotated image (through a temporary file), then adds its detections."""
        if self.out is not None:
            self.write_image(self.out / job.output, self.detector.draw(rgb, found, bgr=False))
        self.add(job.image_id, found)

    def write_image(self, path, rgb):
        import cv2

        from detect.outputs import atomic_path

        try:
            self.inputs.check(path)  # checked before the run too; a link may have appeared since
            with atomic_path(path) as tmp:
                if not cv2.imwrite(str(tmp), rgb[..., ::-1]):
                    raise OSError(0, f"OpenCV cannot write a {path.suffix} image", str(path))
        except InputError as error:
            print(f"not written: {error}", file=sys.stderr, flush=True)
        except OSError as error:
            print(f"not written: {os_error_line(error, path)}", file=sys.stderr, flush=True)

    def video(self, job, fps, size):
        """An ``AnnotatedVideo`` for ``job``, or None (reported) when it cannot be written."""
        path = self.out / job.output
        try:
            self.inputs.check(path)
            self.inputs.check(journal_path(path))
            return AnnotatedVideo(path, fps, size)
        except InputError as error:
            print(f"not written: {error}", file=sys.stderr, flush=True)
        except OSError as error:
            print(f"not written: {os_error_line(error, path)}", file=sys.stderr, flush=True)
        return None

    def skip(self, source, reason):
        self.skipped += 1
        print(f"skipped: {source}: {reason}", file=sys.stderr, flush=True)

    def close(self):
        if self.json is not None:
            self.json.close()


def run_images(detector, jobs, options, outputs, batch, bar, stop):
    """Images in batches of ``batch``; stops between batches once ``stop.received``."""
    from detect.inference.images import read_image

    for start in range(0, len(jobs), batch):
        if stop.received:
            return
        chunk = []
        for job in jobs[start:start + batch]:
            try:
                chunk.append((job, read_image(job.source)))
            except InputError as error:
                outputs.skip(error.source, error.message)
        if chunk:
            found = detector.predict([rgb for _, rgb in chunk], **options)
            for (job, rgb), detections in zip(chunk, found):
                outputs.image(job, rgb, detections)
        bar.update(len(jobs[start:start + batch]))


def run_video(detector, job, options, outputs, max_frames, bar, stop):
    """One video file or camera, frame by frame; stops between frames once ``stop.received``."""
    import cv2

    source = job.source
    capture = cv2.VideoCapture(source if job.kind == "camera" else str(source))
    if not capture.isOpened():
        outputs.skip(source, "cannot open the camera" if job.kind == "camera" else "cannot open the video")
        return
    video, frame_index = None, 0
    try:
        while (max_frames is None or frame_index < max_frames) and not stop.received:
            ok, frame = capture.read()
            if not ok:
                break
            found = detector.predict(frame, bgr=True, **options)
            if outputs.out is not None:
                if video is None and frame_index == 0:
                    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
                    video = outputs.video(job, fps, (frame.shape[1], frame.shape[0]))
                if video is not None:
                    video.write(detector.draw(frame, found, bgr=True))
            outputs.add(f"{job.image_id}:{frame_index}", found)
            frame_index += 1
            bar.update(1)
        if frame_index == 0 and not stop.received:
            outputs.skip(source, "no frame could be read")
    finally:
        capture.release()
        if video is not None:
            try:
                video.close()
            except OSError as error:
                print(f"not written: {os_error_line(error, video.path)}; the frames are in {video.journal}",
                      file=sys.stderr, flush=True)


def main(argv=None):
    args = parse_args(argv)
    if args.batch < 1 or (args.max_frames is not None and args.max_frames < 1):
        print("--batch and --max-frames must be >= 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return run(args)
    except KeyboardInterrupt:  # Ctrl-C while the model loads, before any output exists (then StopSignals)
        print("interrupted while loading the model; nothing was written", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


def run(args):
    from tqdm import tqdm

    from detect.inference import Detector

    try:
        detector = Detector.load(args.model, config=args.config, batch_size=args.batch)
        options = dict(score_threshold=args.score, iou_threshold=args.iou, max_detections=args.max_det,
                       classes=args.classes)
        detector.resolve_options(**options)  # bad thresholds or class names: one line, before any work
    except InputError as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_INPUT
    items, problems = expand_sources(args.sources)
    outputs = Outputs(detector)
    for source, reason in problems:
        outputs.skip(source, reason)
    jobs = plan_jobs(items)
    images = [job for job in jobs if job.kind == "image"]
    streams = [job for job in jobs if job.kind != "image"]
    with StopSignals() as stop:  # from here on, a signal ends the run between frames, never inside a write
        try:
            if jobs:
                outputs.claim(args, jobs)
        except InputError as error:
            print(error, file=sys.stderr)
            return EXIT_BAD_INPUT
        started = time.perf_counter()
        try:
            try:
                with tqdm(total=None if streams else len(images), unit="frame", desc="detect",
                          dynamic_ncols=True) as bar:
                    run_images(detector, images, options, outputs, args.batch, bar, stop)
                    for job in streams:
                        run_video(detector, job, options, outputs, args.max_frames, bar, stop)
            finally:
                outputs.close()
        except OSError as error:  # the JSON (a full disk, a vanished folder): what was written stays valid
            print(os_error_line(error, action="cannot write"), file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
    if stop.received:
        print(f"interrupted ({signal.Signals(stop.received).name}) after {outputs.processed} images/frames; the JSON "
              "and annotated files written so far are complete", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    elapsed = time.perf_counter() - started
    rate = outputs.processed / elapsed if elapsed > 0 else 0.0
    where = f"; annotated output in {outputs.out}" if outputs.out is not None and outputs.processed else ""
    print(f"{outputs.processed} images/frames, {outputs.detections} detections, {outputs.skipped} skipped, "
          f"{rate:.1f} frames/s{where}", flush=True)
    return EXIT_OK if outputs.processed else EXIT_BAD_INPUT


if __name__ == "__main__":
    code = main()
    exit_now(code)
