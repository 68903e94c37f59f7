#!/usr/bin/env python
"""Side-by-side benchmarks: ours against a reference, in one process.

    python tools/benchmark.py ops [--repeats 7]
    python tools/benchmark.py eval [--images 5000]
    python tools/benchmark.py eval --cold [--images 5000] [--rounds 5] [--no-pycocotools]
    python tools/benchmark.py train --config configs/yolo_shapes.yaml [--steps 20] [--rounds 5] [--stage NAME] [--set ...]
    python tools/benchmark.py train --peer yolov3-tf2 --peer-path ../peer-yolov3-tf2 [--batch 8] [--steps 2] [--rounds 3] [--precision bfloat16]
    python tools/benchmark.py data [--repeats 5] [--config configs/yolo_bccd.yaml]
    python tools/benchmark.py infer --config configs/yolov3_coco.yaml [--weights W] [--precision bfloat16]

Each line prints the median wall time of ours and of the reference, the
speed ratio (reference / ours, > 1 means we are faster) and whether the two
agree on the result. Timings are of warmed-up, already-traced functions on
inputs already in memory.

The ops suite prints, for ours and for every reference of a row, the first
call (tracing and XLA compilation included), the median warm call, and the
peak memory of one call measured by the allocator that serves it
(TensorFlow's for TensorFlow code, tracemalloc for numpy); ours and the
references are timed in alternation, so load from other processes falls on
both.

``eval --cold`` times whole fresh processes instead (interpreter start to
exit, JSON files read from disk): ``tools/eval.py`` against a
faster-coco-eval and a pycocotools script, in alternation
(``detect.bench.eval_cold``).
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.bench.data import DATA_STEP_CONFIG, bench_data, bench_data_naive  # noqa: E402
from detect.bench.eval import bench_eval  # noqa: E402
from detect.bench.eval_cold import bench_eval_cold  # noqa: E402
from detect.bench.infer import bench_infer  # noqa: E402
from detect.bench.ops import bench_ops  # noqa: E402
from detect.bench.peer_train import PEERS, bench_train_peer  # noqa: E402
from detect.bench.train import bench_train  # noqa: E402
from detect.cli import exit_now, quiet_tensorflow  # noqa: E402
from detect.config import PRECISIONS  # noqa: E402


class _Parser(argparse.ArgumentParser):
    """Bad command-line input is one line (and exit status 2), like bad files."""

    def error(self, message):
        from detect.errors import InputError

        raise InputError("benchmark.py", message)


def main(argv=None):
    from detect.errors import InputError

    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", choices=["ops", "eval", "data", "train", "infer"])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement (median)")
    parser.add_argument("--images", type=int, default=5000, help="eval: number of synthetic COCO images")
    parser.add_argument("--config", help="train, infer: experiment config to time; data: the config whose "
                        "training step the pipeline is compared with (default configs/yolo_bccd.yaml)")
    parser.add_argument("--weights", help="infer: a run directory or .weights.h5 (default: random weights)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="infer, train --peer: compute precision (Keras mixed-precision policy)")
    parser.add_argument("--steps", type=int, help="train: timed steps per round (default 20; with --peer 2)")
    parser.add_argument("--rounds", type=int, help="train: timed rounds, the two sides alternating "
                        "(default 5; with --peer 3); eval --cold: rounds of ours and faster-coco-eval (default 5)")
    parser.add_argument("--peer", choices=PEERS, help="train: our YOLOv3 step beside this peer's, side by side")
    parser.add_argument("--peer-path", help="train --peer: the peer's checkout (holding its yolov3_tf2 package)")
    parser.add_argument("--batch", type=int, default=8, help="train --peer: images per step (the peer's default 8)")
    parser.add_argument("--cold", action="store_true",
                        help="eval: whole fresh processes (start-up and JSON reading included), ours against "
                             "faster-coco-eval and pycocotools")
    parser.add_argument("--no-pycocotools", dest="pycocotools", action="store_false",
                        help="eval --cold: skip pycocotools (about 45 s a run); the stats are then checked "
                             "against faster-coco-eval")
    parser.add_argument("--stage", help="train: the stage of a multi-stage schedule to time (default the first)")
    parser.add_argument("--naive", action="store_true",
                        help="data: ours against a hand-written tf.data + albumentations loop, side by side")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="train, infer, data: config overrides")
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 2 if args.peer else 20
    if args.rounds is None:
        args.rounds = 3 if args.peer else 5
    for option in ("repeats", "images", "steps", "rounds", "batch"):
        if getattr(args, option) < 1:
            raise InputError("benchmark.py", f"--{option} must be at least 1, got {getattr(args, option)}")
    if args.suite == "eval" and args.cold:
        # Fresh processes are timed; this one needs no TensorFlow.
        bench_eval_cold(args.images, args.rounds, pycocotools=args.pycocotools)
        return 0
    # Importing TensorFlow is a once-per-process cost, like importing any library: reported, never timed.
    start = time.perf_counter()
    quiet_tensorflow()
    print(f"TensorFlow import: {time.perf_counter() - start:.2f} s (not counted below)", flush=True)
    if args.suite == "ops":
        bench_ops(args.repeats)
    elif args.suite == "eval":
        bench_eval(args.images)
    elif args.suite == "data":
        if args.naive:
            return bench_data_naive(min(args.repeats, 5))
        return bench_data(min(args.repeats, 5), args.config or DATA_STEP_CONFIG, args.overrides)
    elif args.suite == "train":
        if args.peer:
            if not args.peer_path:
                parser.error("--peer needs --peer-path (a checkout of the peer)")
            return bench_train_peer(args.peer, args.peer_path, args.batch, args.steps, args.rounds, args.precision,
                                    args.overrides)
        if not args.config:
            parser.error("train needs --config")
        return bench_train(args.config, args.steps, args.overrides, args.rounds, args.stage)
    elif args.suite == "infer":
        if not args.config:
            parser.error("infer needs --config")
        return bench_infer(args.config, args.weights, args.repeats, args.overrides, args.precision)
    else:
        print(f"benchmark.py: the '{args.suite}' suite is not implemented yet", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from detect.errors import InputError

    try:
        code = main()
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        code = 2
    exit_now(code)
