"""Turning what an application holds (a path, an array, a PIL image) into an RGB uint8 array.

Files are decoded by the training pipeline's own decoder
(``detect.data.decoding``: TensorFlow's, with the same JPEG IDCT and the same
recovery of truncated JPEGs), so a file gives the pixels evaluation saw.

The pixel budget (``max_pixels``) is checked before any decoding, from the
file's header (``detect.data.imagesize.header_size``): a 400 KB PNG can
claim 20000 x 20000 pixels, 1.2 GB decoded and several times that in the
graph. Arrays and PIL images are held already, but the graph's float
copies and resize would multiply them, so they meet the same budget.

PIL images keep the pixels the path reader gives for the same file: 16-bit
greys (modes ``I;16*``, and ``I`` holding values in 0..65535) keep their
high byte, as TensorFlow's PNG decoder does (libpng's ``png_set_strip_16``:
``v >> 8``), where PIL's ``convert("RGB")`` would clip them to white. Float
images (mode ``F``) are refused, as float arrays are: their range ([0, 1] or
[0, 255]) cannot be told from the pixels.
"""

import io
from pathlib import Path

import numpy as np

from detect.data.imagesize import gif_frame_pixels, header_size
from detect.errors import InputError

# About 100-megapixel photos (11648 x 8736 = 101.8 MP, medium format) pass; PIL warns of a
# decompression bomb above 89.5 MP and refuses above 179 MP. None disables the budget.
DEFAULT_MAX_PIXELS = 128_000_000
# 16-bit samples to 8 bits as TensorFlow's PNG decoder gives them (png_set_strip_16: the high byte).
SIXTEEN_TO_EIGHT_BITS_SHIFT = 8
SIXTEEN_BIT_MAX = 65535
PIL_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


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


def _is_pil(source):
    return hasattr(source, "convert") and hasattr(source, "size") and not isinstance(source, np.ndarray)


def peek_size(source, max_pixels=None):
    """An input's ``(height, width)`` without decoding it, checked against the pixel budget.

    Files and encoded bytes are read up to their header only (a GIF's
    blocks are walked to count its frames, which the decoder decodes all);
    arrays and PIL images are checked as ``read_image`` checks them.

    Args:
      source: what ``read_image`` takes.
      max_pixels: the pixel budget (None: no budget).

    Returns:
      ``(height, width)``, or None when a file's header does not tell (it
      is then decoded to find out, and checked after).

    Raises:
      InputError: naming the input: unreadable file, more pixels than
      ``max_pixels``, or an array or PIL image ``read_image`` refuses.
    """
    name = describe(source)
    pixels = None
    if isinstance(source, (str, Path, bytes)):
        try:
            with (io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")) as f:
                size, pixels = _header(f)
        except OSError as error:
            raise InputError(name, f"cannot read the file ({error.strerror or error})") from None
    elif _is_pil(source):
        _check_pil_mode(source, name)
        size = (int(source.size[1]), int(source.size[0]))
    elif isinstance(source, np.ndarray) or hasattr(source, "__array__"):
        size = tuple(_check_array(np.asarray(source), name).shape[:2])
    else:
        raise InputError(name, "not an image: pass a file path, an [H, W, 3] uint8 array or a PIL image")
    if size is not None:
        _check_budget(name, size, max_pixels, pixels, encoded=isinstance(source, (str, Path, bytes)))
    return size


def _header(f):
    """(size or None, pixels decoded or None) from an image file object's header.

    ``pixels`` is None but for a GIF, whose every frame TensorFlow's decoder decodes.
    """
    size = header_size(f)
    if size is None:
        return None, None
    f.seek(0)
    if f.read(3) != b"GIF":
        return size, None
    f.seek(0)
    return size, max(size[0] * size[1], gif_frame_pixels(f))


def _check_budget(name, size, max_pixels, pixels=None, encoded=False):
    """Refuses an image of more than ``max_pixels`` pixels.

    Args:
      pixels: what a decoder decodes, where more than the image (a GIF's frames).
      encoded: a file or encoded bytes, refused before decoding.
    """
    pixels = size[0] * size[1] if pixels is None else pixels
    if max_pixels is not None and pixels > max_pixels:
        frames = "" if pixels == size[0] * size[1] else f" ({pixels / 1e6:g} megapixels in all its frames)"
        bomb = "; not decoded (a decompression bomb?)" if encoded else ""
        raise InputError(name, f"{size[0]} x {size[1]} pixels{frames} exceed the pixel budget of "
                               f"{max_pixels / 1e6:g} megapixels{bomb}. Pass max_pixels= to Detector.load "
                               f"to raise it, or None to disable it")


def read_image(source, bgr=False, max_pixels=None):
    """An input as [H, W, 3] uint8 RGB.

    Args:
      source: an image file path (str or Path) or its encoded bytes, an [H, W, 3] uint8 array
        (RGB, or BGR with ``bgr=True`` as OpenCV gives), or a PIL image (any
        8-bit mode, or 16-bit grey: see the module notes).
      bgr: arrays are BGR (ignored for files and PIL images).
      max_pixels: the pixel budget, checked before decoding (None: none).

    Returns:
      [H, W, 3] uint8 RGB array (C-contiguous).

    Raises:
      InputError: naming the input: unreadable or undecodable file, more
      pixels than ``max_pixels``, an array that is not [H, W, 3] uint8, a
      float PIL image, an empty image.
    """
    name = describe(source)
    size = peek_size(source, max_pixels)
    if isinstance(source, (str, Path)):
        image = _decode(Path(source), None)
    elif isinstance(source, bytes):
        image = _decode(name, source)
    elif _is_pil(source):
        image = _from_pil(source)
    else:
        image = np.asarray(source)
        if bgr:
            image = image[..., ::-1]
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(name, f"empty image ({image.shape[0]} x {image.shape[1]} pixels)")
    if size is None:  # a header that did not tell: checked now that it is decoded
        _check_budget(name, image.shape[:2], max_pixels)
    return np.ascontiguousarray(image)


def _check_array(image, name):
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(name, "expected an [H, W, 3] colour image (RGB, or BGR with bgr=True); "
                               "convert grey or RGBA images first")
    if image.dtype != np.uint8:
        raise InputError(name, f"expected uint8 pixels, got {image.dtype}")
    return image


def _check_pil_mode(image, name):
    if image.mode == "F":
        raise InputError(name, "a PIL image of 32-bit float pixels (mode F): their range ([0, 1] or [0, 255]) "
                               "is unknown; convert it to 8 bits first (mode L or RGB)")
    if image.mode == "I":
        low, high = image.getextrema()
        if low < 0 or high > SIXTEEN_BIT_MAX:
            raise InputError(name, f"a PIL image of 32-bit integer pixels (mode I) in {low}..{high}, beyond the "
                                   f"16-bit range; convert it to 8 bits first (mode L or RGB)")


def _from_pil(image):
    """[H, W, 3] uint8 of a PIL image whose mode ``_check_pil_mode`` accepted."""
    if image.mode in PIL_SIXTEEN_BIT_MODES or image.mode == "I":
        grey = (np.asarray(image).astype(np.uint32) >> SIXTEEN_TO_EIGHT_BITS_SHIFT).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"))  # 8-bit modes (L, P, RGBA, CMYK, ...) to RGB


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
    raise InputError(path, "cannot be decoded as an image (JPEG, PNG, GIF, BMP or WebP)")
