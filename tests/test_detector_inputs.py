"""What ``Detector`` accepts, and how it refuses the rest (issue #18, the Detector part).

A tiny randomly initialised YOLO is enough: these tests are about the
inputs, not the detections. References are independent of the code under
test: TensorFlow's own decoder for pixel values and image sizes, PIL for
sizes and frames, the child process's peak memory (``VmHWM``) for the
pixel budget.
"""

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from detect import Detector
from detect.data.imagesize import gif_frame_pixels, header_size
from detect.errors import InputError
from detect.inference import detector as detector_module
from detect.inference.images import read_image

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["circle", "square", "triangle"]
SIZE = 64
BOMB_SIDE = 20000  # 400 megapixels: 1.2 GB decoded as RGB, several times that in the graph
# A guard in the child, so that a broken budget fails the test instead of exhausting the machine.
CHILD_EXTRA_MEMORY = 3 << 30
# What reading a bomb's header may add to the child's peak memory (decoding it adds 1.2 GB).
BOMB_PEAK_INCREASE = 256 << 20
# The bound on the peak memory of a process that is handed the bomb.
PROCESS_PEAK = 1 << 30


def write_config(path, classes, model=None):
    config = {"name": "tiny", "data": {"format": "voc", "root": str(path.parent / "no_data"), "image_size": SIZE,
                                       "max_boxes": 8, "classes": list(classes)},
              "model": model or {"type": "yolo", "version": "v3", "backbone": "tiny", "head_width": 16},
              "train": {"batch_size": 2}}
    path.write_text(yaml.safe_dump(config))
    return path


def make_run(folder, classes=CLASSES, seed=0):
    """A run directory (config.yaml, best.weights.h5) of a tiny randomly initialised YOLO."""
    import keras

    folder.mkdir(parents=True)
    keras.utils.set_random_seed(seed)
    detector = Detector.from_config(write_config(folder / "config.yaml", classes))
    detector._backend.task.model.save_weights(str(folder / "best.weights.h5"))
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("inputs") / "run")


@pytest.fixture(scope="module")
def det(run):
    return Detector.load(run, batch_size=4)


def noise(seed, height, width):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# ---- the pixel budget -------------------------------------------------------------

def write_png_bomb(path, side):
    """A valid 1-bit grey PNG of side x side zeros (about 50 KB for 20000), built by streaming zlib."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte "none", then the packed row
    compressor = zlib.compressobj(9)
    idat = b"".join([compressor.compress(row) for _ in range(side)] + [compressor.flush()])

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, greyscale, deflate, no interlace
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


BOMB_CHILD = """
import json, resource, sys
import numpy as np
from detect import Detector

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

det = Detector.from_config(sys.argv[2])
det.predict(np.zeros((32, 32, 3), np.uint8))  # traced and warm: what remains is the bomb's own cost
base = status("VmHWM")
limit = status("VmData") + int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
try:
    det.predict(sys.argv[1])
    error = None
except Exception as e:
    error = f"{type(e).__name__}: {e}"
