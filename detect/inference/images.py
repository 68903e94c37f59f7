"""Turning what an application holds (a path, an array, a PIL image) into an RGB uint8 array.

Files are decoded by the training pipeline's own decoder
(``detect.data.decoding``: TensorFlow's, with the same JPEG IDCT and the same
recovery of truncated JPEGs), so a file gives the pixels evaluation saw.
"""

from pathlib import Path

import numpy as np

from detect.errors import InputError


def describe(source):
    """A short name for an input in messages: its path, or its kind and shape."""
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, bytes):
        return f"encoded image ({len(source)} bytes)"
    shape = getattr(source, "shape", None)
    if shape is not None:
        return f"array of shape {tuple(shape)}"
    size = getattr(source, "size", None)
    return f"{type(source).__name__} image" + (f" of size {size}" if size is not None else "")


def read_image(source, bgr=False):
    """An input as [H, W, 3] uint8 RGB.

    Args:
      source: an image file path (str or Path) or its encoded bytes, an [H, W, 3] uint8 array
        (RGB, or BGR with ``bgr=True`` as OpenCV gives), or a PIL image.
      bgr: arrays are BGR (ignored for files and PIL images).

    Returns:
      [H, W, 3] uint8 RGB array (C-contiguous).

    Raises:
      InputError: naming the input: unreadable or undecodable file, an array
      that is not [H, W, 3] uint8, an empty image.
    """
    name = describe(source)
    if isinstance(source, (str, Path)):
        image = _decode(Path(source), None)
    elif isinstance(source, bytes):
        image = _decode(name, source)
    elif hasattr(source, "convert") and hasattr(source, "size") and not isinstance(source, np.ndarray):
        image = np.asarray(source.convert("RGB"))  # PIL: any mode to RGB
    elif isinstance(source, np.ndarray) or hasattr(source, "__array__"):
        image = np.asarray(source)
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(name, "expected an [H, W, 3] colour image (RGB, or BGR with bgr=True); "
                                   "convert grey or RGBA images first")
        if image.dtype != np.uint8:
            raise InputError(name, f"expected uint8 pixels, got {image.dtype}")
        if bgr:
            image = image[..., ::-1]
    else:
        raise InputError(name, "not an image: pass a file path, an [H, W, 3] uint8 array or a PIL image")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(name, f"empty image ({image.shape[0]} x {image.shape[1]} pixels)")
    return np.ascontiguousarray(image)


def _decode(path, data):
    """[H, W, 3] uint8 from a file (``data`` None) or from its encoded bytes (``path`` names them)."""
    import tensorflow as tf

    from detect.data.decoding import decode, decode_truncated_jpeg

    if data is None:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise InputError(path, f"cannot read the file ({error.strerror or error})") from None
    if not data:
        raise InputError(path, "empty file")
    tensor = tf.constant(data)
    try:
        return decode(tensor).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        pass
    try:  # a truncated JPEG, recovered as the pipeline recovers it
        return decode_truncated_jpeg(tensor)[0].numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        pass
    raise InputError(path, "cannot be decoded as an image (JPEG, PNG, BMP or GIF)")
