#!/usr/bin/env python
"""The Ultralytics peer of the small-data suite: train from scratch on a VOC split, detect its test split.

    /path/to/peer-venv/bin/python tools/peer_ultralytics.py --root DATA --classes a,b \\
        --epochs 60 --imgsz 416 --batch 8 --seed 0 --out RUN

Run by ``tools/recipe_suite.py`` with an interpreter whose environment has
``ultralytics`` (README, "Small-data suite"); it imports nothing from
``detect`` (no TensorFlow there), and ``detect`` never depends on it. RUN
(new) receives the YOLO-layout copy of the splits (links to the images,
labels converted from the VOC files; difficult objects and classes outside
``--classes`` dropped, as Ultralytics' own VOC conversion does), the
training folder, ``val_map50.json`` (the peer's own validation mAP@0.5 per
epoch) and ``dets.json``: the test split's detections of ``best.pt`` as a
COCO results list with the VOC image stem as ``image_id`` and the class name
as ``category_id``, in our continuous pixel edges, ready for
``tools/eval.py --gt DATA --dets RUN/dets.json --split test``. The
detections keep everything above a confidence of 0.001, as the peer's own
``val`` mode does for its mAP.
"""

import argparse
import csv
import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# Image types both detect (detect.data.imagesize) and Ultralytics read; not imported: no detect here.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
EXIT_BAD_INPUT = 2  # detect.cli.EXIT_BAD_INPUT


def fail(message):
    """Bad input: one line naming the file, exit status 2, as every detect tool."""
    print(message, file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="VOC dataset root (JPEGImages, Annotations, ImageSets/Main)")
    parser.add_argument("--classes", required=True, help="class names in id order, comma-separated")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--test-split", default="test")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--imgsz", type=int, default=416)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="yolov8n.yaml", help="a .yaml trains from scratch")
    parser.add_argument("--out", required=True, help="new folder for everything this run writes")
    return parser.parse_args(argv)


def split_ids(root, split):
    path = root / "ImageSets" / "Main" / f"{split}.txt"
    try:
        return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    except OSError as error:
        fail(f"{path}: cannot read the split ({error.strerror or error})")


def image_path(root, stem):
    for suffix in IMAGE_SUFFIXES:
        for candidate in (root / "JPEGImages" / (stem + suffix), root / "JPEGImages" / (stem + suffix.upper())):
            if candidate.is_file():
                return candidate
    fail(f"{root / 'JPEGImages' / stem}.*: no image for this id")


def yolo_labels(xml_path, classes):
    """Lines ``k cx cy w h`` (normalised) from a VOC file; corners are 1-based inclusive."""
    try:
        tree = ET.parse(xml_path).getroot()
        width = float(tree.find("size/width").text)
        height = float(tree.find("size/height").text)
    except (OSError, ET.ParseError, AttributeError, TypeError, ValueError) as error:
        fail(f"{xml_path}: cannot read size/width and size/height ({error})")
    lines = []
    for obj in tree.findall("object"):
        name = (obj.findtext("name") or "").strip()
        difficult = (obj.findtext("difficult") or "0").strip()
        if name not in classes or difficult not in ("", "0"):
            continue
        box = obj.find("bndbox")
        xmin, ymin, xmax, ymax = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        x1, y1, x2, y2 = xmin - 1, ymin - 1, xmax, ymax  # continuous edges, as detect.data.voc.voc_box
        lines.append(f"{classes.index(name)} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                     f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
    return lines


def build_yolo_layout(root, classes, splits, out):
    """``out/data`` in Ultralytics' layout (images linked, labels written) and its ``data.yaml``."""
    data = out / "data"
    for name, split in splits.items():
        (data / "images" / name).mkdir(parents=True)
        (data / "labels" / name).mkdir(parents=True)
        for stem in split_ids(root, split):
            image = image_path(root, stem)
            os.symlink(image.resolve(), data / "images" / name / image.name)
            labels = yolo_labels(root / "Annotations" / f"{stem}.xml", classes)
            (data / "labels" / name / f"{image.stem}.txt").write_text("".join(line + "\n" for line in labels))
    names = "\n".join(f"  {k}: {json.dumps(name)}" for k, name in enumerate(classes))
    yaml_path = data / "data.yaml"
    yaml_path.write_text(f"path: {data.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    return yaml_path


def main(argv=None):
    args = parse_args(argv)
    root, out = Path(args.root), Path(args.out)
    classes = args.classes.split(",")
    try:
        out.mkdir(parents=True)  # a new folder only: a run never writes over anything
    except FileExistsError:
        fail(f"{out}: --out exists; nothing was written. Choose a new --out")
    from ultralytics import YOLO  # here, so that the checks above run without it (the tests)
    yaml_path = build_yolo_layout(root, classes, {"train": args.train_split, "val": args.val_split}, out)
    model = YOLO(args.model)
    model.train(data=str(yaml_path), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, seed=args.seed,
                deterministic=True, device="cpu", workers=2, project=str(out.resolve()), name="train",
                exist_ok=False, plots=False, pretrained=False, amp=False, verbose=False)
    train_dir = out / "train"
    with open(train_dir / "results.csv") as stream:
        rows = list(csv.DictReader(stream))
    val = [float(row[key]) for row in rows for key in row if key.strip() == "metrics/mAP50(B)"]
    (out / "val_map50.json").write_text(json.dumps(val))

    best = YOLO(str(train_dir / "weights" / "best.pt"))
    dets = []
    for stem in split_ids(root, args.test_split):
        result = best.predict(str(image_path(root, stem)), imgsz=args.imgsz, conf=0.001, iou=0.7, max_det=300,
                              device="cpu", verbose=False)[0]
        for (x1, y1, x2, y2), score, k in zip(result.boxes.xyxy.tolist(), result.boxes.conf.tolist(),
                                              result.boxes.cls.tolist()):
            dets.append({"image_id": stem, "category_id": classes[int(k)],
                         "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                         "score": round(score, 5)})
    (out / "dets.json").write_text(json.dumps(dets))
    print(f"{out}: {len(val)} epochs, {len(dets)} test detections")


if __name__ == "__main__":
    main()
