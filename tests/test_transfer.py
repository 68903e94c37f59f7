"""``model.init_weights``: partial loading by layer path and shape.

References: the source values themselves (a loaded tensor equals them to
the bit), copies of the target taken before loading (a re-initialised or
skipped tensor keeps its own), and ``Detector.load`` of the source run,
which reads the weights through Keras' own ``load_weights``.
"""

from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import yaml

from detect.data.shapes import SHAPES_CLASSES, make_shapes
from detect.errors import InputError
from detect.models.base import TaskBase
from detect.train.transfer import init_from, load_matching, variable_keys, weights_config_path

ROOT = Path(__file__).resolve().parents[1]


class PairTask(TaskBase):
    """backbone (nested: Dense "shared" + BN) -> Dense "pred" with ``classes`` outputs."""

    def __init__(self, classes, shared=3, seed=0):
        keras.utils.set_random_seed(seed)
        inner = keras.Input((4,))
        out = keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(shared, name="shared")(inner))
        self.backbone = keras.Model(inner, out, name="backbone")
        inputs = keras.Input((4,))
        self.model = keras.Model(inputs, keras.layers.Dense(classes, name="pred")(self.backbone(inputs)))

    def class_dependent_layers(self):
        return ["pred"]

    def backbones(self):
        return [self.backbone]


def values_of(task):
    return {key: variable.numpy().copy() for key, variable in variable_keys(task.model)}


def test_keys_name_the_layers_that_lead_to_each_tensor():
    assert sorted(values_of(PairTask(2))) == [
        "backbone/bn/beta", "backbone/bn/gamma", "backbone/bn/moving_mean", "backbone/bn/moving_variance",
        "backbone/shared/bias", "backbone/shared/kernel", "pred/bias", "pred/kernel"]


def test_shared_layers_load_to_the_bit_and_the_head_of_another_class_count_is_reinitialised():
    source, target = PairTask(2, seed=1), PairTask(5, seed=2)
    source.backbone.get_layer("bn").moving_mean.assign([1.0, 2.0, 3.0])  # statistics travel too
    want, before = values_of(source), values_of(target)
    report = load_matching(target, want, "source")
    got = values_of(target)
    for key in ("backbone/shared/kernel", "backbone/shared/bias", "backbone/bn/gamma", "backbone/bn/beta",
                "backbone/bn/moving_mean", "backbone/bn/moving_variance"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    for key in ("pred/kernel", "pred/bias"):
        np.testing.assert_array_equal(got[key], before[key], err_msg=key)
    assert [k for k, _ in report.reinitialised] == ["pred/kernel", "pred/bias"]
    assert len(report.loaded) == 6 and report.skipped == [] and report.unused == 0
    table = report.table()
    assert table.splitlines()[2].split() == ["loaded", "6", "27"]  # 4 x 3 + 3, and 4 x 3 of the batch norm
    assert table.splitlines()[3].split() == ["re-initialised", "2", "20", "(pred)"]  # 3 x 5 + 5


def test_another_mismatch_is_an_error_naming_the_layer_and_both_shapes_unless_skipped():
    source, target = PairTask(2, shared=3, seed=1), PairTask(2, shared=6, seed=2)
    before = values_of(target)
    # shared kernel and bias and the 4 batch-norm tensors differ; pred/kernel [6, 2] is class-dependent.
    with pytest.raises(InputError, match=r"source: init_weights: 6 tensor\(s\) do not fit the model; the first, "
                                         r"backbone/shared/kernel \[4, 6\] in the model, is \[4, 3\] in the source"):
        load_matching(target, values_of(source), "source")
    after = values_of(target)
    assert all(np.array_equal(after[k], before[k]) for k in before)  # nothing assigned
    report = load_matching(target, values_of(source), "source", skip_mismatch=True)
    assert [k for k, _ in report.loaded] == ["pred/bias"] and [k for k, _ in report.reinitialised] == ["pred/kernel"]
    assert len(report.skipped) == 6
    np.testing.assert_array_equal(values_of(target)["pred/bias"], values_of(source)["pred/bias"])
    np.testing.assert_array_equal(values_of(target)["backbone/shared/kernel"], before["backbone/shared/kernel"])


def test_a_backbone_source_loads_the_backbone_only():
    source, target = PairTask(2, seed=1), PairTask(5, seed=2)
    values = {key[len("backbone/"):]: value for key, value in values_of(source).items() if key.startswith("backbone/")}
    before = values_of(target)
    report = load_matching(target, {f"backbone/{k}": v for k, v in values.items()}, "file", scopes=("backbone/",))
    got = values_of(target)
    assert len(report.loaded) == 6 and report.reinitialised == []
    np.testing.assert_array_equal(got["backbone/shared/kernel"], values["shared/kernel"])
    np.testing.assert_array_equal(got["pred/kernel"], before["pred/kernel"])


# ---- real detectors ------------------------------------------------------------------

@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """A one-epoch run on 3-class shapes, and the root of another shapes set for a 1-class task."""
    from detect.train.run import train_from_config

    tmp = tmp_path_factory.mktemp("transfer")
    make_shapes(tmp / "pretrain", "voc", num_images=6, size=64, seed=1)
    make_shapes(tmp / "target", "voc", num_images=12, size=64, seed=9)
    config = tmp / "pretrain.yaml"
    config.write_text(yaml.safe_dump({
        "name": "pretrain", "data": {"format": "voc", "root": str(tmp / "pretrain"), "image_size": 64,
                                     "max_boxes": 8, "classes": list(SHAPES_CLASSES)},
        "model": {"backbone": "tiny", "head_width": 8}, "train": {"epochs": 1, "batch_size": 2}}))
    train_from_config(config, out_dir=tmp / "run", progress=False)
    return tmp


def one_class_config(tmp, **model):
    path = tmp / f"one_{len(list(tmp.glob('one_*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump({
        "name": "one", "data": {"format": "voc", "root": str(tmp / "target"), "image_size": 64, "max_boxes": 8,
                                "classes": ["circle"], "skip_unknown": True},
        "model": {"backbone": "tiny", "head_width": 8, **model}, "train": {"epochs": 1, "batch_size": 2}}))
    return path


