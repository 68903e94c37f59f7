#!/usr/bin/env python
"""Run a trained detector on images, folders, globs, videos or a camera.

    python tools/detect.py --model MODEL SOURCE [SOURCE ...] [--out DIR] [--json FILE]
                           [--score 0.25] [--iou I] [--max-det K] [--classes a,b]
                           [--config CFG] [--batch 8] [--max-frames N] [--no-save]

MODEL is what ``Detector.load`` takes: a run directory of tools/train.py, an
exported SavedModel directory or ``.tflite`` file (tools/export.py), or a
``.weights.h5`` file with ``--config``. A SOURCE is an image file, a folder
(its images, sorted), a glob pattern (quote it), a video file, or a camera
index (``0``). Annotated images (same names) and videos (``<stem>.mp4``)
are written to ``--out`` (default ``runs/detect``); ``--json`` writes every
detection as a COCO results list (``image_id``: the image's file stem, or
``<video stem>:<frame>``; ``category_id``: the class id; boxes in the
image's own pixels), which ``tools/eval.py --gt <VOC root> --dets`` reads.

Unreadable inputs are reported by name and skipped; the rest is processed.
Exit status: 0 when something was processed, 2 for bad arguments or when
no input could be read.
"""

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.cli import EXIT_BAD_INPUT, EXIT_OK, class_names_arg, exit_now  # noqa: E402
from detect.errors import InputError  # noqa: E402

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="image, folder, glob pattern, video file or camera index")
    parser.add_argument("--model", required=True, help="run directory, SavedModel, .tflite or .weights.h5")
    parser.add_argument("--config", help="the experiment config of a .weights.h5 file")
    parser.add_argument("--out", default="runs/detect", help="folder for annotated images and videos")
    parser.add_argument("--json", metavar="FILE", help="write the detections as a COCO results JSON")
    parser.add_argument("--no-save", action="store_true", help="do not write annotated images or videos")
    parser.add_argument("--score", type=float, default=None, help="score threshold (default 0.25)")
    parser.add_argument("--iou", type=float, default=None, help="NMS IoU threshold (default: the model's)")
    parser.add_argument("--max-det", type=int, default=None, help="detections per image (default: the model's)")
    parser.add_argument("--classes", type=class_names_arg, help="only these classes (names, comma-separated)")
    parser.add_argument("--batch", type=int, default=8, help="images per model call")
    parser.add_argument("--max-frames", type=int, default=None, help="stop a video or camera after N frames")
    return parser.parse_args(argv)


def expand_sources(sources):
    """Sources as ("image", path), ("video", path) or ("camera", index), in the order given.

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
    return items, problems


class Outputs:
    """Annotated files and COCO results, and counts for the summary."""

    def __init__(self, detector, args):
        self.detector = detector
        self.out = None if args.no_save else Path(args.out)
        self.results = [] if args.json else None
        self.processed = self.skipped = self.detections = 0
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)

    def image(self, path, rgb, found):
        import cv2

        self.processed += 1
        self.detections += len(found)
        if self.results is not None:
            self.results += found.to_coco(Path(path).stem)
        if self.out is not None:
            drawn = self.detector.draw(rgb, found, bgr=False)
            cv2.imwrite(str(self.out / Path(path).name), drawn[..., ::-1])

    def skip(self, source, reason):
        self.skipped += 1
        print(f"skipped: {source}: {reason}", file=sys.stderr, flush=True)


def run_images(detector, paths, options, outputs, batch, bar):
    from detect.inference.images import read_image

    for start in range(0, len(paths), batch):
        chunk = []
        for path in paths[start:start + batch]:
            try:
                chunk.append((path, read_image(path)))
            except InputError as error:
                outputs.skip(error.source, error.message)
        if chunk:
            found = detector.predict([rgb for _, rgb in chunk], **options)
            for (path, rgb), detections in zip(chunk, found):
                outputs.image(path, rgb, detections)
        bar.update(len(paths[start:start + batch]))


def run_video(detector, source, options, outputs, max_frames, bar):
    """One video file or camera, frame by frame; the annotated video goes to ``<out>/<stem>.mp4``."""
    import cv2

    capture = cv2.VideoCapture(source if isinstance(source, int) else str(source))
    name = f"camera{source}" if isinstance(source, int) else Path(source).stem
    if not capture.isOpened():
        outputs.skip(source, "cannot open the video" if not isinstance(source, int) else "cannot open the camera")
        return
    writer, frame_index = None, 0
    try:
        while max_frames is None or frame_index < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            found = detector.predict(frame, bgr=True, **options)
            outputs.processed += 1
            outputs.detections += len(found)
            if outputs.results is not None:
                outputs.results += found.to_coco(f"{name}:{frame_index}")
            if outputs.out is not None:
                if writer is None:
                    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
                    writer = cv2.VideoWriter(str(outputs.out / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                                             fps, (frame.shape[1], frame.shape[0]))
                writer.write(detector.draw(frame, found, bgr=True))
            frame_index += 1
            bar.update(1)
        if frame_index == 0:
            outputs.skip(source, "no frame could be read")
    finally:
        capture.release()
        if writer is not None:
            writer.release()


def main(argv=None):
    args = parse_args(argv)
    if args.batch < 1 or (args.max_frames is not None and args.max_frames < 1):
        print("--batch and --max-frames must be >= 1", file=sys.stderr)
        return EXIT_BAD_INPUT
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
    outputs = Outputs(detector, args)
    for source, reason in problems:
        outputs.skip(source, reason)
    images = [path for kind, path in items if kind == "image"]
    streams = [path for kind, path in items if kind != "image"]
    started = time.perf_counter()
    with tqdm(total=None if streams else len(images), unit="frame", desc="detect", dynamic_ncols=True) as bar:
        run_images(detector, images, options, outputs, args.batch, bar)
        for source in streams:
            run_video(detector, source, options, outputs, args.max_frames, bar)
    elapsed = time.perf_counter() - started
    if args.json:
        Path(args.json).write_text(json.dumps(outputs.results))
    rate = outputs.processed / elapsed if elapsed > 0 else 0.0
    where = f"; annotated output in {outputs.out}" if outputs.out is not None and outputs.processed else ""
    print(f"{outputs.processed} images/frames, {outputs.detections} detections, {outputs.skipped} skipped, "
          f"{rate:.1f} frames/s{where}", flush=True)
    return EXIT_OK if outputs.processed else EXIT_BAD_INPUT


if __name__ == "__main__":
    code = main()
    exit_now(code)
