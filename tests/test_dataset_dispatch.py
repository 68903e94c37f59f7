"""One dataset dispatcher: a config that trains also checks and evaluates.

Training (``detect.train.data``), ``tools/check_dataset.py`` on a config,
evaluation from a config and ``tools/anchors.py`` read a config's dataset
through ``detect.data.formats``; these tests hold them to the same images,
boxes and class lists for every ``data.format``, on shapes datasets written
by the generator.
"""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from detect.data import SHAPES_CLASSES, VOC_CLASSES, make_shapes, read_dataset, read_voc
from detect.data.checker import check_dataset
from detect.errors import InputError
from detect.eval.loaders import load_voc_gt
from detect.train.data import class_names_of, load_records
from detect.train.experiment import load_experiment
from test_voc_reader import voc_object, write_voc

ROOT = Path(__file__).resolve().parents[1]
NUM, SIZE = 10, 64  # 8 training and 2 validation images
FORMATS = ("voc", "coco", "yolo", "tfrecord", "shapes")


def write_config(path, **data):
    lines = ["name: dispatch", "data:"] + [f"  {key}: {value}" for key, value in data.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    """{format: config path}, each naming a shapes dataset in that format."""
    base = tmp_path_factory.mktemp("dispatch")
    for fmt in ("voc", "coco", "yolo"):
        make_shapes(base / fmt, fmt, NUM, SIZE)
    from detect.data.formats import convert_dataset

    for split in ("train", "val"):
        convert_dataset(read_voc(base / "voc", split, SHAPES_CLASSES), "tfrecord", base / "tfrecord",
                        num_shards=2, prefix=split)
    return {
        "voc": write_config(base / "voc.yaml", format="voc", root=base / "voc"),
        # COCO's root is the image folder; a split is a JSON relative to it (configs/yolo_coco.yaml).
        "coco": write_config(base / "coco.yaml", format="coco", root=base / "coco" / "images",
                             train_split="../annotations/instances_train.json",
                             val_split="../annotations/instances_val.json"),
        "yolo": write_config(base / "yolo.yaml", format="yolo", root=base / "yolo"),
        "tfrecord": write_config(base / "tfrecord.yaml", format="tfrecord", root=base / "tfrecord",
                                 train_split="'train-*.tfrecord'", val_split="'val-*.tfrecord'"),
        "shapes": write_config(base / "shapes.yaml", format="shapes", root=base / "shapes",
                               shapes=f"{{num_images: {NUM}, image_size: {SIZE}}}"),
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_check_dataset_and_load_records_agree(configs, fmt):
    # Generates the shapes dataset on first use, as training does.
    report = check_dataset(configs[fmt], load_config=load_experiment)
    data_cfg = load_experiment(configs[fmt]).data
    class_names = class_names_of(data_cfg)
    assert list(class_names) == list(SHAPES_CLASSES)
    assert report.format == fmt and report.class_names == tuple(class_names)
    assert report.problems == []
    splits = [data_cfg.train_split, data_cfg.val_split]
    assert list(report.splits) == sorted(splits)
    for split in splits:
        records = load_records(data_cfg, split, class_names)
        summary = report.splits[split]
        assert summary.images == len(records) == (NUM * 4 // 5 if split == data_cfg.train_split else NUM // 5)
        assert summary.boxes == sum(r.num_boxes for r in records) > 0
        counts = {name: sum(int((r.classes == k).sum()) for r in records) for k, name in enumerate(class_names)}
        assert summary.boxes_per_class == counts


def test_tfrecord_records_carry_image_bytes(configs):
    data_cfg = load_experiment(configs["tfrecord"]).data
    records = load_records(data_cfg, data_cfg.val_split, class_names_of(data_cfg))
    assert all(r.image_bytes and r.image_path is None for r in records)


def test_coco_class_list_must_be_the_categories(configs):
    data_cfg = load_experiment(configs["coco"], ["data.classes=[square, circle, triangle]"]).data
    with pytest.raises(InputError, match=r"instances_val\.json: the dataset's classes \(circle, square, "
                                         r"triangle\) differ from the class list"):
        load_records(data_cfg, data_cfg.val_split, class_names_of(data_cfg))
    with pytest.raises(InputError, match="differ from the class list"):
        check_dataset(configs["coco"], overrides=["data.classes=[square, circle, triangle]"],
                      load_config=load_experiment)


@pytest.mark.parametrize("names, expected", [
    (("cat", "dog"), list(VOC_CLASSES)),  # only VOC names: the 20 VOC classes, in devkit order
    (("zebra", "cat"), ["cat", "zebra"]),  # any other name: the sorted names found
])
def test_one_default_voc_class_list(tmp_path, names, expected):
    root = write_voc(tmp_path / "voc", {"a": [voc_object(names[0], 1, 1, 10, 10)],
                                        "b": [voc_object(names[1], 1, 1, 10, 10)]},
                     {"train": ["a"], "val": ["b"]})
    config = write_config(tmp_path / "voc.yaml", format="voc", root=root)
    data_cfg = load_experiment(config).data
    assert class_names_of(data_cfg) == expected  # training
    assert load_records(data_cfg, "val", expected)[0].class_names == tuple(expected)
    report = check_dataset(config, decode_images=False, load_config=load_experiment)  # tools/check_dataset.py
    assert list(report.class_names) == expected
    assert list(check_dataset(root, decode_images=False).class_names) == expected
    assert load_voc_gt(root, "val").class_names == expected  # tools/eval.py --gt
    assert list(read_dataset("voc", root, "train")[0].class_names) == expected  # tools/convert.py
    anchors = _tool("anchors")
    assert list(anchors._records(root, "train")[0].class_names) == expected
    assert list(anchors._records(config, None)[0].class_names) == expected


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_dataset_tool_on_the_shipped_coco_config(tmp_path):
    # configs/yolo_coco.yaml as shipped: root data/coco/images, splits ../annotations/instances_*2017.json.
    coco = make_shapes(tmp_path / "data" / "coco", "coco", NUM, SIZE)
    for split in ("train", "val"):
        (coco / "annotations" / f"instances_{split}.json").rename(
            coco / "annotations" / f"instances_{split}2017.json")
    tool = [sys.executable, str(ROOT / "tools" / "check_dataset.py"), str(ROOT / "configs" / "yolo_coco.yaml")]
    proc = subprocess.run(tool + ["--no-decode"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "../annotations/instances_val2017.json" in proc.stdout and "Problems: none" in proc.stdout
    shutil.rmtree(coco / "annotations")
    proc = subprocess.run(tool, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == \
        "data/coco/images/../annotations/instances_train2017.json: file not found"
