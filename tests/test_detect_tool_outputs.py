"""``tools/detect.py`` never destroys data: inputs, name collisions, --json, interruptions.

A tiny YOLO overfits 8 shapes images (``yolo_run`` in conftest, shared with test_detector). Each
test compares against something built independently of the tool: sha256
of every input before and after, hand-written lists of the expected names
and ids, ``Detector.predict`` called here on the same pictures, frames
counted with ``cv2.VideoCapture``. Most cases run the tool's ``main`` in
this process (no TensorFlow start-up per case); the interruption tests run
it as a process, to send it real signals.
"""

import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from detect import Detector
from detect.inference.sources import expand_sources, plan_jobs
from detect.outputs import MARKER, InputIndex, JsonListFile, mark_folder

ROOT = Path(__file__).resolve().parents[1]
TOOL_PATH = ROOT / "tools/detect.py"
EXIT_INTERRUPTED = 130
# Frames of the video the interruption tests stop in the middle of.
VIDEO_FRAMES = 300


def load_tool():
    spec = importlib.util.spec_from_file_location("detect_tool", TOOL_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = load_tool()


def run_tool(capsys, *args):
    """``tools/detect.py ARGS`` in this process; (exit status, stdout, stderr)."""
    code = tool.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tree_hashes(folder):
    """{relative path: sha256} of every file under ``folder``."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def files_under(folder):
    """Relative posix paths of the files under ``folder`` (the marker aside)."""
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*")
                  if p.is_file() and p.name != MARKER)


def one_line(err):
    """The single non-empty line of ``err`` (fails if there are more)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def count_frames(path):
    import cv2

    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def assert_same_entries(got, want):
    """COCO results lists equal: ids and classes exactly, boxes and scores to float tolerance."""
    assert [(e["image_id"], e["category_id"]) for e in got] == [(e["image_id"], e["category_id"]) for e in want]
    if want:
        np.testing.assert_allclose([e["bbox"] for e in got], [e["bbox"] for e in want], atol=1e-3)
        np.testing.assert_allclose([e["score"] for e in got], [e["score"] for e in want], atol=1e-4)


@pytest.fixture(scope="module")
def pictures(yolo_run):
    """The 8 training images as [128, 128, 3] uint8 BGR arrays (every one holds objects)."""
    import cv2

    return [cv2.imread(str(r.image_path)) for r in yolo_run[1]]


@pytest.fixture(scope="module")
def detector(yolo_run):
    return Detector.load(yolo_run[0])


@pytest.fixture
def images(tmp_path, pictures):
    """A folder of 3 photos; (folder, {name: sha256} before)."""
    import cv2

    folder = tmp_path / "photos"
    folder.mkdir()
    for k, name in enumerate(["a.jpg", "b.jpg", "c.png"]):
        cv2.imwrite(str(folder / name), pictures[k])
    return folder, tree_hashes(folder)


def write_video(path, frames, fps=25):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


# ---- a decompression bomb among the inputs ----------------------------------------------

def test_a_png_bomb_in_a_folder_is_skipped_before_decoding(yolo_run, images, tmp_path, capsys):
    from test_detector_inputs import BOMB_SIDE, write_png_bomb

    folder, _ = images
    write_png_bomb(folder / "bomb.png", BOMB_SIDE)  # 1.2 GB of pixels, if it were decoded
    out = tmp_path / "out"
    code, stdout, err = run_tool(capsys, "--model", yolo_run[0], folder, "--out", out)
    assert code == 0 and stdout.startswith("3 images/frames")
    assert f"skipped: {folder / 'bomb.png'}: {BOMB_SIDE} x {BOMB_SIDE} pixels exceed the pixel budget" in err
    assert files_under(out) == ["a.jpg", "b.jpg", "c.png"]


# ---- inputs are never outputs ---------------------------------------------------------

@pytest.mark.parametrize("flags", [[], ["--exist-ok"]], ids=["plain", "exist-ok"])
def test_out_is_the_input_folder(yolo_run, images, capsys, flags):
    folder, before = images
    code, _, err = run_tool(capsys, "--model", yolo_run[0], folder, "--out", folder, *flags)
    assert tree_hashes(folder) == before  # byte-identical, and no marker or output added
    assert code == 2
    assert "holds an input of this command" in one_line(err)


@pytest.mark.parametrize("flags", [[], ["--exist-ok"]], ids=["plain", "exist-ok"])
def test_out_is_the_folder_of_the_input_video(yolo_run, pictures, tmp_path, capsys, flags):
    video = write_video(tmp_path / "clips" / "clip.mp4", [pictures[k % 8] for k in range(12)])
    before = tree_hashes(video.parent)
    code, _, err = run_tool(capsys, "--model", yolo_run[0], video, "--out", video.parent, *flags)
    assert tree_hashes(video.parent) == before
    assert count_frames(video) == 12
    assert code == 2
    assert "holds an input of this command" in one_line(err)


def test_an_output_linked_to_an_input_is_refused(yolo_run, images, tmp_path, capsys):
    """--out is this tool's folder (marker) holding a hard link to an input under an output's name."""
    folder, before = images
    out = tmp_path / "out"
    out.mkdir()
    mark_folder(out, "detect", "tools/detect.py")
    os.link(folder / "a.jpg", out / "a.jpg")
    code, _, err = run_tool(capsys, "--model", yolo_run[0], folder, "--out", out)
    assert tree_hashes(folder) == before
    assert code == 2
    assert "is an input of this command" in one_line(err)


def test_out_an_existing_file_is_one_line(yolo_run, images, tmp_path, capsys):
    folder, _ = images
    taken = tmp_path / "taken"
    taken.write_bytes(b"keep me")
    code, _, err = run_tool(capsys, "--model", yolo_run[0], folder, "--out", taken)
    assert code == 2
    assert one_line(err) == f"{taken}: --out is a file; it names a folder to write"
    assert taken.read_bytes() == b"keep me"


def test_unwritable_json_fails_before_any_image(yolo_run, images, tmp_path, capsys):
    """A --json path under a regular file (permissions mean nothing to root): one line, nothing written."""
    folder, _ = images
    (tmp_path / "plain").write_text("a file")
    code, out, err = run_tool(capsys, "--model", yolo_run[0], folder, "--out", tmp_path / "out",
                              "--json", tmp_path / "plain" / "dets.json")
    assert code == 2
    assert "--json: cannot write here" in one_line(err)
    assert not (tmp_path / "out").exists() and out == ""


# ---- distinct names ---------------------------------------------------------------------

def test_colliding_names_give_distinct_outputs_and_image_ids(yolo_run, pictures, detector, tmp_path, capsys):
    import cv2

    data = tmp_path / "data"
    sources = {"imgs/000001.jpg": pictures[0], "imgs2/000001.jpg": pictures[1], "imgs2/000001.png": pictures[2]}
    for name, picture in sources.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(data / name), picture)
    write_video(data / "vids" / "a.avi", [pictures[3]] * 2)
    write_video(data / "vids" / "a.mp4", [pictures[4]] * 3)
    out, dets = tmp_path / "out", tmp_path / "dets.json"
    code, stdout, err = run_tool(capsys, "--model", yolo_run[0], data / "imgs", data / "imgs2", data / "vids/a.avi",
                                 data / "vids/a.mp4", "--out", out, "--json", dets)
    assert code == 0, err
    assert "8 images/frames" in stdout
    assert files_under(out) == sorted(["imgs/000001.jpg", "imgs2/000001.jpg", "imgs2/000001.png",
                                       "vids/a.avi.mp4", "vids/a.mp4"])
    assert count_frames(out / "vids/a.avi.mp4") == 2 and count_frames(out / "vids/a.mp4") == 3
    for name, picture in sources.items():
        assert cv2.imread(str(out / name)).shape == picture.shape
    entries = json.loads(dets.read_text())
    ids = {"imgs/000001": "imgs/000001.jpg", "imgs2/000001.jpg": "imgs2/000001.jpg",
           "imgs2/000001.png": "imgs2/000001.png"}
    assert {e["image_id"] for e in entries} == set(ids) | {"vids/a.avi:0", "vids/a.avi:1", "vids/a.mp4:0",
                                                            "vids/a.mp4:1", "vids/a.mp4:2"}
    for image_id, name in ids.items():
        want = detector.predict(str(data / name)).to_coco(image_id)
        assert want, "every picture holds objects"
        assert_same_entries([e for e in entries if e["image_id"] == image_id], want)


