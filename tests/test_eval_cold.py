"""tools/benchmark.py eval --cold (detect.bench.eval_cold): fresh processes timed, stats checked exactly."""

import json
import subprocess
import sys

import numpy as np
import pytest

from detect.bench import eval_cold
from detect.bench.eval_cold import bench_eval_cold, compare, installed, reference_stats, report

needs_faster_coco_eval = pytest.mark.skipif(
    not installed("faster_coco_eval"), reason="faster-coco-eval is not installed (pip install -e '.[bench]')")


def test_reference_stats_are_read_from_the_last_line():
    stdout = ("loading annotations into memory...\nDone (t=0.01s)\n"
              " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.263\n"
              + json.dumps([0.1 + i / 3 for i in range(11)] + [-1.0]) + "\n")
    stats = reference_stats(stdout)
    assert stats.shape == (12,) and stats[-1] == -1.0
    assert stats[1] == 0.1 + 1 / 3  # the float itself, not a rounded print


def test_compare_is_exact():
    a = np.array([0.1, 0.2, -1.0])
    assert compare(a, a.copy()).startswith("identical")
    b = a.copy()
    b[1] = np.nextafter(b[1], 1.0)  # one ulp
    assert compare(a, b).startswith("not identical: max |difference| 2.78e-17")


def test_a_missing_reference_reads_not_installed(capsys):
    walls = {"ours": [2.0, 4.0, 3.0], "faster-coco-eval": None, "pycocotools": []}
    report(walls, {"ours": np.zeros(12)}, profile="")
    out = capsys.readouterr().out
    assert "  ours                3.00 s (2.00-4.00, 3 runs)" in out
    assert "faster-coco-eval  not installed" in out
    assert "pycocotools       skipped" in out
    assert "no reference installed" in out


def test_ratios_are_reference_over_ours(capsys):
    walls = {"ours": [2.0, 3.0], "faster-coco-eval": [6.0, 6.0], "pycocotools": [30.0]}
    stats = {"ours": np.ones(12), "faster-coco-eval": np.ones(12), "pycocotools": np.ones(12)}
    report(walls, stats, profile="tools/eval.py --profile: ...")
    out = capsys.readouterr().out
    assert "ratio faster-coco-eval/ours x2.40" in out  # 6 / median(2, 3)
    assert "ratio pycocotools/ours x12.00" in out
    assert "per round (same load on both): x3.00 x2.00" in out
    assert "ours vs pycocotools: identical" in out


def test_tiny_run_end_to_end(tmp_path, capsys):
    # Real fresh processes on 12 images: ours, pycocotools (a dependency) and
    # faster-coco-eval where installed; ours' stats equal pycocotools' exactly.
    walls = bench_eval_cold(num_images=12, rounds=1, pycocotools=True, folder=tmp_path)
    out = capsys.readouterr().out
    assert len(walls["ours"]) == 1 and len(walls["pycocotools"]) == 1
    assert "stats, ours vs pycocotools: identical" in out
    assert "[loading process] parse JSON: detections" in out  # ours' --profile, from its stderr
    if installed("faster_coco_eval"):
        assert len(walls["faster-coco-eval"]) == 1
        assert "stats, faster-coco-eval vs pycocotools: " in out  # its sums may differ in the last bit
    else:
        assert walls["faster-coco-eval"] is None and "not installed" in out


@needs_faster_coco_eval
def test_faster_coco_eval_script_runs_as_a_user_would(tmp_path):
    gt_path, dets_path = eval_cold.write_dataset(tmp_path, num_images=5, seed=3)
    argv = eval_cold.commands(gt_path, dets_path, tmp_path / "s.json")["faster-coco-eval"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert reference_stats(proc.stdout).shape == (12,)


def test_cold_flag_on_the_command_line(tmp_path):
    # Bad values are refused before anything runs (the tool's one-line errors).
    proc = subprocess.run([sys.executable, str(eval_cold.TOOL.parent / "benchmark.py"), "eval", "--cold",
                           "--rounds", "0"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--rounds must be at least 1" in proc.stderr
