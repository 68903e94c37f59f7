"""The ``train`` section of an experiment config."""

from dataclasses import dataclass
from typing import Tuple

from detect.config import PRECISIONS, FieldError, bounded, check_fields, one_of

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step")
# The old spelling of float32 in train.mixed_precision, still read.
LEGACY_FULL_PRECISION = "none"
STRATEGIES = ("default", "mirrored", "multi_worker")
MAX_SEED = 2**32 - 1  # NumPy's seed range, which Keras' set_random_seed uses too
# What a single-stage training freezes (``detect.train.freeze``).
FREEZE_MODES = ("none", "backbone", "all_but_head", "head_then_all")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation.

    Attributes:
      epochs: total epochs, >= 1 (resuming with more extends the run).
      batch_size: global batch size (split over replicas), >= 1.
      optimizer: "sgd" (momentum) or "adamw".
      learning_rate: peak learning rate (after warm-up), > 0.
      momentum: SGD momentum / AdamW beta_1, in [0, 1).
      weight_decay: decoupled weight decay (Keras'), in [0, 1).
      l2: coupled L2 weight decay, in [0, 1): ``l2 * w`` added to the
        gradient before momentum, as Caffe's ``weight_decay`` (py-faster-rcnn:
        0.0005); on the same variables as ``weight_decay`` (kernels).
      nesterov: Nesterov momentum for SGD (False: classical, Caffe's).
      bias_lr_factor: the biases' learning rate as a multiple of the rest,
        > 0 (Caffe's ``lr_mult: 2`` on biases; SGD scales their gradients).
      warmup_epochs: burn-in, >= 0: the learning rate rises from
        ``warmup_start_factor`` x peak (in [0, 1]) to the peak (YOLOv2's
        burn-in).
      schedule: "cosine" (to ``final_lr_factor`` x peak, in [0, 1]) or
        "step" (x ``step_factor``, in (0, 1], at each epoch in
        ``step_epochs``, each >= 1).
      clip_norm: global gradient-norm clipping, >= 0 (0 = off).
      mixed_precision: "float32" (none), "float16" (GPU) or "bfloat16" (CPU)
        (``detect.config.PRECISIONS``); "none" still reads as "float32".
      distribute: "default" (one device), "mirrored" (the GPUs of one
        machine) or "multi_worker" (machines described by TF_CONFIG;
        ``detect.train.distribute``).
      sync_batchnorm: with several replicas, BatchNormalization normalises
        with the statistics of the global batch, so every replica keeps
        the same moving averages (``keras.layers.BatchNormalization(
        synchronized=True)``); False: each replica its own share's. No
        effect on one device.
      eval_every: epochs between validation passes (the last epoch always), >= 1.
      log_every: steps between TensorBoard scalars, >= 1.
      seed: seed of weights, data order and augmentation, in [0, 2**32 - 1].
      ema: validate and export an exponential moving average of the weights
        (YOLOv5's ModelEMA; ``detect.train.ema``); off by default.
      ema_decay: the EMA's decay after its warm-up ramp, in [0, 1).
      ema_tau: the ramp's time constant in steps, > 0: the decay after n
        steps is ``ema_decay * (1 - exp(-n / ema_tau))`` (YOLOv5: 2000;
        a run of fewer steps averages little).
      freeze: what trains, for fine-tuning (``detect.train.freeze``): "none"
        (everything), "backbone" (all but the backbone, which stays frozen),
        "all_but_head" (only the head: the layers that turn the last
        features into predictions), or "head_then_all" (the head alone for
        ``freeze_epochs``, then everything at ``unfreeze_lr_factor`` x the
        learning rate, as a second stage with its own optimizer). Frozen
        BatchNormalization layers run in inference mode. Faster R-CNN's
        stages decide what trains, so it takes "none" only.
      freeze_epochs: the head-only epochs of "head_then_all", >= 0 (at least
        1 and fewer than ``epochs`` there).
      unfreeze_lr_factor: the learning rate of the second stage of
        "head_then_all" as a factor of ``learning_rate``, in (0, 1].
    """

    epochs: int = bounded(30, ge=1)
    batch_size: int = bounded(16, ge=1)
    optimizer: str = one_of("sgd", OPTIMIZERS)
    learning_rate: float = bounded(0.01, gt=0)
    momentum: float = bounded(0.9, ge=0, lt=1)
    weight_decay: float = bounded(5e-4, ge=0, lt=1)
    l2: float = bounded(0.0, ge=0, lt=1)
    nesterov: bool = True
    bias_lr_factor: float = bounded(1.0, gt=0)
    warmup_epochs: float = bounded(1.0, ge=0)
    warmup_start_factor: float = bounded(0.01, ge=0, le=1)
    schedule: str = one_of("cosine", SCHEDULES)
    final_lr_factor: float = bounded(0.05, ge=0, le=1)
    step_epochs: Tuple[int, ...] = bounded((), ge=1)
    step_factor: float = bounded(0.1, gt=0, le=1)
    clip_norm: float = bounded(10.0, ge=0)
    mixed_precision: str = one_of("float32", PRECISIONS + (LEGACY_FULL_PRECISION,))
    distribute: str = one_of("default", STRATEGIES)
    sync_batchnorm: bool = True
    eval_every: int = bounded(1, ge=1)
    log_every: int = bounded(20, ge=1)
    seed: int = bounded(0, ge=0, le=MAX_SEED)
    ema: bool = False
    ema_decay: float = bounded(0.9999, ge=0, lt=1)
    ema_tau: float = bounded(2000.0, gt=0)
    freeze: str = one_of("none", FREEZE_MODES)
    freeze_epochs: int = bounded(0, ge=0)
    unfreeze_lr_factor: float = bounded(0.1, gt=0, le=1)

    def __post_init__(self):
        check_fields(self)
        if self.mixed_precision == LEGACY_FULL_PRECISION:
            object.__setattr__(self, "mixed_precision", "float32")
        if self.freeze == "head_then_all" and not 1 <= self.freeze_epochs < self.epochs:
            raise FieldError("freeze_epochs", f"must be in [1, epochs - 1] = [1, {self.epochs - 1}] for freeze "
                                              f"head_then_all, got {self.freeze_epochs}")
