"""tools/make_proxy.py and detect.data.proxies: proxies built from tiny git repositories made here.

Each source layout (YOLO txt, COCO JSON, VOC XML) is committed to a repository in tmp_path, built,
and read back with ``detect.data.read_voc``; the expected boxes are worked out by hand below.
No network, no fetched snapshot: the shipped proxies are checked for consistency only.
"""

import hashlib
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from detect.data import read_voc
from detect.data.proxies import make_stem
from detect.data.proxy_source import SPLITS, load_source, read_split_files
from detect.outputs import MARKER

ROOT = Path(__file__).resolve().parents[1]
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_SYSTEM": os.devnull}


def tool_main():
    spec = importlib.util.spec_from_file_location("tool_make_proxy", ROOT / "tools" / "make_proxy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


make_proxy = tool_main()


def jpeg(width, height, seed=0):
    image = np.random.default_rng(seed).integers(0, 255, (height, width, 3), np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def git_repo(path, files):
    """A repository at ``path`` holding ``files`` ({repo path: bytes or str}); returns (git dir, commit)."""
    path.mkdir(parents=True)
    for name, data in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)
    env = dict(os.environ, **GIT_ENV)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "data"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True,
                            check=True).stdout.strip()
    return path / ".git", commit


def proxy_folder(path, source, splits):
    path.mkdir(parents=True)
    (path / "source.yaml").write_text(yaml.safe_dump(source, sort_keys=False))
    for split in SPLITS:
        (path / f"{split}.txt").write_text("".join(f"{s}\n" for s in splits.get(split, [])))
    return path


def one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def tree_hashes(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


# ---- a YOLO source, Roboflow-style names ------------------------------------------------------------

# 40 x 30 image. "1 0.5 0.5 0.5 0.4" (source class 1 = cat): x1 = (0.5 - 0.25) * 40 = 10, x2 = 30,
# y1 = (0.5 - 0.2) * 30 = 9, y2 = 21. "0 0.95 0.5 0.2 0.2" (dog): x1 = 0.85 * 40 = 34, x2 = 1.05 * 40 = 42
# -> clipped to 40; y1 = 0.4 * 30 = 12, y2 = 18. "1 0.5 0.5 0 0.1": no width -> dropped.
YOLO_A = "1 0.5 0.5 0.5 0.4\n0 0.95 0.5 0.2 0.2\n1 0.5 0.5 0 0.1\n"
# 20 x 10 image, "0 0.25 0.5 0.5 1": x 0..10, y 0..10.
YOLO_B = "0 0.25 0.5 0.5 1\n"


def yolo_source(tmp_path, labels_a=YOLO_A, duplicates="error", extra=None):
    files = {
        "LICENSE.txt": "CC BY 4.0",
        "ds/train/images/a_jpg.rf.111.jpg": jpeg(40, 30),
        "ds/train/labels/a_jpg.rf.111.txt": labels_a,
        "ds/valid/images/b_jpg.rf.222.jpg": jpeg(20, 10, seed=1),
        "ds/valid/labels/b_jpg.rf.222.txt": YOLO_B,
        "ds/test/images/c_jpg.rf.333.jpg": jpeg(16, 16, seed=2),
        "ds/test/labels/c_jpg.rf.333.txt": "",  # an empty label file: an image without boxes
    }
    files.update(extra or {})
    git_dir, commit = git_repo(tmp_path / "src", files)
    source = {
        "name": "tiny", "repository": "someone/tiny", "commit": commit, "licence": "CC-BY-4.0",
        "licence_file": "LICENSE.txt", "layout": "yolo",
        "sources": [{"split": s, "images": f"ds/{s}/images", "annotations": f"ds/{s}/labels"}
                    for s in ("train", "valid", "test")],
        "source_classes": ["dog", "cat"], "classes": ["cat", "dog"], "stem": "roboflow",
        "duplicates": duplicates,
        "split": {"mode": "source", "map": {"train": "train", "valid": "val", "test": "test"}},
        "expect": {"images": 3, "boxes": 3},
    }
    folder = proxy_folder(tmp_path / "proxy", source, {"train": ["a"], "val": ["b"], "test": ["c"]})
    return git_dir, commit, folder


def build(folder, git_dir, out, *extra):
    return make_proxy(["--proxy", str(folder), "--git", str(git_dir), "--out", str(out), *extra])


def test_yolo_source_boxes_classes_and_splits(tmp_path, capsys):
    git_dir, commit, folder = yolo_source(tmp_path)
    out = tmp_path / "built"
    assert build(folder, git_dir, out) == 0
    summary = capsys.readouterr().out
    assert "3 images, 3 boxes, 2 classes (train 1, val 1, test 1)" in summary
    assert "1 box(es) with no area" in summary

    classes = ("cat", "dog")
    a, = read_voc(out, "train", classes)
    assert (a.image_id, a.width, a.height) == ("a", 40, 30)
    np.testing.assert_allclose(a.boxes, [[10, 9, 30, 21], [34, 12, 40, 18]], atol=1e-4)
    assert a.classes.tolist() == [0, 1]  # cat (source 1) is our 0, dog (source 0) our 1
    assert not a.ignore.any()
    b, = read_voc(out, "val", classes)
    np.testing.assert_allclose(b.boxes, [[0, 0, 10, 10]], atol=1e-4)
    assert b.classes.tolist() == [1]
    c, = read_voc(out, "test", classes)
    assert c.num_boxes == 0 and (c.width, c.height) == (16, 16)
    # VOC's 1-based inclusive corners in the file itself: xmin = x1 + 1, xmax = x2.
    xml = (out / "Annotations" / "a.xml").read_text()
    assert "<xmin>11</xmin>" in xml and "<ymin>10</ymin>" in xml and "<xmax>30</xmax>" in xml
    # The images are the source's bytes; the split files are the proxy's.
    src = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:ds/train/images/a_jpg.rf.111.jpg"],
                         capture_output=True, check=True).stdout
    assert (out / "JPEGImages" / "a.jpg").read_bytes() == src
    for split in SPLITS:
        assert (out / "ImageSets" / "Main" / f"{split}.txt").read_text() == (folder / f"{split}.txt").read_text()
    manifest = json.loads((out / "proxy.json").read_text())
    assert manifest["commit"] == commit and manifest["boxes_dropped_no_area"] == 1
    assert manifest["boxes_per_class"] == {"cat": 1, "dog": 2}
    assert json.loads((out / MARKER).read_text())["kind"] == "proxy"

    # The same inputs again: kept as they are; --rebuild builds again (same result).
    before = tree_hashes(out)
    assert build(folder, git_dir, out) == 0
    assert "up to date" in capsys.readouterr().out
    assert build(folder, git_dir, out, "--rebuild") == 0
    assert tree_hashes(out) == before