def test_one_folder_twice_bare_names_stems_and_overwrite(yolo_run, images, tmp_path, capsys):
    """A single folder keeps bare names and file stems as ids (the VOC ids tools/eval.py --gt matches). Run
    again, --out is its own folder (allowed) but the --json file exists: refused until --overwrite."""
    folder, before = images
    out, dets = tmp_path / "out", tmp_path / "dets.json"
    code, _, err = run_tool(capsys, "--model", yolo_run[0], folder, "--out", out, "--json", dets)
    assert code == 0, err
    assert files_under(out) == ["a.jpg", "b.jpg", "c.png"]
    first = dets.read_text()
    assert {e["image_id"] for e in json.loads(first)} == {"a", "b", "c"}
    code, _, err = run_tool(capsys, "--model", yolo_run[0], folder, "--out", out, "--json", dets)
    assert code == 2 and "--overwrite" in one_line(err)
    assert dets.read_text() == first
    code, _, err = run_tool(capsys, "--model", yolo_run[0], folder, "--out", out, "--json", dets, "--overwrite")
    assert code == 0, err
    assert json.loads(dets.read_text()) == json.loads(first)
    assert tree_hashes(folder) == before


def test_names_and_ids_of_a_hostile_mix(tmp_path):
    """Suffix and case collisions, a format OpenCV cannot write, a frame-like name, a camera, a repeat."""
    names = ["imgs/000001.jpg", "imgs2/000001.jpg", "imgs2/000001.png", "v/a.avi", "v/a.mp4", "v/A.JPG",
             "v/a.jpg", "v/x.heic", "v/x.png", "v/clip:3.jpg", "v/clip.mp4", "camera0.jpg"]
    import cv2

    assert not cv2.haveImageWriter("x.heic"), "pick another format OpenCV cannot write"
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"not decoded here")
    sources = [tmp_path / "imgs", tmp_path / "imgs2", *(tmp_path / n for n in names[3:]), tmp_path / "imgs", "0"]
    items, problems = expand_sources([str(s) for s in sources])
    assert not problems
    got = [(job.kind, job.image_id, str(job.output)) for job in plan_jobs(items)]
    assert got == [
        ("image", "imgs/000001", "imgs/000001.jpg"),
        ("image", "imgs2/000001.jpg", "imgs2/000001.jpg"),
        ("image", "imgs2/000001.png", "imgs2/000001.png"),
        ("video", "v/a.avi", "v/a.avi.mp4"),  # a.mp4 keeps its own name
        ("video", "v/a.mp4", "v/a.mp4"),
        ("image", "v/A", "v/A.JPG"),
        ("image", "v/a.jpg", "v/a-2.jpg"),  # A.JPG and a.jpg are one file on a case-insensitive disk
        ("image", "v/x.heic", "v/x.heic.png"),  # OpenCV writes no HEIC; x.png is taken
        ("image", "v/x.png", "v/x.png"),
        ("image", "v/clip:3.jpg", "v/clip:3.jpg"),  # "v/clip:3" would be a frame of v/clip.mp4
        ("video", "v/clip", "v/clip.mp4"),
        ("image", "camera0.jpg", "camera0.jpg"),
        ("camera", "camera0", "camera0.mp4"),
    ]


