"""The experiment config: data, model and training sections.

One YAML file per experiment (``configs/*.yaml``) loads into
``ExperimentConfig`` through ``detect.config.load_config``; every section is
a frozen dataclass with the defaults below, so a config states only what it
changes.
"""

from dataclasses import dataclass, field
from typing import Optional, Tuple

from detect.config import FieldError, bounded, check_fields, load_config, one_of
from detect.data.augment import AugmentConfig
from detect.train.config import TrainConfig
from detect.models.registry import ModelConfig, default_model_config

DATA_FORMATS = ("voc", "coco", "yolo", "tfrecord", "shapes")


@dataclass(frozen=True)
class ShapesConfig:
    """The built-in synthetic dataset, generated under ``data.root`` if absent.

    Attributes:
      num_images: images over both splits (a fifth of them ``val``), >= 1.
      image_size: side of the generated images in pixels, >= 32.
      seed: generator seed, >= 0; same seed, same bytes.
    """

    num_images: int = bounded(2000, ge=1)
    image_size: int = bounded(256, ge=32)
    seed: int = bounded(0, ge=0)

    def __post_init__(self):
        check_fields(self)


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
      resize: how images become network input, "letterbox" (YOLO: a square
        ``image_size``, grey bars) or "shortest_side" (Faster R-CNN: shorter
        side ``min_side``, longer at most ``max_side``; each batch padded to
        its own largest image, rounded up to ``size_divisor``).
      image_size: letterbox only: square training / evaluation input; a
        multiple of the model's coarsest stride (32 for the shipped
        backbones).
      multiscale_sizes: letterbox only: training sizes to draw from (empty
        = fixed size), each a multiple of that stride too.
      multiscale_every: letterbox only: batches between size changes, >= 1.
      min_side: shortest-side only: target shorter side in pixels, >= 1 and
        <= ``max_side``.
      max_side: shortest-side only: cap on the longer side in pixels, >= 1.
      size_divisor: shortest-side only: batch height and width are rounded
        up to a multiple of it, >= 1; the model's coarsest stride (or a
        multiple of it).
      min_sides: shortest-side only: training multi-scale; each image
        draws its shorter side from these (empty = always ``min_side``),
        each >= 1 and <= ``max_side``; evaluation uses ``min_side``.
      max_boxes: boxes kept per image (padding size), >= 1.
      augment: albumentations settings (training only).
      augment_workers: processes that run the per-image augmentation,
        beside tf.data's threads (the GIL limits those): -1 (default) one
        per usable core when there are at least 2, 0 none, or a count. The
        images are the same to the bit either way.
      strict: fail on a corrupt, truncated (repairable) or broken image or
        annotation instead of skipping (or repairing) it and counting it.
      allow_outside_root: accept image paths from annotations that lead
        outside ``root`` (``..``, absolute paths, symbolic links); refused
        by default, see ``detect.data.paths``.
      cache: cache decoded validation images in memory.
      fit_cache_mb: training: keep up to this many MB of images fitted to
        the network size in memory from the first epoch on, so later epochs
        skip reading, decoding and fitting them (``detect.data.fit_cache``;
        the batches are the same to the bit); 0 turns it off, >= 0.
      shapes: generator settings for ``format: shapes``.
    """

    format: str = one_of("voc", DATA_FORMATS)
    root: str = ""
    train_split: str = "train"
    val_split: str = "val"
    test_split: Optional[str] = None
    classes: Tuple[str, ...] = ()
    skip_unknown: bool = False
    resize: str = one_of("letterbox", ("letterbox", "shortest_side"))  # detect.data.pipeline.RESIZE_MODES
    image_size: int = bounded(416, ge=1)
    multiscale_sizes: Tuple[int, ...] = bounded((), ge=1)
    multiscale_every: int = bounded(10, ge=1)
    min_side: int = bounded(600, ge=1)
    max_side: int = bounded(1000, ge=1)
    size_divisor: int = bounded(32, ge=1)
    min_sides: Tuple[int, ...] = bounded((), ge=1)
    max_boxes: int = bounded(100, ge=1)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    augment_workers: int = bounded(-1, ge=-1)
    strict: bool = False
    allow_outside_root: bool = False
    cache: bool = False
    fit_cache_mb: int = bounded(1024, ge=0)
    shapes: ShapesConfig = field(default_factory=ShapesConfig)

    def __post_init__(self):
        check_fields(self)
        if self.min_side > self.max_side:
            raise FieldError("min_side", f"must be <= max_side ({self.max_side}), got {self.min_side}")
        for i, side in enumerate(self.min_sides):
            if side > self.max_side:
                raise FieldError(f"min_sides[{i}]", f"must be <= max_side ({self.max_side}), got {side}")
        if self.resize == "letterbox" and self.min_sides:
            raise FieldError("min_sides", "works with resize: shortest_side only; letterbox uses multiscale_sizes")
        if self.resize == "shortest_side" and self.multiscale_sizes:
            raise FieldError("multiscale_sizes", "works with resize: letterbox only; shortest_side uses min_sides")


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: ``data``, ``model`` and ``train``.

    ``model`` is any config registered in ``detect.models``, picked by its
    ``type`` key (``yolo`` when absent). Besides each section's own rules,
    the input sizes (``data.image_size``, every ``data.multiscale_sizes``
    entry, and for shortest-side resizing ``data.size_divisor``) must be
    multiples of the model's coarsest stride (``model.coarsest_stride()``),
    so that the levels' grids line up.
    """

    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=default_model_config)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        check_fields(self)
        stride = self.model.coarsest_stride()
        if self.data.resize == "shortest_side":  # batches are padded to multiples of it
            sizes = [("data.size_divisor", self.data.size_divisor)]
        else:
            sizes = [("data.image_size", self.data.image_size)]
        sizes += [(f"data.multiscale_sizes[{i}]", size) for i, size in enumerate(self.data.multiscale_sizes)]
        for key, size in sizes:
            if size % stride:
                raise FieldError(key, f"{size} is not a multiple of {stride}, the stride of "
                                      f"{self.model.display_name()}'s coarsest level on backbone "
                                      f"{self.model.backbone!r}")


def load_experiment(path, overrides=()):
    """Loads ``configs/NAME.yaml`` with ``--set`` overrides into ``ExperimentConfig``."""
    return load_config(ExperimentConfig, path, overrides)
