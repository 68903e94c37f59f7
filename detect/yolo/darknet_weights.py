"""Darknet ``.weights`` files (the official YOLOv3 / YOLOv2 releases) loaded into ``YoloTask``.

File layout, as Darknet reads it (``parser.c``: ``load_weights_upto`` and
``load_convolutional_weights``), all little-endian:

- header: int32 ``major``, ``minor``, ``revision``, then the count of images
  seen in training: int64 when ``major * 10 + minor >= 2`` and both are below
  1000 (Darknet reads a ``size_t``), else int32;
- then, for every ``[convolutional]`` section of the cfg in order, float32:
  with ``batch_normalize=1`` the BN beta (Darknet's "biases"), gamma
  ("scales"), rolling mean and rolling variance, [filters] each; without, the
  convolution biases [filters]; then the kernel [filters, in, size, size].

Nothing else is stored: routes, shortcuts, upsampling, pooling, reorg and the
detection layers have no weights. Darknet itself reads past a short file and
ignores extra floats; here either is an ``InputError`` naming the layer.

Darknet normalises with the rolling mean and variance at inference, but
not everywhere with the same formula; ``bn`` picks which one to reproduce:

- ``"gpu"`` (the default): ``(x - mean) / sqrt(var + 1e-5)``. pjreddie's
  Darknet computes this on the GPU (its CUDA normalize kernel at inference,
  the same kernel or cuDNN's batch norm in training), AlexeyAB's fork on the
  CPU as well, and both fold batch norm into the convolution with it. Darknet
  trains on the GPU, so the released gammas and betas were learned against
  this denominator.
- ``"cpu"``: ``(x - mean) / (sqrt(var) + 1e-6)``, pjreddie's CPU path alone
  (``normalize_cpu`` in ``blas.c``), for matching the output of that build.

The two agree on channels with a large variance and drift apart as it
shrinks: at var = 1e-5 the CPU denominator is ~1.4x smaller, at 1e-7 ~10x,
and at var = 0 ~3000x, so near-dead channels come out far off under the
formula the weights were not trained with.

Keras computes ``(x - mean) / sqrt(var + epsilon)`` with its own epsilon
(1e-3 in our models). The loader keeps beta, mean and variance as written
and folds the difference into gamma, ``gamma * sqrt(var + epsilon) /
denominator(var)``, computed in float64, which makes inference match the
chosen Darknet formula for any Keras epsilon. Fine-tuning in training mode
normalises with batch statistics and so starts from these folded gammas,
larger than the file's on channels whose variance is near or below epsilon.
"""

import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np

from detect.errors import InputError

# Darknet's inference batch norm denominators, per channel of rolling variance:
DARKNET_GPU_BN_EPSILON = 1e-5  # inside the root: sqrt(var + 1e-5) (GPU paths, AlexeyAB's fork)
DARKNET_CPU_BN_EPSILON = 1e-6  # outside the root: sqrt(var) + 1e-6 (pjreddie's CPU path)
BN_GPU = "gpu"
BN_CPU = "cpu"
BN_FORMULAS = (BN_GPU, BN_CPU)
DEFAULT_BN = BN_GPU  # what the released weights were trained with
BN_DENOMINATORS = {BN_GPU: "sqrt(var + 1e-5)", BN_CPU: "sqrt(var) + 1e-6"}  # for help texts and reports
LEAKY = "leaky"
LINEAR = "linear"


@dataclasses.dataclass(frozen=True)
class DarknetHeader:
    """The header of a ``.weights`` file.

    Attributes:
      major, minor, revision: format version.
      seen: images seen in training.
      size: header bytes (16 with an int32 ``seen``, 20 with an int64).
    """

    major: int
    minor: int
    revision: int
    seen: int
    size: int

    @property
    def version(self):
        return f"{self.major}.{self.minor}.{self.revision}"