# ---- interruptions ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def long_video(yolo_run, pictures, tmp_path_factory):
    """A video of VIDEO_FRAMES frames cycling through the training images; (path, reference).

    ``reference(n)``: the COCO entries of frames 0..n-1 from ``Detector.predict``
    on the frames as OpenCV decodes them, every frame holding detections.
    """
    import cv2

    path = write_video(tmp_path_factory.mktemp("video") / "clip.mp4",
                       [pictures[k % len(pictures)] for k in range(VIDEO_FRAMES)])
    detector = Detector.load(yolo_run[0])
    capture = cv2.VideoCapture(str(path))
    frames = []

    def reference(n):
        entries = []
        for k in range(n):
            while len(frames) <= k:
                ok, frame = capture.read()
                assert ok
                found = detector.predict(frame, bgr=True)
                assert len(found), "every frame holds objects"
                frames.append(found.to_coco(f"clip:{len(frames)}"))
            entries += frames[k]
        return entries

    return path, reference


def start_tool(args, tmp_path):
    """The tool as a process, stdout and stderr to files (a full pipe would block it)."""
    with open(tmp_path / "stdout.txt", "w") as stdout, open(tmp_path / "stderr.txt", "w") as stderr:
        return subprocess.Popen([sys.executable, str(TOOL_PATH), *(str(a) for a in args)],
                                stdout=stdout, stderr=stderr)


def frame_of(entry):
    return int(entry["image_id"].rsplit(":", 1)[1])


