"""Faster R-CNN end to end: the 4-step alternating schedule's weight sharing, joint training,
one training step on every backbone, evaluation from a run, and the shipped configs."""

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from detect.backbones import BACKBONES
from detect.data.shapes import make_shapes
from detect.faster_rcnn import stages
from detect.faster_rcnn.config import FasterRcnnConfig
from detect.faster_rcnn.model import FasterRcnnTask
from detect.train.config import TrainConfig
from detect.train.run import train_from_config

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("backbone", "rpn", "head", "detector_backbone")
SMALL = dict(rpn_width=16, fc_width=32, fc_dropout=0.0, rpn_batch=32, roi_batch=16, train_pre_nms=400,
             train_post_nms=64, test_pre_nms=200, test_post_nms=32)


def _config_yaml(root, training, stage_epochs="[1, 1, 1, 1]"):
    model = "".join(f"  {key}: {value}\n" for key, value in SMALL.items())
    return (f"name: frcnn\ndata:\n  format: voc\n  root: {root}\n  classes: [circle, square, triangle]\n"
            f"  resize: shortest_side\n  min_side: 96\n  max_side: 96\n  size_divisor: 16\n  max_boxes: 8\n"
            f"model:\n  type: faster_rcnn\n  backbone: tiny\n  anchor_scales: [1, 2, 4]\n  training: {training}\n"
            f"  stage_epochs: {stage_epochs}\n{model}"
            f"train:\n  epochs: 2\n  batch_size: 2\n  optimizer: adamw\n  learning_rate: 0.001\n  warmup_epochs: 0\n")


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("frcnn") / "shapes"
    make_shapes(root, "voc", num_images=12, size=96, seed=3)
    return root


def _weights(task):
    """{part: [arrays]} of every variable (normalisation statistics included)."""
    return {part: [np.array(v) for v in getattr(task, part).weights] for part in PARTS}


def _same(a, b):
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def alternating(shapes_root, tmp_path_factory):
    """An alternating run (one epoch per step) with the weights seen around every step's ``prepare``."""
    out = tmp_path_factory.mktemp("alternating")
    config = out / "config.yaml"
    config.write_text(_config_yaml(shapes_root, "alternating"))
    seen = {}
    tasks = []

    def spy(name, prepare):
        def wrapped(task):
            tasks.append(task)
            seen[f"before_{name}"] = _weights(task)
            prepare(task)
            seen[f"after_{name}"] = _weights(task)
        return wrapped

    patch = pytest.MonkeyPatch()
    for name in ("prepare_rpn", "prepare_detector", "prepare_rpn_shared", "prepare_detector_shared"):
        patch.setattr(stages, name, spy(name, getattr(stages, name)))
    try:
        history = train_from_config(config, out_dir=out / "run", progress=False)
    finally:
        patch.undo()
    seen["end"] = _weights(tasks[-1])
    return history, seen, config, out / "run"


def test_alternating_runs_the_four_named_steps_with_their_metrics(alternating):
    history, _, _, run = alternating
    assert [e["stage"] for e in history["epochs"]] == ["rpn", "detector", "rpn_shared", "detector_shared"]
    rpn_steps = [e for e in history["epochs"] if e["stage"].startswith("rpn")]
    detector_steps = [e for e in history["epochs"] if e["stage"].startswith("detector")]
    for e in rpn_steps:  # RPN-only steps report proposal recall, not mAP
        assert 0.0 <= e["recall70"] <= e["recall50"] <= 1.0 and "mAP50" not in e
        assert set(e) >= {"loss_rpn_cls", "loss_rpn_box"} and "loss_cls" not in e
    for e in detector_steps:
        assert 0.0 <= e["mAP50"] <= 1.0 and set(e) >= {"loss_cls", "loss_box"} and "loss_rpn_cls" not in e
    # Only the final model (step 4) competes for best.weights.h5.
    assert history["best"]["epoch"] == 4
    assert (run / "best.weights.h5").exists()


def test_step3_starts_from_the_step2_detector_backbone_to_the_bit(alternating):
    _, seen, _, _ = alternating
    before, after = seen["before_prepare_rpn_shared"], seen["after_prepare_rpn_shared"]
    # The two backbones were trained apart (steps 1 and 2), so the copy is a real change ...
    assert not _same(before["backbone"], before["detector_backbone"])
    # ... that makes the shared backbone the detector's, normalisation statistics included.
    assert _same(after["backbone"], before["detector_backbone"])
    assert _same(after["detector_backbone"], before["detector_backbone"])


