"""The task registry: ``model.type`` -> its config class and the task the engine trains.

Explicit, like ``detect.backbones``: every detector family is imported here
by name. A model config is a frozen dataclass whose first field is ``type``
(its tag); ``ExperimentConfig.model`` is the union of the registered config
classes, and ``detect.config`` picks the class by the ``type`` key of the
``model:`` section (``yolo`` when absent), rejecting unknown types and keys
with the valid ones listed.

A task class takes ``(num_classes, config, input_shape=...)`` and provides
``detect.models.protocol.Task``; its config provides
``detect.models.protocol.TaskConfig``.
"""

from typing import Union

from detect.errors import InputError
from detect.faster_rcnn.config import FasterRcnnConfig
from detect.faster_rcnn.model import FasterRcnnTask
from detect.yolo.config import YoloConfig
from detect.yolo.model import YoloTask

# model.type -> (config class, task class)
TASKS = {
    "yolo": (YoloConfig, YoloTask),
    "faster_rcnn": (FasterRcnnConfig, FasterRcnnTask),
}

# The ``model:`` section's type: a tagged union once a second family registers
# (Union of one class is that class).
ModelConfig = Union[tuple(config for config, _ in TASKS.values())]


def default_model_config():
    """The ``model:`` section of a config that has none: YOLO's defaults (``type`` defaults to ``yolo``)."""
    return YoloConfig()


def build_task(model_config, num_classes, input_shape=(None, None, 3)):
    """The task (detector) a model config describes.

    Args:
      model_config: a registered config dataclass instance (its ``type``
        selects the task class).
      num_classes: object classes (without background).
      input_shape: the model's input shape.

    Returns:
      the task object.

    Raises:
      InputError: an unregistered ``type`` or a config of the wrong class.
    """
    kind = getattr(model_config, "type", None)
    if kind not in TASKS:
        raise InputError("model.type", f"unknown model type {kind!r}; registered: {', '.join(TASKS)}")
    config_class, task_class = TASKS[kind]
    if not isinstance(model_config, config_class):
        raise InputError("model.type", f"type {kind!r} needs a {config_class.__name__}, "
                                       f"got {type(model_config).__name__}")
    return task_class(num_classes, model_config, input_shape=input_shape)


__all__ = ["ModelConfig", "TASKS", "build_task", "default_model_config"]
