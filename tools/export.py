#!/usr/bin/env python
"""Export a trained detector as a SavedModel (TensorFlow Serving) or a TFLite model (mobile).

    python tools/export.py --run RUN_DIR --format saved_model --out OUT_DIR [--overwrite]
                           [--score S --iou I --max-det K] [--check [--split SPLIT]]
    python tools/export.py --run RUN_DIR --format tflite --out MODEL.tflite [--overwrite]
                           [--quantize float16|int8] [--calibration-images N] [--flex]
                           [--score S --iou I --max-det K] [--check [--split SPLIT]]

RUN_DIR is a ``tools/train.py`` run directory (its ``config.yaml`` and best
weights). A SavedModel directory holds the whole detection graph (resize,
model, NMS) and ``detect.json``; a ``.tflite`` file holds the network for
a fixed input size (YOLO: the letterbox's; Faster R-CNN: ``max_side``
square, its proposals and their NMS included), with ``MODEL.json`` beside it
(see ``detect/export/tflite.py`` for its inputs and outputs). Both load
with ``Detector.load(OUT)``. ``--score/--iou/--max-det`` are the defaults the
export records (a SavedModel's ``serving_default`` applies them).

What ``--out`` may be: a new path; for a SavedModel also an empty folder
or an earlier export of this tool (replaced only once the new one is
complete, so a failed export leaves it intact). An existing folder of
anything else, or an existing ``.tflite`` / ``.json``, is refused unless
``--overwrite``. The run directory, its files and the dataset are never
written over, ``--overwrite`` or not. Thresholds and ``--out`` are checked
before any work.

``--quantize int8`` calibrates on ``--calibration-images`` images (default
100) of the config's training split (all of them, with a note, if it
holds fewer). ``--flex`` allows TensorFlow (Flex) ops
in a TFLite model where builtins do not suffice (none of ours needs them).
int8 is for YOLO; Faster R-CNN exports in float32 or float16.

``--check`` then scores the Keras detector and the export on the config's
validation split (mAP@0.5) and prints both, the export's size and its
speed in images/s (end to end, and the model alone).

Bad input prints one line naming the file or option and exits with 2.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.cli import EXIT_BAD_INPUT, EXIT_OK, exit_now, os_error_line, quiet_tensorflow  # noqa: E402
from detect.errors import InputError  # noqa: E402



def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="training run directory (config.yaml + weights)")
    parser.add_argument("--format", choices=("saved_model", "tflite"), default="saved_model",
                        help="saved_model (default) or tflite")
    parser.add_argument("--out", required=True, help="SavedModel directory, or the .tflite file to write")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out that is not an earlier export (never the run's own files)")
    parser.add_argument("--quantize", choices=("float16", "int8"), help="tflite: quantisation (default float32)")
    parser.add_argument("--calibration-images", type=int, default=100, metavar="N",
                        help="tflite int8: training images to calibrate on (default 100)")
    parser.add_argument("--flex", action="store_true", help="tflite: allow TensorFlow (Flex) ops")
    parser.add_argument("--score", type=float, help="default score threshold recorded (default 0.25)")
    parser.add_argument("--iou", type=float, help="default NMS IoU threshold (default: the config's)")
    parser.add_argument("--max-det", type=int, help="detections per image (default: the config's)")
    parser.add_argument("--check", action="store_true",
                        help="compare mAP@0.5 of the Keras model and the export; print size and images/s")
    parser.add_argument("--split", default="val", help="with --check: the split to score (default val)")
    args = parser.parse_args(argv)
    if args.format != "tflite" and (args.quantize or args.flex):
        parser.error("--quantize and --flex apply to --format tflite")
    return args


def export(args):
    """Writes the export; returns its path."""
    from detect import Detector

    detector = Detector.load(args.run)
    thresholds = {"score_threshold": args.score, "iou_threshold": args.iou, "max_detections": args.max_det}
    options = dict(quantize=args.quantize, flex=args.flex, calibration_images=args.calibration_images)
    path = detector.export(args.out, format=args.format, overwrite=args.overwrite, **thresholds,
                           **(options if args.format == "tflite" else {}))
    return detector, path


def format_check(report, split):
    """``check_artifact``'s numbers as the lines ``--check`` prints."""
    return "\n".join([
        f"mAP@0.5 ({split}): keras {report['keras_mAP50']:.4f}  export {report['artifact_mAP50']:.4f}  "
        f"(drop {report['mAP50_drop']:.2f} points)",
        f"size: {report['size_bytes'] / 1e6:.2f} MB",
        f"images/s ({report['timed_images']} images, one at a time): export {report['images_per_s']:.1f} end to "
        f"end, {report['model_images_per_s']:.1f} model only; keras {report['keras_images_per_s']:.1f} end to end",
    ])


def main(argv=None):
    args = parse_args(argv)
    quiet_tensorflow()
    try:
        detector, path = export(args)
        print(f"wrote {path}")
        if args.check:
            from detect.export.check import check_artifact

            print(format_check(check_artifact(detector, path, split=args.split), args.split))
    except InputError as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:
        print(os_error_line(error, args.out), file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


if __name__ == "__main__":
    code = main()
    exit_now(code)