def test_steps_3_and_4_leave_the_shared_layers_unchanged(alternating):
    _, seen, _, _ = alternating
    assert _same(seen["end"]["backbone"], seen["after_prepare_rpn_shared"]["backbone"])


def test_step3_trains_only_the_rpn_and_step4_only_the_detector_head(alternating):
    _, seen, _, _ = alternating
    start3, end3 = seen["after_prepare_rpn_shared"], seen["before_prepare_detector_shared"]
    start4, end4 = seen["after_prepare_detector_shared"], seen["end"]
    assert not _same(start3["rpn"], end3["rpn"])
    for part in ("backbone", "head", "detector_backbone"):
        assert _same(start3[part], end3[part]), part
    assert not _same(start4["head"], end4["head"])
    for part in ("backbone", "rpn", "detector_backbone"):
        assert _same(start4[part], end4[part]), part


def test_step1_and_step2_train_their_own_backbones(alternating):
    _, seen, _, _ = alternating
    start1, end1 = seen["after_prepare_rpn"], seen["before_prepare_detector"]
    start2, end2 = seen["after_prepare_detector"], seen["before_prepare_rpn_shared"]
    assert not _same(start1["backbone"], end1["backbone"]) and not _same(start1["rpn"], end1["rpn"])
    assert _same(start1["detector_backbone"], end1["detector_backbone"]) and _same(start1["head"], end1["head"])
    assert not _same(start2["detector_backbone"], end2["detector_backbone"])
    assert not _same(start2["head"], end2["head"])
    assert _same(start2["backbone"], end2["backbone"]) and _same(start2["rpn"], end2["rpn"])


@pytest.mark.slow
def test_eval_tool_scores_a_run_like_its_last_validation(alternating):
    history, _, config, run = alternating
    out = run.parent / "summary.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "eval.py"), "--config", str(config), "--weights",
                           str(run), "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # Another process: near-tied scores of a barely trained head may reorder under float rounding.
    assert json.loads(out.read_text())["mAP"] == pytest.approx(history["epochs"][-1]["mAP50"], abs=0.02)


def test_resume_inside_step2_restores_its_own_backbone_and_keeps_the_sharing(shapes_root, tmp_path, monkeypatch,
                                                                             capsys):
    # Step 2's backbone is held by the checkpoints only (not the weights files): a resume inside step 2
    # must find it as the killed run left it, then step 3 shares it.
    from detect.train.engine import Trainer

    config = tmp_path / "config.yaml"
    config.write_text(_config_yaml(shapes_root, "alternating", stage_epochs="[1, 2, 1, 1]"))
    run = tmp_path / "run"
    train_epoch = Trainer._train_epoch
    seen = {}

    def killed_in_step2(self, epoch, history):
        if epoch == 2:  # 0-based: the second of step 2's two epochs
            raise KeyboardInterrupt
        result = train_epoch(self, epoch, history)
        if epoch == 1:
            seen["committed"] = [np.array(v) for v in self.task.detector_backbone.weights]
        return result

    monkeypatch.setattr(Trainer, "_train_epoch", killed_in_step2)
    with pytest.raises(KeyboardInterrupt):
        train_from_config(config, out_dir=run, progress=False)

    def resumed(self, epoch, history):
        if epoch == 2:
            seen["resumed"] = [np.array(v) for v in self.task.detector_backbone.weights]
        return train_epoch(self, epoch, history)

    monkeypatch.setattr(Trainer, "_train_epoch", resumed)
    tasks = []
    monkeypatch.setattr(stages, "prepare_detector_shared",
                        lambda task, prepare=stages.prepare_detector_shared: (tasks.append(task), prepare(task)))
    history = train_from_config(config, out_dir=run, progress=False, resume=True)
    assert re.search(r"resumed from epoch 2 \(step \d+\), stage .detector.", capsys.readouterr().out)
    assert [e["stage"] for e in history["epochs"]] == ["rpn", "detector", "detector", "rpn_shared",
                                                       "detector_shared"]
    assert _same(seen["resumed"], seen["committed"])
    task = tasks[-1]
    assert _same([np.array(v) for v in task.backbone.weights], [np.array(v) for v in task.detector_backbone.weights])


