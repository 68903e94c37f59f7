"""Image size from the file header, without decoding the pixels.

Also the format an image's bytes are in (``image_format``, by content,
whatever the file is named) and whether a JPEG lacks its end marker
(``lacks_end_marker``, i.e. was truncated).

Readers whose annotations do not state the image size (YOLO txt) need it
for every image; decoding a JPEG costs milliseconds, reading its header
microseconds. PNG and baseline/progressive JPEG are parsed here; anything
else falls back to ``cv2.imread``.

``header_size`` also reads GIF, BMP and WebP headers and never decodes:
``Detector`` checks its pixel budget with it before a decoder allocates
anything, so a small file that claims a huge image (a decompression bomb)
costs a few bytes of reading. ``gif_frame_pixels`` counts every frame of a
GIF, which TensorFlow's decoder decodes even when only the first is kept.

The size is the stored one: EXIF orientation is not applied, which matches
what ``tf.io.decode_image`` produces (``cv2.imread`` with default flags
would rotate).
"""

import io
import struct
from pathlib import Path

from detect.errors import InputError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Bytes that hold the size of every format header_size reads (JPEG: the first segments only).
_HEADER_BYTES = 30
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
# File names that folder listings take as images: the formats TensorFlow decodes (``detect.data.decoding``).
# TIFF is not one: a .tif would pass a listing and fail at decoding.
IMAGE_SUFFIXES = tuple(SUFFIX_FORMATS)


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


def header_size(source):
    """``(height, width)`` from an image's header alone, never decoding; None when it does not tell.

    Args:
      source: a binary file object at the image's start, or the image's bytes.
        PNG, JPEG (up to its first frame header), GIF (the logical screen,
        as TensorFlow's decoder outputs it), BMP and WebP are read.

    Returns:
      tuple of two ints, or None (another format, or a header cut short).
    """
    f = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    head = f.read(_HEADER_BYTES)
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return height, width
    if head[:2] == b"\xff\xd8":
        f.seek(2)
        return _jpeg_size(f)
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return height, width
    if head[:2] == b"BM" and len(head) >= 26:
        (dib_size,) = struct.unpack("<I", head[14:18])
        if dib_size == 12:  # BITMAPCOREHEADER: unsigned 16-bit sides
            width, height = struct.unpack("<HH", head[18:22])
        else:  # BITMAPINFOHEADER and later: signed 32-bit, a negative height is a top-down bitmap
            width, height = struct.unpack("<ii", head[18:26])
        return abs(height), abs(width)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        return _webp_size(head)
    return None


def _webp_size(head):
    chunk = head[12:16]
    if chunk == b"VP8X":  # extended: the canvas, 24-bit sides minus one
        return int.from_bytes(head[27:30], "little") + 1, int.from_bytes(head[24:27], "little") + 1
    if chunk == b"VP8L" and head[20] == 0x2F:  # lossless: two 14-bit sides minus one
        bits = int.from_bytes(head[21:25], "little")
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":  # lossy key frame: 14-bit sides
        width, height = struct.unpack("<HH", head[26:30])
        return height & 0x3FFF, width & 0x3FFF
    return None


def gif_frame_pixels(source):
    """Pixels of every frame of a GIF together (its image descriptors' areas), walking its blocks.

    Args:
      source: a binary file object at the GIF's start, or its bytes.

    Returns:
      int (0 for no frame, or not a GIF). A file cut short counts the frames before the cut.
    """
    f = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    head = f.read(13)
    if head[:6] not in (b"GIF87a", b"GIF89a") or len(head) < 13:
        return 0
    if head[10] & 0x80:  # global colour table
        f.seek(3 << ((head[10] & 7) + 1), 1)
    total = 0
    while True:
        block = f.read(1)
        if block == b"\x21":  # extension: label, then sub-blocks
            f.seek(1, 1)
        elif block == b"\x2c":  # image descriptor: left, top, width, height, flags
            descriptor = f.read(9)
            if len(descriptor) < 9:
                return total
            width, height = struct.unpack("<HH", descriptor[4:8])
            total += width * height
            if descriptor[8] & 0x80:  # local colour table
                f.seek(3 << ((descriptor[8] & 7) + 1), 1)
            f.seek(1, 1)  # LZW minimum code size
        else:  # trailer (0x3B), end of file or garbage
            return total
        while True:  # data sub-blocks: a length byte, then that many bytes; 0 ends them
            length = f.read(1)
            if not length or length == b"\x00":
                break
            f.seek(length[0], 1)


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
            head = f.read(len(_PNG_SIGNATURE))
            # Only these two from the header: other formats are decoded, so a corrupt one is found here.
            if head == _PNG_SIGNATURE or head[:2] == b"\xff\xd8":
                f.seek(0)
                size = header_size(f)
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


__all__ = ["IMAGE_SUFFIXES", "SUFFIX_FORMATS", "gif_frame_pixels", "header_size", "image_format", "image_size",
           "lacks_end_marker"]
