#!/usr/bin/env python
"""Write the synthetic shapes detection dataset to disk.

    python tools/make_shapes.py --out DIR [--format voc|coco|yolo] [--num N]
                                [--size S] [--seed K] [--val-fraction F]

Circles, squares and triangles on textured backgrounds, JPEG images with
exact boxes, train and val splits, in the chosen layout (see
``detect.data.shapes.make_shapes``). The same seed gives the same bytes.

DIR must be new, empty, or a shapes dataset this tool wrote: one with the
same parameters is kept as it is, one with others is replaced once the new
one is complete (it is generated into a temporary sibling folder). Any other
folder is refused with one line and left alone.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.cli import EXIT_BAD_INPUT, EXIT_OK, os_error_line  # noqa: E402
from detect.data.shapes import FORMATS, ensure_shapes  # noqa: E402
from detect.errors import InputError  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="dataset folder to write")
    parser.add_argument("--format", choices=FORMATS, default="voc", help="annotation layout")
    parser.add_argument("--num", type=int, default=1000, help="number of images (default 1000)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share of images in the val split (default 0.2)")
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error("--num must be at least 1")
    if args.size < 32:
        parser.error("--size must be at least 32")
    if args.seed < 0:
        parser.error("--seed must be non-negative")
    if not 0 <= args.val_fraction <= 1:
        parser.error("--val-fraction must be in [0, 1]")
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        out = ensure_shapes(args.out, args.format, args.num, args.size, args.seed, args.val_fraction)
    except InputError as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:
        print(os_error_line(error, args.out, "cannot write"), file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{out}: {args.num} {args.size}x{args.size} images ({args.format}) ready "
          f"in {time.perf_counter() - start:.1f} s")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
