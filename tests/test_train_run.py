"""``train_from_config`` end to end on a tiny shapes dataset, in each resize mode."""

import json

import pytest

from detect.data.shapes import make_shapes
from detect.train.run import train_from_config


@pytest.fixture(scope="module")
def shapes_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("run") / "shapes"
    # 3 validation images in batches of 2: a partial last batch, so predictions are traced for
    # two batch shapes (and more with shortest-side sizes).
    make_shapes(root, "voc", num_images=15, size=96, seed=1)
    config = root.parent / "config.yaml"
    config.write_text(f"name: tiny\ndata:\n  format: voc\n  root: {root}\n  classes: [circle, square, triangle]\n"
                      f"  image_size: 96\n  max_boxes: 8\nmodel:\n  backbone: tiny\n  head_width: 8\n"
                      f"train:\n  epochs: 1\n  batch_size: 2\n")
    return config


@pytest.mark.parametrize("resize", [
    [],
    # Batches padded to their own size (multiples of 32); min_side drawn per image from the list.
    pytest.param(["data.resize=shortest_side", "data.min_side=64", "data.max_side=128", "data.min_sides=[64, 96]"],
                 marks=pytest.mark.slow),  # (slow set: the shortest-side engine path is Faster R-CNN's tests' too)
])
def test_a_run_trains_evaluates_and_writes_its_files(shapes_config, tmp_path, resize):
    history = train_from_config(shapes_config, resize, out_dir=tmp_path / "run", progress=False)
    assert [e["epoch"] for e in history["epochs"]] == [1]
    record = history["epochs"][0]
    assert 0.0 <= record["mAP50"] <= 1.0 and record["loss"] > 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == history
    for name in ("best.weights.h5", "last.weights.h5", "config.yaml"):
        assert (tmp_path / "run" / name).exists()