def test_identical_duplicates_kept_once_else_refused(tmp_path, capsys):
    dup = {"ds/train/images/a_jpg.rf.999.jpg": jpeg(40, 30), "ds/train/labels/a_jpg.rf.999.txt": YOLO_A}
    git_dir, _, folder = yolo_source(tmp_path, duplicates="identical", extra=dup)
    assert build(folder, git_dir, tmp_path / "built") == 0
    assert "1 duplicate image(s)" in capsys.readouterr().out
    assert len(read_voc(tmp_path / "built", "train", ("cat", "dog"))) == 1

    source = yaml.safe_load((folder / "source.yaml").read_text())
    source["duplicates"] = "error"
    (folder / "source.yaml").write_text(yaml.safe_dump(source))
    assert build(folder, git_dir, tmp_path / "other") == 2
    line = one_line_error(capsys)
    assert "a_jpg.rf.999.jpg: stem 'a' is also ds/train/images/a_jpg.rf.111.jpg" in line
    assert not (tmp_path / "other").exists()


def test_malformed_annotation_one_line_naming_the_file(tmp_path, capsys):
    git_dir, commit, folder = yolo_source(tmp_path, labels_a="1 0.5 0.5 0.5\n")
    out = tmp_path / "built"
    assert build(folder, git_dir, out) == 2
    line = one_line_error(capsys)
    assert line == (f"{git_dir}@{commit[:12]}:ds/train/labels/a_jpg.rf.111.txt: line 1: expected 5 fields "
                    f"'class cx cy w h', got 4")
    assert not out.exists() and not list(tmp_path.glob(".built.*"))


