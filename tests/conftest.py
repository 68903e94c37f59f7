import os
from pathlib import Path

import pytest

from shards import assign, parse_shard

# Quiet TensorFlow's start-up chatter in test logs; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_addoption(parser):
    parser.addoption("--shard", default=None, metavar="I/N",
                     help="run the I-th of N shares of the test files (tools/test.py runs N at once)")


def pytest_collection_modifyitems(config, items):
    """With ``--shard I/N``, keeps the tests of the files ``shards.assign`` gives share I."""
    if not config.getoption("--shard"):
        return
    try:
        index, count = parse_shard(config.getoption("--shard"))
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    shares = assign([Path(item.fspath).name for item in items], count)
    keep = [item for item in items if shares[Path(item.fspath).name] == index]
    dropped = [item for item in items if shares[Path(item.fspath).name] != index]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep


def pytest_configure(config):
    # Two logical CPU devices, so tf.distribute can be tested without GPUs;
    # must happen before TensorFlow initialises its devices.
    try:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    except (ImportError, RuntimeError, IndexError):
        pass


@pytest.fixture(scope="session")
def yolo_run(tmp_path_factory):
    """A run directory of a tiny YOLO that overfits 8 shapes images; (run dir, records, (first, last
    loss)). Read-only: trained once for every module that needs a model which really finds known objects."""
    from overfit import overfit_shapes_run

    return overfit_shapes_run(tmp_path_factory.mktemp("yolo_run"))
