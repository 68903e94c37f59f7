"""Every registered task satisfies the task protocol (``detect.models.protocol``) and runs it end to end.

For each ``model.type`` in ``detect.models.registry.TASKS``: the task and its config
are instances of the runtime-checkable protocols, the task's methods take
the protocol's parameters (names, order, defaults), and on a tiny batch
(tiny backbone, 64 x 96 pixels, 2 images, 3 boxes) ``forward`` in every
mode of its stages gives finite losses and ``postprocess`` the documented
padded shapes.
"""

import inspect

import numpy as np
import pytest
import tensorflow as tf

from detect.faster_rcnn.config import FasterRcnnConfig
from detect.models.registry import TASKS, build_task
from detect.models.protocol import SideModel, Stage, Task, TaskConfig
from detect.train.config import TrainConfig
from detect.yolo.config import YoloConfig

MAX_DETECTIONS = 7
# A tiny config per registered type; a new registration must add one here.
TINY = {
    "yolo": lambda: YoloConfig(version="v3", backbone="tiny", head_width=16, max_detections=MAX_DETECTIONS,
                               anchors=((8, 8), (12, 16), (16, 12), (20, 24), (28, 20), (24, 32), (36, 36),
                                        (48, 40), (56, 56))),
    "faster_rcnn": lambda: FasterRcnnConfig(
        backbone="tiny", anchor_scales=(1, 2, 4), rpn_width=16, fc_width=32, fc_dropout=0.0, rpn_batch=32,
        roi_batch=16, train_pre_nms=400, train_post_nms=64, test_pre_nms=200, test_post_nms=32,
        max_detections=MAX_DETECTIONS),
}
PROTOCOL_METHODS = [name for name, member in vars(Task).items()
                    if callable(member) and not name.startswith("_")]


def tiny_batch(classes=3):
    return {
        "image": tf.random.stateless_uniform([2, 64, 96, 3], seed=(1, 2)),
        "image_hw": tf.constant([[64, 96], [48, 64]], tf.int32),
        "boxes": tf.constant([[[4, 6, 40, 50], [30, 10, 60, 30]], [[8, 8, 30, 40], [0, 0, 0, 0]]], tf.float32),
        "classes": tf.constant([[0, classes - 1], [1, -1]], tf.int32),
    }


def parameters(function):
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_every_registered_type_has_a_tiny_config():
    assert set(TINY) == set(TASKS)


def test_the_protocol_names_what_the_engine_and_detector_call():
    assert {"forward", "losses", "postprocess", "stages", "inference_key", "parts", "backbones",
            "class_dependent_layers"} <= set(PROTOCOL_METHODS)


@pytest.fixture(scope="module", params=sorted(TASKS))
def task(request):
    tf.keras.utils.set_random_seed(0)
    config = TINY[request.param]()
    assert isinstance(config, TaskConfig) and config.type == request.param
    assert isinstance(config.coarsest_stride(), int) and config.coarsest_stride() > 0
    assert config.display_name() in ("YOLOv2", "YOLOv3", "Faster R-CNN")
    return build_task(config, 3)


def test_task_satisfies_the_protocol(task):
    assert isinstance(task, Task)
    for name in PROTOCOL_METHODS:
        assert parameters(getattr(type(task), name)) == parameters(getattr(Task, name)), name
    stages = task.stages(TrainConfig(epochs=4), validation_data=None)
    assert stages is None or (stages and all(isinstance(s, Stage) for s in stages))
    parts = task.parts()
    assert parts is None or set(parts) == {"backbone", "head"}
    sides = task.training_state()
    assert all(isinstance(side, SideModel) and side.twin in {layer.name for layer in task.model.layers}
               and side.model not in task.model.layers for side in sides.values())
    # Each backbone is a part of the model, or a side model (checkpointed, not saved with the model).
    assert all(b in task.model.layers or any(b is side.model for side in sides.values()) for b in task.backbones())
    layers = {layer.name for layer in task.model.layers} | {
        layer.name for model in task.model.layers if hasattr(model, "layers") for layer in model.layers}
    assert set(task.class_dependent_layers()) <= layers
    hash(task.inference_key())


def test_forward_losses_postprocess_on_a_tiny_batch(task):
    batch = tiny_batch(task.num_classes)
    stages = task.stages(TrainConfig(epochs=4), validation_data=None) or [Stage("train", 4)]
    inference = set()
    for stage in stages:  # every stage's mode, passed explicitly as the engine does
        if stage.prepare is not None:
            stage.prepare(task)
        losses = task.losses(task.forward(batch, training=True, mode=stage.mode), batch)
        assert "loss" in losses and all(np.isfinite(float(v)) for v in losses.values()), (stage.name, losses)
        np.testing.assert_allclose(float(losses["loss"]),
                                   sum(float(v) for k, v in losses.items() if k != "loss"), rtol=1e-5)
        key = task.inference_key()
        if key in inference:
            continue
        inference.add(key)  # what each stage validates, once per kind
        detections = task.postprocess(task.forward(batch, training=False, mode=key), batch["image_hw"])
        assert tuple(detections["boxes"].shape) == (2, MAX_DETECTIONS, 4)
        assert tuple(detections["scores"].shape) == (2, MAX_DETECTIONS)
        assert tuple(detections["classes"].shape) == (2, MAX_DETECTIONS)
        assert tuple(detections["num_detections"].shape) == (2,)
        assert np.all(np.isfinite(detections["boxes"].numpy()))
    # The thresholds and the class mask are postprocess's arguments (without a mode: the inference key's).
    outputs = task.forward(batch, training=False)
    masked = task.postprocess(outputs, batch["image_hw"], score_threshold=0.0, iou_threshold=0.5,
                              max_detections=MAX_DETECTIONS, class_mask=tf.constant([1.0, 0.0, 0.0]))
    kept = np.arange(MAX_DETECTIONS)[None, :] < masked["num_detections"].numpy()[:, None]
    assert kept.any() and set(masked["classes"].numpy()[kept].tolist()) == {0}
