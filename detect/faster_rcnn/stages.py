"""Faster R-CNN's training schedules as engine stages (``model.training``).

``alternating``, the paper's 4-step training (section 3.2), one stage each:

1. ``rpn``: the RPN and the shared backbone (pretrained blocks frozen as in
   the original) learn proposals.
2. ``detector``: Fast R-CNN learns on the step-1 RPN's proposals with its
   own, separately initialised backbone (``detector_backbone``); the step-1
   RPN and backbone are frozen. ``model.detector_backbone_init: rpn``
   starts that backbone as a copy of step 1's instead (idempotent: step 1's
   backbone is frozen until step 3).
3. ``rpn_shared``: the shared backbone becomes a copy of the step-2
   detector's and is frozen; only the RPN's own layers train.
4. ``detector_shared``: backbone and RPN frozen; only the detector's own
   layers (fc6, fc7 or the C4 head's conv5 stage, classifier, box
   regressor) train, on the step-3 RPN's proposals and the shared features.

The result is one model whose RPN and detector share one backbone (the
``detector_backbone`` left over from step 2 equals it to the bit). Every
``prepare`` is idempotent, so ``--resume`` inside any step redoes it
safely: step 3's copy reads a backbone that nothing trains after step 2.

``model.reinit_heads``: the original starts step 3's RPN layers and step
4's classifier and box regressor afresh from their fillers (the models it
initialises from do not hold them); by default they continue from steps 1
and 2. Re-drawing is not idempotent, but a resume inside the step
restores the trained values over it, and a resume at the step's start
redraws them as the uninterrupted run did.

RPN steps report proposal recall on the validation split (IoU 0.5 and 0.7,
``test_post_nms`` proposals) instead of mAP; detector steps report mAP.
Only the last step, whose model is the final one, competes for the best
checkpoint.

``joint``: one stage, the RPN and detector losses summed, every layer
trained, proposals as constants.
"""

from detect.backbones import freeze_backbone, freeze_batchnorm
from detect.errors import InputError
from detect.models.protocol import Stage

# What a forward pass computes (``FasterRcnnTask.forward``'s ``mode``, each stage's ``Stage.mode``):
RPN = "rpn"                    # the RPN alone (alternating steps 1 and 3)
OWN_DETECTOR = "own_detector"  # the head on its own backbone, proposals from the frozen RPN (step 2)
DETECTOR = "detector"          # the head on the shared backbone (step 4, and inference)
JOINT = "joint"                # both heads, both losses (approximate joint training)
MODES = (RPN, OWN_DETECTOR, DETECTOR, JOINT)

STEP_NAMES = ("rpn", "detector", "rpn_shared", "detector_shared")


def freeze_pretrained(backbone, config):
    """Unfreezes ``backbone`` but for its first blocks when pretrained (conv1-conv2 of VGG16 in the original)."""
    backbone.trainable = True
    until = config.frozen_layer()
    if until is not None:
        freeze_backbone(backbone, until)


def _set_trainable(task, backbone=False, rpn=False, head=False, detector_backbone=False):
    """Freezes or unfreezes each part; a trained backbone keeps its pretrained first blocks frozen,
    and its BatchNorm frozen under ``model.freeze_bn``."""
    for model, train in ((task.backbone, backbone), (task.detector_backbone, detector_backbone)):
        if model is None:
            continue
        if train:
            freeze_pretrained(model, task.config)
            if task.config.batchnorm_frozen():
                freeze_batchnorm(model)
        else:
            model.trainable = False
    task.rpn.trainable = rpn
    for part in task.detector_parts():
        part.trainable = head
        if head and task.config.batchnorm_frozen():  # the C4 head's conv5 stage is a backbone's
            freeze_batchnorm(part)


def _copy_weights(source, target):
    """Assigns every weight of ``source`` (normalisation statistics included) to ``target``'s."""
    for value, variable in zip(source.weights, target.weights, strict=True):
        variable.assign(value)


def share_detector_backbone(task):
    """Copies the step-2 detector's backbone (weights and normalisation statistics) into the shared one."""
    _copy_weights(task.detector_backbone, task.backbone)


# Each step's ``prepare`` sets what trains, and what inference (the step's validation) runs:
# the detector of step 2 on its own backbone, else the shared one.
def prepare_rpn(task):
    task.inference_mode = DETECTOR
    _set_trainable(task, backbone=True, rpn=True)


def prepare_detector(task):
    if task.config.detector_backbone_init == "rpn":
        _copy_weights(task.backbone, task.detector_backbone)
    task.inference_mode = OWN_DETECTOR
    _set_trainable(task, head=True, detector_backbone=True)


