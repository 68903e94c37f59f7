"""What ``tools/train.py`` does with bad data: skip and count, or with ``data.strict`` stop in one line.

A small VOC dataset (the shapes generator) is spoiled on purpose: one
training and one validation annotation lose a coordinate, one training image
is garbage. Without ``strict`` the run finishes (exit 0), leaves those three
images out, names them in the per-epoch summary and still evaluates. With
``strict`` the first broken file stops the run with exit 2 and a single
line naming it, whether the reader finds it (annotations) or the tf.data
pipeline does (the image), never a TensorFlow traceback. A split whose every
annotation is broken is an error even without ``strict``.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from detect.data.shapes import make_shapes

ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = ["train.epochs=1", "train.batch_size=4", "train.eval_every=1", "data.image_size=64",
            "data.max_boxes=8", "model.head_width=8"]

LIBJPEG_MESSAGES = r"^(Input file read error|Premature end of JPEG|Corrupt JPEG data|Invalid JPEG|Improper call)"


@pytest.fixture(scope="module")
def spoiled(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input") / "shapes"
    make_shapes(root, "voc", num_images=20, size=64, seed=3)  # 16 train, 4 val
    ann = root / "Annotations"
    for image_id in ("000002", "000018"):  # one in train, one in val
        xml = ann / f"{image_id}.xml"
        xml.write_text(re.sub(r"<ymax>[^<]*</ymax>", "<ymax>NaN</ymax>", xml.read_text(), count=1))
    (root / "JPEGImages" / "000005.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    config = root.parent / "config.yaml"
    config.write_text(f"name: bad_input\ndata:\n  format: voc\n  root: {root}\n"
                      f"  classes: [circle, square, triangle]\nmodel:\n  backbone: tiny\n")
    return root, config


def train(config, out, *overrides):
    args = [sys.executable, str(ROOT / "tools" / "train.py"), "--config", str(config), "--out", str(out),
            "--quiet", "--set", *TINY_RUN, *overrides]
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT)
    # TensorFlow's start-up lines and libjpeg's own warnings (printed by the C library while
    # decoding a bad file) go to stderr whatever the log level; ours are the rest.
    ours = [line for line in result.stderr.splitlines()
            if line.strip() and not re.match(r"^(WARNING: All log|[IWE]\d{4} |To enable)", line)
            and not re.match(LIBJPEG_MESSAGES, line)]
    return result, ours


def test_broken_inputs_are_skipped_counted_and_the_run_finishes(spoiled, tmp_path):
    root, config = spoiled
    result, _ = train(config, tmp_path / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "15 training and 3 validation images" in out  # 000002 and 000018 left out when read
    assert re.search(r"warning: training image skipped, broken annotation: .*000002\.xml: .*ymax", out)
    assert re.search(r"warning: validation image skipped, broken annotation: .*000018\.xml", out)
    # The epoch summary counts the read-time skip and the pipeline's undecodable image together.
    summary = next(line for line in out.splitlines() if line.startswith("input pipeline:"))
    assert summary.startswith("input pipeline: 2 images skipped") and "000002.xml" in summary
    assert "000005.jpg" in summary
    assert "validation mAP@0.5" in out and (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("culprit, overrides", [
    ("000002.xml", []),  # found by the reader
    # found inside tf.data; batches of 1, so that no partial last batch is dropped unread
    ("000005.jpg", ["data.train_split=clean_train", "data.val_split=clean_val", "train.batch_size=1"]),
])
def test_strict_stops_with_one_line_naming_the_file(spoiled, tmp_path, culprit, overrides):
    root, config = spoiled
    splits = root / "ImageSets" / "Main"
    for split in ("train", "val"):  # the same splits without the broken annotations
        ids = [i for i in (splits / f"{split}.txt").read_text().split() if i not in ("000002", "000018")]
        (splits / f"clean_{split}.txt").write_text("\n".join(ids) + "\n")
    result, ours = train(config, tmp_path / "run", "data.strict=true", *overrides)
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(ours) == 1 and ours[0].startswith("error: ") and culprit in ours[0], ours
    assert "Traceback" not in result.stderr


def test_a_split_of_only_broken_annotations_is_an_error(spoiled, tmp_path):
    root, config = spoiled
    (root / "ImageSets" / "Main" / "broken.txt").write_text("000002\n000018\n")
    result, ours = train(config, tmp_path / "run", "data.val_split=broken")
    assert result.returncode == 2 and len(ours) == 1, result.stderr[-3000:]
    assert "broken.txt: every image of split 'broken' is broken (2 images)" in ours[0]


def test_an_empty_split_file_is_an_error(spoiled, tmp_path):
    root, config = spoiled
    (root / "ImageSets" / "Main" / "empty.txt").write_text("\n")
    result, ours = train(config, tmp_path / "run", "data.val_split=empty")
    assert result.returncode == 2 and len(ours) == 1, result.stderr[-3000:]
    assert ours[0].endswith("empty.txt: split 'empty' has no images")
