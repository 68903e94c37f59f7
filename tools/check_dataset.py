#!/usr/bin/env python
"""Check a detection dataset before training: counts, box sizes, every problem.

    python tools/check_dataset.py DATASET [--split S ...] [--classes a,b,c]
                                  [--images DIR] [--json OUT] [--show N --out DIR]
    python tools/check_dataset.py configs/NAME.yaml [--set key=value ...] [...]

DATASET is a VOC root (a folder with ``Annotations/``; every split in
``ImageSets/Main`` unless ``--split``), a COCO instances JSON (images in
``--images``), a YOLO root (a folder with ``labels/``) or an experiment
config. A config is loaded as ``tools/train.py`` loads it (every key
checked, ``--set`` applied) and its dataset is read by the same rules as
training reads it, for every ``data.format`` (voc, coco, yolo, tfrecord, and
shapes, which is generated on first use); its splits are the config's
train/val/test splits unless ``--split``.

Prints images and boxes per split and class, a box-size histogram and every
problem found (image paths outside the dataset root, missing, corrupt or
truncated images, malformed annotations, degenerate, tiny or out-of-bounds
boxes, unknown classes, duplicate ids), each with its file; images whose
content is in another format than their name says are noted. ``--show N
--out DIR`` draws N images with their ground-truth boxes, to see a wrong box
format before training. ``--json`` and ``--out`` are checked before any work:
an existing ``--json`` file is replaced only with ``--overwrite``; ``--out``
must be new, empty or a folder this tool drew into before (``--overwrite``
draws into another); neither may be an input.

Exit status: 0 no problems, 1 problems found, 2 unusable input (one line on
stderr naming the file).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.cli import EXIT_BAD_INPUT, EXIT_OK, class_names_arg, os_error_line, quiet_tensorflow  # noqa: E402
from detect.data.checker import check_dataset, format_report, report_to_json  # noqa: E402
from detect.data.drawing import write_examples  # noqa: E402
from detect.outputs import check_file_output, check_folder_output, claim_folder, write_json_atomic  # noqa: E402

TOOL = "tools/check_dataset.py"
EXAMPLES_KIND = "examples"
from detect.errors import InputError  # noqa: E402

EXIT_PROBLEMS = 1


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="VOC root, COCO JSON, YOLO root or config YAML")
    parser.add_argument("--split", action="append", dest="splits", metavar="SPLIT",
                        help="split to check (repeatable); default: every split found")
    parser.add_argument("--classes", type=class_names_arg,
                        help="class names, comma-separated, in class-id order "
                             "(VOC default: the names the annotations use)")
    parser.add_argument("--images", metavar="DIR", help="COCO image folder")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="with a config: override keys as tools/train.py does, e.g. data.root=/data/voc")
    parser.add_argument("--no-decode", action="store_true",
                        help="only check that image files exist (fast on large datasets)")
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="accept image paths that lead outside the dataset root (reported by default)")
    parser.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    parser.add_argument("--show", type=int, default=0, metavar="N",
                        help="draw N images with their ground-truth boxes (needs --out)")
    parser.add_argument("--out", metavar="DIR", help="folder for the --show images")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --json file; draw into an existing --out folder")
    parser.add_argument("--max-listed", type=int, default=20, metavar="N",
                        help="problems listed per kind in the text report; 0 for all (default 20)")
    args = parser.parse_args(argv)
    if args.show < 0:
        parser.error("--show must be >= 0")
    if args.show and not args.out:
        parser.error("--show needs --out DIR")
    if args.overrides and Path(args.dataset).suffix.lower() not in (".yaml", ".yml"):
        parser.error("--set applies to a config YAML only")
    return args


def load_config(path, overrides):
    """Loads a config YAML as ``tools/train.py`` does (every key checked, ``--set`` applied)."""
    # Lazily: only a config needs training's config types (which build on the model's),
    # and with them TensorFlow (a config is also the only way to name TFRecords).
    quiet_tensorflow()
    from detect.train.experiment import load_experiment

    return load_experiment(path, overrides)


def main(argv=None):
    args = parse_args(argv)
    class_names = args.classes
    inputs = [Path(p) for p in (args.dataset, args.images) if p]
    try:
        if args.json:
            check_file_output(args.json, "--json", overwrite=args.overwrite, inputs=inputs)
        if args.show:
            check_folder_output(args.out, EXAMPLES_KIND, TOOL, "--out", exist_ok=args.overwrite, inputs=inputs,
                                flag="--overwrite")
        report = check_dataset(args.dataset, splits=args.splits, class_names=class_names,
                               image_dir=args.images, decode_images=not args.no_decode,
                               allow_outside_root=args.allow_outside_root, overrides=args.overrides,
                               load_config=load_config)
    except InputError as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_INPUT
    except ImportError as error:
        print(f"{args.dataset}: this format's reader is not available ({error})", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(format_report(report, max_listed=args.max_listed))
    try:
        if args.json:
            write_json_atomic(args.json, report_to_json(report))
        if args.show:
            out = claim_folder(args.out, EXAMPLES_KIND, TOOL, "--out", exist_ok=args.overwrite, inputs=inputs,
                               flag="--overwrite")
            written = write_examples(report.records, args.show, out)
            print(f"\nDrew {len(written)} image(s) with their boxes into {args.out}")
    except InputError as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:
        print(os_error_line(error, action="cannot write"), file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_PROBLEMS if report.problems else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
