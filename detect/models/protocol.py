"""The task protocol: what the engine, validation and ``Detector`` call on a detector family.

A *task* wraps one detector family's model (``detect.models.registry.build_task``
makes one from a config). Two protocols, checked by
``tests/test_task_protocol.py`` for every registered task:

``Task``, the task object:

- ``model``: the ``keras.Model`` whose variables are trained and saved;
  ``num_classes``: object classes (without background); ``config``: its
  ``TaskConfig``.
- ``forward(batch, training=False, mode=None)``: the batch-level forward
  pass. It gets the whole batch (images, ground truth, ``image_hw``), so a
  two-stage detector can sample RoIs from the ground truth inside it;
  returns the raw outputs. ``mode`` names what the pass computes (one of
  the task's modes, e.g. Faster R-CNN's ``rpn``); the engine passes its
  stage's ``Stage.mode`` explicitly, so no traced step reads mutable state
  of the task. None: in training the task's default training mode, in
  inference the mode of ``inference_key()``. A single-mode task ignores it.
- ``losses(outputs, batch) -> dict``: a total ``loss`` and its named parts
  (``loss_obj``, ``loss_rpn_cls``, ...), for the parts ``outputs`` holds.
  The loss never runs the model.
- ``postprocess(outputs, image_hw, score_threshold=None, iou_threshold=None,
  max_detections=None, class_mask=None) -> dict``: decoding then per-class
  NMS, ``batched_nms``'s padded dict (``boxes`` [B, K, 4], ``scores`` [B, K],
  ``classes`` [B, K], ``num_detections`` [B], K = ``max_detections`` or the
  config's) in input pixels. ``image_hw`` [B, 2] is each image's valid
  extent in the padded batch; a task may clip to it (Faster R-CNN clips
  proposals and boxes; YOLO's letterboxed detections are clipped to the
  original image after unmapping). ``class_mask`` [C] (1 keep, 0 drop)
  restricts the classes before NMS; None thresholds are the config's.
- ``stages(train_cfg, validation_data=None)``: the task's own multi-stage
  schedule as a ``[Stage]`` (Faster R-CNN's 4-step alternation), or None
  for the engine's default: the stages of ``train.freeze`` (one stage of
  ``train.epochs`` without it). ``validation_data`` is the trainer's
  ``fn() -> dataset`` of validation batches (or None), for stages that
  measure something other than mAP.
- ``inference_key()``: a hashable naming what ``forward(training=False)``
  computes now (a stage's ``prepare`` may change it: Faster R-CNN's step 2
  validates its detector on its own backbone), or None for a task whose
  inference never changes. Compiled predict functions are cached per key;
  ``forward(batch, mode=key)`` computes exactly that. The one piece of
  mutable state a stage leaves on a task besides trainable flags and
  weights; it is read only at trace time and every reader keys its
  compiled functions by it.
- ``parts()``: ``{"backbone": [layers], "head": [layers]}`` (top-level
  layers of ``model``) which ``train.freeze`` freezes around
  (``detect.train.freeze``), or None for a task that does not name them.
- ``backbones()``: the backbone models that ``model.init_weights:
  imagenet`` loads (``detect.train.transfer``); may be empty.
- ``class_dependent_layers()``: names of the layers whose shapes follow
  the class count, re-initialised when ``model.init_weights`` comes from a
  model of another class count (``detect.train.transfer``).

- ``training_state()``: ``{name: SideModel}``, models that training
  keeps beside ``model`` (Faster R-CNN's step-2 backbone): checkpoints and
  the EMA hold them, weights files and exports do not; where a source of
  ``model.init_weights`` lacks one, it starts as its ``twin``, the
  top-level part of ``model`` it stands in for.

``detect.models.base.TaskBase`` gives the defaults (no stages, a constant
inference key, no parts, no backbones, no class-dependent layers, no side models) and the
shared ``postprocess`` body over a task's ``decode``.

``TaskConfig``, the ``model:`` section (a frozen dataclass registered in
``detect.models``): what the framework reads from it without knowing the
family.

``Stage``: one stage of a training schedule (``Stage`` below); the engine
(``detect.train.engine``) runs a list of them.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Optional, Protocol, Tuple, runtime_checkable


@dataclass(frozen=True)
class SideModel:
    """A model trained beside the task's ``model`` and left out of what it saves (``training_state``).

    Attributes:
      model: the Keras model; its weights' keys are prefixed with its ``name``.
      twin: name of the top-level part of ``model`` it stands in for (the
        same architecture), whose weights it starts from when a source of
        ``model.init_weights`` holds none of its own.
    """

    model: Any
    twin: str


@dataclass(frozen=True)
class Stage:
    """One stage of a multi-stage schedule (see ``detect.train.engine``).

    Each stage has its own epochs, learning rate, optimizer, trained
    variables, forward mode and validation metric. On entering a stage the
    engine calls ``prepare(task)``, then builds a fresh optimizer over the
    variables the stage trains and a fresh training step that passes
    ``mode`` to ``task.forward``.

    Attributes:
      name: shown in logs and recorded with each epoch.
      epochs: epochs of this stage.
      mode: what ``task.forward(training=True)`` computes in this stage
        (a mode of the task, e.g. Faster R-CNN's ``rpn``); None: the
        task's default.
      prepare: ``fn(task)`` run on entering the stage (also on resume), e.g.
        to freeze layers or copy weights; must be idempotent. None: nothing.
      trainable: ``fn(task) -> [tf.Variable]``, the variables this stage
        trains; None: ``task.model.trainable_variables`` after ``prepare``.
      learning_rate: this stage's peak learning rate; None: the ``train``
        config's.
      validate: run validation after this stage's epochs (every
        ``train.eval_every`` epochs and at its last epoch).
      evaluate: ``fn(task) -> dict`` replacing the trainer's for this stage
        (e.g. proposal recall for an RPN-only stage); None: the trainer's.
      select_best: this stage's ``mAP50`` competes for the best checkpoint;
        False for stages whose metric is not the detector's mAP.
      step_epochs: with ``train.schedule: step``, this stage's own decay
        epochs, counted from its start (e.g. each step of Faster R-CNN's
        alternation, as the original's solvers); None: the run's
        ``train.step_epochs`` (``train_config``).
      batch_size: images per training step in this stage (the engine
        builds the stage's batches and counts its steps per epoch with it);
        None: ``train.batch_size``.
    """

    name: str
    epochs: int
    mode: Optional[Hashable] = None
    prepare: Optional[Callable] = None
    trainable: Optional[Callable] = None
    learning_rate: Optional[float] = None
    validate: bool = True
    evaluate: Optional[Callable] = None
    select_best: bool = True
    step_epochs: Optional[Tuple[int, ...]] = None
    batch_size: Optional[int] = None

    def train_config(self, train_cfg, start=0):
        """``train_cfg`` for this stage, which begins at epoch ``start`` of the run.

        The stage's epochs and learning rate, and no ``freeze`` schedule (the
        stage is one step of it). Each stage's optimizer, and so its
        schedule, starts at step 0, hence the step decay is restated in the
        stage's terms: its own ``step_epochs``, else the run's
        ``train.step_epochs`` (epochs of the whole run) as this stage sees
        them: a decay before its start is already in its learning rate, one
        inside it falls at its epoch counted from the stage's start. So the
        rate at every step is the run's schedule, however it is cut into
        stages.
        """
        rate = train_cfg.learning_rate if self.learning_rate is None else self.learning_rate
        steps = self.step_epochs
        if steps is None:
            steps = tuple(e - start for e in train_cfg.step_epochs if start < e < start + self.epochs)
            if train_cfg.schedule == "step":
                rate *= train_cfg.step_factor ** sum(1 for e in train_cfg.step_epochs if e <= start)
        return dataclasses.replace(train_cfg, epochs=self.epochs, learning_rate=rate, step_epochs=tuple(steps),
                                   freeze="none", freeze_epochs=0)


@runtime_checkable
class TaskConfig(Protocol):
    """What the framework reads from any registered model config (module docstring).

    Attributes:
      type: the registry tag (``model.type``).
      backbone: a name from ``detect.backbones``; backbone_weights: None,
        "imagenet" or a weights file.
      init_weights, init_skip_mismatch: where training starts from
        (``detect.train.transfer``).
      score_threshold, iou_threshold, max_detections: ``postprocess``'s
        defaults (and ``Detector``'s).
    """

    type: str
    backbone: str
    backbone_weights: Optional[str]
    init_weights: Optional[str]
    init_skip_mismatch: bool
    score_threshold: float
    iou_threshold: float
    max_detections: int

    def coarsest_stride(self) -> int:
        """Pixels per cell of the coarsest level the model uses; input sides must be multiples of it."""

    def display_name(self) -> str:
        """The family as messages and benchmarks name it ("YOLOv3", "Faster R-CNN")."""


@runtime_checkable
class Task(Protocol):
    """A detector family's task, as the engine, validation and ``Detector`` use it (module docstring)."""

    model: Any  # keras.Model
    num_classes: int
    config: TaskConfig

    def forward(self, batch, training=False, mode=None):
        """Raw outputs of a batch (dict of tensors: ``image``, ``image_hw``, ground truth in training)."""

    def losses(self, outputs, batch):
        """``{"loss": total, "loss_<part>": ...}`` of ``forward``'s outputs on the batch."""

    def postprocess(self, outputs, image_hw, score_threshold=None, iou_threshold=None, max_detections=None,
                    class_mask=None):
        """``batched_nms``'s padded dict of the decoded outputs, input pixels."""

    def stages(self, train_cfg, validation_data=None):
        """The task's own ``[Stage]``, or None for the engine's default (``train.freeze``)."""

    def inference_key(self):
        """A hashable naming what inference computes now (None: always the same)."""

    def parts(self):
        """``{"backbone": [layers], "head": [layers]}`` for ``train.freeze``, or None."""

    def backbones(self):
        """Backbone models that ``model.init_weights: imagenet`` loads (may be empty)."""

    def class_dependent_layers(self):
        """Names of the layers whose shapes follow the class count."""

    def training_state(self):
        """``{name: SideModel}`` trained beside ``model``, held by checkpoints, not by weights files."""


__all__ = ["SideModel", "Stage", "Task", "TaskConfig"]