def test_a_run_of_other_classes_starts_a_one_class_yolo(shapes_run):
    from detect import Detector
    from detect.models.registry import build_task
    from detect.train.experiment import load_experiment

    config = load_experiment(one_class_config(shapes_run, init_weights=str(shapes_run / "run")))
    task = build_task(config.model, 1)
    fresh = values_of(task)
    report = init_from(task, config.model)
    source = values_of(Detector.load(shapes_run / "run")._backend.task)  # Keras' own load_weights
    got = values_of(task)
    predictions = {key for key in got if key.split("/")[0].endswith("_pred")}
    assert {key for key, _ in report.reinitialised} == predictions and len(predictions) == 6
    for key in got:
        want = fresh[key] if key in predictions else source[key]
        np.testing.assert_array_equal(got[key], want, err_msg=key)
    assert "(3 classes: circle, square, triangle)" in report.source


def test_training_from_a_run_prints_the_table_and_records_the_source(shapes_run, capsys):
    from detect import Detector
    from detect.train.run import train_from_config

    train_from_config(one_class_config(shapes_run, init_weights=str(shapes_run / "run")), out_dir=shapes_run / "ft",
                      progress=False)
    out = capsys.readouterr().out
    assert "init_weights: " in out
    assert next(line for line in out.splitlines() if "re-initialised" in line).split()[:2] == ["re-initialised", "6"]
    recorded = yaml.safe_load((shapes_run / "ft" / "config.yaml").read_text())["model"]["init_weights"]
    assert recorded == str((shapes_run / "run").resolve())
    assert Detector.load(shapes_run / "ft").class_names == ["circle"]


def test_a_weights_file_needs_its_config_and_another_architecture_is_refused(shapes_run, tmp_path):
    from detect.models.registry import build_task
    from detect.train.experiment import load_experiment

    loose = tmp_path / "model.weights.h5"
    loose.write_bytes((shapes_run / "run" / "best.weights.h5").read_bytes())
    config = load_experiment(one_class_config(shapes_run, init_weights=str(loose)))
    with pytest.raises(InputError, match="no config for these weights.*model.config.yaml beside the file"):
        init_from(build_task(config.model, 1), config.model)
    weights_config_path(loose).write_text((shapes_run / "run" / "config.yaml").read_text())
    assert len(init_from(build_task(config.model, 1), config.model).loaded) > 100
    wider = load_experiment(one_class_config(shapes_run, init_weights=str(loose), head_width=16))
    with pytest.raises(InputError, match=r"do not fit the model; the first, .* in the model, is .* in the source"):
        init_from(build_task(wider.model, 1), wider.model)
    skipped = load_experiment(one_class_config(shapes_run, init_weights=str(loose), head_width=16,
                                               init_skip_mismatch=True))
    report = init_from(build_task(skipped.model, 1), skipped.model)
    assert report.skipped and report.loaded  # the backbone fits, the wider head does not


def test_a_keras_applications_file_loads_the_backbone(tmp_path):
    """A file in the format of Keras' own ``*_notop.h5`` downloads (legacy HDF5, by layer order)."""
    from keras.src.legacy.saving import legacy_h5_format

    from detect.models.registry import build_task
    from detect.train.experiment import load_experiment

    keras.utils.set_random_seed(3)
    app = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(None, None, 3))
    path = tmp_path / "mobilenet_v2_notop.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, app)
    config = load_experiment(ROOT / "configs" / "yolo_shapes.yaml",
                             ["model.backbone=mobilenet_v2", f"model.init_weights={path}"])
    task = build_task(config.model, 2)
    fresh = values_of(task)
    report = init_from(task, config.model)
    got = values_of(task)
    want = {f"mobilenet_v2/{key}": variable.numpy() for key, variable in variable_keys(app)}
    loaded = {key for key, _ in report.loaded}
    assert loaded and all(key.startswith("mobilenet_v2/") for key in loaded)
    for key in loaded:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert all(np.array_equal(got[k], fresh[k]) for k in got if not k.startswith("mobilenet_v2/"))


