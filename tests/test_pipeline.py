import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from detect.data.augment import AugmentConfig
from detect.data.bad_input import SkipCounter, pipeline_stats
from detect.data.pipeline import RESIZE_MODES, build_dataset, distribute_dataset, min_side_schedule, multiscale_schedule
from detect.data.records import Record
from detect.data.transforms import unmap_boxes
from detect.ops import PAD_CLASS
from test_augment import COLOURS, GEOMETRIC, RECTS, check_boxes_match_pixels, rectangles_image

ROOT = Path(__file__).resolve().parents[1]
BCCD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "BCCD"
CLASSES = ("red", "green", "blue", "yellow")
SIZES = [(200, 300), (120, 90), (333, 250), (64, 64), (150, 400)]


def random_boxes(rng, n, height, width):
    xy = rng.uniform(0, 0.8, (n, 2)) * [width, height]
    wh = rng.uniform(0.05, 1, (n, 2)) * ([width, height] - xy)
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def record(path, image, boxes, classes=None, ignore=None, image_id=None):
    """Writes an RGB image (the pipeline decodes to RGB; OpenCV writes BGR) and its Record."""
    cv2.imwrite(str(path), image[..., ::-1])
    n = len(boxes)
    return Record(image_id or Path(path).stem, image.shape[0], image.shape[1], boxes,
                  np.arange(n) % len(CLASSES) if classes is None else classes,
                  np.arange(n) % 3 == 0 if ignore is None else ignore, CLASSES, image_path=str(path))


@pytest.fixture
def records(tmp_path):
    rng = np.random.default_rng(0)
    out = []
    for i, (h, w) in enumerate(SIZES):
        image = rng.integers(0, 255, (h, w, 3), np.uint8)
        out.append(record(tmp_path / f"img{i}.png", image, random_boxes(rng, i + 1, h, w)))
    return out


def unbatch(ds):
    """Per-image dicts of numpy values, boxes cut to num_boxes."""
    for batch in ds:
        batch = {k: v.numpy() for k, v in batch.items()}
        for i in range(len(batch["num_boxes"])):
            n = batch["num_boxes"][i]
            yield {"image_id": batch["image_id"][i].decode(), "image": batch["image"][i],
                   "boxes": batch["boxes"][i, :n], "classes": batch["classes"][i, :n],
                   "ignore": batch["ignore"][i, :n], "transform": batch["transform"][i],
                   "original_size": batch["original_size"][i], "all": {k: v[i] for k, v in batch.items()}}


@pytest.mark.parametrize("kwargs", [
    dict(image_size=128),
    dict(resize="shortest_side", min_side=100, max_side=160),
    dict(image_size=128, multiscale_sizes=[96, 128, 160], multiscale_every=1),
])
def test_round_trip_without_augmentation(records, kwargs):
    ds = build_dataset(records, training=False, batch_size=2, max_boxes=8, deterministic=True, **kwargs)
    seen = {x["image_id"]: x for x in unbatch(ds)}
    assert sorted(seen) == sorted(r.image_id for r in records)
    for r in records:
        x = seen[r.image_id]
        np.testing.assert_allclose(unmap_boxes(x["boxes"], x["transform"]), r.boxes, atol=1e-3)
        np.testing.assert_array_equal(x["classes"], r.classes)
        np.testing.assert_array_equal(x["ignore"], r.ignore)
        np.testing.assert_array_equal(x["original_size"], [r.height, r.width])
        assert 0.0 <= x["image"].min() and x["image"].max() <= 1.0


def test_batch_layout_and_padding(records):
    ds = build_dataset(records, training=False, batch_size=5, image_size=96, max_boxes=6)
    batch = next(iter(ds))
    expected = {"image": ([5, 96, 96, 3], tf.float32), "image_hw": ([5, 2], tf.int32),
                "boxes": ([5, 6, 4], tf.float32),
                "classes": ([5, 6], tf.int32), "ignore": ([5, 6], tf.bool), "num_boxes": ([5], tf.int32),
                "image_id": ([5], tf.string), "transform": ([5, 4], tf.float32),
                "original_size": ([5, 2], tf.int32)}
    assert {k: (v.shape.as_list(), v.dtype) for k, v in batch.items()} == expected
    assert (batch["image_hw"].numpy() == 96).all()  # letterbox: the whole square is input
    for x in unbatch([batch]):
        n = len(x["classes"])
        assert (x["all"]["classes"][n:] == PAD_CLASS).all() and (x["all"]["classes"][:n] >= 0).all()
        assert (x["all"]["boxes"][n:] == 0).all() and not x["all"]["ignore"][n:].any()


