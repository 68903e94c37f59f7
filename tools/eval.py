#!/usr/bin/env python
"""Evaluate detections against ground truth and print mAP tables.

    python tools/eval.py --gt GT --dets DETS [--metric coco|voc07|voc12]
                         [--split SPLIT] [--classes a,b,c] [--json OUT] [--plots DIR]
    python tools/eval.py --config CFG --weights RUN_DIR_OR_WEIGHTS [--split val|test|NAME]
                         [--metric ...] [--save-dets FILE] [--json OUT] [--plots DIR]

GT is a COCO instances JSON or a VOC dataset root (a folder with
``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``). DETS is a
COCO results JSON list; for a VOC root its ``image_id`` is the annotation
file's stem and ``category_id`` a class name or index. The metric defaults to
coco for a JSON file, voc12 for a VOC root; ``--split`` to test, then val.
With ``--config``/``--weights`` the trained model is run over a split of the
config's dataset (its validation split by default; any ``data.format``, read
as training reads it), its detections (in original image pixels) optionally
saved with ``--save-dets``, and scored as ``--gt``/``--dets`` would score
them: against the split's JSON for COCO data (saved with its image and
category ids), the VOC folder for VOC-layout data, the split's own records
for YOLO and TFRecord data. The metric then defaults to voc12 for VOC-layout
data (voc, shapes) and coco for the others.

Outputs (``--json``, ``--save-dets``, ``--plots``) are checked before any
work: a file that exists is replaced only with ``--overwrite``, a plots folder
must be new, empty or one this tool wrote (``--overwrite`` writes into
another), and no output may be an input. Files are replaced atomically.

Bad input prints one line naming the file and the entry and exits with 2.
``--profile`` prints the wall time of each step to stderr.
"""

import time

STARTED = time.perf_counter()  # before the imports, which --profile reports

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.cli import EXIT_BAD_INPUT, EXIT_OK, class_names_arg, exit_now, os_error_line, quiet_tensorflow  # noqa: E402
from detect.errors import InputError  # noqa: E402
from detect.eval.background import BackgroundLoad  # noqa: E402
from detect.eval.files import METRICS, default_metric, evaluate  # noqa: E402
from detect.eval.report import format_table, result_to_json, write_plots  # noqa: E402
from detect.outputs import check_file_output, check_folder_output, claim_folder, write_json_atomic  # noqa: E402
from detect.phases import Phases, process_age  # noqa: E402

TOOL = "tools/eval.py"
PLOTS_KIND = "plots"



def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gt", help="COCO instances JSON or VOC dataset root")
    parser.add_argument("--dets", help="detections: COCO results JSON list")
    parser.add_argument("--metric", choices=METRICS,
                        help="default: coco for a JSON ground truth, voc12 for a VOC root; with --config "
                             "voc12 for VOC-layout data, else coco")
    parser.add_argument("--split", help="VOC split (default: test, else val)")
    parser.add_argument("--classes", type=class_names_arg,
                        help="VOC class names, comma-separated, in class-id order")
    parser.add_argument("--json", metavar="OUT", help="write the summary numbers as JSON")
    parser.add_argument("--plots", metavar="DIR", help="write precision-recall and AP plots (PNG)")
    parser.add_argument("--config", help="experiment config of a trained model (configs/*.yaml)")
    parser.add_argument("--weights", help="with --config: a run directory or a .weights.h5 file")
    parser.add_argument("--save-dets", metavar="FILE", help="with --config: write the detections (COCO results)")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="with --config: the overrides the model was trained with, as tools/train.py "
                             "takes them (e.g. data.image_size=320)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing --json / --save-dets files; write --plots into an existing folder")
    parser.add_argument("--profile", action="store_true",
                        help="print the wall time of each step (start-up, imports, parsing, metric, ...) to stderr")
    args = parser.parse_args(argv)
    if (args.config is None) != (args.weights is None):
        parser.error("--config and --weights go together")
    if args.config is None and (args.gt is None or args.dets is None):
        parser.error("--gt and --dets are required (or --config and --weights)")
    return args


def inputs_of(args):
    return [Path(p) for p in (args.gt, args.dets, args.config, args.weights) if p]


def check_outputs(args):
    """The output rule (module docstring), before any work; raises ``InputError``."""
    inputs = inputs_of(args)
    for path, option in ((args.json, "--json"), (args.save_dets, "--save-dets")):
        if path:
            check_file_output(path, option, overwrite=args.overwrite, inputs=inputs)
    if args.plots:
        check_folder_output(args.plots, PLOTS_KIND, TOOL, "--plots", exist_ok=args.overwrite, inputs=inputs,
                            flag="--overwrite")


def main(argv=None):
    phases = Phases()
    whole_process = argv is None  # run as a command, not called: start-up and imports are ours to report
    if whole_process:
        age = process_age()
        if age is not None:
            phases.add("interpreter start", age - (time.perf_counter() - STARTED))
        phases.add("imports (tool)", time.perf_counter() - STARTED)
    args = parse_args(argv)
    try:
        return run(args, phases)
    finally:
        if args.profile:
            phases.print("tools/eval.py --profile: wall time per step",
                         total=process_age() if whole_process else None)


def run(args, phases):
    try:
        check_outputs(args)
        if args.config is not None:
            with phases("TensorFlow import"):
                quiet_tensorflow()
            from detect.eval.predict import evaluate_split

            result = evaluate_split(args.config, args.weights, split=args.split, metric=args.metric,
                                    overrides=args.overrides, save_dets=args.save_dets)
        else:
            # The files are parsed and checked in a forked process while TensorFlow is imported here.
            with BackgroundLoad(args.gt, args.dets, split=args.split, class_names=args.classes) as pending:
                with phases("TensorFlow import"):
                    quiet_tensorflow(keras=False)  # scoring files builds no Keras model
                gt, dets = pending.result(phases)
            with phases("metric"):
                result = evaluate(gt, dets, args.metric or default_metric(Path(args.gt).is_dir()))
    except InputError as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_INPUT
    with phases("report"):
        return report(args, result)


def report(args, result):
    print(format_table(result))
    try:
        if args.json:
            write_json_atomic(args.json, result_to_json(result))
        if args.plots:
            write_plots(result, claim_folder(args.plots, PLOTS_KIND, TOOL, "--plots", exist_ok=args.overwrite,
                                             inputs=inputs_of(args), flag="--overwrite"))
    except InputError as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:
        print(os_error_line(error, action="cannot write"), file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


if __name__ == "__main__":
    code = main()
    exit_now(code)