@dataclasses.dataclass(frozen=True)
class DarknetConv:
    """One ``[convolutional]`` section of a Darknet cfg and the Keras layers that take its weights.

    Attributes:
      index: the Darknet layer index (0-based over the cfg's sections after
        ``[net]``, as Darknet prints it while loading).
      name: the Keras name: the prefix of ``<name>_conv`` / ``<name>_bn``
        for a batch-normalised unit, the Conv2D itself (with bias) otherwise.
      batch_normalize: whether the section has ``batch_normalize=1``.
    """

    index: int
    name: str
    batch_normalize: bool = True

    @property
    def conv_name(self):
        return f"{self.name}_conv" if self.batch_normalize else self.name

    @property
    def label(self):
        return f"Darknet layer {self.index} ({self.conv_name})"


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What ``load_darknet_weights`` read: the header, the conv layers and floats used, the BN formula."""

    header: DarknetHeader
    layers: int
    floats: int
    bn: str = DEFAULT_BN


# ----------------------------------------------------------------------------- file

def read_header(data, source):
    """Parses the header at the start of a ``.weights`` file.

    Args:
      data: the file's bytes (at least its first 20).
      source: file name for error messages.

    Returns:
      ``DarknetHeader``.

    Raises:
      InputError: fewer bytes than the header needs.
    """
    if len(data) < 12:
        raise InputError(source, f"not a Darknet weights file: {len(data)} bytes, the header alone needs 16 or 20")
    major, minor, revision = (int(v) for v in np.frombuffer(data, "<i4", 3))
    wide = (major * 10 + minor) >= 2 and major < 1000 and minor < 1000
    size = 20 if wide else 16
    if len(data) < size:
        raise InputError(source, f"not a Darknet weights file: {len(data)} bytes, version {major}.{minor}.{revision} "
                                 f"has a {size}-byte header")
    seen = int(np.frombuffer(data, "<i8" if wide else "<i4", 1, 12)[0])
    return DarknetHeader(major, minor, revision, seen, size)


def read_darknet_file(path):
    """Reads a ``.weights`` file.

    Args:
      path: the file.

    Returns:
      (``DarknetHeader``, float32 [N] array of everything after the header).

    Raises:
      InputError: missing file, short header, or a body that is not a
        whole number of floats.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except OSError as error:
        raise InputError(path, f"cannot read: {error.strerror or error}") from None
    header = read_header(data, path)
    body = len(data) - header.size
    if body % 4:
        raise InputError(path, f"{body} bytes after the {header.size}-byte header are not a whole number of float32s")
    return header, np.frombuffer(data, "<f4", body // 4, header.size)


# ----------------------------------------------------------------------------- layer order

def _darknet53_convs():
    """Darknet-53 of yolov3.cfg (layers 0-74): [DarknetConv], next layer index."""
    # Imported here, not at the top: the backbone module imports Keras, and
    # tools/convert_darknet.py reads BN_FORMULAS for its --help without it.
    from detect.backbones.darknet import DARKNET53_BLOCKS

    convs, index = [DarknetConv(0, "darknet53_stem")], 1
    for stage, blocks in enumerate(DARKNET53_BLOCKS, start=1):
        convs.append(DarknetConv(index, f"darknet53_s{stage}_down"))
        index += 1
        for block in range(1, blocks + 1):
            convs += [DarknetConv(index, f"darknet53_s{stage}_b{block}_1x1"),
                      DarknetConv(index + 1, f"darknet53_s{stage}_b{block}_3x3")]
            index += 3  # 1x1, 3x3, [shortcut]
    return convs, index


def _yolov3_head_convs(index):
    """yolov3.cfg's head from layer ``index`` (75): stride 32 first, as the cfg lists it.

    Per level: five 1x1/3x3 convs, the 3x3 head, the output conv, [yolo];
    then, towards the next level, [route -4], the 1x1 lateral conv,
    [upsample] and [route -1, <backbone level>].
    """
    convs = []
    for level in ("5", "4", "3"):
        convs += [DarknetConv(index + k, f"p{level}_{k}") for k in range(5)]
        convs += [DarknetConv(index + 5, f"p{level}_head"), DarknetConv(index + 6, f"out{level}_pred", False)]
        index += 8  # ... output conv, [yolo]
        if level != "3":
            convs.append(DarknetConv(index + 1, f"p{level}_lateral"))  # after [route -4]
            index += 4  # [route], conv, [upsample], [route]
    return convs


def _darknet19_convs():
    """Darknet-19 of yolov2.cfg (layers 0-22, max pools between stages): [DarknetConv], next index."""
    from detect.backbones.darknet import DARKNET19_STAGES  # Keras, see _darknet53_convs

    convs, index, unit = [DarknetConv(0, "darknet19_l1")], 1, 1
    for stage in DARKNET19_STAGES:
        index += 1  # [maxpool]
        for _ in stage:
            unit += 1
            convs.append(DarknetConv(index, f"darknet19_l{unit}"))
            index += 1
    return convs, index


def _yolov2_head_convs(index):
    """yolov2.cfg's head from layer ``index`` (23): two 3x3 convs, [route 16], the 1x1 passthrough,
    [reorg], [route -1, -4], a 3x3 conv, the output conv ([region] follows)."""
    return [DarknetConv(index, "head_a"), DarknetConv(index + 1, "head_b"), DarknetConv(index + 3, "passthrough"),
            DarknetConv(index + 6, "head_c"), DarknetConv(index + 7, "out_pred", False)]


def darknet_layers(config):
    """The Darknet conv layers, in file order, of the network a ``YoloConfig`` builds.

    Only the two architectures Darknet released weights for: YOLOv3 on
    darknet53 (yolov3.cfg) and YOLOv2 on darknet19 (yolov2.cfg / yolov2-voc.cfg)
    with ``reorg: darknet``.

    Returns:
      list of ``DarknetConv``.

    Raises:
      InputError: any other version / backbone, or v2 with
        ``reorg: space_to_depth``.
    """
    if config.version == "v3" and config.backbone == "darknet53":
        convs, index = _darknet53_convs()
        return convs + _yolov3_head_convs(index)
    if config.version == "v2" and config.backbone == "darknet19":
        if config.reorg != "darknet":
            raise InputError("model.reorg", "YOLOv2 weights from Darknet need model.reorg: darknet (Darknet's reorg "
                                            "layer is not tf.nn.space_to_depth), got 'space_to_depth'")
        convs, index = _darknet19_convs()
        return convs + _yolov2_head_convs(index)
    raise InputError("model", f"no Darknet weights fit YOLO{config.version} on backbone {config.backbone!r}: "
                              f"supported are v3 on darknet53 (yolov3.cfg) and v2 on darknet19 (yolov2.cfg); "
                              f"Darknet's tiny models (max-pool backbones, two levels) are not our 'tiny'")


def _all_layers(model):
    """{name: layer} over a model and the models nested in it (the backbone)."""
    found = {}
    for layer in model.layers:
        found[layer.name] = layer
        if hasattr(layer, "layers"):
            found.update(_all_layers(layer))
    return found


def keras_layers(model, conv, layers=None):
    """The Keras (Conv2D, BatchNormalization or None) that take one Darknet conv's weights.

    Args:
      model: the Keras model; layers: its ``_all_layers`` if already listed.

    Raises:
      InputError: the model lacks them (not the architecture ``darknet_layers`` assumed).
    """
    layers = _all_layers(model) if layers is None else layers
    names = [conv.conv_name] + ([f"{conv.name}_bn"] if conv.batch_normalize else [])
    missing = [name for name in names if name not in layers]
    if missing:
        raise InputError(model.name, f"{conv.label}: the model has no layer {', '.join(missing)}")
    return layers[names[0]], (layers[names[1]] if conv.batch_normalize else None)


# ----------------------------------------------------------------------------- conversion

def conv_float_count(kernel_shape, batch_normalize):
    """Floats one Darknet conv layer stores.

    Args:
      kernel_shape: Keras kernel shape (h, w, in, out).
      batch_normalize: BN (4 x out) or biases (out).
    """
    h, w, cin, cout = kernel_shape
    return (4 if batch_normalize else 1) * cout + cout * cin * h * w


def kernel_to_keras(flat, kernel_shape):
    """Darknet kernel [out, in, h, w] (flat) -> Keras [h, w, in, out].

    Args:
      flat: float32 [out * in * h * w].
      kernel_shape: the Keras (h, w, in, out).
    """
    h, w, cin, cout = kernel_shape
    return np.ascontiguousarray(flat.reshape(cout, cin, h, w).transpose(2, 3, 1, 0))


def check_bn(bn):
    """Raises ``InputError`` unless ``bn`` is one of ``BN_FORMULAS``."""
    if bn not in BN_FORMULAS:
        raise InputError("bn", f"unknown Darknet batch norm formula {bn!r}: one of "
                               + ", ".join(f"{name!r} ({BN_DENOMINATORS[name]})" for name in BN_FORMULAS))


def darknet_bn_denominator(variance, bn=DEFAULT_BN):
    """What Darknet divides ``x - mean`` by at inference, per channel.

    Args:
      variance: [C] rolling variance (>= 0).
      bn: one of ``BN_FORMULAS``.

    Returns:
      float64 [C]: ``sqrt(var + 1e-5)`` ("gpu") or ``sqrt(var) + 1e-6`` ("cpu").
    """
    check_bn(bn)
    var = np.asarray(variance, np.float64)
    if bn == BN_GPU:
        return np.sqrt(var + DARKNET_GPU_BN_EPSILON)
    return np.sqrt(var) + DARKNET_CPU_BN_EPSILON


def fold_bn_gamma(gamma, variance, keras_epsilon, bn=DEFAULT_BN):
    """gamma for Keras' ``sqrt(var + eps)`` that gives Darknet's ``gamma / denominator(var)``.

    Args:
      gamma, variance: float32 [C] as written (variance >= 0).
      keras_epsilon: the BatchNormalization layer's epsilon.
      bn: which Darknet formula to reproduce, one of ``BN_FORMULAS``
        (see ``darknet_bn_denominator``).

    Returns:
      float32 [C]: ``gamma * sqrt(var + keras_epsilon) / denominator(var)``,
      computed in float64.
    """
    var = np.asarray(variance, np.float64)
    scale = np.sqrt(var + keras_epsilon) / darknet_bn_denominator(var, bn)
    return (np.asarray(gamma, np.float64) * scale).astype(np.float32)


def split_conv(floats, kernel_shape, batch_normalize):
    """One layer's floats, in Darknet's order, cut into named arrays.

    Args:
      floats: float32 [conv_float_count(kernel_shape, batch_normalize)].
      kernel_shape: Keras (h, w, in, out).

    Returns:
      dict: ``beta``, ``gamma``, ``mean``, ``variance`` [out] (BN) or
      ``bias`` [out]; ``kernel`` [h, w, in, out] (Keras order).
    """
    cout = kernel_shape[3]
    names = ("beta", "gamma", "mean", "variance") if batch_normalize else ("bias",)
    parts = {name: floats[i * cout:(i + 1) * cout] for i, name in enumerate(names)}
    parts["kernel"] = kernel_to_keras(floats[len(names) * cout:], kernel_shape)
    return parts


def _check_values(parts, conv, source):
    for name, values in parts.items():
        if not np.all(np.isfinite(values)):
            raise InputError(source, f"{conv.label}: non-finite {name} values")
    if conv.batch_normalize and np.any(parts["variance"] < 0):
        raise InputError(source, f"{conv.label}: negative rolling variance")


def convert_layers(model, convs, floats, source, bn=DEFAULT_BN):
    """Cuts the file's floats into Keras weight lists, checking the count layer by layer.

    Args:
      model: the Keras model (``YoloTask.model``).
      convs: ``darknet_layers`` of its config.
      floats: float32 [N], the file after its header.
      source: file name for error messages.
      bn: the Darknet batch norm formula folded into gamma, one of ``BN_FORMULAS``.

    Returns:
      list of (layer, [arrays]) to ``set_weights``, conv layers and BN layers.

    Raises:
      InputError: the file ends inside a layer, has floats left after the
        last one, or holds non-finite values / negative variances (each
        naming the Darknet layer index and the Keras layer).
    """
    check_bn(bn)
    assignments, offset, layers = [], 0, _all_layers(model)
    for conv in convs:
        conv_layer, bn_layer = keras_layers(model, conv, layers)
        shape = tuple(conv_layer.kernel.shape)
        count = conv_float_count(shape, conv.batch_normalize)
        if offset + count > len(floats):
            raise InputError(source, f"file too short: {conv.label} needs {count} floats at float {offset}, "
                                     f"{len(floats) - offset} left (a different cfg or class count?)")
        parts = split_conv(floats[offset:offset + count], shape, conv.batch_normalize)
        _check_values(parts, conv, source)
        offset += count
        if conv.batch_normalize:
            gamma = fold_bn_gamma(parts["gamma"], parts["variance"], bn_layer.epsilon, bn)
            assignments.append((conv_layer, [parts["kernel"]]))
            assignments.append((bn_layer, [gamma, parts["beta"], parts["mean"], parts["variance"]]))
        else:
            assignments.append((conv_layer, [parts["kernel"], parts["bias"]]))
    if offset != len(floats):
        last = convs[-1]
        raise InputError(source, f"{len(floats) - offset} floats left over after the last layer, {last.label}: "
                                 f"the network takes {offset} (a different cfg or class count?)")
    return assignments


def expected_floats(model, convs):
    """Floats a ``.weights`` file for this model holds after its header."""
    total, layers = 0, _all_layers(model)
    for conv in convs:
        conv_layer, _ = keras_layers(model, conv, layers)
        total += conv_float_count(tuple(conv_layer.kernel.shape), conv.batch_normalize)
    return total


def classes_from_size(detector, floats):
    """The class count a file of ``floats`` floats implies for this detector's architecture.

    Only the output convolutions depend on C: each stores
    ``A * (5 + C) * (in + 1)`` floats.

    Returns:
      int C, or None when no C >= 1 fits exactly.
    """
    convs = darknet_layers(detector.config)
    fixed = expected_floats(detector.model, convs)
    per_class = 0
    layers = _all_layers(detector.model)
    for conv, anchors in zip([c for c in convs if not c.batch_normalize][::-1], detector.anchors):
        cin = layers[conv.conv_name].kernel.shape[2]
        fixed -= len(anchors) * (5 + detector.num_classes) * (cin + 1)
        per_class += len(anchors) * (cin + 1)
    extra = floats - fixed - 5 * per_class
    if extra <= 0 or extra % per_class:
        return None
    return extra // per_class


def load_darknet_weights(detector, path, cfg=None, data=None, bn=DEFAULT_BN):
    """Loads a Darknet ``.weights`` file into a ``YoloTask``.

    All-or-nothing: every layer is checked before the first is set.

    Args:
      detector: a ``YoloTask`` of a supported architecture (see
        ``darknet_layers``).
      path: the ``.weights`` file.
      cfg: optional Darknet ``.cfg`` path; when given, its conv layers,
        classes and anchors must match the detector (``check_cfg``).
      data: ``read_darknet_file(path)``'s result if already read.
      bn: which of Darknet's inference batch norm formulas the model
        reproduces, one of ``BN_FORMULAS``: "gpu" (default, ``sqrt(var +
        1e-5)``, what the released weights were trained with) or "cpu"
        (``sqrt(var) + 1e-6``, pjreddie's CPU build); see the module docstring.

    Returns:
      ``LoadReport``.

    Raises:
      InputError: unknown ``bn``, unsupported architecture, cfg mismatch, or
        a file whose size or values do not fit (the message names the layer).
    """
    check_bn(bn)
    convs = darknet_layers(detector.config)
    if cfg is not None:
        check_cfg(read_cfg(cfg), detector, convs, cfg)
    header, floats = read_darknet_file(path) if data is None else data
    assignments = convert_layers(detector.model, convs, floats, path, bn)
    for layer, weights in assignments:
        layer.set_weights(weights)
    return LoadReport(header, len(convs), len(floats), bn)


# ----------------------------------------------------------------------------- cfg

def read_cfg(path):
    """Parses a Darknet ``.cfg`` file.

    Returns:
      list of (section name, {key: value str}) in file order, ``[net]`` included.

    Raises:
      InputError: missing file, or an option line outside any section / without ``=``.
    """
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    sections = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1].strip(), {}))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1][1][key.strip()] = value.strip()
        else:
            raise InputError(path, f"line {number}: not a [section] or key=value line: {raw.strip()!r}")
    return sections