def test_more_boxes_than_max_are_dropped_counted_and_named(tmp_path, caplog):
    rng = np.random.default_rng(1)
    r = record(tmp_path / "crowded.png", np.zeros((50, 60, 3), np.uint8), random_boxes(rng, 7, 50, 60))
    counter = SkipCounter()
    with caplog.at_level(logging.WARNING, logger="detect.data.pipeline"):
        (x,) = unbatch(build_dataset([r], training=False, batch_size=1, max_boxes=5, counter=counter))
    assert len(x["boxes"]) == 5
    np.testing.assert_allclose(unmap_boxes(x["boxes"], x["transform"]), r.boxes[:5], atol=1e-3)
    assert counter.as_dict()["truncated_boxes"] == 2 and counter.as_dict()["truncated_images"] == 1
    assert any("crowded.png" in m and "max_boxes" in m for m in caplog.messages)


def test_out_of_bounds_boxes_clipped_and_degenerate_dropped(tmp_path):
    boxes = [[-10, -5, 50, 40], [10, 10, 10, 20], [500, 500, 600, 600], [5, 6, 7, 8]]
    r = record(tmp_path / "edge.png", np.zeros((50, 60, 3), np.uint8), boxes, classes=[0, 1, 2, 3],
               ignore=[False] * 4)
    counter = SkipCounter()
    (x,) = unbatch(build_dataset([r], training=False, batch_size=1, counter=counter))
    np.testing.assert_allclose(unmap_boxes(x["boxes"], x["transform"]), [[0, 0, 50, 40], [5, 6, 7, 8]],
                               atol=1e-3)
    np.testing.assert_array_equal(x["classes"], [0, 3])
    assert counter.as_dict()["clipped_boxes"] == 1 and counter.as_dict()["degenerate_boxes"] == 2


