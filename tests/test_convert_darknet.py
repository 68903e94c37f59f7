"""Darknet .weights files into our YOLO models: the layout, the layer order, Darknet's arithmetic, the tool.

The files are synthetic: this module writes them itself in Darknet's layout
from its own description of yolov3.cfg / yolov2.cfg (seeded random values,
a few near-zero variances), so nothing is downloaded. Darknet's two inference
batch norms (the GPU one, our default, and pjreddie's CPU one) are ported to
numpy here and each checked against a model converted with that option. The
fast tests use the architecture of configs/yolov3_coco.yaml with 3 classes
instead of 80 (only the three output convolutions shrink); the 80-class file
is a slow test.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from detect.errors import InputError
from detect.train.experiment import load_experiment
from detect.yolo import darknet_weights as dw
from detect.yolo.model import DarknetReorg, YoloTask

ROOT = Path(__file__).resolve().parents[1]
V3_CONFIG = ROOT / "configs" / "yolov3_coco.yaml"
V2_CONFIG = ROOT / "configs" / "yolo_coco.yaml"
CLASSES = ["a", "b", "c"]
V3_ANCHORS = "10,13, 16,30, 33,23, 30,61, 62,45, 59,119, 116,90, 156,198, 373,326"
V2_ANCHORS = "0.57273, 0.677385, 1.87446, 2.06253, 3.33843, 5.47434, 7.88282, 3.52778, 9.77052, 9.16828"
OFFICIAL_YOLOV3_BYTES = 248007048  # size of the released yolov3.weights: a 20-byte header + 62001757 floats


# ----------------------------------------------------------------------------- Darknet side, written here

def darknet_normalize_gpu(x, mean, variance):
    """Darknet's GPU inference normalisation (pjreddie's CUDA normalize kernel; AlexeyAB's CPU and GPU ones).

    x: [..., C] float64; mean, variance: [C]. Returns (x - mean) / sqrt(var + 1e-5).
    """
    return (x - mean) / np.sqrt(variance + 1e-5)


def darknet_normalize_cpu(x, mean, variance):
    """pjreddie's CPU inference normalisation (normalize_cpu in blas.c).

    x: [..., C] float64; mean, variance: [C]. Returns (x - mean) / (sqrt(var) + 1e-6).
    """
    return (x - mean) / (np.sqrt(variance) + 1e-6)


DARKNET_NORMALIZE = {"gpu": darknet_normalize_gpu, "cpu": darknet_normalize_cpu}
TINY_VARIANCE = 1e-7  # make_layers' near-dead channels: the two formulas differ 10x there


def darknet_batch_norm(x, values, bn):
    """Darknet's inference batch norm of one layer: normalise, then scale_bias (gamma), add_bias (beta).

    x: [..., C]; values: make_layers' arrays of the layer; bn: "gpu" or "cpu". Returns float64 [..., C].
    """
    f64 = (lambda a: np.asarray(a, np.float64))
    return (DARKNET_NORMALIZE[bn](f64(x), f64(values["mean"]), f64(values["variance"])) * f64(values["gamma"])
            + f64(values["beta"]))


def yolov3_sections(num_classes):
    """yolov3.cfg as a list of (section, options), [net] first."""
    sections = [("net", {"width": "416", "height": "416", "channels": "3"})]

    def conv(filters, size, stride=1, bn=True):
        opts = {"filters": str(filters), "size": str(size), "stride": str(stride), "pad": "1",
                "activation": "leaky" if bn else "linear"}
        if bn:
            opts["batch_normalize"] = "1"
        sections.append(("convolutional", opts))

    conv(32, 3)
    for stage, blocks in enumerate((1, 2, 8, 8, 4), start=1):
        conv(32 * 2**stage, 3, stride=2)
        for _ in range(blocks):
            conv(16 * 2**stage, 1)
            conv(32 * 2**stage, 3)
            sections.append(("shortcut", {"from": "-3", "activation": "linear"}))
    for width, mask, skip in ((512, "6,7,8", 61), (256, "3,4,5", 36), (128, "0,1,2", None)):
        for _ in range(3):
            conv(width, 1)
            conv(2 * width, 3)
        conv(3 * (5 + num_classes), 1, bn=False)
        sections.append(("yolo", {"mask": mask, "anchors": V3_ANCHORS, "classes": str(num_classes), "num": "9"}))
        if skip:
            sections.append(("route", {"layers": "-4"}))
            conv(width // 2, 1)
            sections.append(("upsample", {"stride": "2"}))
            sections.append(("route", {"layers": f"-1, {skip}"}))
    return sections


def yolov2_sections(num_classes):
    """yolov2.cfg (COCO) as a list of (section, options)."""
    sections = [("net", {"width": "416", "height": "416", "channels": "3"})]

    def conv(filters, size, bn=True):
        opts = {"filters": str(filters), "size": str(size), "stride": "1", "pad": "1",
                "activation": "leaky" if bn else "linear"}
        if bn:
            opts["batch_normalize"] = "1"
        sections.append(("convolutional", opts))

    conv(32, 3)
    for stage in ([(64, 3)], [(128, 3), (64, 1), (128, 3)], [(256, 3), (128, 1), (256, 3)],
                  [(512, 3), (256, 1), (512, 3), (256, 1), (512, 3)],
                  [(1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3)]):
        sections.append(("maxpool", {"size": "2", "stride": "2"}))
        for filters, size in stage:
            conv(filters, size)
    conv(1024, 3)
    conv(1024, 3)
    sections.append(("route", {"layers": "-9"}))
    conv(64, 1)
    sections.append(("reorg", {"stride": "2"}))
    sections.append(("route", {"layers": "-1,-4"}))
    conv(1024, 3)
    conv(5 * (5 + num_classes), 1, bn=False)
    sections.append(("region", {"anchors": V2_ANCHORS, "classes": str(num_classes), "num": "5", "softmax": "1"}))
    return sections


def cfg_text(sections):
    return "".join(f"[{kind}]\n" + "".join(f"{k}={v}\n" for k, v in opts.items()) + "\n" for kind, opts in sections)


def cfg_convs(sections):
    """[(layer index, filters, size, in channels, batch_normalize)] of a cfg, tracking channels as Darknet does."""
    channels, convs = [], []
    previous = int(sections[0][1]["channels"])
    for index, (kind, opts) in enumerate(sections[1:]):
        if kind == "convolutional":
            filters = int(opts["filters"])
            convs.append((index, filters, int(opts["size"]), previous, opts.get("batch_normalize") == "1"))
            previous = filters
        elif kind == "route":
            refs = [int(v) for v in opts["layers"].split(",")]
            previous = sum(channels[r if r >= 0 else index + r] for r in refs)
        elif kind == "reorg":
            previous *= 4
        channels.append(previous)
    return convs


def keras_names_v3():
    """Our Keras names of yolov3.cfg's conv layers, in cfg order."""
    names = ["darknet53_stem"]
    for stage, blocks in enumerate((1, 2, 8, 8, 4), start=1):
        names.append(f"darknet53_s{stage}_down")
        for block in range(1, blocks + 1):
            names += [f"darknet53_s{stage}_b{block}_1x1", f"darknet53_s{stage}_b{block}_3x3"]
    for level in (5, 4, 3):
        names += [f"p{level}_{k}" for k in range(5)] + [f"p{level}_head", f"out{level}_pred"]
        if level != 3:
            names.append(f"p{level}_lateral")
    return names


