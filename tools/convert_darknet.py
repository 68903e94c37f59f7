#!/usr/bin/env python
"""Convert official Darknet YOLO weights into a Keras weights file for a config.

    python tools/convert_darknet.py --weights yolov3.weights [--cfg yolov3.cfg]
        --config configs/yolov3_coco.yaml --out weights/yolov3_coco.weights.h5 [--bn gpu|cpu]
        [--set KEY=VALUE ...]

Builds the detector the config describes (YOLOv3 on darknet53, or YOLOv2 on
darknet19 with ``model.reorg: darknet``), reads the ``.weights`` file into
it layer by layer in the cfg's order and saves ``model.save_weights(OUT)``,
which ``tools/eval.py --config CFG --weights OUT`` and ``model.load_weights``
read. The class count is ``data.classes`` when the config lists them, else
the cfg's ``classes``, else what the file's size implies. With ``--cfg`` the
Darknet cfg must match the model layer for layer (filters, sizes, strides,
classes, anchors). Nothing is downloaded. OUT must be a new file (checked
before anything is read; ``--overwrite`` replaces one, atomically, once the
conversion succeeded) and never one of the inputs.

``--bn`` picks which of Darknet's inference batch norm formulas the Keras
model reproduces (folded into the BN gammas): ``gpu`` (the default),
``(x - mean) / sqrt(var + 1e-5)``, what Darknet computes on the GPU and
AlexeyAB's fork everywhere, and what the released weights were trained with;
``cpu``, ``(x - mean) / (sqrt(var) + 1e-6)``, pjreddie's CPU build, to
reproduce that build's output. They differ on channels with a tiny variance
(10x at var = 1e-7); see ``detect/yolo/darknet_weights.py``.

Beside OUT goes ``<name>.config.yaml`` (``detect.train.transfer.weights_config_path``),
the experiment config with its class names (``class_<i>`` where the config
lists none), which ``Detector.load(OUT)`` and ``model.init_weights: OUT``
read.

Bad input (a missing or truncated file, floats left over, a cfg or config
that does not match) prints one line naming the file and the layer, and
exits with 2.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.cli import EXIT_BAD_INPUT, EXIT_OK, exit_now, os_error_line, quiet_tensorflow  # noqa: E402
from detect.errors import InputError  # noqa: E402
from detect.outputs import check_file_output  # noqa: E402
from detect.yolo.darknet_weights import (BN_CPU, BN_DENOMINATORS, BN_FORMULAS, BN_GPU,  # noqa: E402  (numpy only)
                                         DEFAULT_BN, check_bn)

WEIGHTS_SUFFIX = ".weights.h5"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="Darknet .weights file (e.g. yolov3.weights)")
    parser.add_argument("--cfg", help="the Darknet .cfg it goes with, checked against the model (optional)")
    parser.add_argument("--config", required=True, help="experiment config of the model (configs/*.yaml)")
    parser.add_argument("--out", required=True, help=f"output Keras weights file, ending in {WEIGHTS_SUFFIX}")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--bn", choices=BN_FORMULAS, default=DEFAULT_BN,
                        help="which Darknet inference batch norm to reproduce, by what it divides x - mean by: "
                             f"{BN_GPU} = {BN_DENOMINATORS[BN_GPU]} (default: Darknet on the GPU and AlexeyAB's fork "
                             f"everywhere, what the released weights were trained with), {BN_CPU} = "
                             f"{BN_DENOMINATORS[BN_CPU]} (pjreddie's CPU build)")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, as tools/train.py takes them")
    return parser.parse_args(argv)


def _num_classes(config, cfg, cfg_sections):
    """data.classes, else the cfg's classes, else None (inferred from the file's size)."""
    from detect.yolo.darknet_weights import cfg_classes

    listed = len(config.data.classes) or None
    from_cfg = cfg_classes(cfg_sections) if cfg_sections else None
    if listed and from_cfg and listed != from_cfg:
        raise InputError(cfg, f"the config lists {listed} classes (data.classes), the cfg has classes={from_cfg}")
    return listed or from_cfg


def convert(weights, config_path, out, cfg=None, overrides=(), overwrite=False, bn=DEFAULT_BN):
    """Builds the config's detector, loads the Darknet file into it, saves OUT.

    ``bn``: Darknet's batch norm formula to reproduce, one of ``BN_FORMULAS``.

    Returns:
      (``LoadReport``, class count).

    Raises:
      InputError: any bad input.
    """
    check_bn(bn)
    if not str(out).endswith(WEIGHTS_SUFFIX):
        raise InputError(out, f"the output must end in {WEIGHTS_SUFFIX} (Keras' save_weights format)")
    inputs = [p for p in (weights, config_path, cfg) if p]
    check_file_output(out, "--out", overwrite=overwrite, inputs=inputs)
    from detect.train.transfer import weights_config_path

    sidecar = check_file_output(weights_config_path(out), "--out's config", overwrite=overwrite, inputs=inputs)
    from detect.train.experiment import load_experiment  # TensorFlow
    from detect.yolo.darknet_weights import (classes_from_size, darknet_layers, load_darknet_weights, read_cfg,
                                             read_darknet_file)
    import yaml

    from detect.outputs import write_text_atomic
    from detect.train.checkpoints import save_weights_atomic
    from detect.train.snapshot import config_snapshot
    from detect.yolo.model import YoloTask

    config = load_experiment(config_path, overrides)
    if config.model.type != "yolo":
        raise InputError(config_path, f"model.type is {config.model.type!r}; Darknet weights are YOLO weights")
    # The Darknet file replaces every weight, backbone included.
    model_cfg = dataclasses.replace(config.model, backbone_weights=None)
    darknet_layers(model_cfg)  # an unsupported architecture fails before anything is read or built
    cfg_sections = read_cfg(cfg) if cfg is not None else None
    num_classes = _num_classes(config, cfg, cfg_sections)
    data = read_darknet_file(weights)  # header and size errors before the (slow) model build
    if num_classes is None:
        probe = YoloTask(1, model_cfg)
        num_classes = classes_from_size(probe, len(data[1]))
        if num_classes is None:
            raise InputError(weights, f"{len(data[1])} floats fit no class count of YOLO{model_cfg.version} on "
                                      f"{model_cfg.backbone}: not weights for this network")
        del probe
    detector = YoloTask(num_classes, model_cfg)
    report = load_darknet_weights(detector, weights, cfg=cfg, data=data, bn=bn)
    save_weights_atomic(detector.model, out)
    # The config beside the weights: Detector.load and model.init_weights need no other file.
    snapshot = config_snapshot(dataclasses.replace(config, model=model_cfg))
    snapshot["data"]["classes"] = list(config.data.classes) or [f"class_{i}" for i in range(num_classes)]
    write_text_atomic(sidecar, yaml.safe_dump(snapshot, sort_keys=False))
    return report, num_classes


def main(argv=None):
    args = parse_args(argv)
    quiet_tensorflow()
    try:
        report, num_classes = convert(args.weights, args.config, args.out, cfg=args.cfg, overrides=args.overrides,
                                      overwrite=args.overwrite, bn=args.bn)
    except InputError as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:
        print(os_error_line(error, args.out), file=sys.stderr)
        return EXIT_BAD_INPUT
    header = report.header
    print(f"{args.weights}: Darknet format {header.version}, {header.seen} images seen; {report.layers} conv "
          f"layers, {report.floats} floats, {num_classes} classes, batch norm {report.bn} "
          f"({BN_DENOMINATORS[report.bn]}) -> {args.out}")
    return EXIT_OK


if __name__ == "__main__":
    code = main()
    exit_now(code)
