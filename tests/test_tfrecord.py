"""TFRecord writer, graph parser and reader; the VOC -> TFRecord -> records round trip."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from detect.data import Record, read_dataset, read_voc, voc_class_names_in
from detect.data.tfrecord import parse_example, read_tfrecords, tfrecord_files, write_tfrecords
from detect.errors import InputError

BCCD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "BCCD"
needs_bccd = pytest.mark.skipif(not (BCCD / "Annotations").is_dir(),
                                reason=f"BCCD dataset not found at {BCCD}")


def tiny_records():
    jpeg = tf.io.encode_jpeg(tf.zeros([6, 8, 3], tf.uint8)).numpy()
    names = ("cat", "dog")
    return [
        Record("a", 6, 8, [[0, 1, 4, 5], [1.25, 2.5, 8, 6]], [1, 0], [False, True], names,
               image_bytes=jpeg),
        Record(7, 6, 8, [], [], [], names, image_bytes=jpeg),
        Record("c", 6, 8, [[2, 2, 3, 3]], [1], [False], names, image_bytes=jpeg),
    ]


def assert_same(records, back):
    assert len(records) == len(back)
    for r, s in zip(records, back):
        assert str(r.image_id) == s.image_id
        assert (r.height, r.width, r.class_names) == (s.height, s.width, s.class_names)
        np.testing.assert_array_equal(r.boxes, s.boxes)
        np.testing.assert_array_equal(r.classes, s.classes)
        np.testing.assert_array_equal(r.ignore, s.ignore)


@needs_bccd
def test_voc_to_tfrecord_round_trip_on_bccd(tmp_path):
    class_names = voc_class_names_in(BCCD)
    records = read_voc(BCCD, "trainval", class_names) + read_voc(BCCD, "test", class_names)
    assert len(records) == 364
    paths = write_tfrecords(records, tmp_path, num_shards=8, prefix="bccd")
    assert [Path(p).name for p in paths] == [f"bccd-{i:05d}-of-00008.tfrecord" for i in range(8)]
    back = read_tfrecords(tmp_path)
    assert_same(records, back)
    # The image bytes are the files' bytes, not re-encoded.
    for r, s in zip(records[:20], back[:20]):
        assert s.image_bytes == Path(r.image_path).read_bytes()
    sidecar = json.loads((tmp_path / "bccd.json").read_text())
    assert sidecar["class_names"] == class_names == ["Platelets", "RBC", "WBC"]
    assert sidecar["images"] == 364 == sum(s["images"] for s in sidecar["shards"])
    assert sidecar["boxes"] == sum(r.num_boxes for r in records)
    assert sum(sidecar["boxes_per_class"].values()) == sidecar["boxes"]
    assert [s["file"] for s in sidecar["shards"]] == [Path(p).name for p in paths]


def test_parse_example_in_graph(tmp_path):
    records = tiny_records()
    write_tfrecords(records, tmp_path, num_shards=2)
    dataset = tf.data.TFRecordDataset(tfrecord_files(tmp_path)).map(parse_example)
    spec = dataset.element_spec
    assert spec["boxes"].shape.as_list() == [None, 4] and spec["boxes"].dtype == tf.float32
    assert spec["classes"].dtype == tf.int32 and spec["ignore"].dtype == tf.bool
    assert spec["height"].dtype == tf.int32 and spec["image_bytes"].shape.rank == 0
    examples = list(dataset.as_numpy_iterator())
    assert [e["image_id"] for e in examples] == [b"a", b"7", b"c"]
    np.testing.assert_array_equal(examples[0]["boxes"], records[0].boxes)
    assert examples[0]["ignore"].tolist() == [False, True]
    assert examples[1]["boxes"].shape == (0, 4) and examples[1]["classes"].shape == (0,)

    @tf.function
    def decoded_shape(serialized):
        example = parse_example(serialized)
        return tf.shape(tf.io.decode_image(example["image_bytes"], channels=3))[:2], \
            tf.stack([example["height"], example["width"]])

    for serialized in tf.data.TFRecordDataset(tfrecord_files(tmp_path)):
        shape, size = decoded_shape(serialized)
        assert shape.numpy().tolist() == size.numpy().tolist() == [6, 8]


def test_shards_files_and_stale_shards(tmp_path):
    records = tiny_records()
    # More shards than records: one record per shard.
    assert len(write_tfrecords(records, tmp_path, num_shards=8)) == 3
    paths = write_tfrecords(records, tmp_path, num_shards=2)
    assert tfrecord_files(tmp_path) == paths  # the 3-shard files were removed
    assert tfrecord_files(tmp_path / "data-*-of-00002.tfrecord") == paths
    assert tfrecord_files(paths[1]) == [paths[1]]
    assert_same(records, read_tfrecords(str(tmp_path / "data-*")))
    with pytest.raises(InputError, match="no TFRecord files found"):
        tfrecord_files(tmp_path / "nothing-*.tfrecord")


def test_image_path_read_and_missing_image(tmp_path):
    jpeg = tiny_records()[0].image_bytes
    (tmp_path / "img.jpg").write_bytes(jpeg)
    record = Record("img", 6, 8, [[0, 0, 1, 1]], [0], [False], ("x",),
                    image_path=str(tmp_path / "img.jpg"))
    write_tfrecords([record], tmp_path / "out", num_shards=1)
    assert read_tfrecords(tmp_path / "out")[0].image_bytes == jpeg
    missing = Record("gone", 6, 8, [], [], [], ("x",), image_path=str(tmp_path / "gone.jpg"))
    with pytest.raises(InputError, match="gone.jpg: image file not found"):
        write_tfrecords([missing], tmp_path / "out2")


def test_yolo_to_tfrecord_through_read_dataset(tmp_path):
    from detect.data import make_shapes

    root = make_shapes(tmp_path / "shapes", "yolo", num_images=6, size=64, seed=3)
    records = read_dataset("yolo", root, "train")
    write_tfrecords(records, tmp_path / "tf", num_shards=2)
    back = read_tfrecords(tmp_path / "tf")
    assert_same(records, back)


def test_area_survives_tfrecords(tmp_path):
    jpeg = tf.io.encode_jpeg(tf.zeros([6, 8, 3], tf.uint8)).numpy()
    # A COCO segment area that float32 would round (1024.0000001 is not a float32).
    record = Record("a", 6, 8, [[0, 0, 40, 30], [1, 1, 2, 2]], [0, 1], [False, False], ("cat", "dog"),
                    image_bytes=jpeg, area=[1024.0000001, 0.5])
    write_tfrecords([record, tiny_records()[0]], tmp_path, num_shards=1)
    back = read_tfrecords(tmp_path)
    assert back[0].area.tolist() == [1024.0000001, 0.5]
    np.testing.assert_array_equal(back[1].area, [16.0, 6.75 * 3.5])  # no area given: the boxes'