@pytest.mark.parametrize("change,expected", [
    (lambda s, f: s.update(commit="0" * 40), "commit 0000000000000000000000000000000000000000 is not in this git"),
    (lambda s, f: s.update(licence_file="COPYING"), ":COPYING: no such file at this commit"),
    (lambda s, f: s["sources"][1].update(images="ds/nowhere"), ":ds/nowhere: no images in this folder"),
    (lambda s, f: s.update(source_classes=["dog"]), "line 1: class 1 is out of range 0..0"),
    (lambda s, f: s.update(classes=["cat"]), "class 'dog' is not in"),
    (lambda s, f: s.update(expect={"images": 4}), "expect.images is 4, the build has 3"),
    (lambda s, f: (f / "val.txt").write_text("b\nzzz\n"), "val.txt: stem 'zzz' is not an image of the source"),
    (lambda s, f: (f / "val.txt").write_text(""), "1 image(s) of the source are in no split file, e.g. 'b'"),
    (lambda s, f: ((f / "val.txt").write_text(""), (f / "test.txt").write_text("c\nb\n")),
     "test.txt: stem 'b' comes from the source's 'valid' split, which maps to val"),
])
def test_bad_input_is_one_line(tmp_path, capsys, change, expected):
    git_dir, _, folder = yolo_source(tmp_path)
    source = yaml.safe_load((folder / "source.yaml").read_text())
    change(source, folder)
    (folder / "source.yaml").write_text(yaml.safe_dump(source))
    out = tmp_path / "built"
    assert build(folder, git_dir, out) == 2
    assert expected in one_line_error(capsys)
    assert not out.exists()


def test_lfs_pointer_refused(tmp_path, capsys):
    pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"
    git_dir, _, folder = yolo_source(tmp_path, extra={"ds/test/images/c_jpg.rf.333.jpg": pointer})
    assert build(folder, git_dir, tmp_path / "built") == 2
    assert "ds/test/images/c_jpg.rf.333.jpg: is a Git LFS pointer, not the file's content" in one_line_error(capsys)


def test_reader_faults_name_the_repository_file(tmp_path, capsys):
    # The readers read a temporary copy beside --out; their messages name the file in the repository.
    git_dir, commit, folder = yolo_source(tmp_path, extra={"ds/test/images/c_jpg.rf.333.jpg": "not an image"})
    assert build(folder, git_dir, tmp_path / "built") == 2
    assert one_line_error(capsys) == f"{git_dir}@{commit[:12]}:ds/test/images/c_jpg.rf.333.jpg: not a readable image"
    assert not list(tmp_path.glob(".built.*"))  # the temporary copy and the temporary build are gone

    coco = {"images": [{"id": 1, "file_name": "p.jpg", "width": 8, "height": 8}],
            "categories": [{"id": 1, "name": "o"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [0, 0, 2, 2]}]}
    git_dir, commit = git_repo(tmp_path / "coco_src", {"L": "x", "c/a.json": json.dumps(coco), "c/p.jpg": jpeg(8, 8)})
    source = {"name": "c", "repository": "a/c", "commit": commit, "licence": "MIT", "licence_file": "L",
              "layout": "coco", "classes": ["o"],
              "sources": [{"split": "all", "images": "c", "annotations": "c/a.json"}],
              "split": {"mode": "seeded", "seed": 0, "fractions": {"train": 1.0, "val": 0.0, "test": 0.0}}}
    folder = proxy_folder(tmp_path / "coco_proxy", source, {"train": ["p"]})
    assert build(folder, git_dir, tmp_path / "coco_built") == 2
    assert one_line_error(capsys) == (f"{git_dir}@{commit[:12]}:c/a.json: annotations[0] (id 1): category_id 5 "
                                      f"is not in 'categories'")


def test_output_rule_foreign_folder_and_git_dir(tmp_path, capsys):
    git_dir, _, folder = yolo_source(tmp_path)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    before = tree_hashes(foreign)
    assert build(folder, git_dir, foreign) == 2
    line = one_line_error(capsys)
    assert line.startswith(f"{foreign}: --out exists and was not created by tools/make_proxy.py")
    assert tree_hashes(foreign) == before
    # Never into the git directory (new path or not) nor the proxy folder.
    for inside in (git_dir / "built", git_dir.parent / ".git" / "objects", folder / "built"):
        assert build(folder, git_dir, inside) == 2
        assert "--out is inside an input" in one_line_error(capsys)
        assert not (git_dir / "built").exists() and not (folder / "built").exists()
    # --overwrite replaces the foreign folder with a complete build.
    assert build(folder, git_dir, foreign, "--overwrite") == 0
    assert not (foreign / "notes.txt").exists() and (foreign / "Annotations" / "a.xml").is_file()


# ---- COCO and VOC sources ------------------------------------------------------------------------

