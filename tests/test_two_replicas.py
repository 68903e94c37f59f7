"""Two replicas on one machine: synchronized BatchNorm and the training epoch's split over replicas.

TensorFlow fixes its devices when it starts, so the checks run in a
subprocess that splits the CPU into two logical devices and trains under
``MirroredStrategy`` over both; it prints what it measured as JSON, and
the assertions are here. (Two processes, ``multi_worker``:
``tests/test_multi_worker.py``.)
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from detect.data.shapes import make_shapes

ROOT = Path(__file__).resolve().parents[1]
MOMENTUM = 0.9

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from detect.train.distribute import synchronize_batchnorm
    from detect.train.experiment import load_experiment
    from detect.train.data import load_records, class_names_of
    from detect.train.run import make_datasets

    config_path, momentum = sys.argv[1], float(sys.argv[2])
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    x = np.random.default_rng(0).normal(size=(8, 3, 3, 2)).astype("float32")
    x[4:] = 3.0 * x[4:] + 5.0  # the two halves (one per replica) differ in mean and spread
    found = {"input": x.tolist()}
    for synced in (True, False):
        with strategy.scope():
            bn = keras.layers.BatchNormalization(momentum=momentum)
            model = keras.Sequential([keras.Input((3, 3, 2)), bn])
        count = synchronize_batchnorm(model, strategy, enabled=synced)
        batches = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(x).batch(8))

        @tf.function
        def step(batch):
            return strategy.run(lambda b: model(b, training=True), args=(batch,))

        outputs = step(next(iter(batches)))
        if synced:  # the packed moments against Keras' own synchronized ones (three all-reduces)
            @tf.function
            def both(batch):
                return strategy.run(lambda b: (bn._moments(b, None),
                                               keras.ops.moments(b, axes=[0, 1, 2], synchronized=True)), args=(batch,))

            ours, keras_own = both(next(iter(batches)))
            found["moments"] = [[v.numpy().tolist() for v in strategy.experimental_local_results(t)]
                                for t in (*ours, *keras_own)]
        found[str(synced)] = {
            "count": count,
            "outputs": np.concatenate([o.numpy() for o in strategy.experimental_local_results(outputs)]).tolist(),
            "moving_mean": [v.numpy().tolist() for v in strategy.experimental_local_results(bn.moving_mean.value)],
            "moving_variance": [v.numpy().tolist() for v in strategy.experimental_local_results(bn.moving_variance.value)],
        }

    # A training epoch's input under the two replicas: image ids per replica per step.
    config = load_experiment(config_path, ["train.distribute=mirrored"])
    names = class_names_of(config.data)
    records = load_records(config.data, "train", names)
    train_data, _, steps = make_datasets(config, records, [], strategy)
    epoch = []
    for batch in train_data(0):
        epoch.append([[i.decode() for i in ids.numpy()] for ids in strategy.experimental_local_results(batch["image_id"])])
        if len(epoch) == steps:
            break
    found.update(steps=steps, epoch=epoch, train_ids=[r.image_id for r in records])
    print("RESULT " + json.dumps(found))
""")


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replicas")
    make_shapes(tmp / "shapes", "voc", num_images=25, size=64, seed=2, val_fraction=0.2)  # 20 training images
    config = tmp / "config.yaml"
    config.write_text(f"name: two\ndata:\n  format: voc\n  root: {tmp / 'shapes'}\n  classes: [circle, square, triangle]\n"
                      f"  image_size: 64\n  max_boxes: 8\nmodel:\n  backbone: tiny\n  head_width: 8\n"
                      f"train:\n  batch_size: 8\n")
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(config), str(MOMENTUM)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    return json.loads(lines[0][len("RESULT "):])


def test_synchronized_batchnorm_uses_the_global_batch(measured):
    """Outputs and moving statistics against numpy over all 8 images, the same on both replicas."""
    x = np.array(measured["input"])
    mean, variance = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    synced = measured["True"]
    assert synced["count"] == 1
    epsilon = 1e-3  # Keras' default
    np.testing.assert_allclose(synced["outputs"], (x - mean) / np.sqrt(variance + epsilon), atol=2e-5)
    for replica in range(2):
        np.testing.assert_allclose(synced["moving_mean"][replica], (1 - MOMENTUM) * mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(synced["moving_variance"][replica], MOMENTUM + (1 - MOMENTUM) * variance,
                                   rtol=1e-5)
    assert synced["moving_mean"][0] == synced["moving_mean"][1]
    ours_mean, ours_var, keras_mean, keras_var = (np.array(m) for m in measured["moments"])  # [replica, channel]
    np.testing.assert_allclose(ours_mean, keras_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours_var, keras_var, rtol=1e-6)
    np.testing.assert_allclose(ours_mean[0], mean, rtol=1e-5, atol=1e-6)


def test_without_synchronization_each_replica_normalises_its_own_half(measured):
    """The reference the option turns off: per-replica statistics (this is what a replica saw before)."""
    x = np.array(measured["input"])
    plain = measured["False"]
    assert plain["count"] == 0
    halves = [x[:4], x[4:]]
    expected = np.concatenate([(h - h.mean(axis=(0, 1, 2))) / np.sqrt(h.var(axis=(0, 1, 2)) + 1e-3) for h in halves])
    np.testing.assert_allclose(plain["outputs"], expected, atol=2e-5)
    global_mean = (1 - MOMENTUM) * x.mean(axis=(0, 1, 2))
    assert not np.allclose(plain["moving_mean"][0], global_mean, atol=1e-3)


def test_each_replica_gets_its_share_and_the_epoch_covers_every_image(measured):
    """20 images, global batch 8 over 2 replicas: 2 steps of 4 + 4, 16 distinct images (the 4 left over
    are the remainder one device also drops)."""
    assert measured["steps"] == 2 and len(measured["epoch"]) == 2
    seen = [i for step in measured["epoch"] for replica in step for i in replica]
    assert all(len(replica) == 4 for step in measured["epoch"] for replica in step)
    assert len(seen) == 16 and len(set(seen)) == 16 and set(seen) <= set(measured["train_ids"])
