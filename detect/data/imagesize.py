"""Image size from the file header, without decoding the pixels.

Also the format an image's bytes are in (``image_format``, by content,
whatever the file is named) and whether a JPEG lacks its end marker
(``lacks_end_marker``, i.e. was truncated).

Readers whose annotations do not state the image size (YOLO txt) need it
for every image; decoding a JPEG costs milliseconds, reading its header
microseconds. PNG and baseline/progressive JPEG are parsed here; anything
else falls back to ``cv2.imread``.

The size is the stored one: EXIF orientation is not applied, which matches
what ``tf.io.decode_image`` produces (``cv2.imread`` with default flags
would rotate).
"""

import struct
from pathlib import Path

from detect.errors import InputError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC)
# sit in the same range but are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length field.
_JPEG_NO_LENGTH = frozenset([0x01, *range(0xD0, 0xD8)])

_MAGIC = (  # (format, leading bytes); WebP also needs "WEBP" at offset 8
    ("jpeg", b"\xff\xd8\xff"),
    ("png", _PNG_SIGNATURE),
    ("gif", b"GIF8"),
    ("bmp", b"BM"),
    ("webp", b"RIFF"),
)
SUFFIX_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".gif": "gif", ".bmp": "bmp",
                  ".webp": "webp"}


def image_format(data):
    """``"jpeg"``, ``"png"``, ``"gif"``, ``"bmp"``, ``"webp"`` from the leading bytes, else None."""
    for name, magic in _MAGIC:
        if data.startswith(magic) and (name != "webp" or data[8:12] == b"WEBP"):
            return name
    return None


def lacks_end_marker(data):
    """True if a JPEG's bytes have no end-of-image marker after the last start-of-scan.

    Scan data cannot contain the marker (0xFF is stuffed there), and an
    embedded EXIF thumbnail's own marker comes before the main scan, so
    this finds truncation without decoding.
    """
    return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")


def image_size(path):
    """``(height, width)`` of an image file.

    Args:
      path: image file (JPEG and PNG are read from the header; other
        formats are decoded with OpenCV).

    Returns:
      tuple of two ints.

    Raises:
      InputError: the file is missing or is not a readable image.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(24)
            if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
                width, height = struct.unpack(">II", head[16:24])
                return height, width
            if head[:2] == b"\xff\xd8":
                f.seek(2)
                size = _jpeg_size(f)
                if size is not None:
                    return size
    except FileNotFoundError:
        raise InputError(path, "image file not found") from None
    except OSError as error:
        raise InputError(path, f"cannot read image: {error.strerror or error}") from None
    return _decoded_size(path)


def _jpeg_size(f):
    """Walks the JPEG marker segments up to the first frame header; None if not found."""
    while True:
        byte = f.read(1)
        if not byte:
            return None
        if byte != b"\xff":
            continue
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes may pad a marker
            marker = f.read(1)
        if not marker:
            return None
        code = marker[0]
        if code in _JPEG_NO_LENGTH or code == 0xD8:
            continue
        if code in (0xD9, 0xDA):  # end of image or scan data before any frame header
            return None
        length_bytes = f.read(2)
        if len(length_bytes) < 2:
            return None
        (length,) = struct.unpack(">H", length_bytes)
        if code in _JPEG_SOF:
            frame = f.read(5)
            if len(frame) < 5:
                return None
            _, height, width = struct.unpack(">BHH", frame)
            # Height 0 means "defined later by a DNL marker"; let a decoder work it out.
            return (height, width) if height and width else None
        f.seek(length - 2, 1)


def _decoded_size(path):
    import cv2  # only for formats the header parsers do not know

    # IMREAD_UNCHANGED keeps the stored orientation, consistent with the parsers.
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(path, "not a readable image")
    return int(image.shape[0]), int(image.shape[1])


__all__ = ["SUFFIX_FORMATS", "image_format", "image_size", "lacks_end_marker"]
