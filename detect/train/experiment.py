"""The experiment config: data, model and training sections.

One YAML file per experiment (``configs/*.yaml``) loads into
``ExperimentConfig`` through ``detect.config.load_config``; every section is
a frozen dataclass with the defaults below, so a config states only what it
changes.
"""

from dataclasses import dataclass, field
from typing import Optional, Tuple

from detect.config import load_config
from detect.data.augment import AugmentConfig
from detect.train.config import TrainConfig
from detect.yolo.model import YoloConfig

DATA_FORMATS = ("voc", "coco", "yolo", "tfrecord", "shapes")


@dataclass(frozen=True)
class ShapesConfig:
    """The built-in synthetic dataset, generated under ``data.root`` if absent."""

    num_images: int = 2000
    image_size: int = 256
    seed: int = 0


@dataclass(frozen=True)
class DataConfig:
    """Where the images are and how they are fed.

    Attributes:
      format: one of ``DATA_FORMATS``; "shapes" is a VOC-layout dataset that
        is generated on first use.
      root: dataset folder (VOC / YOLO root, the COCO images folder, or a
        TFRecord folder or pattern); relative paths are taken from the
        current directory.
      train_split, val_split, test_split: split names (VOC/YOLO), COCO
        annotation files, or TFRecord patterns.
      classes: class names, in id order; empty = the dataset's own.
      skip_unknown: drop boxes of classes not in ``classes`` instead of
        failing.
      image_size: square training / evaluation input (letterbox).
      multiscale_sizes: training sizes to draw from (empty = fixed size).
      multiscale_every: batches between size changes.
      max_boxes: boxes kept per image (padding size).
      augment: albumentations settings (training only).
      strict: fail on a corrupt image or annotation instead of skipping it.
      cache: cache decoded validation images in memory.
      shapes: generator settings for ``format: shapes``.
    """

    format: str = "voc"
    root: str = ""
    train_split: str = "train"
    val_split: str = "val"
    test_split: Optional[str] = None
    classes: Tuple[str, ...] = ()
    skip_unknown: bool = False
    image_size: int = 416
    multiscale_sizes: Tuple[int, ...] = ()
    multiscale_every: int = 10
    max_boxes: int = 100
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    strict: bool = False
    cache: bool = False
    shapes: ShapesConfig = field(default_factory=ShapesConfig)

    def __post_init__(self):
        if self.format not in DATA_FORMATS:
            raise ValueError(f"data.format must be one of {DATA_FORMATS}, got {self.format!r}")


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: ``data``, ``model`` (YOLO) and ``train``."""

    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: YoloConfig = field(default_factory=YoloConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def load_experiment(path, overrides=()):
    """Loads ``configs/NAME.yaml`` with ``--set`` overrides into ``ExperimentConfig``."""
    return load_config(ExperimentConfig, path, overrides)