# ---- Darknet COCO -> your classes ---------------------------------------------------------

BCCD = ROOT.parent / "shared" / "datasets" / "BCCD"


def bccd_subset(folder, train=8, val=4):
    """A copy of the first images of BCCD's train and val splits (VOC layout)."""
    import shutil

    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (folder / sub).mkdir(parents=True)
    for split, count in (("train", train), ("val", val)):
        ids = (BCCD / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:count]
        for image_id in ids:
            shutil.copy(BCCD / "Annotations" / f"{image_id}.xml", folder / "Annotations")
            shutil.copy(BCCD / "JPEGImages" / f"{image_id}.jpg", folder / "JPEGImages")
        (folder / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return folder


def tool(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"transfer_tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A synthetic file in Darknet's layout (YOLOv3, 3 classes), converted by tools/convert_darknet.py."""
    from test_convert_darknet import CLASSES, V3_CONFIG, cfg_convs, keras_names_v3, make_layers, write_weights, \
        yolov3_sections

    tmp = tmp_path_factory.mktemp("darknet")
    layers = make_layers(cfg_convs(yolov3_sections(len(CLASSES))), keras_names_v3(), seed=0)
    for values in layers.values():  # no near-dead channels: through 75 layers their 300x gain would overflow
        if values["bn"]:
            values["variance"] = np.maximum(values["variance"], np.float32(0.5))
    darknet = write_weights(tmp / "yolov3.weights", layers)
    out = tmp / "weights" / "yolov3_abc.weights.h5"
    assert tool("convert_darknet")(["--weights", str(darknet), "--config", str(V3_CONFIG), "--out", str(out),
                                    "--set", f"data.classes=[{', '.join(CLASSES)}]"]) == 0
    assert yaml.safe_load(weights_config_path(out).read_text())["data"]["classes"] == CLASSES
    return out


FINETUNE = ROOT / "configs" / "yolov3_finetune.yaml"


def test_darknet_weights_start_the_finetune_config_with_one_class(converted, tmp_path):
    """Every tensor of configs/yolov3_finetune.yaml on one class but the three output convolutions is the
    converted file's, to the bit (read through Detector.load, which finds the config beside the file)."""
    from detect import Detector
    from detect.models.registry import build_task
    from detect.train.experiment import load_experiment

    config = load_experiment(FINETUNE, ["data.classes=[RBC]", f"model.init_weights={converted}"])
    task = build_task(config.model, 1)
    report = init_from(task, config.model)
    source = values_of(Detector.load(converted)._backend.task)
    got = values_of(task)
    outputs = {key for key in got if key.split("/")[0] in ("out3_pred", "out4_pred", "out5_pred")}
    assert {key for key, _ in report.reinitialised} == outputs and not report.skipped
    assert all(np.array_equal(got[key], source[key]) for key in got if key not in outputs)


@pytest.mark.slow
@pytest.mark.skipif(not BCCD.is_dir(), reason=f"the BCCD dataset is not at {BCCD}")
def test_darknet_weights_to_a_one_class_bccd_detector_end_to_end(converted, tmp_path, capsys):
    """Converted Darknet weights -> configs/yolov3_finetune.yaml on one BCCD class -> training (head,
    then all) -> tools/eval.py -> Detector.load (slow: three Darknet-53 builds and a training)."""
    from detect import Detector
    from detect.train.run import train_from_config

    root = bccd_subset(tmp_path / "bccd")
    overrides = [f"data.root={root}", "data.classes=[RBC]", "data.skip_unknown=true", "data.image_size=128",
                 "train.epochs=2", "train.freeze_epochs=1", "train.batch_size=4", f"model.init_weights={converted}"]
    history = train_from_config(FINETUNE, overrides, out_dir=tmp_path / "run", progress=False)
    assert [e["stage"] for e in history["epochs"]] == ["head", "all"]
    assert "init_weights: " in capsys.readouterr().out
    assert tool("eval")(["--config", str(FINETUNE), "--set", *overrides, "--weights", str(tmp_path / "run"),
                         "--split", "val"]) == 0
    detector = Detector.load(tmp_path / "run")
    assert detector.class_names == ["RBC"]
    found = detector.predict(next((root / "JPEGImages").iterdir()), score_threshold=0.0)
    assert set(found.labels) <= {"RBC"}
