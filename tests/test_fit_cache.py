"""The fitted-image cache (detect.data.fit_cache): the same batches to the bit, with reading and decoding skipped.

The reference is the same pipeline without a cache, same seeds, deterministic order: the cache must change
nothing a model sees, in any epoch, through either source, in the threads and in the worker processes.
"""

import cv2
import numpy as np
import pytest

from detect.data.augment import AugmentConfig
from detect.data.bad_input import SkipCounter
from detect.data.fit_cache import FitCache
from detect.data.pipeline import build_dataset
from detect.data.records import Record
from detect.data.tfrecord import write_tfrecords
from test_pipeline import CLASSES, SIZES, gradient_jpeg, random_boxes, record

MIXING = AugmentConfig(mosaic_prob=1.0, mixup_prob=0.5)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Eight JPEG and PNG images of different sizes with boxes."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    out = []
    for i, (h, w) in enumerate(SIZES + [(180, 240), (90, 160), (240, 180)]):
        image = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), np.uint8), (5, 5), 0)
        out.append(record(folder / f"p{i}.{'jpg' if i % 2 else 'png'}", image, random_boxes(rng, 1 + i % 3, h, w)))
    return out


def batches(source, epoch, fit_cache, workers=0, augment=AugmentConfig(), **kwargs):
    """One epoch as training builds it (a pipeline per epoch, seeded by the epoch), as numpy."""
    ds = build_dataset(source, training=True, batch_size=4, image_size=128, augment=augment, seed=epoch,
                       deterministic=True, augment_workers=workers, fit_cache=fit_cache, **kwargs)
    return [{k: v.numpy() for k, v in b.items()} for b in ds]


def assert_same(got, expected):
    assert len(got) == len(expected) > 0
    for g, e in zip(got, expected):
        assert g.keys() == e.keys()
        for k in e:
            np.testing.assert_array_equal(g[k], e[k], err_msg=k)


@pytest.mark.parametrize("setting", [
    dict(),
    dict(workers=2),
    dict(resize="shortest_side", min_side=96, max_side=160),
    dict(augment=MIXING),
], ids=["letterbox", "workers", "shortest_side", "mosaic"])
def test_epochs_equal_the_uncached_pipeline_and_later_epochs_read_nothing(photos, setting, tmp_path):
    cache = FitCache(64 << 20)
    for epoch in range(2):
        assert_same(batches(photos, epoch, cache, **setting), batches(photos, epoch, None, **setting))
        assert len(cache) == len(photos)  # all kept in the first epoch
    # Later epochs come from the cache: with the files gone the batches are still the same.
    moved = tmp_path / "moved"
    moved.mkdir()
    expected = batches(photos, 2, None, **setting)
    for r in photos:
        (moved / r.image_path.split("/")[-1]).write_bytes(open(r.image_path, "rb").read())
        open(r.image_path, "wb").close()  # emptied: undecodable if read again
    try:
        assert_same(batches(photos, 2, cache, **setting), expected)
    finally:
        for r in photos:
            open(r.image_path, "wb").write((moved / r.image_path.split("/")[-1]).read_bytes())


def test_tfrecord_shards_are_keyed_by_shard_and_index(photos, tmp_path):
    write_tfrecords(photos, tmp_path, num_shards=3, prefix="p")
    cache = FitCache(64 << 20)
    for epoch in range(2):
        assert_same(batches(str(tmp_path), epoch, cache), batches(str(tmp_path), epoch, None))
    assert len(cache) == len(photos)


def test_a_budget_keeps_the_first_images_only_and_changes_nothing(photos):
    one_image = 128 * 128 * 3
    cache = FitCache(int(2.5 * one_image))
    for epoch in range(2):
        assert_same(batches(photos, epoch, cache), batches(photos, epoch, None))
    # Fitted images are at most 128 x 128: some fit, not all; parallel inserts overrun by an image at most.
    assert 1 <= len(cache) < len(photos) and cache.used_bytes <= cache.budget_bytes + one_image


def test_images_with_one_id_and_different_pixels_are_not_confused(photos):
    """Records from bytes keep their own pixels: the key is the record's place, not its id."""
    def from_bytes(r, shift):
        data = cv2.imencode(".png", np.roll(cv2.imread(r.image_path), shift, axis=1))[1].tobytes()
        return Record("same-id", r.height, r.width, r.boxes, r.classes, r.ignore, CLASSES, image_bytes=data)

    recs = [from_bytes(photos[1], shift) for shift in (0, 9, 21, 40)]
    cache = FitCache(64 << 20)
    for epoch in range(2):
        assert_same(batches(recs, epoch, cache), batches(recs, epoch, None))
    assert len(cache) == 4


def test_a_repaired_image_is_read_and_reported_every_epoch(photos, tmp_path):
    data, _ = gradient_jpeg()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: int(len(data) * 0.8)])
    recs = photos[:3] + [Record("truncated", 96, 64, [[1, 2, 30, 40]], [1], [False], CLASSES,
                                image_path=str(truncated))]
    cache, counter, reference = FitCache(64 << 20), SkipCounter(), SkipCounter()
    for epoch in range(2):
        assert_same(batches(recs, epoch, cache, counter=counter), batches(recs, epoch, None, counter=reference))
    assert len(cache) == 3
    assert counter.num_repaired == reference.num_repaired == 2


def test_not_used_where_images_are_fitted_anew_or_not_augmented(photos):
    cache = FitCache(64 << 20)
    batches(photos, 0, cache, resize="shortest_side", min_side=96, max_side=160, min_sides=[96, 128])
    list(build_dataset(photos, training=False, batch_size=4, image_size=128, augment=AugmentConfig(),
                       fit_cache=cache))
    assert len(cache) == 0
    with pytest.raises(ValueError, match="budget_bytes=0"):
        FitCache(0)


def test_one_cache_two_geometries_keeps_both(photos):
    cache = FitCache(64 << 20)
    small = batches(photos, 0, cache)
    ds = build_dataset(photos, training=True, batch_size=4, image_size=160, augment=AugmentConfig(), seed=0,
                       deterministic=True, fit_cache=cache)
    large = [{k: v.numpy() for k, v in b.items()} for b in ds]
    assert small[0]["image"].shape[1:3] == (128, 128) and large[0]["image"].shape[1:3] == (160, 160)
    assert len(cache) == 2 * len(photos)
