"""Freeze schedules for fine-tuning (``train.freeze``), as engine stages.

A task that can be fine-tuned names its parts: ``task.parts()`` returns
``{"backbone": [layers], "head": [layers]}`` (None: it names none), top-level layers of
``task.model`` (a nested backbone model counts as one layer). The head is
what turns the last features into predictions (YOLO: each level's last
3 x 3 convolution and its 1 x 1 prediction convolution), the layers
yolov3-tf2 leaves trainable in its ``frozen``-style transfer.

| ``train.freeze`` | stages |
|---|---|
| ``none`` | ``train``: everything trains |
| ``backbone`` | ``frozen_backbone``: all but the backbone (yolov3-tf2's ``fine_tune``) |
| ``all_but_head`` | ``head``: the head alone |
| ``head_then_all`` | ``head`` for ``train.freeze_epochs``, then ``all`` at |
| | ``train.unfreeze_lr_factor`` x the learning rate |

Each stage's ``prepare`` sets every top-level layer's ``trainable`` flag
(idempotent, as a resume re-runs it); the engine then gives the stage a
fresh optimizer over what trains, so ``all`` does not inherit the head
stage's momentum. Keras 3 runs a frozen BatchNormalization layer in
inference mode: its moving statistics stay as they were loaded.
"""

from detect.errors import InputError
from detect.models.protocol import Stage

PARTS = ("backbone", "head")


def freeze_stages(task, train_cfg):
    """The ``Stage`` list of ``train_cfg.freeze`` for ``task`` (module notes).

    Raises:
      InputError: a freeze mode for a task that does not name its parts.
    """
    mode, epochs = train_cfg.freeze, train_cfg.epochs
    if mode == "none":
        return [Stage("train", epochs)]
    parts = task.parts()
    if parts is None:
        raise InputError("train.freeze", f"{mode!r} needs a task that names its backbone and head; "
                                         f"{type(task).__name__} does not")
    missing = [name for name in PARTS if not parts.get(name)]
    if missing:
        raise InputError("train.freeze", f"{type(task).__name__} has no {' or '.join(missing)} to freeze around")
    if mode == "backbone":
        return [Stage("frozen_backbone", epochs, prepare=trainable_except(parts["backbone"]))]
    if mode == "all_but_head":
        return [Stage("head", epochs, prepare=trainable_only(parts["head"]))]
    head_epochs = train_cfg.freeze_epochs
    return [Stage("head", head_epochs, prepare=trainable_only(parts["head"])),
            Stage("all", epochs - head_epochs, prepare=trainable_except(()),
                  learning_rate=train_cfg.learning_rate * train_cfg.unfreeze_lr_factor)]


def trainable_only(layers):
    """A stage ``prepare``: only ``layers`` (top-level layers of the task's model) train."""
    chosen = {id(layer) for layer in layers}

    def prepare(task):
        for layer in task.model.layers:
            layer.trainable = id(layer) in chosen

    return prepare


def trainable_except(layers):
    """A stage ``prepare``: every top-level layer but ``layers`` trains (none excepted: everything)."""
    frozen = {id(layer) for layer in layers}

    def prepare(task):
        for layer in task.model.layers:
            layer.trainable = id(layer) not in frozen

    return prepare
