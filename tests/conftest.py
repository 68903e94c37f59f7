import os

import pytest

# Quiet TensorFlow's start-up chatter in test logs; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
    """A run directory of a tiny YOLO that overfits 8 shapes images; (run dir, records). Read-only:
    trained once for every module that needs a model which really finds known objects."""
    from overfit import overfit_shapes_run

    return overfit_shapes_run(tmp_path_factory.mktemp("yolo_run"))