@pytest.fixture(scope="module")
def joint(shapes_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("joint")
    config = out / "config.yaml"
    config.write_text(_config_yaml(shapes_root, "joint", stage_epochs="[]"))
    return train_from_config(config, out_dir=out / "run", progress=False), config, out / "run"


def test_joint_training_sums_both_losses_in_one_stage(joint):
    history = joint[0]
    assert [e["stage"] for e in history["epochs"]] == ["joint", "joint"]
    for e in history["epochs"]:
        parts = e["loss_rpn_cls"] + e["loss_rpn_box"] + e["loss_cls"] + e["loss_box"]
        assert e["loss"] == pytest.approx(parts, rel=1e-5)
    assert 0.0 <= history["epochs"][-1]["mAP50"] <= 1.0


def _h5_tensors(path):
    """{dataset path: shape} of a .weights.h5 file, read with h5py (not Keras)."""
    import h5py

    found = {}
    with h5py.File(path, "r") as file:
        file.visititems(lambda name, item: found.__setitem__(name, item.shape) if isinstance(item, h5py.Dataset)
                        else None)
    return found


def test_alternating_weights_hold_one_backbone_and_load_into_a_joint_config_and_back(alternating, joint):
    from detect.train.experiment import load_experiment
    from detect.models.registry import build_task
    from detect.train.transfer import init_from
    from detect.train.weights import load_weights

    _, _, alternating_config, alternating_run = alternating
    _, joint_config, joint_run = joint
    saved = _h5_tensors(alternating_run / "best.weights.h5")
    # Exactly the tensors of a joint run's file: one backbone, the RPN and the head; none of step 2's backbone.
    assert saved == _h5_tensors(joint_run / "best.weights.h5")
    alternating_task = build_task(load_experiment(alternating_config).model, 3)
    backbone_tensors = sum(int(np.prod(v.shape)) for v in alternating_task.backbone.weights)
    assert sum(int(np.prod(shape)) for shape in saved.values()) == alternating_task.model.count_params()
    assert alternating_task.model.count_params() > backbone_tensors > 0

    def values(model):
        return [np.array(v) for v in model.weights]

    # An alternating run into a joint model, a joint run into an alternating one: every tensor as saved.
    joint_task = build_task(load_experiment(joint_config).model, 3)
    for task, run in ((joint_task, alternating_run), (alternating_task, joint_run)):
        load_weights(task.model, run / "best.weights.h5")
        reference = build_task(load_experiment(joint_config).model, 3)
        reference.model.load_weights(str(run / "best.weights.h5"))
        assert _same(values(task.model), values(reference.model))
    # Fine-tuning an alternating config from a run: step 2's backbone starts as the run's backbone.
    model_config = dataclasses.replace(load_experiment(alternating_config).model, init_weights=str(joint_run))
    tf.keras.utils.set_random_seed(5)
    fresh = build_task(model_config, 3)
    assert not _same(values(fresh.detector_backbone), values(fresh.backbone))
    report = init_from(fresh, model_config)
    assert not report.skipped and not report.reinitialised
    source = build_task(load_experiment(joint_config).model, 3)
    source.model.load_weights(str(joint_run / "best.weights.h5"))
    assert _same(values(fresh.backbone), values(source.backbone))
    assert _same(values(fresh.detector_backbone), values(source.backbone))


def _batch(size=64, classes=3):
    return {
        "image": tf.random.stateless_uniform([2, size, size + 32, 3], seed=(1, 2)),
        "image_hw": tf.constant([[size, size + 32], [size - 16, size]], tf.int32),
        "boxes": tf.constant([[[4, 6, 40, 50], [30, 10, 60, 30]], [[8, 8, 30, 40], [0, 0, 0, 0]]], tf.float32),
        "classes": tf.constant([[0, classes - 1], [1, -1]], tf.int32),
    }


@pytest.mark.parametrize("backbone", BACKBONES)
def test_one_training_step_on_every_backbone(backbone):
    task = FasterRcnnTask(3, FasterRcnnConfig(backbone=backbone, training="joint", anchor_scales=(1, 2, 4),
                                                  **SMALL))
    stages.prepare_joint(task)
    variables = task.model.trainable_variables
    before = [np.array(v) for v in variables]
    optimizer = tf.keras.optimizers.SGD(0.01)
    batch = _batch()
    with tf.GradientTape() as tape:
        losses = task.losses(task.forward(batch, training=True), batch)
    grads = tape.gradient(losses["loss"], variables)
    optimizer.apply_gradients(zip(grads, variables))
    assert all(np.isfinite(float(v)) for v in losses.values())
    moved = {part for part in ("backbone", "rpn", "head") for v, b in zip(variables, before)
             if any(v is w for w in getattr(task, part).trainable_variables) and not np.array_equal(np.array(v), b)}
    assert moved == {"backbone", "rpn", "head"}
    detections = task.postprocess(task.forward(batch, training=False), batch["image_hw"])
    assert detections["boxes"].shape == (2, task.config.max_detections, 4)


@pytest.mark.parametrize("name", ["faster_rcnn_voc", "faster_rcnn_coco"])
def test_paper_configs_build_and_train_one_step(name, tmp_path):
    from detect.train.experiment import load_experiment
    from detect.models.registry import build_task

    config = load_experiment(ROOT / "configs" / f"{name}.yaml",
                             [f"data.root={tmp_path}", "model.backbone_weights=null"])
    assert config.model.type == "faster_rcnn" and config.model.backbone == "vgg16"
    task = build_task(config.model, 20 if name.endswith("voc") else 80)
    stages.prepare_rpn(task)
    batch = _batch(classes=20)
    with tf.GradientTape() as tape:
        losses = task.losses(task.forward(batch, training=True, mode=stages.RPN), batch)
    grads = tape.gradient(losses["loss"], task.model.trainable_variables)
    assert np.isfinite(float(losses["loss"])) and any(g is not None for g in grads)


def test_pretrained_first_blocks_stay_frozen_in_the_steps_that_train_a_backbone():
    # "auto" freezes conv1-conv2 of VGG16 (as the original) only when the backbone is pretrained.
    assert FasterRcnnConfig(backbone="vgg16", backbone_weights="imagenet").frozen_layer() == "block2_pool"
    assert FasterRcnnConfig(backbone="vgg16").frozen_layer() is None
    task = FasterRcnnTask(3, FasterRcnnConfig(backbone="tiny", freeze_until="tiny_s2_conv_leaky",
                                                  anchor_scales=(1, 2, 4), **SMALL))

    def frozen(model):
        return [layer.name for layer in model.layers if layer.weights and not layer.trainable]

    expected = ["tiny_s1_down_conv", "tiny_s1_down_bn", "tiny_s2_down_conv", "tiny_s2_down_bn", "tiny_s2_conv_conv",
                "tiny_s2_conv_bn"]
    stages.prepare_rpn(task)
    assert frozen(task.backbone) == expected
    stages.prepare_detector(task)
    assert frozen(task.detector_backbone) == expected
    assert not task.backbone.trainable_variables and not task.rpn.trainable_variables
    stages.prepare_rpn_shared(task)
    assert not task.backbone.trainable_variables and task.rpn.trainable_variables


@pytest.mark.parametrize("training", ["alternating", "joint"])
def test_frozen_batchnorm_keeps_statistics_and_affine_parameters_to_the_bit(training):
    """model.freeze_bn: after training steps of every step that trains a backbone, each BatchNorm
    variable of it is unchanged to the bit, while its convolutions moved."""
    task = FasterRcnnTask(3, FasterRcnnConfig(backbone="tiny", training=training, freeze_bn=True,
                                              anchor_scales=(1, 2, 4), **SMALL))
    batch = _batch()
    steps = [(stages.prepare_joint, stages.JOINT, "backbone")] if training == "joint" else [
        (stages.prepare_rpn, stages.RPN, "backbone"), (stages.prepare_detector, stages.OWN_DETECTOR,
                                                       "detector_backbone")]
    for prepare, mode, part in steps:
        prepare(task)
        backbone = getattr(task, part)
        bn = [w for layer in backbone.layers if isinstance(layer, tf.keras.layers.BatchNormalization)
              for w in layer.weights]
        convs = [w for w in backbone.trainable_variables]
        assert bn and convs and not any(any(w is v for v in convs) for w in bn)
        before_bn, before_conv = [np.array(w) for w in bn], [np.array(w) for w in convs]
        # What the step trains (step 2's backbone is a side model, outside task.model).
        variables = task.model.trainable_variables + (backbone.trainable_variables if part == "detector_backbone"
                                                      else [])
        optimizer = tf.keras.optimizers.SGD(0.05)
        for _ in range(2):
            with tf.GradientTape() as tape:
                losses = task.losses(task.forward(batch, training=True, mode=mode), batch)
            optimizer.apply_gradients(zip(tape.gradient(losses["loss"], variables), variables))
        for w, b in zip(bn, before_bn):
            np.testing.assert_array_equal(np.array(w), b, err_msg=w.path)
        assert any(not np.array_equal(np.array(w), b) for w, b in zip(convs, before_conv))


def test_batchnorm_is_frozen_by_default_only_for_a_pretrained_backbone():
    assert not FasterRcnnConfig(backbone="tiny").batchnorm_frozen()
    assert FasterRcnnConfig(backbone="resnet50", backbone_weights="imagenet").batchnorm_frozen()
    assert FasterRcnnConfig(backbone="tiny", init_weights="runs/x").batchnorm_frozen()
    assert not FasterRcnnConfig(backbone="resnet50", backbone_weights="imagenet", freeze_bn=False).batchnorm_frozen()
    task = FasterRcnnTask(3, FasterRcnnConfig(backbone="tiny", anchor_scales=(1, 2, 4), **SMALL))
    stages.prepare_rpn(task)
    assert all(layer.trainable for layer in task.backbone.layers
               if isinstance(layer, tf.keras.layers.BatchNormalization))


def test_joint_training_runs_the_rpn_once_and_proposal_recall_traces_once(monkeypatch):
    task = FasterRcnnTask(3, FasterRcnnConfig(backbone="tiny", training="joint", anchor_scales=(1, 2, 4), **SMALL))
    calls = []
    rpn_outputs = task._rpn_outputs
    monkeypatch.setattr(task, "_rpn_outputs", lambda *args, **kw: calls.append(1) or rpn_outputs(*args, **kw))
    batch = _batch()
    outputs = task.forward(batch, training=True)
    assert len(calls) == 1 and "rpn_objectness" in outputs and "cls_logits" in outputs
    traces = []
    make = task._make_recall_fn

    def counting(thresholds):
        fn = make(thresholds)
        return lambda b: traces.append(fn.experimental_get_tracing_count()) or fn(b)

    monkeypatch.setattr(task, "_make_recall_fn", counting)
    data = [{k: v for k, v in batch.items()}] * 2
    first, second = task.proposal_recall(data), task.proposal_recall(data)
    assert first == second and 0.0 <= first["recall50"] <= 1.0
    assert traces == [0, 1, 1, 1]  # compiled at the first batch, never again, across two validations


@pytest.mark.parametrize("reinit", [True, False])
def test_reinit_heads_draws_step3_rpn_and_step4_outputs_afresh(reinit):
    task = FasterRcnnTask(3, FasterRcnnConfig(backbone="tiny", reinit_heads=reinit, anchor_scales=(1, 2, 4),
                                              **SMALL))
    for layer in task.rpn.layers + task.head.layers:  # "trained" values, far from any initializer
        for w in layer.weights:
            w.assign(tf.fill(w.shape, 3.0))
    stages.prepare_rpn_shared(task)
    rpn = [np.array(w) for layer in task.rpn.layers for w in layer.weights]
    stages.prepare_detector_shared(task)
    drawn = {name: [np.array(w) for w in task.head.get_layer(name).weights] for name in ("cls_score", "bbox_pred")}
    kept = [np.array(w) for name in ("fc6", "fc7") for w in task.head.get_layer(name).weights]
    assert all(np.all(w == 3.0) for w in kept)  # fc6 and fc7 always continue
    if not reinit:
        assert all(np.all(w == 3.0) for w in rpn + drawn["cls_score"] + drawn["bbox_pred"])
        return
    kernels = [w for w in rpn if w.ndim == 4]
    assert len(kernels) == 3 and all(abs(w.std() - 0.01) < 0.003 for w in kernels)  # the RPN's N(0, 0.01)
    assert all(np.all(w == 0) for w in rpn if w.ndim == 1)
    assert abs(drawn["cls_score"][0].std() - 0.01) < 0.003 and abs(drawn["bbox_pred"][0].std() - 0.001) < 0.0003
    assert np.all(drawn["cls_score"][1] == 0) and np.all(drawn["bbox_pred"][1] == 0)


@pytest.mark.parametrize("init", ["fresh", "rpn"])
def test_detector_backbone_init_rpn_starts_step2_from_step1s_backbone(init):
    task = FasterRcnnTask(3, FasterRcnnConfig(backbone="tiny", detector_backbone_init=init, anchor_scales=(1, 2, 4),
                                              **SMALL))
    for i, w in enumerate(task.backbone.weights):  # "trained in step 1": values no initializer draws
        w.assign(tf.fill(w.shape, 0.5 + i))
    before = [np.array(w) for w in task.detector_backbone.weights]
    stages.prepare_detector(task)
    stages.prepare_detector(task)  # idempotent, as a resume inside step 2 needs
    after = [np.array(w) for w in task.detector_backbone.weights]
    if init == "fresh":
        assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    else:
        assert all(np.all(w == 0.5 + i) for i, w in enumerate(after))
    assert task.inference_mode == stages.OWN_DETECTOR and task.detector_backbone.trainable


def test_c4_head_is_resnet50_conv5_on_pooled_rois_then_average_pooling(tmp_path):
    """head: c4 (torchvision's and detectron2's R50-C4): RoIs pooled from conv4 (14 x 14 x 1024), ResNet-50's
    conv5 stage (stride 2: 7 x 7 x 2048), global average pooling, the two output layers. The reference is
    keras.applications' own ResNet50, written as its ``*_notop.h5`` file and loaded by init_weights."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from detect.train.transfer import init_from, variable_keys

    keras.utils.set_random_seed(4)
    app = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3))
    path = tmp_path / "resnet50_notop.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, app)
    config = FasterRcnnConfig(backbone="resnet50", head="c4", roi_op="roi_align", pool_size=14, training="alternating",
                              anchor_scales=(1, 2, 4), init_weights=str(path), freeze_bn=True,
                              **{**SMALL, "roi_batch": 8})
    task = FasterRcnnTask(3, config)
    assert task.res5.input_shape == (None, None, None, 1024) and task.head.input_shape == (None, 7, 7, 2048)
    assert task.res5.compute_output_shape((8, 14, 14, 1024)) == (8, 7, 7, 2048)
    conv5 = [layer for layer in app.layers if layer.name.startswith("conv5_")]
    assert task.res5.count_params() == sum(layer.count_params() for layer in conv5) > 14_000_000
    head_layers = [layer.name for layer in task.head.layers if layer.weights]
    assert head_layers == ["cls_score", "bbox_pred"] and task.head.get_layer("cls_score").kernel.shape == (2048, 4)

    init_from(task, config)
    want = {key: variable.numpy() for key, variable in variable_keys(app)}
    got = dict(variable_keys(task.model))
    for key, value in want.items():  # every tensor of the file: conv1-conv4 in the backbone, conv5 in the head
        part = "res5" if key.startswith("conv5_") else "backbone"
        np.testing.assert_array_equal(np.array(got[f"{part}/{key}"]), value, err_msg=key)

    # The conv5 stage belongs to the detector: trained in steps 2 and 4 (BatchNorm frozen), frozen in 1 and 3.
    res5 = {id(v) for v in task.res5.weights}
    trained = {}
    for stage in task.stages(TrainConfig()):
        stage.prepare(task)
        trained[stage.name] = {id(v) for v in stage.trainable(task)} & res5
    bn = {id(w) for layer in task.res5.layers if isinstance(layer, keras.layers.BatchNormalization)
          for w in layer.weights}
    assert not trained["rpn"] and not trained["rpn_shared"]
    assert trained["detector"] == trained["detector_shared"] == res5 - bn and bn
    stages.prepare_detector_shared(task)
    before = [np.array(v) for v in task.res5.weights]
    batch = _batch()
    variables = task.stages(TrainConfig())[3].trainable(task)
    with tf.GradientTape() as tape:
        losses = task.losses(task.forward(batch, training=True, mode=stages.DETECTOR), batch)
    tf.keras.optimizers.SGD(0.01).apply_gradients(zip(tape.gradient(losses["loss"], variables), variables))
    moved = {id(v) for v, b in zip(task.res5.weights, before) if not np.array_equal(np.array(v), b)}
    assert moved and moved <= res5 - bn


@pytest.mark.parametrize("changes, message", [
    (dict(backbone="vgg16"), r"backbone 'vgg16' has none"),
    (dict(feature_level="C3"), r"c4 needs feature_level: C4"),
    (dict(pool_size=7), r"use an even size"),
])
def test_c4_head_needs_resnet50_at_c4_and_an_even_pool(changes, message):
    from detect.config import FieldError

    with pytest.raises(FieldError, match=message):
        FasterRcnnConfig(**{**dict(backbone="resnet50", head="c4", pool_size=14), **changes})