def keras_names_v2():
    return [f"darknet19_l{unit}" for unit in range(1, 19)] + ["head_a", "head_b", "passthrough", "head_c",
                                                               "out_pred"]


def make_layers(convs, names, seed):
    """Random Darknet-layout values per conv layer: {name: dict of arrays}, kernels [out, in, h, w]."""
    rng = np.random.default_rng(seed)
    layers = {}
    for (index, filters, size, cin, bn), name in zip(convs, names):
        fan_in = cin * size * size
        values = {"index": index, "bn": bn,
                  "kernel": (rng.standard_normal((filters, cin, size, size), np.float32)
                             * np.float32(np.sqrt(2.0 / fan_in)))}
        if bn:
            variance = rng.uniform(0.5, 2.0, filters).astype(np.float32)
            variance[::7] = TINY_VARIANCE  # near-dead channels, where Darknet's epsilon placement matters
            values.update(beta=rng.normal(0, 0.1, filters).astype(np.float32),
                          gamma=rng.uniform(0.5, 1.5, filters).astype(np.float32),
                          mean=rng.normal(0, 0.1, filters).astype(np.float32), variance=variance)
        else:
            values["bias"] = rng.normal(0, 0.5, filters).astype(np.float32)
        layers[name] = values
    return layers


def header_bytes(major, minor, revision, seen):
    wide = (major * 10 + minor) >= 2 and major < 1000 and minor < 1000
    return (np.array([major, minor, revision], "<i4").tobytes()
            + np.array([seen], "<i8" if wide else "<i4").tobytes())


