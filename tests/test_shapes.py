"""The shapes dataset: determinism, exact boxes, formats, ensure_shapes, the tool."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from detect.data import SHAPES_CLASSES, ensure_shapes, make_shapes, read_coco, read_voc, read_yolo
from detect.data.shapes import (BACKGROUND, MARKER, MAX_HIDDEN, MAX_OBJECTS, MAX_SIZE, MIN_SIZE,
                                render_shapes_image)
from detect.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SEED, NUM, SIZE = 5, 20, 96


def tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def read_splits(fmt, root):
    """{file stem: record} over train and val."""
    out = {}
    for split in ("train", "val"):
        if fmt == "voc":
            records = read_voc(root, split, SHAPES_CLASSES)
        elif fmt == "coco":
            records = read_coco(root / "annotations" / f"instances_{split}.json")
        else:
            records = read_yolo(root, split)
        out.update({Path(r.image_path).stem: (split, r) for r in records})
    return out


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    base = tmp_path_factory.mktemp("shapes")
    return {fmt: make_shapes(base / fmt, fmt, NUM, SIZE, SEED) for fmt in ("voc", "coco", "yolo")}


def extent(mask):
    """Continuous-edge box of a mask, computed independently of the generator."""
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, datasets):
    again = make_shapes(tmp_path / "again", "voc", NUM, SIZE, SEED)
    assert tree_bytes(again) == tree_bytes(datasets["voc"])
    other = make_shapes(tmp_path / "other", "voc", 3, SIZE, SEED + 1)
    assert (other / "JPEGImages" / "000001.jpg").read_bytes() != \
        (again / "JPEGImages" / "000001.jpg").read_bytes()


def test_all_formats_read_back_the_same_boxes(datasets):
    voc, coco, yolo = (read_splits(fmt, datasets[fmt]) for fmt in ("voc", "coco", "yolo"))
    assert sorted(voc) == sorted(coco) == sorted(yolo) == [f"{n:06d}" for n in range(1, NUM + 1)]
    assert sum(split == "val" for split, _ in voc.values()) == round(NUM * 0.2)
    for stem, (split, r) in voc.items():
        for other in (coco, yolo):
            other_split, s = other[stem]
            assert other_split == split
            assert (s.height, s.width) == (r.height, r.width) == (SIZE, SIZE)
            assert s.class_names == r.class_names == SHAPES_CLASSES
            np.testing.assert_array_equal(s.classes, r.classes)
            np.testing.assert_allclose(s.boxes, r.boxes, atol=1e-3)  # YOLO: 8 digits
        # The files hold what the generator drew.
        np.testing.assert_array_equal(r.boxes, render_shapes_image(SEED, int(stem), SIZE).boxes)
    assert coco["000001"][1].image_id == 1 and yolo["000001"][1].image_id == "000001"


def test_boxes_are_the_extent_of_the_drawn_pixels(datasets):
    for stem, (_, record) in read_splits("voc", datasets["voc"]).items():
        n = int(stem)
        sample = render_shapes_image(SEED, n, SIZE)
        # The instance map is the drawing: every pixel of shape k has its colour, up to the noise.
        for k, colour in enumerate(sample.colours):
            pixels = sample.image[sample.instances == k].astype(int)
            assert np.abs(pixels - colour.astype(int)).max() <= 17
            assert extent(sample.instances == k) == record.boxes[k].tolist()
        # The JPEG on disk is that drawing: compression (4:2:0 chroma, and it smooths the
        # pixel noise) differs by a few levels, another drawing by tens.
        jpeg = cv2.imread(record.image_path).astype(int)
        assert np.abs(jpeg - sample.image).mean() < 12
        assert np.abs(jpeg - render_shapes_image(SEED, n + NUM, SIZE).image).mean() > 30


def test_counts_sizes_and_occlusion():
    samples = [render_shapes_image(0, n, 128) for n in range(1, 301)]
    counts = [len(s.classes) for s in samples]
    assert min(counts) >= 1 and max(counts) == MAX_OBJECTS
    assert set(np.concatenate([s.classes for s in samples]).tolist()) == {0, 1, 2}
    sides, overlapped = [], 0
    for s in samples:
        full_wh = s.full_boxes[:, 2:] - s.full_boxes[:, :2]
        sides.extend(full_wh.max(axis=1))
        # Visible boxes lie inside the whole shapes' boxes.
        assert np.all(s.boxes[:, :2] >= s.full_boxes[:, :2])
        assert np.all(s.boxes[:, 2:] <= s.full_boxes[:, 2:])
        assert np.all((s.boxes >= 0) & (s.boxes <= 128))
        visible = np.array([np.count_nonzero(s.instances == k) for k in range(len(s.classes))])
        assert np.all(visible >= (1 - MAX_HIDDEN) * s.areas)
        overlapped += int(np.any(visible < s.areas))
        assert np.count_nonzero(s.instances == BACKGROUND) + visible.sum() == 128 * 128
    sides = np.array(sides)
    assert sides.min() >= MIN_SIZE * 128 - 1 and sides.max() <= MAX_SIZE * 128 + 1
    assert sides.min() < 0.1 * 128 and sides.max() > 0.45 * 128  # the range is used
    assert overlapped > 30  # partial overlaps are common


def test_colour_does_not_tell_the_class():
    samples = [render_shapes_image(1, n, 64) for n in range(1, 201)]
    colours = np.concatenate([s.colours for s in samples]).astype(float)
    classes = np.concatenate([s.classes for s in samples])
    means = np.array([colours[classes == k].mean(axis=0) for k in range(3)])
    assert np.abs(means - means.mean(axis=0)).max() < 25  # uniform colours have sd ~74


def test_ensure_shapes(tmp_path):
    out = tmp_path / "data" / "shapes"
    assert ensure_shapes(out, "yolo", 5, 64, 1) == out
    marker = out / MARKER
    stamp = marker.stat().st_mtime_ns
    ensure_shapes(out, "yolo", 5, 64, 1)
    assert marker.stat().st_mtime_ns == stamp  # present: nothing regenerated
    ensure_shapes(out, "yolo", 7, 64, 1)  # other parameters: replaced
    assert len(read_yolo(out, "train")) + len(read_yolo(out, "val")) == 7
    assert sorted(p.name for p in out.parent.iterdir()) == ["shapes"]  # no temporary folders left
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="is not a shapes dataset"):
        ensure_shapes(foreign, "voc", 5, 64, 1)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_ensure_shapes_removes_temporaries_of_dead_processes(tmp_path):
    # A process that has exited (and been reaped): its pid names no process now.
    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                  text=True, check=True).stdout)
    live_pid = os.getppid()  # a concurrent generator's folder must survive
    out = tmp_path / "shapes"

    def leave(name):
        folder = tmp_path / name
        (folder / "JPEGImages").mkdir(parents=True)
        (folder / "JPEGImages" / "000001.jpg").write_bytes(b"half written")
        return folder

    stale = [leave(f".shapes.tmp-{dead_pid}"), leave(f".shapes.old-{dead_pid}")]
    kept = [leave(f".shapes.tmp-{live_pid}"), leave(f".other.tmp-{dead_pid}")]  # live, or another dataset's
    ensure_shapes(out, "voc", 5, 64, 1)
    assert not any(folder.exists() for folder in stale)
    assert all((folder / "JPEGImages" / "000001.jpg").read_bytes() == b"half written" for folder in kept)
    # Also when the dataset is already there and nothing is generated.
    stale = leave(f".shapes.tmp-{dead_pid}")
    ensure_shapes(out, "voc", 5, 64, 1)
    assert not stale.exists() and all(folder.exists() for folder in kept)


def test_make_shapes_tool(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "make_shapes.py"), "--out",
                             str(tmp_path / "c"), "--format", "coco", "--num", "4", "--size", "64",
                             "--seed", "2"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    records = read_coco(tmp_path / "c" / "annotations" / "instances_train.json")
    assert len(records) == 3 and Path(records[0].image_path).is_file()
    bad = subprocess.run([sys.executable, str(ROOT / "tools" / "make_shapes.py"), "--out",
                          str(tmp_path / "d"), "--size", "8"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--size must be at least 32" in bad.stderr
    # A folder that is not a shapes dataset is left alone (it was written into before).
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    refused = subprocess.run([sys.executable, str(ROOT / "tools" / "make_shapes.py"), "--out", str(mine),
                              "--num", "2", "--size", "64"], capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and "is not a shapes dataset" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"