def _numbers(text, kind=float):
    return [kind(v) for v in text.replace(" ", "").split(",") if v]


def check_cfg(sections, detector, convs, source):
    """Checks a Darknet cfg against the detector the weights go into.

    Compares the ``[convolutional]`` sections (layer index, filters, size,
    stride, batch_normalize, activation), the classes of the ``[yolo]`` /
    ``[region]`` sections and their anchors (``[yolo]``: pixels, the
    ``mask`` ones; ``[region]``: grid cells, times the stride).

    Raises:
      InputError: the first difference, naming the cfg section.
    """
    layers = [s for s in sections if s[0] not in ("net", "network")]
    cfg_convs = [(i, opts) for i, (kind, opts) in enumerate(layers) if kind in ("convolutional", "conv")]
    if [i for i, _ in cfg_convs] != [c.index for c in convs]:
        raise InputError(source, f"the convolutional layers are at indices {[i for i, _ in cfg_convs]}, the model's "
                                 f"are at {[c.index for c in convs]}: not the {_arch(detector)} network")
    all_layers = _all_layers(detector.model)
    for conv, (index, opts) in zip(convs, cfg_convs):
        layer = all_layers[conv.conv_name]
        h, w, _, filters = layer.kernel.shape
        expected = {"filters": filters, "size": h, "stride": layer.strides[0],
                    "batch_normalize": int(conv.batch_normalize),
                    "activation": LEAKY if conv.batch_normalize else LINEAR}
        found = {"filters": int(opts.get("filters", 1)), "size": int(opts.get("size", 1)),
                 "stride": int(opts.get("stride", 1)), "batch_normalize": int(opts.get("batch_normalize", 0)),
                 "activation": opts.get("activation", "logistic")}
        for key, want in expected.items():
            if found[key] != want:
                raise InputError(source, f"[convolutional] layer {index}: {key}={found[key]}, the model's "
                                         f"{conv.conv_name} has {want}")
    _check_detection_sections(layers, detector, source)