def write_weights(path, layers, version=(0, 2, 0), seen=32013312):
    """The Darknet file: header, then per layer beta, gamma, mean, variance (or biases), kernel."""
    with open(path, "wb") as f:
        f.write(header_bytes(*version, seen))
        for values in layers.values():
            parts = ("beta", "gamma", "mean", "variance") if values["bn"] else ("bias",)
            for part in parts + ("kernel",):
                f.write(values[part].astype("<f4").tobytes())
    return path


# ----------------------------------------------------------------------------- fixtures

def v3_detector(classes=CLASSES):
    overrides = [f"data.classes=[{', '.join(classes)}]"] if classes else []
    config = load_experiment(V3_CONFIG, overrides)
    return YoloTask(len(config.data.classes), config.model), config


@pytest.fixture(scope="module")
def v3(tmp_path_factory):
    """A 3-class yolov3_coco detector loaded from a synthetic file (default batch norm), the values written and
    the paths."""
    base = tmp_path_factory.mktemp("darknet")
    sections = yolov3_sections(len(CLASSES))
    layers = make_layers(cfg_convs(sections), keras_names_v3(), seed=0)
    path = write_weights(base / "yolov3.weights", layers)
    cfg = base / "yolov3.cfg"
    cfg.write_text(cfg_text(sections))
    detector, _ = v3_detector()
    report = dw.load_darknet_weights(detector, path, cfg=cfg)  # no bn: the default must be "gpu"
    return {"detector": detector, "layers": layers, "path": path, "cfg": cfg, "report": report, "base": base,
            "bn": "gpu"}


@pytest.fixture(scope="module")
def v3_cpu(v3):
    """The same file loaded into another detector with bn="cpu"."""
    detector, _ = v3_detector()
    report = dw.load_darknet_weights(detector, v3["path"], cfg=v3["cfg"], bn="cpu")
    return {**v3, "detector": detector, "report": report, "bn": "cpu"}


@pytest.fixture(params=["gpu", "cpu"])
def loaded(request):
    """v3 (default, "gpu") or v3_cpu, by the test's parameter."""
    return request.getfixturevalue({"gpu": "v3", "cpu": "v3_cpu"}[request.param])


def layer_map(model):
    found = {}
    for layer in model.layers:
        found[layer.name] = layer
        if hasattr(layer, "layers"):
            found.update(layer_map(layer))
    return found


def assert_loaded(model, layers, bn):
    """Every conv / BN / bias against the values written, in Keras order; BN gammas for Darknet's ``bn`` formula."""
    keras_layers = layer_map(model)
    for name, values in layers.items():
        kernel = np.transpose(values["kernel"], (2, 3, 1, 0))
        if values["bn"]:
            np.testing.assert_array_equal(keras_layers[f"{name}_conv"].get_weights()[0], kernel, err_msg=name)
            bn_layer = keras_layers[f"{name}_bn"]
            gamma, beta, mean, variance = bn_layer.get_weights()
            var64 = values["variance"].astype(np.float64)
            # Keras divides by sqrt(var + epsilon); the stored gamma must turn that into Darknet's division, i.e.
            # gamma * sqrt(var + epsilon) * (Darknet's normalisation of x - mean = 1).
            darknet_scale = DARKNET_NORMALIZE[bn](np.ones_like(var64), np.zeros_like(var64), var64)
            want_gamma = values["gamma"] * np.sqrt(var64 + bn_layer.epsilon) * darknet_scale
            np.testing.assert_allclose(gamma, want_gamma, rtol=1e-6, err_msg=name)
            np.testing.assert_array_equal(beta, values["beta"], err_msg=name)
            np.testing.assert_array_equal(mean, values["mean"], err_msg=name)
            np.testing.assert_array_equal(variance, values["variance"], err_msg=name)
        else:
            got_kernel, got_bias = keras_layers[name].get_weights()
            np.testing.assert_array_equal(got_kernel, kernel, err_msg=name)
            np.testing.assert_array_equal(got_bias, values["bias"], err_msg=name)