@pytest.fixture
def bad_images(tmp_path, records):
    good = Path(records[0].image_path)
    jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))[1].tobytes()
    (tmp_path / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (tmp_path / "garbage.jpg").write_bytes(b"this is not an image" * 10)

    def like(name):
        return Record(Path(name).stem, 64, 64, [[1, 2, 30, 40]], [1], [False], CLASSES,
                      image_path=str(tmp_path / name))

    bad = [like("truncated.jpg"), like("garbage.jpg"), like("missing.jpg")]
    broken = [Record("nan_box", 64, 64, [[1, float("nan"), 30, 40]], [0], [False], CLASSES,
                     image_path=str(good)),
              Record("neg_class", 64, 64, [[1, 2, 30, 40]], [-3], [False], CLASSES, image_path=str(good))]
    return records, bad, broken


def test_bad_images_and_annotations_are_skipped_named_and_counted(bad_images, caplog):
    records, bad, broken = bad_images
    counter = SkipCounter()
    source = [bad[0], records[0], bad[1], broken[0], records[1], bad[2], broken[1]]
    with caplog.at_level(logging.WARNING, logger="detect.data.pipeline"):
        ids = [x["image_id"] for x in unbatch(build_dataset(source, training=False, batch_size=2,
                                                              deterministic=True, counter=counter))]
    assert ids == [records[0].image_id, records[1].image_id]
    stats = counter.as_dict()
    assert counter.num_skipped == 5 and len(stats["skipped"]) == 3  # unreadable, undecodable, annotation
    for r, reason in zip(bad, ["cannot decode", "cannot decode", "cannot read"]):
        assert any(r.image_path in m and reason in m for m in caplog.messages), r.image_path
    assert sum("broken annotation" in m for m in caplog.messages) == 2
    assert "5 images skipped" in counter.summary() and "truncated.jpg" in counter.summary()
    counter.reset()
    assert counter.num_skipped == 0


@pytest.mark.parametrize("which", ["garbage", "missing", "nan_box"])
def test_strict_mode_raises_naming_the_file(bad_images, which):
    records, bad, broken = bad_images
    culprit = {"garbage": bad[1], "missing": bad[2], "nan_box": broken[0]}[which]
    ds = build_dataset([records[0], culprit, records[1]], training=False, batch_size=1, strict=True,
                       counter=SkipCounter())
    with pytest.raises(tf.errors.OpError, match=culprit.image_path):
        for _ in ds:
            pass


def gradient_jpeg(height=96, width=64):
    """A baseline JPEG whose every row differs from mid-grey, and its full decode (RGB)."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 3, y * 2, (x + y) % 100], -1).astype(np.uint8)
    data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    return data, tf.io.decode_jpeg(data, channels=3).numpy()


def test_truncated_jpeg_is_repaired_when_enough_decodes(tmp_path, caplog):
    data, full = gradient_jpeg()
    usable, hopeless = tmp_path / "usable.jpg", tmp_path / "hopeless.jpg"
    usable.write_bytes(data[: int(len(data) * 0.8)])
    hopeless.write_bytes(data[: int(len(data) * 0.3)])  # headers and a few rows: below MIN_DECODED_FRACTION
    with pytest.raises(tf.errors.InvalidArgumentError):  # what the pipeline used to drop as corrupt
        tf.io.decode_jpeg(usable.read_bytes())
    records = [Record(p.stem, 96, 64, [[1, 2, 30, 40]], [1], [False], CLASSES, image_path=str(p))
               for p in (usable, hopeless)]
    counter = SkipCounter()
    with caplog.at_level(logging.WARNING, logger="detect.data.pipeline"):
        seen = list(unbatch(build_dataset(records, training=False, batch_size=1, image_size=96,
                                          deterministic=True, counter=counter)))
    assert [x["image_id"] for x in seen] == ["usable"]
    stats = counter.as_dict()
    assert stats["repaired_names"] == [str(usable)] and counter.num_repaired == 1
    assert stats["skipped_names"] == [str(hopeless)] and counter.num_skipped == 1
    assert "1 repaired" in counter.summary() and "usable.jpg" in counter.summary()
    message = next(m for m in caplog.messages if str(usable) in m)
    assert "truncated JPEG" in message and "% of the rows decode" in message
    # The rows above the run of grey are the image's own rows (an independent decode of the
    # whole file), except the one row of 16x16 blocks where the data stops, which is partly
    # grey; letterbox of 96x64 into 96 keeps the scale at 1.
    image = np.round(seen[0]["image"] * 255).astype(int)[:, 16:80]
    decoded = int(message.split("(")[-1].split("%")[0]) * 96 // 100
    assert 48 <= decoded < 96
    np.testing.assert_allclose(image[: decoded - 18], full[: decoded - 18], atol=12)
    assert (image[decoded + 1:] == 128).all() and not (image[decoded - 2] == 128).all()


def test_strict_refuses_a_repaired_image_and_input_errors_gives_one_line(tmp_path, records):
    from detect.data.bad_input import input_errors
    from detect.errors import InputError

    data, _ = gradient_jpeg()
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(data[: int(len(data) * 0.8)])
    culprit = Record("cut", 96, 64, [[1, 2, 30, 40]], [1], [False], CLASSES, image_path=str(truncated))
    counter = SkipCounter()
    ds = build_dataset([records[0], culprit], training=False, batch_size=1, strict=True, counter=counter)
    with pytest.raises(InputError) as caught:
        with input_errors(counter):
            for _ in ds:
                pass
    assert caught.value.source == str(truncated) and "data.strict" in caught.value.message
    assert "\n" not in str(caught.value)


def example(image_bytes, image_id, boxes, classes):
    def feature(kind, values):
        return tf.train.Feature(**{kind: {"bytes_list": tf.train.BytesList, "float_list": tf.train.FloatList,
                                         "int64_list": tf.train.Int64List}[kind](value=values)})

    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": feature("bytes_list", [image_bytes]), "image/id": feature("bytes_list", [image_id]),
        "image/height": feature("int64_list", [64]), "image/width": feature("int64_list", [64]),
        "boxes": feature("float_list", boxes), "classes": feature("int64_list", classes),
        "ignore": feature("int64_list", [0] * len(classes)),
        "class_names": feature("bytes_list", [c.encode() for c in CLASSES])})).SerializeToString()


def test_tfrecord_source_round_trip_and_bad_examples(records, tmp_path, caplog):
    from detect.data.tfrecord import write_tfrecords

    write_tfrecords(records, tmp_path / "shards", num_shards=2)
    png = cv2.imencode(".png", np.zeros((64, 64, 3), np.uint8))[1].tobytes()
    bad_file = tmp_path / "bad.tfrecord"
    with tf.io.TFRecordWriter(str(bad_file)) as writer:
        writer.write(example(b"not an image", b"corrupt_image", [1, 2, 3, 4], [0]))
        writer.write(example(png, b"five_coordinates", [1, 2, 3, 4, 5], [0]))
        writer.write(example(png, b"fine", [1, 2, 30, 40], [2]))
    counter = SkipCounter()
    with caplog.at_level(logging.WARNING, logger="detect.data.pipeline"):
        seen = {x["image_id"]: x for x in unbatch(build_dataset(
            [str(tmp_path / "shards"), str(bad_file)], training=False, batch_size=3, image_size=128,
            deterministic=True, counter=counter))}
    assert sorted(seen) == sorted([r.image_id for r in records] + ["fine"])
    for r in records:
        np.testing.assert_allclose(unmap_boxes(seen[r.image_id]["boxes"], seen[r.image_id]["transform"]), r.boxes,
                                   atol=1e-3)
    assert counter.num_skipped == 2
    assert any(f"{bad_file}[corrupt_image]" in m for m in caplog.messages)
    assert any(f"{bad_file}[record 1]" in m for m in caplog.messages)


@pytest.mark.parametrize("kwargs", [dict(image_size=160), dict(resize="shortest_side", min_side=120, max_side=200),
                                    dict(resize="shortest_side", min_side=120, max_side=200, min_sides=(96, 160))])
def test_augmented_pipeline_keeps_boxes_on_their_pixels(tmp_path, kwargs):
    image = rectangles_image()
    recs = [record(tmp_path / f"rect{i}.png", image, RECTS, classes=np.arange(4), ignore=[False] * 4,
                   image_id=f"rect{i}") for i in range(8)]
    ds = build_dataset(recs, training=True, batch_size=4, augment=GEOMETRIC, seed=1, **kwargs)
    n = 0
    for _ in range(2):
        for x in unbatch(ds):
            pixels = np.round(x["image"] * 255).astype(np.uint8)
            check_boxes_match_pixels(pixels, x["boxes"], x["classes"], tolerance=2.0)
            n += len(x["boxes"])
            h, w = x["all"]["image_hw"]
            if "resize" in kwargs:  # the batch's extent, rounded up to the default divisor 32; zeros beyond
                assert x["image"].shape[0] % 32 == 0 and x["image"].shape[1] % 32 == 0
                assert (x["image"][h:] == 0).all() and (x["image"][:, w:] == 0).all()
            else:
                assert (h, w) == (160, 160)
    assert n > 16 * 2 and len(COLOURS) == 4


def test_deterministic_mode_repeats_and_epochs_differ(records):
    def build():
        return build_dataset(records * 2, training=True, batch_size=2, image_size=96, augment=AugmentConfig(),
                             seed=3, deterministic=True)

    def epoch(ds):
        return [{k: v.numpy() for k, v in b.items()} for b in ds]

    first = build()
    a, a2, b = epoch(first), epoch(first), epoch(build())
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert any(not np.array_equal(x["image"], y["image"]) for x, y in zip(a, a2))


def test_multiscale_sizes_change_every_n_batches_deterministically(records):
    sizes, every = [64, 96, 128, 160], 3

    def observed(seed):
        ds = build_dataset(records * 3, training=True, batch_size=1, image_size=128, multiscale_sizes=sizes,
                           multiscale_every=every, seed=seed)
        epochs = [[(int(b["image"].shape[1]), b["image_hw"].numpy().tolist()) for b in ds] for _ in range(2)]
        assert all(hw == [[size, size]] for epoch in epochs for size, hw in epoch)  # image_hw follows the size
        return [[size for size, _ in epoch] for epoch in epochs]

    (first, second) = observed(5)
    assert first == multiscale_schedule(15, sizes, every, 5) and [first, second] == observed(5)
    for got in (first, second):
        assert all(len(set(got[i:i + every])) == 1 for i in range(0, 15, every))
        assert set(got) <= set(sizes)
    assert first != second  # a fresh sequence each epoch
    assert len(set(multiscale_schedule(60, sizes, every, 5))) > 1
    assert multiscale_schedule(60, sizes, every, 5) != multiscale_schedule(60, sizes, every, 6)


def test_training_shuffle_is_seeded(records):
    def order(seed):
        ds = build_dataset(records * 4, training=True, batch_size=4, image_size=64, seed=seed,
                           deterministic=True)
        return [x["image_id"] for x in unbatch(ds)]

    assert order(1) == order(1) and order(1) != order(2)


def test_cache(records, tmp_path):
    ds = build_dataset(records, training=False, batch_size=2, image_size=64, cache=True, deterministic=True)
    first, second = list(unbatch(ds)), list(unbatch(ds))
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x["image"], y["image"])
    # Training with a file cache: every image in every epoch, in a fresh order each epoch.
    ds = build_dataset(records * 2, training=True, batch_size=1, image_size=64, cache=str(tmp_path / "cache"),
                       augment=AugmentConfig(), deterministic=True)
    epochs = [[x["image_id"] for x in unbatch(ds)] for _ in range(3)]
    assert all(sorted(e) == sorted(r.image_id for r in records * 2) for e in epochs)
    assert len({tuple(e) for e in epochs}) > 1


# Shortest side with min_side 64, max_side 160, worked out by hand: (height, width) -> resized.
#   96 x 160 (3:5, a 600 x 1000 shape): scale min(64/96, 160/160) = 2/3 -> 64 x 106.67, rounded 64 x 107
#   40 x 50: scale min(64/40, 160/50) = 1.6 -> 64 x 80
#   120 x 48: scale min(64/48, 160/120) = 4/3 -> 160 x 64
SHORTEST_SIDE_CASES = [((96, 160), (64, 107)), ((40, 50), (64, 80)), ((120, 48), (160, 64))]


@pytest.fixture
def shortest_side_records(tmp_path):
    rng = np.random.default_rng(2)
    out = []
    for i, ((h, w), _) in enumerate(SHORTEST_SIDE_CASES):
        image = rng.integers(50, 200, (h, w, 3), np.uint8)  # never 0, so the padding stands out
        out.append(record(tmp_path / f"s{i}.png", image, random_boxes(rng, 3, h, w), image_id=f"s{i}"))
    return out


def test_shortest_side_batches_are_padded_to_their_own_extent(shortest_side_records):
    recs = shortest_side_records
    kwargs = dict(training=False, max_boxes=4, resize="shortest_side", min_side=64, max_side=160, size_divisor=32,
                  deterministic=True)
    ds = build_dataset(recs, batch_size=2, **kwargs)
    # Each batch its own largest height and width, rounded up to 32, not a max_side (160) square:
    # [64 x 107, 64 x 80] -> 64 x 128; [160 x 64] -> 160 x 64.
    assert [tuple(b["image"].shape) for b in ds] == [(2, 64, 128, 3), (1, 160, 64, 3)]
    seen = list(unbatch(ds))
    assert [x["image_id"] for x in seen] == ["s0", "s1", "s2"]
    for r, ((height, width), (h, w)), x in zip(recs, SHORTEST_SIDE_CASES, seen):
        assert x["all"]["image_hw"].dtype == np.int32
        np.testing.assert_array_equal(x["all"]["image_hw"], [h, w])
        np.testing.assert_array_equal(x["original_size"], [height, width])
        image = x["image"]
        assert (image[h:] == 0).all() and (image[:, w:] == 0).all()  # padding
        assert image[:h, :w].min() > 40 / 255  # the image fills its corner
        source = cv2.imread(r.image_path)[..., ::-1]
        assert np.abs(image[:h, :w] * 255 - cv2.resize(source, (w, h), interpolation=cv2.INTER_LINEAR)).mean() < 2
        # Boxes: scaled by the realised per-axis factors, no offset; and back to the originals.
        sx, sy = w / width, h / height
        np.testing.assert_allclose(x["transform"], [sy, sx, 0, 0], rtol=1e-6)
        np.testing.assert_allclose(x["boxes"], r.boxes * np.array([sx, sy, sx, sy], np.float32), atol=1e-3)
        np.testing.assert_allclose(unmap_boxes(x["boxes"], x["transform"]), r.boxes, atol=1e-3)
    # drop_remainder and cache keep working with variable sizes.
    assert [tuple(b["image"].shape) for b in build_dataset(recs, batch_size=2, drop_remainder=True, **kwargs)] \
        == [(2, 64, 128, 3)]
    cached = build_dataset(recs, batch_size=3, cache=True, **kwargs)
    first, second = [b["image"].numpy() for b in cached], [b["image"].numpy() for b in cached]
    assert first[0].shape == (3, 160, 128, 3)
    np.testing.assert_array_equal(first[0], second[0])
    # Divisor 1: exactly the largest extent.
    assert next(iter(build_dataset(recs, batch_size=3, **dict(kwargs, size_divisor=1))))["image"].shape \
        == (3, 160, 107, 3)


def test_shortest_side_multiscale_picks_min_sides_per_image_by_seed(tmp_path):
    sides = (32, 64, 96)
    image = np.full((40, 40, 3), 100, np.uint8)  # square: the resized image is pick x pick
    recs = [record(tmp_path / f"sq{i}.png", image, [[4, 8, 30, 36]], classes=[1], ignore=[False],
                   image_id=f"sq{i:02d}") for i in range(12)]

    def observed(seed, epochs=1):
        ds = build_dataset(recs, training=False, batch_size=4, resize="shortest_side", min_side=64, max_side=128,
                           min_sides=sides, seed=seed, deterministic=True)
        out = []
        for _ in range(epochs):
            picks = []
            for batch in ds:
                hw = batch["image_hw"].numpy()
                assert (hw[:, 0] == hw[:, 1]).all()
                assert batch["image"].shape[1:3] == (hw.max(), hw.max())  # picks are multiples of 32 already
                for x in unbatch([batch]):
                    scale = x["all"]["image_hw"][0] / 40
                    np.testing.assert_allclose(x["transform"], [scale, scale, 0, 0], rtol=1e-6)
                    np.testing.assert_allclose(unmap_boxes(x["boxes"], x["transform"]), [[4, 8, 30, 36]], atol=1e-3)
                picks += hw[:, 0].tolist()
            out.append(picks)
        return out

    first, second = observed(5, epochs=2)
    assert first == min_side_schedule(12, sides, 5) and observed(5) == [first]  # seeded, in image order
    assert set(first) <= set(sides) and len(set(first)) > 1  # per image, from the list
    assert first != second  # fresh picks each epoch
    assert min_side_schedule(40, sides, 5) != min_side_schedule(40, sides, 6)


def test_resize_arguments_are_checked_and_match_the_data_config():
    import inspect

    from detect.config import FieldError
    from detect.train.experiment import DataConfig

    # DataConfig's keys are build_dataset's keywords, with the same defaults.
    params, config = inspect.signature(build_dataset).parameters, DataConfig()
    for key in ("resize", "image_size", "multiscale_every", "min_side", "max_side", "size_divisor", "min_sides",
                "max_boxes"):
        assert params[key].default == getattr(config, key), key
    assert [DataConfig(resize=mode).resize for mode in RESIZE_MODES] == list(RESIZE_MODES)
    for kwargs, key in [(dict(resize="stretch"), "resize"), (dict(min_side=200, max_side=100), "min_side"),
                        (dict(resize="shortest_side", min_side=64, max_side=100, min_sides=(64, 128)),
                         r"min_sides\[1\]"),
                        (dict(min_sides=(64,)), "min_sides"),
                        (dict(resize="shortest_side", multiscale_sizes=(320,)), "multiscale_sizes"),
                        (dict(size_divisor=0), "size_divisor")]:
        with pytest.raises(FieldError, match=f"^{key}"):
            DataConfig(**kwargs)
    source = [Record("x", 10, 10, [[0, 0, 5, 5]], [0], [False], CLASSES, image_path="never_read.png")]
    for kwargs, message in [(dict(min_sides=(64,)), "min_sides works with resize='shortest_side' only"),
                            (dict(resize="shortest_side", min_side=200, max_side=100), "min_side=200"),
                            (dict(resize="shortest_side", min_sides=(64, 2000)), r"min_sides=\[64, 2000\]"),
                            (dict(resize="shortest_side", size_divisor=0), "size_divisor=0"),
                            (dict(resize="shortest_side", multiscale_sizes=[320]), "multiscale_sizes works")]:
        with pytest.raises(ValueError, match=message):
            build_dataset(source, training=False, batch_size=1, **kwargs)
    build_dataset(source, training=False, batch_size=1, resize="shortest_side", min_sides=(480, 1000))


class _TwoPipelines:
    """A stand-in strategy that calls the dataset function as replica 1 of 2 would."""

    def distribute_datasets_from_function(self, fn):
        return fn(tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2))


@pytest.mark.parametrize("kwargs", [dict(image_size=64), dict(resize="shortest_side", min_side=64, max_side=96)])
def test_distribute_dataset_gives_per_replica_batches(records, kwargs):
    def make(batch_size, ctx):
        return build_dataset(records, training=False, batch_size=batch_size, input_context=ctx, deterministic=True,
                             **kwargs)

    ds = distribute_dataset(_TwoPipelines(), make, global_batch_size=4)
    batches = list(ds)
    assert batches[0]["image"].shape[0] == 2  # 4 over two replicas
    ids = [i.decode() for b in batches for i in b["image_id"].numpy()]
    assert ids == [r.image_id for r in records[1::2]]  # this pipeline's shard
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    batch = next(iter(distribute_dataset(strategy, make, global_batch_size=4)))
    assert batch["image"].shape[0] == 4


def test_default_counter_is_shared():
    assert isinstance(pipeline_stats(), SkipCounter) and pipeline_stats() is pipeline_stats()


@pytest.mark.skipif(not BCCD.is_dir(), reason=f"BCCD dataset not found at {BCCD}")
def test_bccd_training_batch_and_round_trip():
    from detect.data import read_voc

    recs = read_voc(BCCD, "test", class_names=("RBC", "WBC", "Platelets"))[:20]
    batch = next(iter(build_dataset(recs, training=True, batch_size=16, augment=AugmentConfig())))
    assert batch["image"].shape == (16, 416, 416, 3)
    assert (batch["num_boxes"].numpy() > 0).all()
    counter = SkipCounter()
    seen = {x["image_id"]: x for x in unbatch(build_dataset(recs, training=False, batch_size=4,
                                                             deterministic=True, counter=counter))}
    for r in recs:
        # The pipeline clips to the image and drops what degenerates; do the same here.
        boxes = np.clip(r.boxes, 0, [r.width, r.height, r.width, r.height])
        boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
        x = seen[r.image_id]
        np.testing.assert_allclose(unmap_boxes(x["boxes"], x["transform"]), boxes, atol=1e-3)


EXIT_SCRIPT = textwrap.dedent("""
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import cv2
    import numpy as np
    from detect.data.augment import AugmentConfig
    from detect.data.pipeline import build_dataset
    from detect.data.records import Record

    rng = np.random.default_rng(0)
    records = [Record(i, 240, 320, [[10, 20, 100, 120]], [0], [False], ("a",),
                      image_bytes=cv2.imencode(".jpg", rng.integers(0, 255, (240, 320, 3), np.uint8))[1].tobytes())
               for i in range(64)]
    ds = build_dataset(records, training=True, batch_size=8, image_size=320, augment=AugmentConfig())
    # The worst case: a live iterator whose threads are busy calling Python when the interpreter exits.
    it = iter(ds.repeat())
    for _ in range(3):
        next(it)
    print("iterated", flush=True)
""")


@pytest.mark.slow
def test_augmented_pipeline_process_exits_cleanly(tmp_path):
    # Without the pipeline's exit hook about half of such runs abort or hang; one at a time
    # (parallel runs slow each other down and hit the race less often).
    script = tmp_path / "iterate_and_exit.py"
    script.write_text(EXIT_SCRIPT)
    for _ in range(4):
        try:
            run = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True,
                                 timeout=60)
        except subprocess.TimeoutExpired as error:
            pytest.fail(f"the process hung at exit; stdout: {error.stdout!r}")
        assert "iterated" in run.stdout
        assert "terminate called" not in run.stderr, run.stderr[-2000:]
        assert run.returncode == 0, run.stderr[-2000:]


def test_to_float_compiled_or_not_equals_numpy_for_every_byte():
    from detect.data.batching import to_float

    image = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
    expected = image.astype(np.float32) * np.float32(1.0 / 255.0)
    for compiled in (False, True):
        got = to_float({"image": tf.constant(image)}, compiled=compiled)["image"].numpy()
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