print(json.dumps({"error": error, "increase": status("VmHWM") - base, "peak": status("VmHWM")}))
"""


def test_png_bomb_is_refused_from_its_header_before_decoding(tmp_path, run):
    small = write_png_bomb(tmp_path / "small.png", 64)  # the same writer makes a PNG the decoder reads
    np.testing.assert_array_equal(read_image(small), np.zeros((64, 64, 3), np.uint8))
    bomb = write_png_bomb(tmp_path / "bomb.png", BOMB_SIDE)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(Image.DecompressionBombError):  # PIL's own guard agrees
        Image.open(bomb)
    done = subprocess.run([sys.executable, "-c", BOMB_CHILD, str(bomb), str(run / "config.yaml"),
                           str(CHILD_EXTRA_MEMORY)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["error"] is not None and out["error"].startswith("InputError: "), out
    assert f"bomb.png: {BOMB_SIDE} x {BOMB_SIDE} pixels exceed the pixel budget" in out["error"]
    assert out["increase"] < BOMB_PEAK_INCREASE, out
    assert out["peak"] < PROCESS_PEAK, out  # the whole process, TensorFlow and the model included


def test_arrays_pil_images_and_bytes_meet_the_budget(run, tmp_path):
    small = Detector.load(run, max_pixels=30 * 40)
    image = noise(0, 30, 40)
    assert small.predict(image).image_size == (30, 40)  # exactly the budget passes
    big = noise(1, 31, 40)
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), big)
    for source in (big, Image.fromarray(big), path.read_bytes(), str(path)):
        with pytest.raises(InputError, match="31 x 40 pixels exceed the pixel budget of 0.0012 megapixels"):
            small.predict(source)
    found = small.predict([image, big, str(path)], skip_bad=True)
    assert getattr(found[0], "error", None) is None and found[2].error is not None
    assert "pixel budget" in str(found[1].error)
    assert Detector.load(run, max_pixels=None).predict(big).image_size == (31, 40)
    with pytest.raises(InputError, match="max_pixels"):
        Detector.load(run, max_pixels=0)


def test_a_gif_counts_every_frame_that_the_decoder_decodes(run, tmp_path):
    frames = [Image.fromarray(noise(i, 30, 40)) for i in range(5)]
    frames[0].save(tmp_path / "one.gif")
    frames[0].save(tmp_path / "five.gif", save_all=True, append_images=frames[1:])
    with Image.open(tmp_path / "five.gif") as gif:  # PIL's count, the reference
        assert gif.n_frames == 5
    assert gif_frame_pixels((tmp_path / "five.gif").read_bytes()) == 5 * 30 * 40
    det = Detector.load(run, max_pixels=2 * 30 * 40)
    assert det.predict(str(tmp_path / "one.gif")).image_size == (30, 40)
    with pytest.raises(InputError, match=r"five.gif: 30 x 40 pixels \(0.006 megapixels in all its frames\)"):
        det.predict(str(tmp_path / "five.gif"))


@pytest.mark.parametrize("name, save", [
    ("png", lambda im, p: im.save(p, "PNG")),
    ("jpeg", lambda im, p: im.save(p, "JPEG")),
    ("progressive.jpeg", lambda im, p: im.save(p, "JPEG", progressive=True)),
    ("gif", lambda im, p: im.save(p, "GIF")),
    ("bmp", lambda im, p: im.save(p, "BMP")),
    ("lossy.webp", lambda im, p: im.save(p, "WEBP")),
    ("lossless.webp", lambda im, p: im.save(p, "WEBP", lossless=True)),
    ("alpha.webp", lambda im, p: im.convert("RGBA").save(p, "WEBP")),  # extended (VP8X)
])
def test_header_size_is_the_decoded_size(tmp_path, name, save):
    path = tmp_path / f"image.{name}"
    save(Image.fromarray(noise(0, 37, 53)), path)
    assert header_size(path.read_bytes()) == (37, 53) == read_image(path).shape[:2]  # TensorFlow's decoder
    with open(path, "rb") as f:
        assert header_size(f) == (37, 53)
    assert header_size(b"not an image at all, no") is None


# ---- files are decoded one batch at a time ---------------------------------------------

def test_a_list_of_files_is_decoded_batch_by_batch_in_input_order(det, tmp_path, monkeypatch):
    items = []
    for i in range(11):  # two sizes, interleaved, and a broken file among them
        height, width = (40, 30) if i % 3 else (30, 50)
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), noise(i, height, width))
        items.append(str(path))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    items.insert(5, str(tmp_path / "broken.png"))
    alone = [det.predict(item, score_threshold=0.01) for item in items if "broken" not in item]

    events = []
    real_read, real_run = detector_module.read_image, det._backend.run

    def read(source, **kwargs):
        events.append("decode")
        return real_read(source, **kwargs)

    def run(images, *options):
        events.append(("run", len(images)))
        return real_run(images, *options)

    monkeypatch.setattr(detector_module, "read_image", read)
    monkeypatch.setattr(det._backend, "run", run)
    found = det.predict(items, score_threshold=0.01, skip_bad=True)

    held = peak = 0  # images decoded and not yet run
    for event in events:
        held = held + 1 if event == "decode" else held - event[1]
        peak = max(peak, held)
    assert peak <= det.batch_size + 1, events  # a batch, and the broken file that never decodes
    assert events.index(("run", det.batch_size)) < len(events) - events[::-1].index("decode") - 1
    assert "cannot be decoded" in str(found[5].error) and len(found[5]) == 0
    good = [f for f in found if getattr(f, "error", None) is None]
    assert [f.source for f in good] == [item for item in items if "broken" not in item]
    for got, want in zip(good, alone):
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-4)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
    with pytest.raises(InputError, match="broken.png: cannot be decoded"):
        det.predict(items)


# ---- PIL images ---------------------------------------------------------------------

def test_16_bit_pil_images_give_the_pixels_of_their_file(det, tmp_path):
    values = (np.arange(SIZE * SIZE, dtype=np.uint32).reshape(SIZE, SIZE) * 16 + 7).astype(np.uint16)
    path = tmp_path / "grey16.png"
    cv2.imwrite(str(path), values)
    by_path = read_image(path)  # TensorFlow's PNG decoder
    # libpng's png_set_strip_16 keeps the high byte; the reference is independent of our code.
    np.testing.assert_array_equal(by_path, np.repeat((values >> 8).astype(np.uint8)[..., None], 3, axis=2))
    with Image.open(path) as pil:
        assert pil.mode.startswith("I;16")
        np.testing.assert_array_equal(read_image(pil), by_path)
        np.testing.assert_array_equal(det.predict(pil, score_threshold=0.01).boxes,
                                      det.predict(str(path), score_threshold=0.01).boxes)
    as_int32 = Image.fromarray(values.astype(np.int32))
    assert as_int32.mode == "I"
    np.testing.assert_array_equal(read_image(as_int32), by_path)
    with pytest.raises(InputError, match=r"mode I\) in 70000\.\.70000, beyond the 16-bit range"):
        det.predict(Image.fromarray(np.full((8, 8), 70000, np.int32)))


def test_float_pil_images_are_refused_not_turned_black(det):
    with pytest.raises(InputError, match=r"32-bit float pixels \(mode F\)"):
        det.predict(Image.fromarray(np.full((8, 8), 0.8, np.float32)))
    found = det.predict([noise(0, 8, 8), Image.fromarray(np.full((8, 8), 0.8, np.float32))], skip_bad=True)
    assert getattr(found[0], "error", None) is None and "mode F" in str(found[1].error)


# ---- options ------------------------------------------------------------------------

def test_numpy_class_ids_are_accepted_and_other_types_refused(det):
    one = det.resolve_options(classes=1)[3]
    np.testing.assert_array_equal(one, [0, 1, 0])
    for same in (np.int64(1), np.int32(1), [np.int64(1)], np.array([1]), np.array(1), "square"):
        np.testing.assert_array_equal(det.resolve_options(classes=same)[3], one)
    for bad in (True, 1.0, np.float32(1), [1.5], np.bool_(True)):
        with pytest.raises(InputError, match="neither a class name nor an integer class id"):
            det.resolve_options(classes=bad)
    image = noise(0, 16, 16)
    np.testing.assert_array_equal(det.predict(image, score_threshold=0.01, classes=np.int64(1)).boxes,
                                  det.predict(image, score_threshold=0.01, classes=1).boxes)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_detections": 2.7}, r"max_detections: 2.7 is not a whole number >= 1"),
    ({"max_detections": 0}, r"max_detections: 0 is not a whole number >= 1"),
    ({"max_detections": True}, r"max_detections: True"),
    ({"score_threshold": float("nan")}, r"score_threshold: nan is not a number in \[0, 1\]"),
    ({"score_threshold": "0.5"}, r"score_threshold: '0.5' is not a number"),
    ({"iou_threshold": -1}, r"iou_threshold: -1 is not a number in \[0, 1\]"),
])
def test_options_are_refused_rather_than_truncated(det, kwargs, message):
    with pytest.raises(InputError, match=message):
        det.resolve_options(**kwargs)


def test_whole_float_max_detections_is_that_count(det):
    assert det.resolve_options(max_detections=3.0)[2] == 3
    assert det.resolve_options(max_detections=np.int64(3))[2] == 3


# ---- broken model files -------------------------------------------------------------

def test_truncated_or_empty_weights_are_one_line_naming_the_file(run, tmp_path):
    data = (run / "best.weights.h5").read_bytes()
    for name, content in (("empty", b""), ("truncated", data[:len(data) // 2])):
        broken = tmp_path / name
        broken.mkdir()
        (broken / "config.yaml").write_text((run / "config.yaml").read_text())
        (broken / "best.weights.h5").write_bytes(content)
        with pytest.raises(InputError) as caught:
            Detector.load(broken)
        assert str(caught.value).startswith(f"{broken / 'best.weights.h5'}: not a readable weights file")
        assert "\n" not in str(caught.value)


def test_weights_of_another_class_count_are_one_line(run, tmp_path):
    other = tmp_path / "four"
    other.mkdir()
    write_config(other / "config.yaml", CLASSES + ["star"])
    (other / "best.weights.h5").write_bytes((run / "best.weights.h5").read_bytes())
    with pytest.raises(InputError) as caught:
        Detector.load(other)
    message = str(caught.value)
    assert message.startswith(f"{other / 'best.weights.h5'}: the weights hold 3 classes, the config 4 (")
    assert "\n" not in message and len(message) < 400
    four = make_run(tmp_path / "four_run", CLASSES + ["star"])
    with pytest.raises(InputError, match="the weights hold 4 classes, the config 3"):
        Detector.load(four / "best.weights.h5", config=run / "config.yaml")


def test_faster_rcnn_without_anchors_is_a_config_error(tmp_path):
    for key in ("anchor_scales", "anchor_ratios"):
        config = write_config(tmp_path / f"{key}.yaml", CLASSES, {"type": "faster_rcnn", "backbone": "tiny",
                                                                  "feature_level": "C3", key: []})
        with pytest.raises(InputError, match=f"{key}.yaml: model.{key} needs at least one value, got \\[\\]"):
            Detector.from_config(config)