# ----------------------------------------------------------------------------- header

@pytest.mark.parametrize("version, size", [
    ((0, 2, 0), 20),  # yolov3.weights: 10 * 0 + 2 >= 2, a size_t
    ((0, 1, 0), 16),  # an int32 seen
    ((1, 0, 0), 20),  # 10 >= 2
    ((1000, 2, 0), 16),  # major >= 1000: int32 (the transposed-connected-layers marker)
    ((0, 1000, 0), 16),
])
def test_header_versions(version, size):
    seen = 2**31 + 5 if size == 20 else 12345
    data = header_bytes(*version, seen) + np.zeros(3, "<f4").tobytes()
    header = dw.read_header(data, "x.weights")
    assert (header.major, header.minor, header.revision, header.seen, header.size) == (*version, seen, size)


def test_short_header_is_an_input_error(tmp_path):
    path = tmp_path / "short.weights"
    path.write_bytes(header_bytes(0, 2, 0, 1)[:18])
    with pytest.raises(InputError, match=r"short\.weights: not a Darknet weights file: 18 bytes, version 0\.2\.0 "
                                         r"has a 20-byte header"):
        dw.read_darknet_file(path)
    path.write_bytes(header_bytes(0, 2, 0, 1) + b"\0\0")
    with pytest.raises(InputError, match="not a whole number of float32s"):
        dw.read_darknet_file(path)


# ----------------------------------------------------------------------------- layer order and values

def test_layer_order_is_the_cfg_order():
    config = load_experiment(V3_CONFIG).model
    convs = dw.darknet_layers(config)
    cfg = cfg_convs(yolov3_sections(80))
    assert [c.index for c in convs] == [c[0] for c in cfg]
    assert [c.name for c in convs] == keras_names_v3()
    assert [c.batch_normalize for c in convs] == [c[4] for c in cfg]
    v2 = dw.darknet_layers(load_experiment(V2_CONFIG).model)
    cfg2 = cfg_convs(yolov2_sections(80))
    assert [(c.index, c.name, c.batch_normalize) for c in v2] == [
        (c[0], name, c[4]) for c, name in zip(cfg2, keras_names_v2())]


def test_every_layer_holds_the_values_written(v3):
    model = v3["detector"].model
    assert_loaded(model, v3["layers"], "gpu")  # loaded without bn=: the GPU formula is the default
    assert v3["report"].bn == "gpu"
    # Nothing with weights is left out: the written layers cover every weight of the model.
    covered = {f"{n}_{p}" if v["bn"] else n for n, v in v3["layers"].items() for p in ("conv", "bn")}
    with_weights = {name for name, layer in layer_map(model).items() if layer.weights and not hasattr(layer, "layers")}
    assert with_weights <= covered
    assert v3["report"].layers == 75 and v3["report"].header.seen == 32013312
    assert v3["report"].floats == model.count_params()
    assert dw.classes_from_size(v3["detector"], v3["report"].floats) == len(CLASSES)
    assert dw.classes_from_size(v3["detector"], v3["report"].floats + 1) is None


def _np_conv(x, kernel, stride):
    """Darknet's convolution: x [C, H, W], kernel [out, in, k, k], pad k // 2 on every side."""
    k = kernel.shape[-1]
    pad = k // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    out_h = (x.shape[1] + 2 * pad - k) // stride + 1
    out_w = (x.shape[2] + 2 * pad - k) // stride + 1
    out = np.zeros((kernel.shape[0], out_h, out_w), np.float64)
    for dy in range(k):
        for dx in range(k):
            patch = xp[:, dy:dy + stride * out_h:stride, dx:dx + stride * out_w:stride]
            out += np.einsum("oc,chw->ohw", kernel[:, :, dy, dx], patch)
    return out


