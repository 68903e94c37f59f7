#!/usr/bin/env python
"""Train one recipe on every dataset of the small-data suite, two seeds, and print one table.

    python tools/recipe_suite.py --suite configs/proxies/suite.yaml --out runs/suite --recipe today
    python tools/recipe_suite.py --suite ... --out runs/suite --recipe mosaic --set data.mosaic=0.5 ...
    python tools/recipe_suite.py --suite ... --out runs/suite --recipe yolov8n \\
        --peer-python /path/to/venv/bin/python          # the Ultralytics peer (tools/peer_ultralytics.py)
    python tools/recipe_suite.py --out runs/suite --table   # the table of everything measured so far

Every run is ``tools/train.py`` then ``tools/eval.py --split test`` (VOC12
mAP@0.5) in their own processes; the peer's detections are scored by the
same ``tools/eval.py``. A recipe's overrides and epochs are recorded in
``OUT/RECIPE/recipe.json`` on its first run and must match afterwards, so a
table never mixes two recipes under one name. Runs already finished are
skipped and a killed run is resumed, so the command can simply be run
again. ``--out`` follows the overwrite rule (a new folder or one this tool
created). See ``detect/bench/suite.py`` for the layout.
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detect.bench.suite import (  # noqa: E402
    format_table, last_validation, machine_line, read_results, read_suite, write_result)
from detect.cli import EXIT_BAD_INPUT, EXIT_OK  # noqa: E402
from detect.errors import InputError  # noqa: E402
from detect.outputs import claim_folder, write_json_atomic  # noqa: E402

KIND = "recipe-suite"
TOOL = "tools/recipe_suite.py"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default=str(ROOT / "configs/proxies/suite.yaml"), help="suite YAML")
    parser.add_argument("--out", required=True, help="suite output folder (one per machine)")
    parser.add_argument("--recipe", help="the recipe's name (a folder under --out)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="the recipe's config overrides")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--epochs", type=int, help="train.epochs for every dataset (default: each config's)")
    parser.add_argument("--only", help="comma-separated dataset names (default: all)")
    parser.add_argument("--peer-python", help="run the Ultralytics peer with this interpreter instead of ours")
    parser.add_argument("--peer-model", default="yolov8n.yaml", help="the peer's model (from scratch: a .yaml)")
    parser.add_argument("--peer-batch", type=int, default=8)
    parser.add_argument("--table", action="store_true", help="print the table of --out and exit")
    args = parser.parse_args(argv)
    if not args.table and not args.recipe:
        parser.error("--recipe is required unless --table")
    if args.peer_python and args.set:
        parser.error("--set applies to our recipes, not to the peer")
    return args


def run(command, log):
    """Runs ``command`` with its output appended to ``log``; returns its exit status."""
    with open(log, "a") as stream:
        stream.write("$ " + " ".join(map(str, command)) + "\n")
        stream.flush()
        return subprocess.call([str(c) for c in command], stdout=stream, stderr=subprocess.STDOUT, cwd=ROOT)


def check(status, what, log):
    if status != 0:
        raise InputError(log, f"{what} failed with exit status {status}; its output is in this log")


def recipe_record(args):
    return {"peer": bool(args.peer_python), "peer_model": args.peer_model if args.peer_python else None,
            "peer_batch": args.peer_batch if args.peer_python else None, "set": list(args.set),
            "epochs": args.epochs}


def claim_recipe(out, args):
    """``OUT/RECIPE``, its ``recipe.json`` written once and checked on every later call."""
    folder = out / args.recipe
    folder.mkdir(exist_ok=True)
    record, path = recipe_record(args), folder / "recipe.json"
    if path.exists():
        before = json.loads(path.read_text())
        if before != record:
            raise InputError(path, f"recipe {args.recipe!r} was measured with {before}, not {record}; "
                                   "give another --recipe name")
    else:
        write_json_atomic(path, record)
    return folder


def train_ours(dataset, seed, run_dir, args, log):
    overrides = [f"train.seed={seed}", *args.set] + ([f"train.epochs={args.epochs}"] if args.epochs else [])
    resume = ["--resume"] if (run_dir / "config.yaml").exists() else []
    check(run(["python", "tools/train.py", "--config", dataset.config, "--out", run_dir, "--quiet", *resume,
               "--set", *overrides], log), "tools/train.py", log)
    test_json = run_dir / "test.json"
    check(run(["python", "tools/eval.py", "--config", dataset.config, "--weights", run_dir, "--split", "test",
               "--metric", "voc12", "--json", test_json, "--overwrite", "--set", *overrides], log), "tools/eval.py", log)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    epochs = len(metrics.get("epochs", []))
    return json.loads(test_json.read_text()), last_validation(metrics), epochs


def train_peer(dataset, seed, run_dir, args, log):
    from detect.data.formats import dataset_root
    from detect.train.experiment import load_experiment

    experiment = load_experiment(dataset.config)
    data = experiment.data
    root = (ROOT / dataset_root(data)).resolve()  # what tools/train.py reads: it runs in ROOT
    epochs = args.epochs or experiment.train.epochs
    if run_dir.exists():  # a killed peer run starts again: the folder is this tool's own
        shutil.rmtree(run_dir)
    check(run([args.peer_python, "tools/peer_ultralytics.py", "--root", root, "--classes", ",".join(data.classes),
               "--train-split", data.train_split, "--val-split", data.val_split, "--test-split", "test",
               "--epochs", epochs, "--imgsz", data.image_size, "--batch", args.peer_batch, "--seed", seed,
               "--model", args.peer_model, "--out", run_dir], log), "tools/peer_ultralytics.py", log)
    test_json = run_dir / "test.json"
    check(run(["python", "tools/eval.py", "--gt", root, "--dets", run_dir / "dets.json", "--split", "test",
               "--classes", ",".join(data.classes), "--metric", "voc12", "--json", test_json, "--overwrite"], log),
          "tools/eval.py", log)
    val = json.loads((run_dir / "val_map50.json").read_text())
    return json.loads(test_json.read_text()), val[-5:], len(val)


def test_numbers(summary):
    """(VOC12 mAP@0.5, per-class APs) from tools/eval.py's ``--json``."""
    return float(summary["mAP"]), summary["per_class"]


