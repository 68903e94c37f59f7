import dataclasses
import re
import subprocess
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Tuple, Union

import pytest

from detect.config import FieldError, apply_overrides, bounded, check_fields, from_dict, load_config, one_of, to_dict
from detect.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Inner:
    root: str = ""
    sizes: Tuple[int, ...] = (320, 416)
    scale: float = 1.0
    strict: bool = False


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    data: Inner = field(default_factory=Inner)
    epochs: int = 1
    note: Optional[str] = None
    pairs: Tuple[Tuple[float, float], ...] = ()


def test_nested_values_and_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: run\ndata:\n  root: /d\n  sizes: [256, 288]\n  scale: 2\nepochs: 3\n"
                    "pairs: [[1, 2], [3.5, 4]]\n")
    cfg = load_config(Outer, path)
    assert cfg == Outer(name="run", data=Inner(root="/d", sizes=(256, 288), scale=2.0), epochs=3,
                        pairs=((1.0, 2.0), (3.5, 4.0)))
    with pytest.raises(InputError, match=r"pairs\[0\]: expected 2 values"):
        from_dict(Outer, {"pairs": [[1, 2, 3]]})
    assert to_dict(cfg)["data"]["sizes"] == [256, 288]


def test_unknown_key_lists_valid_ones(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  rot: /d\n")
    with pytest.raises(InputError) as err:
        load_config(Outer, path)
    message = str(err.value)
    assert str(path) in message and "data.rot" in message
    for key in ("root", "sizes", "scale", "strict"):
        assert key in message


def test_overrides_apply_last_and_parse_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\ndata: {root: /a}\n")
    cfg = load_config(Outer, path, ["data.root=/x", "epochs=7", "data.strict=true", "data.sizes=[1, 2]",
                                    "note=hello"])
    assert cfg.data.root == "/x" and cfg.epochs == 7 and cfg.data.strict is True
    assert cfg.data.sizes == (1, 2) and cfg.note == "hello"
    with pytest.raises(InputError, match="unknown key 'data.nope'"):
        load_config(Outer, path, ["data.nope=1"])
    with pytest.raises(InputError, match="key.path=value"):
        apply_overrides({}, ["epochs"])


def test_exponent_numbers_without_a_dot_are_floats(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-9 as the string "1e-9"; a float field takes it as YAML 1.2 does.
    path = tmp_path / "c.yaml"
    path.write_text("data: {scale: 1e-9}\n")
    assert load_config(Outer, path).data.scale == 1e-9
    for text, value in (("5E3", 5000.0), ("-2.5e+2", -250.0), (".5e1", 5.0)):
        assert load_config(Outer, path, [f"data.scale={text}"]).data.scale == value
    # Only numbers: other strings stay errors, and a str field keeps the text.
    with pytest.raises(InputError, match="data.scale: expected a number, got 'e5'"):
        load_config(Outer, path, ["data.scale=e5"])
    assert load_config(Outer, path, ["name=1e5"]).name == "1e5"


def test_bad_values_are_named(tmp_path):
    with pytest.raises(InputError, match="epochs: expected an integer"):
        from_dict(Outer, {"epochs": "many"}, "c.yaml")
    with pytest.raises(InputError, match="data.strict: expected true or false"):
        from_dict(Outer, {"data": {"strict": "yes please"}}, "c.yaml")
    path = tmp_path / "bad.yaml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(InputError, match="malformed YAML"):
        load_config(Outer, path)
    with pytest.raises(InputError, match="cannot read config"):
        load_config(Outer, tmp_path / "missing.yaml")


# ---- value rules ----------------------------------------------------------------


@dataclass(frozen=True)
class Ruled:
    count: int = bounded(1, ge=1)
    prob: float = bounded(0.5, ge=0, le=1)
    rate: float = bounded(0.1, gt=0, lt=1)
    sizes: Tuple[int, ...] = bounded((8,), ge=1)
    pairs: Tuple[Tuple[float, float], ...] = bounded((), gt=0)
    mode: str = one_of("a", ("a", "b"))

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class HasRuled:
    inner: Ruled = field(default_factory=Ruled)


@pytest.mark.parametrize("mapping,message", [
    ({"count": 0}, "inner.count must be >= 1, got 0"),
    ({"prob": 1.5}, r"inner.prob must be in \[0, 1\], got 1.5"),
    ({"rate": 0}, r"inner.rate must be in \(0, 1\), got 0.0"),
    ({"rate": 1}, r"inner.rate must be in \(0, 1\), got 1.0"),
    ({"rate": float("nan")}, r"inner.rate must be a finite number in \(0, 1\), got nan"),
    ({"sizes": [4, 0]}, r"inner.sizes\[1\] must be >= 1, got 0"),
    ({"pairs": [[1, 2], [3, -1]]}, r"inner.pairs\[1\]\[1\] must be > 0, got -1.0"),
    ({"mode": "c"}, "inner.mode must be one of 'a', 'b', got 'c'"),
])
def test_rules_name_the_dotted_key_and_the_range(mapping, message):
    with pytest.raises(InputError, match=f"^c.yaml: {message}$"):
        from_dict(HasRuled, {"inner": mapping}, "c.yaml")


def test_rules_accept_their_bounds_and_apply_to_direct_construction():
    edge = Ruled(count=1, prob=0.0, rate=0.999, sizes=(), pairs=((0.5, 0.5),), mode="b")
    assert from_dict(HasRuled, {"inner": {"count": 1, "prob": 0, "rate": 0.999, "sizes": [], "pairs": [[0.5, 0.5]],
                                          "mode": "b"}}).inner == edge
    assert from_dict(HasRuled, {"inner": {"prob": 1}}).inner.prob == 1.0
    with pytest.raises(FieldError, match="^count must be >= 1, got -2$"):
        Ruled(count=-2)
    with pytest.raises(ValueError, match="at most one lower bound"):
        bounded(1, ge=0, gt=0)


# ---- the experiment config --------------------------------------------------------

# Every numeric key of ExperimentConfig (a tuple field: one entry) with a value
# just outside its range, and the message that names it. The test below checks
# that this table covers every numeric field, so a new field needs a range.
OUT_OF_RANGE = {
    "train.epochs": (0, "train.epochs must be >= 1, got 0"),
    "train.batch_size": (0, "train.batch_size must be >= 1, got 0"),
    "train.learning_rate": (0, "train.learning_rate must be > 0, got 0.0"),
    "train.momentum": (1, r"train.momentum must be in \[0, 1\), got 1.0"),
    "train.weight_decay": (-0.1, r"train.weight_decay must be in \[0, 1\), got -0.1"),
    "train.l2": (1, r"train.l2 must be in \[0, 1\), got 1.0"),
    "train.bias_lr_factor": (0, "train.bias_lr_factor must be > 0, got 0.0"),
    "train.warmup_epochs": (-1, "train.warmup_epochs must be >= 0, got -1.0"),
    "train.warmup_start_factor": (1.5, r"train.warmup_start_factor must be in \[0, 1\], got 1.5"),
    "train.final_lr_factor": (-0.1, r"train.final_lr_factor must be in \[0, 1\], got -0.1"),
    "train.step_epochs": ([10, 0], r"train.step_epochs\[1\] must be >= 1, got 0"),
    "train.step_factor": (0, r"train.step_factor must be in \(0, 1\], got 0.0"),
    "train.clip_norm": (-1, "train.clip_norm must be >= 0, got -1.0"),
    "train.eval_every": (0, "train.eval_every must be >= 1, got 0"),
    "train.log_every": (0, "train.log_every must be >= 1, got 0"),
    "train.seed": (-1, r"train.seed must be in \[0, 4294967295\], got -1"),
    "train.ema_decay": (1, r"train.ema_decay must be in \[0, 1\), got 1.0"),
    "train.ema_tau": (0, "train.ema_tau must be > 0, got 0.0"),
    "train.freeze_epochs": (-1, "train.freeze_epochs must be >= 0, got -1"),
    "train.unfreeze_lr_factor": (0, r"train.unfreeze_lr_factor must be in \(0, 1\], got 0.0"),
    "data.image_size": (0, "data.image_size must be >= 1, got 0"),
    "data.multiscale_sizes": ([320, 0], r"data.multiscale_sizes\[1\] must be >= 1, got 0"),
    "data.multiscale_every": (0, "data.multiscale_every must be >= 1, got 0"),
    "data.max_boxes": (0, "data.max_boxes must be >= 1, got 0"),
    "data.min_side": (0, "data.min_side must be >= 1, got 0"),
    "data.max_side": (0, "data.max_side must be >= 1, got 0"),
    "data.size_divisor": (0, "data.size_divisor must be >= 1, got 0"),
    "data.min_sides": ([480, 0], r"data.min_sides\[1\] must be >= 1, got 0"),
    "data.shapes.num_images": (0, "data.shapes.num_images must be >= 1, got 0"),
    "data.shapes.image_size": (16, "data.shapes.image_size must be >= 32, got 16"),
    "data.shapes.seed": (-1, "data.shapes.seed must be >= 0, got -1"),
    **{f"data.augment.{name}": (1.5, rf"data.augment.{name} must be in \[0, 1\], got 1.5")
       for name in ("crop_prob", "affine_prob", "flip_prob", "hsv_prob", "brightness_contrast_prob", "blur_prob",
                    "crop_erosion", "translate", "brightness", "contrast", "min_visibility", "mosaic_prob",
                    "mixup_prob")},
    "data.augment.scale": (1, r"data.augment.scale must be in \[0, 1\), got 1.0"),
    "data.augment.hue_shift": (181, r"data.augment.hue_shift must be in \[0, 180\], got 181.0"),
    "data.augment.saturation_shift": (256, r"data.augment.saturation_shift must be in \[0, 255\], got 256.0"),
    "data.augment.value_shift": (-1, r"data.augment.value_shift must be in \[0, 255\], got -1.0"),
    "data.augment.blur_max_kernel": (1, "data.augment.blur_max_kernel must be >= 3, got 1"),
    "data.augment.min_box_size": (-1, "data.augment.min_box_size must be >= 0, got -1.0"),
    "data.augment.close_mosaic": (-1, "data.augment.close_mosaic must be >= 0, got -1"),
    "data.augment_workers": (-2, "data.augment_workers must be >= -1, got -2"),
    "data.fit_cache_mb": (-1, "data.fit_cache_mb must be >= 0, got -1"),
    "model.anchors": ([[10, 13], [16, 30], [33, -1]], r"model.anchors\[2\]\[1\] must be > 0, got -1.0"),
    "model.head_width": (2, "model.head_width must be >= 4, got 2"),
    "model.dropout": (1, r"model.dropout must be in \[0, 1\), got 1.0"),
    "model.score_threshold": (-0.1, r"model.score_threshold must be in \[0, 1\], got -0.1"),
    "model.iou_threshold": (1.5, r"model.iou_threshold must be in \[0, 1\], got 1.5"),
    "model.max_detections": (0, "model.max_detections must be >= 1, got 0"),
    **{f"model.loss.{name}": (-1, f"model.loss.{name} must be >= 0, got -1.0")
       for name in ("lambda_coord", "lambda_obj", "lambda_noobj", "lambda_cls")},
    "model.loss.ignore_thresh": (1.5, r"model.loss.ignore_thresh must be in \[0, 1\], got 1.5"),
    "model.loss.assign_thresh": (-0.1, r"model.loss.assign_thresh must be in \[0, 1\], got -0.1"),
}


def numeric_keys(cls, prefix=""):
    """Dotted keys of the int / float / tuple-of-numbers fields under dataclass ``cls``."""
    def numeric(tp):
        if tp in (int, float):
            return True
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return typing.get_origin(tp) is tuple and bool(args) and all(numeric(a) for a in args)

    keys = []
    for name, tp in typing.get_type_hints(cls).items():
        members = typing.get_args(tp)
        if typing.get_origin(tp) is typing.Union and members and all(map(dataclasses.is_dataclass, members)):
            tp = members[0]  # the model section: its default type (the others have their own tables)
        if dataclasses.is_dataclass(tp):
            keys += numeric_keys(tp, f"{prefix}{name}.")
        elif numeric(tp):
            keys.append(prefix + name)
    return keys


FASTER_RCNN_OUT_OF_RANGE = {
    **{f"model.{name}": (0, f"model.{name} must be >= 1, got 0")
       for name in ("rpn_width", "rpn_batch", "train_post_nms", "test_post_nms", "roi_batch", "pool_size",
                    "fc_width", "max_detections")},
    **{f"model.{name}": (-1, f"model.{name} must be >= 0, got -1")
       for name in ("train_pre_nms", "test_pre_nms")},
    **{f"model.{name}": (1.5, rf"model.{name} must be in \[0, 1\], got 1.5")
       for name in ("rpn_positive_iou", "rpn_negative_iou", "rpn_nms_iou", "roi_fg_iou", "roi_bg_iou_hi",
                    "roi_bg_iou_lo", "score_threshold", "iou_threshold")},
    **{f"model.{name}": (0, rf"model.{name} must be in \(0, 1\], got 0.0")
       for name in ("rpn_positive_fraction", "roi_fg_fraction")},
    "model.anchor_scales": ([8, 0], r"model.anchor_scales\[1\] must be > 0, got 0.0"),
    "model.anchor_ratios": ([-1], r"model.anchor_ratios\[0\] must be > 0, got -1.0"),
    "model.rpn_allowed_border": (-1, "model.rpn_allowed_border must be >= 0, got -1.0"),
    "model.rpn_min_size": (-1, "model.rpn_min_size must be >= 0, got -1.0"),
    "model.box_stds": ([0.1, 0.1, 0.2, 0], r"model.box_stds\[3\] must be > 0, got 0.0"),
    "model.fc_dropout": (1, r"model.fc_dropout must be in \[0, 1\), got 1.0"),
    "model.stage_epochs": ([1, 1, 0, 1], r"model.stage_epochs\[2\] must be >= 1, got 0"),
    "model.stage_learning_rates": ([0.1, 0, 0.1, 0.1], r"model.stage_learning_rates\[1\] must be > 0, got 0.0"),
    "model.stage_step_epochs": ([1, -1, 1, 0], r"model.stage_step_epochs\[1\] must be >= 0, got -1"),
    "model.stage_batch_sizes": ([1, 0, 1, 2], r"model.stage_batch_sizes\[1\] must be >= 1, got 0"),
}


def test_every_faster_rcnn_numeric_field_is_range_checked(empty_config):
    from detect.faster_rcnn.config import FasterRcnnConfig
    from detect.train.experiment import load_experiment

    assert sorted(FASTER_RCNN_OUT_OF_RANGE) == sorted(numeric_keys(FasterRcnnConfig, "model."))
    frcnn = ["model.type=faster_rcnn", "data.resize=shortest_side"]
    assert load_experiment(empty_config, frcnn).model.type == "faster_rcnn"
    for key, (value, message) in FASTER_RCNN_OUT_OF_RANGE.items():
        with pytest.raises(InputError, match=f"^{re.escape(str(empty_config))}: {message}$"):
            load_experiment(empty_config, frcnn + [f"{key}={value}"])
    for override, message in [
        ("model.rpn_negative_iou=0.8", r"model.rpn_negative_iou must be <= rpn_positive_iou \(0.7\), got 0.8"),
        ("model.roi_bg_iou_lo=0.6", r"model.roi_bg_iou_lo must be <= roi_bg_iou_hi \(0.5\), got 0.6"),
        ("model.stage_epochs=[1, 2]", r"model.stage_epochs needs one value per alternating step \(4\), got 2"),
        ("model.feature_level=C5", r"model.feature_level 'vgg16' has levels C3, C4, got 'C5'"),
        ("model.training=end2end", r"model.training must be one of 'alternating', 'joint', got 'end2end'"),
        ("data.size_divisor=24", r"data.size_divisor 24 is not a multiple of 16, the stride of Faster R-CNN's"),
    ]:
        with pytest.raises(InputError, match=f"^{re.escape(str(empty_config))}: {message}"):
            load_experiment(empty_config, frcnn + [override])


@pytest.fixture()
def empty_config(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("# all defaults\n")
    return path


def test_every_numeric_field_is_range_checked(empty_config):
    from detect.train.experiment import ExperimentConfig, load_experiment

    assert sorted(OUT_OF_RANGE) == sorted(numeric_keys(ExperimentConfig))
    assert load_experiment(empty_config) == ExperimentConfig()  # an empty file is the defaults
    for key, (value, message) in OUT_OF_RANGE.items():
        with pytest.raises(InputError, match=f"^{re.escape(str(empty_config))}: {message}$"):
            load_experiment(empty_config, [f"{key}={value}"])
    # The bounds themselves are valid, and so is every shipped config.
    config = load_experiment(empty_config, [
        "train.epochs=1", "train.momentum=0", "train.weight_decay=0", "train.warmup_epochs=0",
        "train.warmup_start_factor=0", "train.final_lr_factor=1", "train.step_factor=1", "train.clip_norm=0",
        "train.seed=4294967295", "data.image_size=32", "data.shapes.image_size=32", "data.augment.scale=0",
        "data.augment.hue_shift=180", "data.augment.blur_max_kernel=3", "model.head_width=4", "model.dropout=0",
        "model.loss.ignore_thresh=1", "model.iou_threshold=0", "model.loss.lambda_noobj=0",
        "model.loss.assign_thresh=0"])
    assert config.train.momentum == 0.0 and config.model.loss.ignore_thresh == 1.0 and config.data.image_size == 32
    shipped = sorted((ROOT / "configs").glob("*.yaml"))
    assert len(shipped) >= 5
    for path in shipped:
        load_experiment(path)


@pytest.mark.parametrize("override,message", [
    ("train.optimizer=adam", "train.optimizer must be one of 'sgd', 'adamw', got 'adam'"),
    ("data.format=csv", "data.format must be one of 'voc', 'coco', 'yolo', 'tfrecord', 'shapes', got 'csv'"),
    ("model.backbone=darknet", "model.backbone must be one of .*'tiny'.*, got 'darknet'"),
    ("data.augment.blur_max_kernel=4", "data.augment.blur_max_kernel must be odd, got 4"),
    ("model.loss.box_loss=iou", "model.loss.box_loss must be one of 'mse', 'giou', 'diou', 'ciou', got 'iou'"),
    ("model.backbone=vgg16", "model.backbone 'vgg16' has levels C3, C4; YOLOv3 needs levels C3, C4, C5"),
    ("model.anchors=[[1, 2], [3, 4]]", "model.anchors must be a multiple of 3 pairs for YOLOv3 .*got 2"),
])
def test_choices_and_model_rules(empty_config, override, message):
    from detect.train.experiment import load_experiment

    with pytest.raises(InputError, match=f": {message}$"):
        load_experiment(empty_config, [override])


def test_input_sizes_are_multiples_of_the_coarsest_stride(empty_config):
    from detect.train.experiment import load_experiment

    with pytest.raises(InputError, match=r": data.image_size 100 is not a multiple of 32, the stride of YOLOv3's "
                                         r"coarsest level on backbone 'tiny'$"):
        load_experiment(empty_config, ["data.image_size=100"])
    with pytest.raises(InputError, match=r": data.multiscale_sizes\[1\] 336 is not a multiple of 32"):
        load_experiment(empty_config, ["data.multiscale_sizes=[320, 336, 352]"])
    # YOLOv2 on vgg16 predicts on C4 (stride 16): 400 is fine there, 100 is not.
    v2 = ["model.version=v2", "model.backbone=vgg16"]
    assert load_experiment(empty_config, v2 + ["data.image_size=400"]).data.image_size == 400
    with pytest.raises(InputError, match=r"data.image_size 100 is not a multiple of 16, the stride of YOLOv2's"):
        load_experiment(empty_config, v2 + ["data.image_size=100"])


def test_config_that_is_not_a_mapping_is_refused(tmp_path):
    from detect.train.experiment import load_experiment

    path = tmp_path / "x.yaml"
    for content in ("0\n", "[data, model]\n", "just words\n"):
        path.write_text(content)
        with pytest.raises(InputError, match=f"^{re.escape(str(path))}: the config must be a mapping of sections$"):
            load_experiment(path)


# TensorFlow's C++ runtime writes start-up lines to stderr before absl logging
# is initialised, whatever TF_CPP_MIN_LOG_LEVEL says; they are not the tool's.
TF_CHATTER = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl::InitializeLog"
                        r"|To enable the following instructions)")


def test_train_tool_refuses_a_bad_value_before_touching_data(tmp_path):
    missing = tmp_path / "no-dataset"
    result = subprocess.run(
        [sys.executable, "tools/train.py", "--config", "configs/yolo_bccd.yaml", "--out", str(tmp_path / "run"),
         "--set", "train.batch_size=0", f"data.root={missing}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip() and not TF_CHATTER.match(line)]
    assert result.returncode == 2, result.stderr
    # One line about the key, not the missing dataset, and nothing written.
    assert lines == ["error: configs/yolo_bccd.yaml: train.batch_size must be >= 1, got 0"], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


# ---- tagged unions (model.type) and the task registry ---------------------------------


@dataclass(frozen=True)
class _Anchor:
    type: str = "anchor"
    size: int = 3


@dataclass(frozen=True)
class _Proposal:
    type: str = "proposal"
    count: int = 300
    nms: float = 0.7


@dataclass(frozen=True)
class _Tagged:
    model: Union[_Anchor, _Proposal] = field(default_factory=_Anchor)


def test_a_tagged_union_picks_the_class_by_its_type_key():
    from detect.config import from_dict

    assert from_dict(_Tagged, {"model": {"type": "proposal", "count": 100}}).model == _Proposal(count=100)
    assert from_dict(_Tagged, {"model": {"size": 5}}).model == _Anchor(size=5)  # no type: the first
    assert from_dict(_Tagged, {}).model == _Anchor()
    with pytest.raises(InputError, match=r"model.type: unknown type 'rcnn'; valid types: anchor, proposal"):
        from_dict(_Tagged, {"model": {"type": "rcnn"}}, source="x.yaml")
    # Keys are checked against the chosen class, not the union.
    with pytest.raises(InputError, match=r"unknown key 'model.size'; valid keys of model: type, count, nms"):
        from_dict(_Tagged, {"model": {"type": "proposal", "size": 5}}, source="x.yaml")


def test_model_type_selects_a_registered_task(tmp_path, monkeypatch):
    from detect.models import registry as models
    from detect.train.experiment import load_experiment
    from detect.yolo.config import YoloConfig
    from detect.yolo.model import YoloTask

    path = tmp_path / "x.yaml"
    path.write_text("model:\n  type: yolo\n  backbone: tiny\n  head_width: 8\n")
    config = load_experiment(path)
    assert isinstance(config.model, YoloConfig)
    assert isinstance(models.build_task(config.model, 3), YoloTask)
    # A yolo key under another type is refused, naming that type's keys.
    with pytest.raises(InputError, match=r"unknown key 'model.head_width'; valid keys of model: type, backbone, "):
        load_experiment(path, ["model.type=faster_rcnn"])
    with pytest.raises(InputError, match=r"model.type: unknown type 'rcnn'; valid types: yolo, faster_rcnn$"):
        load_experiment(path, ["model.type=rcnn"])
    from detect.faster_rcnn.config import FasterRcnnConfig

    path.write_text("model:\n  type: faster_rcnn\n  backbone: tiny\ndata:\n  resize: shortest_side\n")
    assert isinstance(load_experiment(path).model, FasterRcnnConfig)

    class Fake:
        def __init__(self, num_classes, config, input_shape):
            self.args = (num_classes, config, input_shape)

    @dataclass(frozen=True)
    class FakeConfig:
        type: str = "fake"

    monkeypatch.setitem(models.TASKS, "fake", (FakeConfig, Fake))
    assert models.build_task(FakeConfig(), 5).args == (5, FakeConfig(), (None, None, 3))
    with pytest.raises(InputError, match="type 'fake' needs a FakeConfig, got SimpleNamespace"):
        models.build_task(SimpleNamespace(type="fake"), 5)
    with pytest.raises(InputError, match="unknown model type 'rcnn'; registered: yolo, faster_rcnn, fake"):
        models.build_task(SimpleNamespace(type="rcnn"), 5)


def test_shortest_side_size_divisor_must_fit_the_stride(tmp_path):
    from detect.train.experiment import load_experiment

    path = tmp_path / "x.yaml"
    path.write_text("data:\n  resize: shortest_side\n  size_divisor: 16\n  min_side: 64\n  max_side: 128\n")
    with pytest.raises(InputError, match=r"data.size_divisor 16 is not a multiple of 32"):
        load_experiment(path)
    assert load_experiment(path, ["data.size_divisor=64"]).data.size_divisor == 64
    assert load_experiment(path, ["data.resize=letterbox"]).data.size_divisor == 16  # unused there


def test_one_precision_vocabulary_and_the_old_spelling_still_loads():
    import keras

    from detect.config import PRECISIONS, keras_policy
    from detect.train.config import TrainConfig

    assert TrainConfig().mixed_precision == "float32"
    assert from_dict(TrainConfig, {"mixed_precision": "none"}).mixed_precision == "float32"
    for precision in PRECISIONS:
        assert from_dict(TrainConfig, {"mixed_precision": precision}).mixed_precision == precision
        # Each name is a policy Keras knows: float32, mixed_float16, mixed_bfloat16.
        assert keras.mixed_precision.Policy(keras_policy(precision)).compute_dtype == precision
    with pytest.raises(InputError, match="mixed_precision must be one of 'float32', 'float16', 'bfloat16'"):
        from_dict(TrainConfig, {"mixed_precision": "half"})
