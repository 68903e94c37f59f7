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
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.cli import (EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, StopSignals, class_names_arg,  # noqa: E402
                        exit_now, os_error_line, quiet_tensorflow)
from detect.errors import InputError  # noqa: E402
from detect.inference.sources import expand_sources, journal_path, plan_jobs  # noqa: E402
from detect.inference.video import AnnotatedVideo  # noqa: E402

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


# ---- outputs ---------------------------------------------------------------------------

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
                chunk.append((job, read_image(job.source, max_pixels=detector.max_pixels)))  # bombs: not decoded
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
    quiet_tensorflow()
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

    from detect.inference.detector import Detector

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
