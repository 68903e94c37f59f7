"""Reading the batches of the input pipeline; TensorFlow only.

The batch layout is in ``detect.data.pipeline``. This module imports
nothing but TensorFlow, so models and evaluation can read batches without
importing the pipeline and its augmentation (albumentations).
"""

import tensorflow as tf


def batch_image_hw(batch):
    """The batch's ``image_hw`` [B, 2] int32, or the full image size for batches without one."""
    if "image_hw" in batch:
        return batch["image_hw"]
    shape = tf.shape(batch["image"])
    return tf.tile(shape[1:3][None], [shape[0], 1])