def wait_for_frames(process, dets, frames, also=lambda: True, timeout=120):
    """Polls ``dets`` until it holds ``frames`` frames (and ``also()``); it must parse at every look."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it was interrupted"
        if dets.exists():
            entries = json.loads(dets.read_text())  # a valid list at every moment
            assert isinstance(entries, list)
            if len({frame_of(e) for e in entries}) >= frames and also():
                return
        time.sleep(0.02)
    process.kill()
    pytest.fail("no progress")


# SIGTERM takes the same handler as SIGINT: the slow set only.
@pytest.mark.parametrize("stop", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
                         ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_finishes_the_frame_and_every_file(yolo_run, long_video, tmp_path, stop):
    """Ctrl-C (SIGINT) or SIGTERM mid-video: exit 130 and one line "after N images/frames"; the JSON holds
    exactly frames 0..N-1, equal to the reference; the MP4 has N frames; no journal or temporary is left."""
    video, reference = long_video
    out, dets = tmp_path / "out", tmp_path / "dets.json"
    process = start_tool(["--model", yolo_run[0], video, "--out", out, "--json", dets,
                          "--max-frames", VIDEO_FRAMES], tmp_path)
    wait_for_frames(process, dets, 5)
    process.send_signal(stop)
    assert process.wait(timeout=60) == EXIT_INTERRUPTED
    err = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1, err
    processed = int(re.search(r"after (\d+) images/frames", lines[0]).group(1))
    assert 5 <= processed < VIDEO_FRAMES
    entries = json.loads(dets.read_text())
    assert sorted({frame_of(e) for e in entries}) == list(range(processed))
    assert_same_entries(entries, reference(processed))
    assert count_frames(out / "clip.mp4") == processed
    assert files_under(out) == ["clip.mp4"]  # journal and temporary folder gone


def test_sigkill_leaves_a_valid_json_prefix_and_a_readable_video(yolo_run, long_video, tmp_path, capsys):
    """SIGKILL mid-video: the JSON parses and holds frames 0..k-1 for some k, equal to the reference;
    the Matroska journal beside the (unfinished) MP4 is readable by OpenCV."""
    video, reference = long_video
    out, dets = tmp_path / "out", tmp_path / "dets.json"
    journal = out / "clip.mp4.partial.mkv"
    process = start_tool(["--model", yolo_run[0], video, "--out", out, "--json", dets,
                          "--max-frames", VIDEO_FRAMES], tmp_path)
    # Past the writer's 32 KiB buffer, so frames have reached the journal.
    wait_for_frames(process, dets, 20, also=lambda: journal.exists() and journal.stat().st_size > 96 * 1024)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    entries = json.loads(dets.read_text())
    frames = sorted({frame_of(e) for e in entries})
    assert len(frames) >= 20 and frames == list(range(len(frames)))
    assert_same_entries(entries, reference(len(frames)))
    assert not (out / "clip.mp4").exists()
    assert 1 <= count_frames(journal) <= VIDEO_FRAMES
    # The next run into the same folder removes the killed run's temporary folder.
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".clip.mp4.tmp-")]
    assert leftovers
    short = write_video(tmp_path / "short" / "clip.mp4", [np.zeros((64, 64, 3), np.uint8)] * 2)
    code, _, err = run_tool(capsys, "--model", yolo_run[0], short, "--out", out)
    assert code == 0, err
    assert not [p.name for p in out.iterdir() if p.name.startswith(".clip.mp4.tmp-")]
    assert count_frames(out / "clip.mp4") == 2 and not journal.exists()


# ---- the helpers of detect.outputs --------------------------------------------------------

def test_json_list_file_is_valid_at_every_snapshot(tmp_path):
    path = tmp_path / "list.json"
    listing = JsonListFile(path, cost_ratio=0)  # a snapshot after every extend
    assert json.loads(path.read_text()) == []
    want = []
    for k in range(3):
        listing.extend([{"k": k}, {"k": -k}])
        want += [{"k": k}, {"k": -k}]
        assert json.loads(path.read_text()) == want
    listing.extend([])
    assert json.loads(path.read_text()) == want and len(listing) == 6
    lazy = JsonListFile(tmp_path / "lazy.json", cost_ratio=1e9)  # never due: only flush writes
    lazy.extend([{"a": 1}])
    assert json.loads((tmp_path / "lazy.json").read_text()) == []
    lazy.close()
    assert json.loads((tmp_path / "lazy.json").read_text()) == [{"a": 1}]
    with pytest.raises(ValueError):
        lazy.extend([{"fine": 1}, {"bad": float("nan")}])
    lazy.close()
    assert json.loads((tmp_path / "lazy.json").read_text()) == [{"a": 1}]


def test_input_index_sees_paths_and_links(tmp_path):
    source = tmp_path / "in.jpg"
    source.write_bytes(b"x")
    os.link(source, tmp_path / "hard.jpg")
    os.symlink(source, tmp_path / "soft.jpg")
    index = InputIndex([source])
    for same in (source, tmp_path / "hard.jpg", tmp_path / "soft.jpg", tmp_path / "sub" / ".." / "in.jpg"):
        with pytest.raises(ValueError, match="is an input"):
            index.check(same)
    index.check(tmp_path / "other.jpg")
    shutil.copy(source, tmp_path / "copy.jpg")
    index.check(tmp_path / "copy.jpg")
