"""``tools/benchmark.py eval --cold``: whole fresh processes, ours against faster-coco-eval and pycocotools.

What a user waits for: a new ``python`` process from interpreter start to
exit (imports, reading the JSON files, the metric, the report), on the
synthetic COCO-sized files of ``coco_scale_dataset`` written once to a
temporary folder. Each round runs ``tools/eval.py --gt --dets --metric coco``
and a small faster-coco-eval script one after the other, so load from other
processes falls on both; pycocotools (about 45 s) runs once. The medians,
the ratio of the medians (reference / ours, > 1: ours is faster) and the
per-round ratios are printed, and the 12 stats are compared with
pycocotools' (``COCOeval.stats``) exactly, as floats.
"""

import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from detect.bench.eval import coco_scale_dataset
from detect.eval.report import COCO_STATS  # the 12 names, in COCOeval.stats order

TOOL = Path(__file__).resolve().parents[2] / "tools" / "eval.py"

# A reference as a user would run it: load the ground truth, loadRes the
# results file, evaluate / accumulate / summarize; the 12 stats on the last line.
_REFERENCE_SCRIPT = """
import json, sys
from {module} import {coco} as COCO
from {eval_module} import {evaluator} as Evaluator
gt = COCO(sys.argv[1])
dt = gt.loadRes(sys.argv[2])
evaluator = Evaluator(gt, dt, "bbox")
evaluator.evaluate()
evaluator.accumulate()
evaluator.summarize()
print(json.dumps([float(v) for v in evaluator.stats[:12]]))
"""

# name: (package to look for, the script)
REFERENCES = {
    "faster-coco-eval": ("faster_coco_eval", _REFERENCE_SCRIPT.format(
        module="faster_coco_eval", coco="COCO", eval_module="faster_coco_eval", evaluator="COCOeval_faster")),
    "pycocotools": ("pycocotools", _REFERENCE_SCRIPT.format(
        module="pycocotools.coco", coco="COCO", eval_module="pycocotools.cocoeval", evaluator="COCOeval")),
}


def write_dataset(folder, num_images, seed=0):
    """``coco_scale_dataset`` as ``instances.json`` and ``results.json`` in ``folder``; their paths."""
    gt, results = coco_scale_dataset(seed, num_images=num_images)
    paths = Path(folder) / "instances.json", Path(folder) / "results.json"
    for path, data in zip(paths, (gt, results)):
        path.write_text(json.dumps(data))
    return paths


def installed(package):
    return importlib.util.find_spec(package) is not None


def commands(gt_path, dets_path, stats_path):
    """{name: argv}; ours writes its stats to ``stats_path`` (--json) and its step times to stderr (--profile)."""
    ours = [sys.executable, str(TOOL), "--gt", str(gt_path), "--dets", str(dets_path), "--metric", "coco",
            "--json", str(stats_path), "--overwrite", "--profile"]
    refs = {name: [sys.executable, "-c", script, str(gt_path), str(dets_path)]
            for name, (_, script) in REFERENCES.items()}
    return {"ours": ours, **refs}


def run_cold(argv):
    """(wall seconds, stdout, stderr) of one fresh process; a failure raises with its stderr."""
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} ... failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout, proc.stderr


def reference_stats(stdout):
    """The 12 stats a reference script printed on its last line, [12] float64."""
    return np.array(json.loads(stdout.strip().splitlines()[-1]), np.float64)


def our_stats(stats_path):
    """The 12 stats of ``tools/eval.py --json``, [12] float64 (-1 where undefined, as pycocotools)."""
    summary = json.loads(Path(stats_path).read_text())
    return np.array([summary[name] for name in COCO_STATS], np.float64)


def compare(ours, reference):
    """'identical' when every stat is the same float, else the largest difference."""
    if np.array_equal(ours, reference):
        return "identical (all 12 stats equal as floats)"
    return f"not identical: max |difference| {np.abs(ours - reference).max():.3g}"


def bench_eval_cold(num_images=5000, rounds=5, pycocotools=True, folder=None):
    """Runs the comparison and prints it; returns {name: list of wall seconds or None (not installed)}.

    Args:
      num_images: synthetic COCO images (about 7 boxes and 100 detections each).
      rounds: ours and faster-coco-eval, one after the other, this many times.
      pycocotools: also run pycocotools once (slow), the reference for the stats.
      folder: where to write the JSON files (default: a temporary folder, removed after).
    """
    if folder is None:
        with tempfile.TemporaryDirectory(prefix="eval_cold_") as tmp:
            return bench_eval_cold(num_images, rounds, pycocotools, tmp)
    print(f"writing COCO-scale files: {num_images} images, 80 classes ...", flush=True)
    gt_path, dets_path = write_dataset(folder, num_images)
    print(f"{gt_path.stat().st_size / 1e6:.1f} MB ground truth, {dets_path.stat().st_size / 1e6:.1f} MB results "
          f"in {folder}", flush=True)
    stats_path = Path(folder) / "ours_stats.json"
    argv = commands(gt_path, dets_path, stats_path)
    available = {"ours": True, **{name: installed(package) for name, (package, _) in REFERENCES.items()}}
    walls = {name: [] if ok else None for name, ok in available.items()}
    stats, profile = {}, ""
    order = ["ours", "faster-coco-eval"] + (["pycocotools"] if pycocotools else [])
    for round_ in range(rounds):
        for name in order:
            if not available[name] or (name == "pycocotools" and round_ > 0):
                continue
            seconds, stdout, stderr = run_cold(argv[name])
            walls[name].append(seconds)
            if name == "ours":
                stats[name], profile = our_stats(stats_path), stderr
            else:
                stats[name] = reference_stats(stdout)
        print(f"round {round_ + 1}: " + "  ".join(f"{name} {walls[name][-1]:.2f} s" for name in order
                                                  if walls[name] and len(walls[name]) == round_ + 1), flush=True)
    report(walls, stats, profile)
    return walls


def report(walls, stats, profile):
    """Prints the medians, ratios and the stats check."""
    ours = float(np.median(walls["ours"]))
    print("\nwhole cold process, wall seconds (median of the rounds; min-max):")
    for name, times in walls.items():
        if times is None:
            print(f"  {name:<17} not installed")
        elif not times:
            print(f"  {name:<17} skipped")
        else:
            runs = f"{len(times)} run" + ("s" if len(times) > 1 else "")
            line = f"  {name:<17} {np.median(times):6.2f} s ({min(times):.2f}-{max(times):.2f}, {runs})"
            if name != "ours":
                line += f"   ratio {name}/ours x{np.median(times) / ours:.2f}"
            print(line)
    fast = walls.get("faster-coco-eval")
    if fast and len(fast) == len(walls["ours"]):
        per_round = [f / o for f, o in zip(fast, walls["ours"])]
        print("  faster-coco-eval/ours per round (same load on both): "
              + " ".join(f"x{r:.2f}" for r in per_round))
    reference = "pycocotools" if "pycocotools" in stats else "faster-coco-eval" if "faster-coco-eval" in stats else None
    if reference is None:
        print("stats: no reference installed to compare with")
    else:
        print(f"stats, ours vs {reference}: {compare(stats['ours'], stats[reference])}")
        if reference == "pycocotools" and "faster-coco-eval" in stats:
            print(f"stats, faster-coco-eval vs pycocotools: {compare(stats['faster-coco-eval'], stats[reference])}")
    print("stats (ours): " + " ".join(f"{v:.4f}" for v in stats["ours"]))
    if profile:
        print(f"\nours, last round, {profile.strip()}")
