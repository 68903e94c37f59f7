#!/usr/bin/env python
"""k-means anchors for YOLO (YOLOv2's 1 - IoU distance).

    python tools/anchors.py <dataset root, COCO JSON or config> [--split train] [--num 9] [--size 416]
                            [--write CONFIG]

Boxes are scaled as the letterbox pipeline scales them (longest image side
to --size), clustered, and printed with their mean best IoU; --write puts
them into a config's model.anchors, editing only that value's text (the
file's comments and layout are kept; the file is replaced atomically).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.cli import quiet_tensorflow  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="VOC/YOLO root, COCO instances JSON or an experiment config YAML")
    parser.add_argument("--split", default=None, help="split to read (default: the config's train split, else train)")
    parser.add_argument("--num", type=int, default=9, help="number of anchors")
    parser.add_argument("--size", type=int, default=416, help="network input size (letterbox)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", metavar="CONFIG", help="write the anchors into this config's model.anchors")
    args = parser.parse_args(argv)
    quiet_tensorflow()

    from detect.errors import InputError
    from detect.yolo.anchors import kmeans_anchors, letterbox_box_sizes

    try:
        records = _records(args.dataset, args.split)
        sizes = letterbox_box_sizes(records, args.size)
        anchors, mean_iou = kmeans_anchors(sizes, args.num, seed=args.seed)
    except (InputError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    pairs = [[round(float(w), 1), round(float(h), 1)] for w, h in anchors]
    print(f"{len(sizes)} boxes from {len(records)} images, input {args.size}")
    print("anchors (w, h):", ", ".join(f"({w:g}, {h:g})" for w, h in pairs))
    print(f"mean best IoU: {mean_iou:.4f}")
    if args.write:
        from detect.yolo.anchors import write_anchors

        try:
            write_anchors(args.write, pairs)
        except InputError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"written to {args.write} (model.anchors)")
    return 0


def _records(dataset, split):
    """The boxes' records: a config through the training dispatcher, else a dataset path."""
    path = Path(dataset)
    if path.suffix in (".yaml", ".yml"):
        from detect.train.data import class_names_of, load_records, prepare_data
        from detect.train.experiment import load_experiment

        config = load_experiment(path)
        prepare_data(config.data)
        return load_records(config.data, split or config.data.train_split, class_names_of(config.data))
    from detect.data import is_voc_root, read_dataset

    # Class lists: each format's default (detect.data.formats.read_dataset), as training's.
    if path.suffix == ".json":
        return read_dataset("coco", None, json_path=path)
    if is_voc_root(path):
        return read_dataset("voc", path, split or "train")
    return read_dataset("yolo", path, split or "train")


if __name__ == "__main__":
    sys.exit(main())