def test_coco_source(tmp_path, capsys):
    coco = {
        "images": [{"id": 7, "file_name": "p_jpg.rf.aa.jpg", "width": 999, "height": 999},
                   {"id": 8, "file_name": "q.jpg", "width": 24, "height": 12}],
        # Roboflow's COCO has a supercategory class no box uses; one box is partly outside the image.
        "categories": [{"id": 0, "name": "things"}, {"id": 1, "name": "crab"}, {"id": 2, "name": "shrimp"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 2, "bbox": [5, 6, 10, 8]},
                        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [20, 20, 30, 30], "iscrowd": 1},
                        {"id": 3, "image_id": 8, "category_id": 1, "bbox": [1.5, 2, 3, 4]}],
    }
    files = {"README": "CC BY 4.0", "c/train/_annotations.coco.json": json.dumps(coco),
             "c/train/p_jpg.rf.aa.jpg": jpeg(32, 32), "c/train/q.jpg": jpeg(24, 12, seed=3)}
    git_dir, commit = git_repo(tmp_path / "src", files)
    source = {"name": "coco_tiny", "repository": "someone/coco", "commit": commit, "licence": "CC-BY-4.0",
              "licence_file": "README", "layout": "coco",
              "sources": [{"split": "train", "images": "c/train", "annotations": "c/train/_annotations.coco.json"}],
              "classes": ["shrimp", "crab"], "class_map": {"things": None}, "stem": "roboflow",
              "split": {"mode": "seeded", "seed": 0, "fractions": {"train": 0.5, "val": 0.5, "test": 0.0}}}
    folder = proxy_folder(tmp_path / "proxy", source, {"train": ["p"], "val": ["q"]})
    out = tmp_path / "built"
    assert build(folder, git_dir, out) == 0, capsys.readouterr().err
    p, = read_voc(out, "train", ("shrimp", "crab"))
    # Size from the image (32 x 32), not the JSON's 999. [x, y, w, h] -> [x, y, x + w, y + h];
    # [20, 20, 30, 30] -> [20, 20, 50, 50] clipped to [20, 20, 32, 32]; iscrowd -> difficult -> ignore.
    assert (p.width, p.height) == (32, 32)
    np.testing.assert_allclose(p.boxes, [[5, 6, 15, 14], [20, 20, 32, 32]], atol=1e-4)
    assert p.classes.tolist() == [0, 1] and p.ignore.tolist() == [False, True]
    q, = read_voc(out, "val", ("shrimp", "crab"))
    np.testing.assert_allclose(q.boxes, [[1.5, 2, 4.5, 6]], atol=1e-4)


def test_voc_source(tmp_path, capsys):
    xml = ("<annotation><filename>x.jpg</filename><size><width>1</width><height>1</height></size>"
           "<object><name>helmet</name><difficult>1</difficult><bndbox><xmin>11</xmin><ymin>10</ymin>"
           "<xmax>30</xmax><ymax>21</ymax></bndbox></object>"
           "<object><name>head</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>7</ymax></bndbox>"
           "</object></annotation>")
    files = {"LICENSE": "CC0", "v/Annotations/x.xml": xml, "v/JPEGImages/x.jpg": jpeg(40, 30),
             "v/JPEGImages/y.jpg": jpeg(8, 8, seed=4)}
    git_dir, commit = git_repo(tmp_path / "src", files)
    source = {"name": "voc_tiny", "repository": "someone/voc", "commit": commit, "licence": "CC0-1.0",
              "licence_file": "LICENSE", "layout": "voc",
              "sources": [{"split": "all", "images": "v/JPEGImages", "annotations": "v/Annotations"}],
              "classes": ["helmet"], "class_map": {"head": None},
              "split": {"mode": "seeded", "seed": 3, "fractions": {"train": 0.5, "val": 0.0, "test": 0.5}}}
    folder = proxy_folder(tmp_path / "proxy", source, {"train": ["x"], "test": ["y"]})
    assert build(folder, git_dir, tmp_path / "built") == 0, capsys.readouterr().err
    x, = read_voc(tmp_path / "built", "train", ("helmet",))
    # 1-based inclusive corners: x1 = xmin - 1 = 10, y1 = 9, x2 = 30, y2 = 21; "head" mapped to null: dropped.
    np.testing.assert_allclose(x.boxes, [[10, 9, 30, 21]], atol=1e-4)
    assert x.ignore.tolist() == [True] and (x.width, x.height) == (40, 30)

    (tmp_path / "src" / "v" / "Annotations" / "x.xml").write_text(xml.replace("<xmax>30</xmax>", "<xmax>3O</xmax>"))
    env = dict(os.environ, **GIT_ENV)
    subprocess.run(["git", "commit", "-qam", "typo"], cwd=tmp_path / "src", env=env, check=True)
    new = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path / "src", capture_output=True, text=True,
                         check=True).stdout
    (folder / "source.yaml").write_text(yaml.safe_dump(dict(source, commit=new.strip())))
    assert build(folder, git_dir, tmp_path / "built") == 2
    assert one_line_error(capsys) == (f"{git_dir}@{new[:12]}:v/Annotations/x.xml: object[0] (helmet): "
                                      f"<bndbox/xmax> is '3O', not a number")
    assert (tmp_path / "built" / "Annotations" / "x.xml").is_file()  # the earlier build is untouched


