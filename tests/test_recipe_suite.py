"""The recipe suite's bookkeeping: suite files, results, the table (detect/bench/suite.py, tools/recipe_suite.py)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from detect.bench.suite import format_table, last_validation, read_results, read_suite, summarize, write_result
from detect.errors import InputError
from detect.outputs import MARKER

ROOT = Path(__file__).resolve().parents[1]


def result(dataset, recipe, seed, test, last5, wall=60.0):
    return {"dataset": dataset, "recipe": recipe, "seed": seed, "test_map50": test, "test_per_class": {},
            "val_last5": last5, "wall_s": wall, "epochs": 60}


def test_the_shipped_suite_names_existing_configs():
    datasets = read_suite(ROOT / "configs/proxies/suite.yaml")
    assert [d.name for d in datasets] == ["bccd", "potholes", "license_plates", "vehicles"]
    assert datasets[0].config == ROOT / "configs/yolo_bccd.yaml"
    assert all(d.config.is_file() for d in datasets)


@pytest.mark.parametrize("text, says", [
    ("datasets: []", "non-empty list"),
    ("datasets:\n  - {name: a}", "exactly the keys"),
    ("datasets:\n  - {name: a, config: configs/nope.yaml}", "does not exist"),
    ("datasets:\n  - {name: a, config: configs/yolo_bccd.yaml}\n  - {name: a, config: configs/yolo_bccd.yaml}",
     "used twice"),
    ("datasets: [", "not valid YAML"),
])
def test_a_bad_suite_is_one_error_naming_the_file(tmp_path, text, says):
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=says) as error:
        read_suite(path)
    assert str(path) in str(error.value)


def test_last_validation_takes_the_last_five_validated_epochs():
    epochs = [{"epoch": e, "AP50": e / 10} if e % 2 == 0 else {"epoch": e} for e in range(1, 15)]
    assert last_validation({"epochs": epochs}) == [0.6, 0.8, 1.0, 1.2, 1.4]
    assert last_validation({"epochs": [{"epoch": 1}]}) == []


def test_summary_and_table_by_hand(tmp_path):
    runs = [result("a", "new", 0, 0.80, [0.70, 0.74, 0.72], 120.0), result("a", "new", 1, 0.70, [0.60, 0.61], 60.0)]
    s = summarize(runs)
    assert s["test"] == [0.80, 0.70] and s["test_mean"] == pytest.approx(0.75)
    assert s["last5_mean"] == pytest.approx((0.70 + 0.74 + 0.72 + 0.60 + 0.61) / 5)
    assert s["last5_spread"] == pytest.approx(0.04) and s["wall_min"] == pytest.approx(1.5)
    for r in runs + [result("b", "new", 0, 0.5, [0.5]), result("a", "old", 0, 0.4, [0.4])]:
        folder = tmp_path / r["recipe"] / r["dataset"]
        folder.mkdir(parents=True, exist_ok=True)
        write_result(folder / f"s{r['seed']}.json", r)
    results = read_results(tmp_path)
    assert [r["seed"] for r in results["new"]["a"]] == [0, 1]
    table = format_table(results, ["a", "b"]).splitlines()
    assert table[2] == "| a | new | 0.800 / 0.700 (0.750) | 0.674 (4.0 pt) | 1.5 min |"
    assert table[3] == "| a | old | 0.400 (0.400) | 0.400 (0.0 pt) | 1.0 min |"
    assert table[4].startswith("| b | new | 0.500 (0.500)")
    # The mean is over datasets (each a mean over seeds): (0.75 + 0.5) / 2; "old" lacks b and says so.
    assert table[5] == "| **mean** | new | **0.625** | | |"
    assert table[6] == "| **mean of 1 of 2** | old | **0.400** | | |"
    assert math.isnan(summarize([result("a", "x", 0, 0.1, [])])["last5_mean"])


def test_write_result_refuses_an_incomplete_result(tmp_path):
    with pytest.raises(ValueError, match="val_last5"):
        write_result(tmp_path / "s0.json", {k: 0 for k in ("dataset", "recipe", "seed", "test_map50",
                                                           "test_per_class", "wall_s", "epochs")})
    assert not (tmp_path / "s0.json").exists()


def tool(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "tools/recipe_suite.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


def test_the_tool_refuses_a_foreign_folder_and_a_changed_recipe(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    done = tool("--out", foreign, "--recipe", "r", "--only", "bccd", "--seeds", "0")
    assert done.returncode == 2 and "mine" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]

    out = tmp_path / "suite"
    out.mkdir()
    (out / MARKER).write_text(json.dumps({"kind": "recipe-suite", "tool": "tools/recipe_suite.py"}))
    (out / "r").mkdir()
    (out / "r" / "recipe.json").write_text(json.dumps({"peer": False, "peer_model": None, "peer_batch": None,
                                                        "set": ["train.batch_size=4"], "epochs": None}))
    done = tool("--out", out, "--recipe", "r", "--only", "bccd", "--seeds", "0", "--set", "train.batch_size=2")
    assert done.returncode == 2 and "another --recipe name" in done.stderr


def load_peer():
    import importlib.util

    spec = importlib.util.spec_from_file_location("peer_ultralytics", ROOT / "tools/peer_ultralytics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_peer_gets_the_boxes_we_train_on(tmp_path):
    """VOC corners (1-based, inclusive) -> YOLO lines by hand: x1 = xmin - 1, x2 = xmax (detect.data.voc.voc_box)."""
    peer = load_peer()
    xml = tmp_path / "a.xml"
    xml.write_text("<annotation><size><width>200</width><height>100</height></size>"
                   "<object><name>dog</name><difficult>0</difficult>"
                   "<bndbox><xmin>11</xmin><ymin>21</ymin><xmax>50</xmax><ymax>80</ymax></bndbox></object>"
                   "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>200</xmax><ymax>100</ymax>"
                   "</bndbox></object>"
                   "<object><name>dog</name><difficult>1</difficult>"
                   "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
                   "<object><name>bird</name>"
                   "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
                   "</annotation>")
    # dog: x 10..50, y 20..80 -> centre (30, 50), size (40, 60); cat: the whole image.
    assert peer.yolo_labels(xml, ["cat", "dog"]) == ["1 0.150000 0.500000 0.200000 0.600000",
                                                      "0 0.500000 0.500000 1.000000 1.000000"]


def test_the_peer_refuses_an_existing_out_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "tools/peer_ultralytics.py"), "--root", tmp_path, "--classes",
                           "a", "--epochs", "1", "--out", tmp_path], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip().endswith("Choose a new --out")