def _arch(detector):
    return f"{detector.config.display_name()} {detector.config.backbone}"


def _check_detection_sections(layers, detector, source):
    heads = [(i, kind, opts) for i, (kind, opts) in enumerate(layers) if kind in ("yolo", "region")]
    if len(heads) != len(detector.anchors):
        raise InputError(source, f"{len(heads)} [yolo]/[region] sections, the model has {len(detector.anchors)} "
                                 f"output levels")
    # The cfg lists the coarsest level first; detector.anchors is finest first.
    for (index, kind, opts), anchors, stride in zip(heads, detector.anchors[::-1], detector.strides[::-1]):
        classes = int(opts.get("classes", 20))
        if classes != detector.num_classes:
            raise InputError(source, f"[{kind}] layer {index}: classes={classes}, the model has {detector.num_classes}")
        pairs = np.asarray(_numbers(opts.get("anchors", "")), np.float64).reshape(-1, 2)
        if kind == "yolo":
            pairs = pairs[_numbers(opts.get("mask", ""), int)] if "mask" in opts else pairs
        else:
            pairs = pairs * stride
        if pairs.shape != anchors.shape or not np.allclose(pairs, anchors, atol=0.01):
            raise InputError(source, f"[{kind}] layer {index}: anchors {_pairs(pairs)} (pixels), the model's level "
                                     f"at stride {stride} has {_pairs(anchors)}")


def _pairs(array):
    return ", ".join(f"{w:g}x{h:g}" for w, h in np.asarray(array).reshape(-1, 2))


def cfg_classes(sections) -> Optional[int]:
    """The ``classes`` of a cfg's first ``[yolo]`` / ``[region]`` section (None if it has none)."""
    for kind, opts in sections:
        if kind in ("yolo", "region"):
            return int(opts.get("classes", 20))
    return None


__all__ = ["BN_CPU", "BN_DENOMINATORS", "BN_FORMULAS", "BN_GPU", "DARKNET_CPU_BN_EPSILON", "DARKNET_GPU_BN_EPSILON",
           "DEFAULT_BN", "DarknetConv", "DarknetHeader", "LoadReport", "check_bn", "check_cfg", "cfg_classes",
           "classes_from_size", "conv_float_count", "convert_layers", "darknet_bn_denominator", "darknet_layers",
           "expected_floats", "fold_bn_gamma", "kernel_to_keras", "load_darknet_weights", "read_cfg",
           "read_darknet_file", "read_header"]