# ---- split files --------------------------------------------------------------------------------

def test_write_splits_source_and_seeded(tmp_path, capsys):
    files = {"L": "x"}
    for i in range(20):
        split = "test" if i < 3 else "train"
        files[f"d/{split}/images/im{i:02d}.jpg"] = jpeg(8, 8, seed=i)
        files[f"d/{split}/labels/im{i:02d}.txt"] = "0 0.5 0.5 0.5 0.5\n"
    git_dir, commit = git_repo(tmp_path / "src", files)
    source = {"name": "s", "repository": "a/b", "commit": commit, "licence": "MIT", "licence_file": "L",
              "layout": "yolo", "source_classes": ["o"], "classes": ["o"],
              "sources": [{"split": s, "images": f"d/{s}/images", "annotations": f"d/{s}/labels"}
                          for s in ("train", "test")],
              "split": {"mode": "seeded", "seed": 7, "fractions": {"train": 0.7, "val": 0.15, "test": 0.15},
                        "keep_test": "test"}}
    folder = tmp_path / "proxy"
    folder.mkdir()
    (folder / "source.yaml").write_text(yaml.safe_dump(source))
    args = ["--proxy", str(folder), "--git", str(git_dir), "--write-splits"]
    assert make_proxy(args) == 0
    first = read_split_files(load_source(folder))
    # 20 images: test = round(0.15 * 20) = 3 = the source's own test split; val = 3; train the other 14.
    assert first["test"] == ["im00", "im01", "im02"]
    assert (len(first["train"]), len(first["val"])) == (14, 3)
    assert make_proxy(args) == 2  # never replaced
    assert "train.txt: already exists" in one_line_error(capsys)
    for split in SPLITS:
        (folder / f"{split}.txt").unlink()
    assert make_proxy(args) == 0
    assert read_split_files(load_source(folder)) == first  # the seed gives the same split
    assert not list(tmp_path.glob(".proxy.*"))  # the annotations' temporary copy beside the proxy folder is gone
    assert build(folder, git_dir, tmp_path / "built") == 0


def test_make_stem():
    assert make_stem("x/img-105_jpg.rf.3fe9dff3d1631e79ecb480ff403bcb86.jpg", "roboflow") == "img-105"
    assert make_stem("x/4ecafc9a0bae8003_jpg.rf.2UbsFgyK4QxCrSNix6wM.jpg", "roboflow") == "4ecafc9a0bae8003"
    assert make_stem("x/plain.name.png", "roboflow") == "plain.name"
    assert make_stem("x/img-105_jpg.rf.3fe.jpg", "file") == "img-105_jpg.rf.3fe"


# ---- the shipped proxies ------------------------------------------------------------------------

SHIPPED = sorted(p.parent for p in (ROOT / "configs" / "proxies").glob("*/source.yaml"))


def test_shipped_proxies_are_consistent():
    from detect.train.experiment import load_experiment

    assert len(SHIPPED) >= 3
    for folder in SHIPPED:
        source = load_source(folder)
        assert source.name == folder.name and len(source.classes) <= 5
        splits = read_split_files(source)
        stems = [s for split in SPLITS for s in splits[split]]
        assert len(stems) == len(set(stems)) == source.expect["images"], folder
        assert 100 <= len(stems) <= 700 and all(splits[split] for split in SPLITS)
        config = load_experiment(folder / "yolo.yaml")
        assert config.data.format == "voc" and config.data.root == f"data/proxies/{folder.name}"
        assert tuple(config.data.classes) == source.classes
        assert len(config.model.anchors) == 9
    readme = (ROOT / "configs" / "proxies" / "README.md").read_text()
    for folder in SHIPPED:
        assert load_source(folder).commit in readme