def _np_unit(x, values, stride, bn):
    """Conv -> Darknet batch norm (formula ``bn``) -> leaky 0.1, on x [C, H, W]."""
    y = _np_conv(x, values["kernel"].astype(np.float64), stride)
    y = darknet_batch_norm(y.transpose(1, 2, 0), values, bn).transpose(2, 0, 1)
    return np.where(y > 0, y, 0.1 * y)


def test_forward_matches_darknet_arithmetic(loaded):
    import keras

    layers, bn = loaded["layers"], loaded["bn"]
    image = np.random.default_rng(1).uniform(0, 1, (3, 32, 32))
    x = _np_unit(image, layers["darknet53_stem"], 1, bn)
    x = _np_unit(x, layers["darknet53_s1_down"], 2, bn)  # 16 x 16: Darknet pads 1 on every side
    y = _np_unit(x, layers["darknet53_s1_b1_1x1"], 1, bn)
    x = x + _np_unit(y, layers["darknet53_s1_b1_3x3"], 1, bn)
    want = _np_unit(x, layers["darknet53_s2_down"], 2, bn)  # 8 x 8

    backbone = loaded["detector"].model.get_layer("darknet53")
    probe = keras.Model(backbone.input, backbone.get_layer("darknet53_s2_down_leaky").output)
    got = probe(image.transpose(1, 2, 0)[None].astype(np.float32), training=False).numpy()[0].transpose(2, 0, 1)
    assert got.shape == want.shape == (128, 8, 8)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("bn", ["gpu", "cpu"])
def test_fold_bn_gamma_gives_darknet_batch_norm_in_keras_arithmetic(bn):
    # Keras' inference batch norm, gamma * (x - mean) / sqrt(var + eps) + beta, written out in float64 with the
    # folded gamma, against the port; variances from 0 (a dead channel) to large.
    variance = np.array([0.0, 1e-9, TINY_VARIANCE, 1e-6, 1e-5, 1e-3, 0.5, 1.0, 40.0], np.float32)
    rng = np.random.default_rng(5)
    values = {"variance": variance, "mean": rng.normal(0, 0.1, variance.size).astype(np.float32),
              "gamma": rng.uniform(0.5, 1.5, variance.size).astype(np.float32),
              "beta": rng.normal(0, 0.1, variance.size).astype(np.float32)}
    x = rng.normal(0, 1, (6, variance.size))
    for keras_epsilon in (1e-3, 1e-5):
        gamma = dw.fold_bn_gamma(values["gamma"], variance, keras_epsilon, bn=bn)
        assert gamma.dtype == np.float32 and gamma.shape == variance.shape
        keras_out = (gamma.astype(np.float64) * (x - values["mean"])
                     / np.sqrt(variance.astype(np.float64) + keras_epsilon) + values["beta"])
        np.testing.assert_allclose(keras_out, darknet_batch_norm(x, values, bn), rtol=1e-6)
    np.testing.assert_array_equal(dw.fold_bn_gamma(values["gamma"], variance, 1e-3),
                                  dw.fold_bn_gamma(values["gamma"], variance, 1e-3, bn="gpu"))  # the default


def test_unknown_bn_formula_is_an_input_error(v3):
    with pytest.raises(InputError, match=r"bn: unknown Darknet batch norm formula 'GPU': one of 'gpu' "
                                         r"\(sqrt\(var \+ 1e-5\)\), 'cpu' \(sqrt\(var\) \+ 1e-6\)"):
        dw.fold_bn_gamma(np.ones(2, np.float32), np.ones(2, np.float32), 1e-3, bn="GPU")
    with pytest.raises(InputError, match="unknown Darknet batch norm formula"):
        dw.load_darknet_weights(v3["detector"], v3["path"], bn="cuda")


