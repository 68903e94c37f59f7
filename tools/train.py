#!/usr/bin/env python
"""Train a detector from a config.

    python tools/train.py --config configs/yolo_shapes.yaml [--set key=value ...] [--out runs/NAME] [--resume]

Writes the run directory (config snapshot, TensorBoard logs, checkpoints,
``last.weights.h5`` / ``best.weights.h5``, ``metrics.json``) and prints the
validation mAP. Bad input (config, data) is one line naming the file and the
entry, exit status 2.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.cli import exit_now, quiet_tensorflow  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment YAML (configs/*.yaml)")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override config keys, e.g. --set train.epochs=3 data.root=/data/voc")
    parser.add_argument("--out", help="run directory (default runs/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    quiet_tensorflow()
    from detect.errors import InputError

    try:
        from detect.train.run import train_from_config

        history = train_from_config(args.config, args.overrides, out_dir=args.out, resume=args.resume,
                                    progress=not args.quiet)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume", file=sys.stderr)
        return 130
    del history
    return 0


if __name__ == "__main__":
    code = main()
    exit_now(code)
