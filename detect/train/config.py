"""The ``train`` section of an experiment config."""

from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation.

    Attributes:
      epochs: total epochs (resuming with more extends the run).
      batch_size: global batch size (split over replicas).
      optimizer: "sgd" (momentum) or "adamw".
      learning_rate: peak learning rate (after warm-up).
      momentum: SGD momentum / AdamW beta_1.
      weight_decay: decoupled weight decay.
      warmup_epochs: burn-in: the learning rate rises from
        ``warmup_start_factor`` x peak to the peak (YOLOv2's burn-in).
      schedule: "cosine" (to ``final_lr_factor`` x peak) or "step"
        (x ``step_factor`` at each epoch in ``step_epochs``).
      clip_norm: global gradient-norm clipping (0 = off).
      mixed_precision: "none", "float16" (GPU) or "bfloat16" (CPU).
      distribute: "default" (one device), "mirrored" (the GPUs of one
        machine) or "multi_worker" (machines described by TF_CONFIG).
      eval_every: epochs between validation passes (the last epoch always).
      log_every: steps between TensorBoard scalars.
      seed: seed of weights, data order and augmentation.
    """

    epochs: int = 30
    batch_size: int = 16
    optimizer: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    warmup_start_factor: float = 0.01
    schedule: str = "cosine"
    final_lr_factor: float = 0.05
    step_epochs: Tuple[int, ...] = ()
    step_factor: float = 0.1
    clip_norm: float = 10.0
    mixed_precision: str = "none"
    distribute: str = "default"
    eval_every: int = 1
    log_every: int = 20
    seed: int = 0

    def __post_init__(self):
        checks = {"optimizer": ("sgd", "adamw"), "schedule": ("cosine", "step"),
                  "mixed_precision": ("none", "float16", "bfloat16"),
                  "distribute": ("default", "mirrored", "multi_worker")}
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"train.{name} must be one of {allowed}, got {getattr(self, name)!r}")