def test_bn_layer_follows_the_chosen_formula_not_the_other(loaded):
    # The stem's BN layer as Keras runs it at inference, against the port of the formula it was converted with;
    # on the near-dead channels the other formula is ~10x off, so the layer must follow the chosen one there.
    bn, other = loaded["bn"], {"gpu": "cpu", "cpu": "gpu"}[loaded["bn"]]
    values = loaded["layers"]["darknet53_stem"]
    layer = loaded["detector"].model.get_layer("darknet53").get_layer("darknet53_stem_bn")
    x = (values["mean"] + np.random.default_rng(6).normal(0, 1, (2, 5, 5, values["mean"].size))).astype(np.float32)
    got = layer(x, training=False).numpy().astype(np.float64)
    want = darknet_batch_norm(x, values, bn)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    tiny = values["variance"] == np.float32(TINY_VARIANCE)
    assert tiny.sum() >= 4
    beta = values["beta"].astype(np.float64)
    ratio = (got - beta)[..., tiny] / (darknet_batch_norm(x, values, other) - beta)[..., tiny]
    np.testing.assert_allclose(ratio, 0.1 if bn == "gpu" else 10.0, rtol=0.01)  # GPU: 10x smaller than CPU's


def test_decoding_matches_darknet(v3):
    detector = v3["detector"]
    rng = np.random.default_rng(2)
    raw = [rng.normal(0, 1, (1, 2 * 2**(2 - i), 2 * 2**(2 - i), 3, 5 + len(CLASSES))).astype(np.float32)
           for i in range(3)]
    boxes, scores = (t.numpy()[0] for t in detector.decode(raw))
    want_boxes, want_scores = [], []
    sigmoid = (lambda a: 1 / (1 + np.exp(-a.astype(np.float64))))
    for out, anchors, stride in zip(raw, detector.anchors, detector.strides):
        h, w = out.shape[1:3]
        for j in range(h):
            for i in range(w):
                for n in range(3):
                    t = out[0, j, i, n]
                    bx, by = (i + sigmoid(t[0])) * stride, (j + sigmoid(t[1])) * stride
                    bw, bh = anchors[n][0] * np.exp(t[2]), anchors[n][1] * np.exp(t[3])
                    want_boxes.append([bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2])
                    want_scores.append(sigmoid(t[4]) * sigmoid(t[5:]))
    np.testing.assert_allclose(boxes, want_boxes, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-7)
    # Anchors 6, 7, 8 on the stride-32 level, as mask = 6,7,8 in yolov3.cfg.
    assert detector.strides == [8, 16, 32]
    np.testing.assert_array_equal(detector.anchors[2], [[116, 90], [156, 198], [373, 326]])


# ----------------------------------------------------------------------------- bad files

def _truncated(v3, name, delta_floats):
    data = v3["path"].read_bytes()
    path = v3["base"] / name
    path.write_bytes(data[:len(data) - 4] if delta_floats < 0 else data + np.zeros(delta_floats, "<f4").tobytes())
    return path


def test_one_float_too_few_names_the_last_layer(v3):
    detector = v3["detector"]
    before = detector.model.get_layer("out3_pred").get_weights()[1].copy()
    path = _truncated(v3, "short.weights", -1)
    with pytest.raises(InputError, match=r"short\.weights: file too short: Darknet layer 105 \(out3_pred\) needs "
                                         r"\d+ floats at float \d+, \d+ left"):
        dw.load_darknet_weights(detector, path)
    np.testing.assert_array_equal(detector.model.get_layer("out3_pred").get_weights()[1], before)  # all or nothing


def test_floats_left_over_name_the_last_layer(v3):
    path = _truncated(v3, "long.weights", 1)
    with pytest.raises(InputError, match=r"long\.weights: 1 floats left over after the last layer, Darknet layer 105 "
                                         r"\(out3_pred\): the network takes \d+"):
        dw.load_darknet_weights(v3["detector"], path)


def test_a_file_ending_early_names_the_layer_it_ends_in(v3, tmp_path):
    stem = v3["layers"]["darknet53_stem"]
    path = tmp_path / "cut.weights"
    path.write_bytes(header_bytes(0, 2, 0, 0) + np.zeros(4 * 32 + stem["kernel"].size + 10, "<f4").tobytes())
    with pytest.raises(InputError, match=r"Darknet layer 1 \(darknet53_s1_down_conv\) needs 18688 floats at float "
                                         r"992, 10 left"):
        dw.load_darknet_weights(v3["detector"], path)