def reinitialize(layers):
    """Draws each layer's kernel and bias afresh from its own initializers (Caffe's fillers)."""
    for layer in layers:
        for name in ("kernel", "bias"):
            variable = getattr(layer, name, None)
            if variable is not None:
                variable.assign(getattr(layer, f"{name}_initializer")(variable.shape, variable.dtype))


def prepare_rpn_shared(task):
    share_detector_backbone(task)
    if task.config.reinit_heads:  # the original's step 3 starts its RPN layers from their fillers
        reinitialize([layer for layer in task.rpn.layers if layer.weights])
    task.inference_mode = DETECTOR
    _set_trainable(task, rpn=True)


def prepare_detector_shared(task):
    if task.config.reinit_heads:  # the original's step 4: classifier and box regressor from their fillers
        reinitialize([task.head.get_layer(name) for name in task.class_dependent_layers()])
    task.inference_mode = DETECTOR
    _set_trainable(task, head=True)


def prepare_joint(task):
    task.inference_mode = DETECTOR
    _set_trainable(task, backbone=True, rpn=True, head=True)


def _variables(*parts):
    """``fn(task) -> [variables]`` trainable in the named parts; "detector": the head's models
    (``detector_parts``: ``res5`` too with the C4 head)."""
    def trainable(task):
        models = [m for part in parts for m in (task.detector_parts() if part == "detector"
                                                 else [getattr(task, part)])]
        return [v for model in models for v in model.trainable_variables]
    return trainable


def training_stages(task, train_cfg, validation_data=None):
    """The engine ``Stage`` list of ``task.config.training``.

    Args:
      task: a ``FasterRcnnTask``.
      train_cfg: the ``train`` section (epochs, learning rate).
      validation_data: ``fn() -> dataset`` of validation batches for the RPN
        steps' proposal recall; None skips their validation.
    """
    cfg = task.config
    if cfg.training == "joint":
        return [Stage("joint", train_cfg.epochs, mode=JOINT, prepare=prepare_joint,
                      trainable=_variables("backbone", "rpn", "detector"))]
    epochs = cfg.alternating_epochs(train_cfg.epochs)
    rates = tuple(cfg.stage_learning_rates) or (None,) * len(STEP_NAMES)
    batches = tuple(cfg.stage_batch_sizes) or (None,) * len(STEP_NAMES)
    decays = _step_decays(cfg, train_cfg, epochs)

    def recall(task):
        return task.proposal_recall(validation_data())

    rpn_eval = dict(evaluate=recall, validate=validation_data is not None, select_best=False)
    return [
        Stage(STEP_NAMES[0], epochs[0], mode=RPN, prepare=prepare_rpn, trainable=_variables("backbone", "rpn"),
              learning_rate=rates[0], step_epochs=decays[0], batch_size=batches[0], **rpn_eval),
        Stage(STEP_NAMES[1], epochs[1], mode=OWN_DETECTOR, prepare=prepare_detector,
              trainable=_variables("detector_backbone", "detector"), learning_rate=rates[1], step_epochs=decays[1],
              batch_size=batches[1], select_best=False),
        Stage(STEP_NAMES[2], epochs[2], mode=RPN, prepare=prepare_rpn_shared, trainable=_variables("rpn"),
              learning_rate=rates[2], step_epochs=decays[2], batch_size=batches[2], **rpn_eval),
        Stage(STEP_NAMES[3], epochs[3], mode=DETECTOR, prepare=prepare_detector_shared,
              trainable=_variables("detector"), learning_rate=rates[3], step_epochs=decays[3], batch_size=batches[3],
              select_best=True),
    ]


def _step_decays(cfg, train_cfg, epochs):
    """Each step's own decay epochs (``model.stage_step_epochs``), or None per step for the run's.

    Raises:
      InputError: a decay that would never fire (at or past its step's last
        epoch, or without ``train.schedule: step``).
    """
    if not cfg.stage_step_epochs:
        return (None,) * len(STEP_NAMES)
    key = "model.stage_step_epochs"
    if train_cfg.schedule != "step":
        raise InputError(key, f"needs train.schedule: step (it is {train_cfg.schedule!r}); the decay would never "
                              f"apply")
    for name, at, length in zip(STEP_NAMES, cfg.stage_step_epochs, epochs):
        if at >= length:
            raise InputError(key, f"step {name!r} decays after its epoch {at}, but it trains {length} epochs "
                                  f"(model.stage_epochs): the decay would never fire; use 1..{length - 1}, or 0")
    return tuple((int(at),) if at else () for at in cfg.stage_step_epochs)
