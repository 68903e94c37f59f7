"""Image paths from annotations stay inside the dataset root (detect.data.paths).

Every reader that joins a path taken from an annotation (COCO ``file_name``,
VOC ``<filename>``, YOLO's image and label files, which may be links) must
refuse ``..``, absolute paths and links that leave the root, with one error
naming the entry; ``allow_outside_root`` opts in. The checker reports the
same paths as problems, and ``tools/convert.py`` exits 2 without writing.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from detect.data import read_coco, read_voc, read_yolo
from detect.data.checker import OUTSIDE_ROOT, check_dataset
from detect.data.paths import OutsideRootError, confined_path, is_inside
from test_voc_reader import voc_object, write_voc

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def secret(tmp_path):
    """A readable image outside every dataset root: what a hostile annotation points at."""
    path = tmp_path / "outside" / "secret.jpg"
    path.parent.mkdir()
    cv2.imwrite(str(path), np.full((8, 8, 3), 7, np.uint8))
    return path


def escapes(root, secret):
    """The three ways out, each as the name an annotation would give (relative to ``root``)."""
    return {"dotdot": os.path.relpath(secret, root), "absolute": str(secret), "symlink": "link.jpg"}


def make_link(folder, secret):
    (folder / "link.jpg").symlink_to(secret)


def test_confined_path_by_hand(tmp_path):
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    assert confined_path(root, "a/../a/x.jpg", "ann", "e") == root / "a/../a/x.jpg"
    assert is_inside(root / "a" / "x.jpg", root) and is_inside(root, root)
    # A sibling whose name starts like the root is outside: prefix matching must use a separator.
    assert not is_inside(tmp_path / "data2" / "x.jpg", root)
    with pytest.raises(OutsideRootError, match=r"ann: e: '\.\./data2/x\.jpg' resolves to .*outside"):
        confined_path(root, "../data2/x.jpg", "ann", "e")
    assert confined_path(root, "/etc/passwd", "ann", "e", allow_outside_root=True) == Path("/etc/passwd")


@pytest.mark.parametrize("way", ["dotdot", "absolute", "symlink"])
def test_coco_file_name_outside_root_is_refused(tmp_path, secret, way):
    images = tmp_path / "coco" / "images"
    images.mkdir(parents=True)
    make_link(images, secret)
    name = escapes(images, secret)[way]
    data = {"images": [{"id": 1, "file_name": "ok.jpg", "width": 8, "height": 8},
                       {"id": 7, "file_name": name, "width": 8, "height": 8}],
            "annotations": [], "categories": [{"id": 1, "name": "a"}]}
    ann = tmp_path / "coco" / "ann.json"
    ann.write_text(json.dumps(data))
    with pytest.raises(OutsideRootError, match=r"ann\.json: image id 7: file_name: .* outside the dataset root"):
        read_coco(ann, image_dir=images)
    records = read_coco(ann, image_dir=images, allow_outside_root=True)
    assert Path(records[1].image_path).resolve() == secret.resolve()


@pytest.mark.parametrize("way", ["dotdot", "absolute", "symlink"])
def test_voc_filename_outside_root_is_refused(tmp_path, secret, way):
    root = write_voc(tmp_path / "voc", {"a": [voc_object("dog", 1, 1, 5, 5)]}, {"train": ["a"]})
    make_link(root / "JPEGImages", secret)
    name = escapes(root / "JPEGImages", secret)[way]
    xml = root / "Annotations" / "a.xml"
    xml.write_text(xml.read_text().replace("<filename>a.jpg</filename>", f"<filename>{name}</filename>"))
    with pytest.raises(OutsideRootError, match=r"a\.xml: <filename>: .* outside the dataset root"):
        read_voc(root, "train")
    assert Path(read_voc(root, "train", allow_outside_root=True)[0].image_path).resolve() == secret.resolve()
    report = check_dataset(root)
    assert [p.kind for p in report.problems] == [OUTSIDE_ROOT] and str(xml) == report.problems[0].source


def test_voc_filename_inside_root_through_dotdot_is_accepted(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": []}, {"train": ["a"]})
    xml = root / "Annotations" / "a.xml"
    xml.write_text(xml.read_text().replace("<filename>a.jpg", "<filename>../JPEGImages/a.jpg"))
    assert read_voc(root, "train")[0].image_path == str(root / "JPEGImages" / "../JPEGImages/a.jpg")


@pytest.mark.parametrize("which", ["image", "label"])
def test_yolo_links_that_leave_the_root_are_refused(tmp_path, secret, which):
    root = tmp_path / "yolo"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "names.txt").write_text("a\n")
    cv2.imwrite(str(root / "images" / "train" / "ok.jpg"), np.zeros((8, 8, 3), np.uint8))
    if which == "image":
        (root / "images" / "train" / "x.jpg").symlink_to(secret)
    else:
        cv2.imwrite(str(root / "images" / "train" / "x.jpg"), np.zeros((8, 8, 3), np.uint8))
        outside_label = secret.with_suffix(".txt")
        outside_label.write_text("0 0.5 0.5 0.2 0.2\n")
        (root / "labels" / "train" / "x.txt").symlink_to(outside_label)
    with pytest.raises(OutsideRootError, match=r"image 'x'.*outside the dataset root"):
        read_yolo(root, "train")
    assert len(read_yolo(root, "train", allow_outside_root=True)) == 2
    report = check_dataset(root)
    assert [p.kind for p in report.problems] == [OUTSIDE_ROOT]


def test_convert_tool_refuses_and_writes_nothing(tmp_path, secret):
    images = tmp_path / "coco" / "images"
    images.mkdir(parents=True)
    data = {"images": [{"id": 3, "file_name": "../../outside/secret.jpg", "width": 8, "height": 8}],
            "annotations": [], "categories": [{"id": 1, "name": "a"}]}
    ann = tmp_path / "coco" / "ann.json"
    ann.write_text(json.dumps(data))
    out = tmp_path / "tfr"
    args = [sys.executable, str(ROOT / "tools" / "convert.py"), "--format", "coco", "--json", str(ann),
            "--root", str(images), "--to", "tfrecord", "--out", str(out)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "image id 3: file_name" in lines[0] and "outside the dataset root" in lines[0]
    assert not out.exists()
