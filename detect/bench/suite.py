"""The small-data recipe suite: one recipe trained on every dataset of a suite, two seeds, one table.

A suite file (``configs/proxies/suite.yaml``) names datasets and the config
that trains each. A *recipe* is a name plus ``--set`` overrides applied to
every config, or the Ultralytics peer. Each (recipe, dataset, seed) is one
training in its own process (``tools/train.py``) scored on the dataset's test
split by ``tools/eval.py`` (VOC12 mAP@0.5), so a run measures exactly what a
user would get. Layout under the suite's output folder::

    OUT/RECIPE/recipe.json            the recipe (overrides, epochs): fixed once written
    OUT/RECIPE/DATASET/s0/            the run folder (ours: tools/train.py's; peer: its own)
    OUT/RECIPE/DATASET/s0.json        the result, written last: a run with it is done

A run without its result is resumed (ours) or restarted (the peer), so a
killed suite continues where it stopped.
"""

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from detect.errors import InputError

RESULT_KEYS = ("dataset", "recipe", "seed", "test_map50", "test_per_class", "val_last5", "wall_s", "epochs")
# How many of the last validation epochs measure a recipe's stability (the "last-5").
LAST_EPOCHS = 5


@dataclass(frozen=True)
class SuiteDataset:
    """One dataset of a suite: its name and the config that trains it."""

    name: str
    config: Path


def read_suite(path):
    """``[SuiteDataset]`` from a suite YAML file; config paths relative to the repository root.

    Raises:
      InputError: a missing file, a missing or duplicate name, a config that does not exist.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise InputError(path, f"cannot read the suite ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise InputError(path, f"not valid YAML ({str(error).splitlines()[0]})") from None
    entries = data.get("datasets") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InputError(path, "datasets: a non-empty list of {name, config} is required")
    root = Path(__file__).resolve().parents[2]
    datasets, seen = [], set()
    for i, entry in enumerate(entries):
        where = f"datasets[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"name", "config"}:
            raise InputError(path, f"{where}: needs exactly the keys name and config")
        name, config = str(entry["name"]), root / str(entry["config"])
        if name in seen:
            raise InputError(path, f"{where}: the name {name!r} is used twice")
        if not config.is_file():
            raise InputError(path, f"{where}: config {entry['config']} does not exist")
        seen.add(name)
        datasets.append(SuiteDataset(name, config))
    return datasets


def last_validation(metrics, count=LAST_EPOCHS):
    """The last ``count`` validation mAP@0.5 values of a run's ``metrics.json`` content (epoch order)."""
    return [record["AP50"] for record in metrics.get("epochs", []) if "AP50" in record][-count:]


def write_result(path, result):
    """Writes a run's result atomically (its existence marks the run as done)."""
    from detect.outputs import write_json_atomic

    missing = [key for key in RESULT_KEYS if key not in result]
    if missing:
        raise ValueError(f"result lacks {missing}")
    write_json_atomic(path, result)


def read_results(out):
    """Every finished run's result under a suite output folder: ``{recipe: {dataset: [result, ...]}}``."""
    results = {}
    for path in sorted(Path(out).glob("*/*/s*.json")):
        result = json.loads(path.read_text())
        results.setdefault(result["recipe"], {}).setdefault(result["dataset"], []).append(result)
    for by_dataset in results.values():
        for runs in by_dataset.values():
            runs.sort(key=lambda r: r["seed"])
    return results


def _mean(values):
    return sum(values) / len(values) if values else math.nan


def summarize(runs):
    """One dataset under one recipe: per-seed test mAP@0.5, their mean, last-5 mean/min/max, mean wall."""
    last = [v for r in runs for v in r["val_last5"]]
    return {
        "seeds": [r["seed"] for r in runs],
        "test": [r["test_map50"] for r in runs],
        "test_mean": _mean([r["test_map50"] for r in runs]),
        "last5_mean": _mean(last),
        # The spread a user sees: within each seed's last epochs, the widest.
        "last5_spread": max((max(r["val_last5"]) - min(r["val_last5"]) for r in runs if r["val_last5"]),
                            default=math.nan),
        "wall_min": _mean([r["wall_s"] for r in runs]) / 60,
    }


def format_table(results, datasets=None):
    """A Markdown table: one row per dataset and recipe (recipes interleaved), then each recipe's mean.

    Args:
      results: ``read_results``'s mapping.
      datasets: dataset names in the order to print (default: sorted).
    """
    recipes = sorted(results)
    names = datasets or sorted({d for by in results.values() for d in by})
    lines = ["| dataset | recipe | test mAP@0.5 per seed (mean) | val last-5 mean (widest spread) | wall per run |",
             "|---|---|---|---|---|"]
    means = {recipe: [] for recipe in recipes}
    for name in names:
        for recipe in recipes:
            runs = results[recipe].get(name)
            if not runs:
                continue
            s = summarize(runs)
            means[recipe].append(s["test_mean"])
            per_seed = " / ".join(f"{v:.3f}" for v in s["test"])
            lines.append(f"| {name} | {recipe} | {per_seed} ({s['test_mean']:.3f}) | "
                         f"{s['last5_mean']:.3f} ({100 * s['last5_spread']:.1f} pt) | {s['wall_min']:.1f} min |")
    for recipe in recipes:
        complete = len(means[recipe]) == len(names)
        label = "mean" if complete else f"mean of {len(means[recipe])} of {len(names)}"
        lines.append(f"| **{label}** | {recipe} | **{_mean(means[recipe]):.3f}** | | |")
    return "\n".join(lines)


def machine_line():
    """The CPU this ran on, as the README quotes machines: model name, family/model, AVX-512 or not, cores."""
    info = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        return f"{os.cpu_count()} cores"
    flags = info.get("flags", "").split()
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return (f"{info.get('model name', '?')} (family {info.get('cpu family', '?')}, model {info.get('model', '?')}, "
            f"{simd}), {os.cpu_count()} cores")