def test_cfg_must_match_the_model(v3, tmp_path):
    detector = v3["detector"]
    convs = dw.darknet_layers(detector.config)
    dw.check_cfg(dw.read_cfg(v3["cfg"]), detector, convs, v3["cfg"])  # the matching one passes

    def broken(edit):
        sections = yolov3_sections(len(CLASSES))
        edit(sections)
        path = tmp_path / "broken.cfg"
        path.write_text(cfg_text(sections))
        return dw.read_cfg(path)

    with pytest.raises(InputError, match=r"\[convolutional\] layer 1: stride=1, the model's darknet53_s1_down_conv "
                                         r"has 2"):
        dw.check_cfg(broken(lambda s: s[2][1].update(stride="1")), detector, convs, "x.cfg")
    with pytest.raises(InputError, match=r"\[yolo\] layer 82: classes=80, the model has 3"):
        dw.check_cfg(broken(lambda s: s[83][1].update(classes="80")), detector, convs, "x.cfg")
    with pytest.raises(InputError, match=r"\[yolo\] layer 82: anchors 30x61, 62x45, 59x119 \(pixels\), the model's "
                                         r"level at stride 32 has 116x90"):
        dw.check_cfg(broken(lambda s: s[83][1].update(mask="3,4,5")), detector, convs, "x.cfg")


def test_unsupported_architectures_are_named():
    config = load_experiment(ROOT / "configs" / "yolo_shapes.yaml").model
    with pytest.raises(InputError, match="no Darknet weights fit YOLOv3 on backbone 'tiny'"):
        dw.darknet_layers(config)
    v2 = load_experiment(V2_CONFIG, ["model.reorg=space_to_depth"]).model
    with pytest.raises(InputError, match="need model.reorg: darknet"):
        dw.darknet_layers(v2)


# ----------------------------------------------------------------------------- YOLOv2's reorg

