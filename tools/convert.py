#!/usr/bin/env python
"""Convert a detection dataset to TFRecord shards or a COCO instances JSON.

    python tools/convert.py --format voc|coco|yolo --root R [--split S]
                            [--json ANN] [--classes a,b,c]
                            --to tfrecord|coco --out OUT [--shards 8]

VOC needs ``--split``; COCO reads ``--json`` (images relative to ``--root``)
or ``R/annotations/instances_<split>.json``; YOLO reads ``R/images/<split>``.
For ``--to tfrecord`` OUT is a folder (shards ``<split>-00000-of-0000N``, or
``data-...`` without a split, plus a JSON sidecar); for ``--to coco`` a file.

OUT is checked before anything is read: a TFRecord folder must be new, empty
or one this tool wrote before (another split goes beside the first; the
shards of the same split are replaced once all new ones are written), a COCO
file must be new (``--overwrite`` replaces one), and neither may be an input.

Bad input prints one line naming the file and the entry and exits with 2.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.cli import EXIT_BAD_INPUT, EXIT_OK, os_error_line, parse_class_names, quiet_tensorflow  # noqa: E402
from detect.data.formats import (READ_FORMATS, WRITE_FORMATS, convert_dataset,  # noqa: E402
                                 read_dataset)
from detect.errors import InputError  # noqa: E402
from detect.outputs import check_file_output, check_folder_output, claim_folder  # noqa: E402

TOOL = "tools/convert.py"
TFRECORD_KIND = "tfrecord"



def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", required=True, choices=READ_FORMATS, help="input format")
    parser.add_argument("--root", help="dataset folder (COCO: the image folder)")
    parser.add_argument("--split", help="split name (train, val, ...)")
    parser.add_argument("--json", metavar="ANN", help="COCO instances JSON")
    parser.add_argument("--classes", nargs="+", metavar="NAME",
                        help="class names in class-id order (commas or spaces)")
    parser.add_argument("--to", required=True, choices=WRITE_FORMATS, help="output format")
    parser.add_argument("--out", required=True, help="output folder (tfrecord) or file (coco)")
    parser.add_argument("--shards", type=int, default=8, help="TFRecord shards (default 8)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing COCO --out file; write shards into a folder this tool did not make")
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="accept image paths that lead outside the dataset root (refused by default)")
    args = parser.parse_args(argv)
    if args.shards < 1:
        parser.error("--shards must be at least 1")
    if args.format != "coco" and args.root is None:
        parser.error(f"--root is required for --format {args.format}")
    if args.classes is not None:
        try:
            args.classes = parse_class_names(args.classes)
        except ValueError as error:
            parser.error(str(error))
    return args


def main(argv=None):
    args = parse_args(argv)
    quiet_tensorflow()
    try:
        inputs = [Path(p) for p in (args.root, args.json) if p]
        if args.to == "coco":
            check_file_output(args.out, "--out", overwrite=args.overwrite, inputs=inputs)
        else:
            check_folder_output(args.out, TFRECORD_KIND, TOOL, "--out", exist_ok=args.overwrite, inputs=inputs,
                                flag="--overwrite")
        records = read_dataset(args.format, args.root, args.split, args.json, args.classes,
                               allow_outside_root=args.allow_outside_root)
        if args.to != "coco":
            claim_folder(args.out, TFRECORD_KIND, TOOL, "--out", exist_ok=args.overwrite, inputs=inputs,
                         flag="--overwrite")
        paths = convert_dataset(records, args.to, args.out, num_shards=args.shards,
                                prefix=args.split or "data")
    except InputError as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:
        print(os_error_line(error, args.out, "cannot write"), file=sys.stderr)
        return EXIT_BAD_INPUT
    boxes = sum(r.num_boxes for r in records)
    print(f"{len(records)} images, {boxes} boxes -> {len(paths)} file(s) in "
          f"{Path(paths[0]).parent if paths else args.out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