def main(argv=None):
    args = parse_args(argv)
    try:
        out = Path(args.out)
        if args.table:
            if not out.is_dir():
                raise InputError(out, "no suite results here")
            print(format_table(read_results(out)))
            return EXIT_OK
        datasets = read_suite(args.suite)
        if args.only:
            wanted = args.only.split(",")
            unknown = sorted(set(wanted) - {d.name for d in datasets})
            if unknown:
                raise InputError(args.suite, f"--only names datasets the suite lacks: {', '.join(unknown)}")
            datasets = [d for d in datasets if d.name in wanted]
        claim_folder(out, KIND, TOOL)
        recipe_dir = claim_recipe(out, args)
        print(f"{args.recipe} on {machine_line()}", flush=True)
        for dataset in datasets:
            for seed in args.seeds:
                result_path = recipe_dir / dataset.name / f"s{seed}.json"
                if result_path.exists():
                    continue
                run_dir = recipe_dir / dataset.name / f"s{seed}"
                run_dir.parent.mkdir(exist_ok=True)
                log = recipe_dir / dataset.name / f"s{seed}.log"
                start = time.perf_counter()
                train = train_peer if args.peer_python else train_ours
                summary, last5, epochs = train(dataset, seed, run_dir, args, log)
                map50, per_class = test_numbers(summary)
                write_result(result_path, {"dataset": dataset.name, "recipe": args.recipe, "seed": seed,
                                           "test_map50": map50, "test_per_class": per_class, "val_last5": last5,
                                           "wall_s": round(time.perf_counter() - start, 1), "epochs": epochs,
                                           "machine": machine_line()})
                print(f"{dataset.name} seed {seed}: test mAP@0.5 {map50:.3f}, last-5 val "
                      f"{', '.join(f'{v:.3f}' for v in last5)}", flush=True)
        print(format_table(read_results(out), [d.name for d in read_suite(args.suite)]))
    except InputError as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