def darknet_reorg_reference(x, stride):
    """Darknet's forward reorg on one [C, H, W] array, loop for loop (reorg_cpu(x, W, H, C, 1, s, 0, out))."""
    c, h, w = x.shape
    flat_in, out = x.reshape(-1), np.zeros(x.size, x.dtype)
    out_c = c // (stride * stride)
    for k in range(c):
        for j in range(h):
            for i in range(w):
                in_index = i + w * (j + h * k)
                c2, offset = k % out_c, k // out_c
                w2, h2 = i * stride + offset % stride, j * stride + offset // stride
                out[in_index] = flat_in[w2 + w * stride * (h2 + h * stride * c2)]
    return out.reshape(c * stride * stride, h // stride, w // stride)


def test_darknet_reorg_layer_matches_darknet():
    import tensorflow as tf

    x = np.arange(2 * 6 * 4 * 8, dtype=np.float32).reshape(2, 6, 4, 8)  # [B, H, W, C]
    got = DarknetReorg(2)(x).numpy()
    assert got.shape == (2, 3, 2, 32)
    for b in range(2):
        want = darknet_reorg_reference(x[b].transpose(2, 0, 1), 2).transpose(1, 2, 0)
        np.testing.assert_array_equal(got[b], want)
    # Not space_to_depth: same values, other places.
    s2d = tf.nn.space_to_depth(x, 2).numpy()
    assert not np.array_equal(got, s2d) and np.array_equal(np.sort(got, None), np.sort(s2d, None))


# ----------------------------------------------------------------------------- the tool

def run_tool(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "convert_darknet.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def our_lines(text):
    """Output lines without TensorFlow's start-up log (absl / oneDNN notices)."""
    noise = ("WARNING: All log messages", "I0000", "W0000", "E0000", "To enable")
    return [line for line in text.strip().splitlines() if not line.startswith(noise)]


@pytest.mark.slow
def test_tool_converts_an_old_header_file_and_load_weights_reads_it(v3_cpu):
    # The same floats behind a 16-byte header (version 0.1.0, an int32 seen), with the CPU batch norm.
    old = v3_cpu["base"] / "old.weights"
    old.write_bytes(header_bytes(0, 1, 0, 777) + v3_cpu["path"].read_bytes()[20:])
    out = v3_cpu["base"] / "out" / "yolov3_abc.weights.h5"
    proc = run_tool("--weights", old, "--cfg", v3_cpu["cfg"], "--config", V3_CONFIG, "--out", out, "--bn", "cpu",
                    "--set", "data.classes=[a, b, c]")
    assert proc.returncode == 0, proc.stderr
    assert our_lines(proc.stdout) == [
        f"{old}: Darknet format 0.1.0, 777 images seen; 75 conv layers, {v3_cpu['report'].floats} floats, 3 classes, "
        f"batch norm cpu (sqrt(var) + 1e-6) -> {out}"]
    model = v3_cpu["detector"].model
    for weight in model.weights:  # scramble, so that only load_weights can restore them
        weight.assign(np.zeros(weight.shape, np.float32))
    model.load_weights(str(out))
    assert_loaded(model, v3_cpu["layers"], "cpu")


def test_tool_bn_flag_defaults_to_gpu():
    spec = importlib.util.spec_from_file_location("convert_darknet_tool", ROOT / "tools" / "convert_darknet.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    required = ["--weights", "w", "--config", "c", "--out", "o.weights.h5"]
    assert tool.parse_args(required).bn == "gpu"
    assert tool.parse_args(required + ["--bn", "cpu"]).bn == "cpu"
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage error
        tool.parse_args(required + ["--bn", "fast"])
    assert exit_info.value.code == 2


def test_tool_bad_input_is_one_line_and_exit_2(tmp_path):
    missing = tmp_path / "nope.weights"
    proc = run_tool("--weights", missing, "--config", V3_CONFIG, "--out", tmp_path / "x.weights.h5")
    assert proc.returncode == 2
    assert our_lines(proc.stderr) == [f"{missing}: file not found"]
    proc = run_tool("--weights", missing, "--config", V3_CONFIG, "--out", tmp_path / "x.h5")
    assert proc.returncode == 2
    assert our_lines(proc.stderr) == [f"{tmp_path / 'x.h5'}: the output must end in .weights.h5 "
                                                f"(Keras' save_weights format)"]


# ----------------------------------------------------------------------------- slow: the real sizes

@pytest.mark.slow
def test_full_yolov3_coco_file(tmp_path):
    detector, _ = v3_detector(classes=None)  # configs/yolov3_coco.yaml as shipped: 80 classes
    sections = yolov3_sections(80)
    layers = make_layers(cfg_convs(sections), keras_names_v3(), seed=3)
    path = write_weights(tmp_path / "yolov3.weights", layers)
    assert path.stat().st_size == OFFICIAL_YOLOV3_BYTES
    cfg = tmp_path / "yolov3.cfg"
    cfg.write_text(cfg_text(sections))
    report = dw.load_darknet_weights(detector, path, cfg=cfg)
    assert report.floats == 62001757
    assert_loaded(detector.model, layers, "gpu")
    assert dw.classes_from_size(detector, report.floats) == 80


def test_yolov2_coco_file(tmp_path):
    # configs/yolo_coco.yaml as shipped is yolov2.cfg: 80 classes, its anchors, Darknet's reorg (50M floats).
    detector = YoloTask(80, load_experiment(V2_CONFIG).model)
    assert isinstance(detector.model.get_layer("reorg"), DarknetReorg)
    sections = yolov2_sections(80)
    layers = make_layers(cfg_convs(sections), keras_names_v2(), seed=4)
    path = write_weights(tmp_path / "yolov2.weights", layers, version=(0, 1, 0))
    cfg = tmp_path / "yolov2.cfg"
    cfg.write_text(cfg_text(sections))
    report = dw.load_darknet_weights(detector, path, cfg=cfg)
    assert report.header.size == 16 and report.layers == 23
    assert report.floats == detector.model.count_params()
    assert_loaded(detector.model, layers, "gpu")
    assert dw.classes_from_size(detector, report.floats) == 80
    out = detector.model(np.zeros((1, 64, 64, 3), np.float32), training=False)
    assert tuple(out.shape) == (1, 2, 2, 5, 85)
