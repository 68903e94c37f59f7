"""Image checks of the dataset checker: missing, unreadable, corrupt, truncated, resized.

Every record's image is read and (unless told not to) decoded, as the
training pipeline decodes it; OpenCV is imported only when decoding.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from detect.data.checker.report import CORRUPT_IMAGE, MISSING_IMAGE, SIZE_MISMATCH, TRUNCATED_IMAGE, Problem
from detect.data.imagesize import SUFFIX_FORMATS, image_format, lacks_end_marker


def check_images(records, decode_images, problems, notes):
    """Checks every record's image; returns [(width, height) or None] per record."""
    def inspect(record):
        """(size or None, Problem or None, content format if the file name says another)."""
        if record.image_bytes is not None:
            return (_decoded_size(record.image_bytes, str(record.image_id), record) if decode_images
                    else (None, None)) + (None,)
        if record.image_path is None:
            return None, None, None
        path = Path(record.image_path)
        if not path.is_file():
            return None, Problem(MISSING_IMAGE, str(path), f"image of {record.image_id!r} not found"), None
        if not decode_images:
            return None, None, None
        try:
            data = path.read_bytes()
        except OSError as error:
            return None, Problem(CORRUPT_IMAGE, str(path), f"cannot read: {error.strerror or error}"), None
        content = image_format(data)
        named = SUFFIX_FORMATS.get(path.suffix.lower())
        mismatch = content if content is not None and named is not None and content != named else None
        return _decoded_size(data, str(path), record) + (mismatch,)

    # OpenCV decodes without the GIL, so threads use every core.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(inspect, records))
    if any(r.image_path is None and r.image_bytes is None for r in records):
        notes.append("some records name no image; their images were not checked")
    if not decode_images:
        notes.append("images were not decoded: corrupt images and sizes were not checked")
    sizes, misnamed = [], []
    for record, (size, problem, mismatch) in zip(records, results):
        if problem is not None:
            problems.append(problem)
        if mismatch is not None:
            misnamed.append(f"{Path(record.image_path).name} is {mismatch.upper()}")
        sizes.append(size)
    if misnamed:
        examples = ", ".join(misnamed[:5]) + (", ..." if len(misnamed) > 5 else "")
        notes.append(f"{len(misnamed)} image(s) are in another format than their file name says "
                     f"({examples}); they are decoded by content, so training is not affected")
    return sizes


def _decoded_size(data, source, record):
    """((width, height), None) of an encoded image, or (None, Problem).

    A truncated JPEG is judged as the pipeline judges it
    (``detect.data.decoding``): usable if enough of it decodes, which is
    reported as ``TRUNCATED_IMAGE`` rather than ``CORRUPT_IMAGE``.
    """
    import cv2  # Lazily: keeps `import detect.data` light.

    if not data:
        return None, Problem(CORRUPT_IMAGE, source, f"image of {record.image_id!r} is an empty file")
    # IMREAD_UNCHANGED ignores EXIF orientation, as tf.io.decode_image does.
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    size = None if image is None else (image.shape[1], image.shape[0])
    truncated = None
    if image_format(data) == "jpeg" and (image is None or lacks_end_marker(data)):
        from detect.data.decoding import MIN_DECODED_FRACTION, inspect_truncated_jpeg  # TensorFlow, rarely

        truncated = inspect_truncated_jpeg(data)
    if truncated is not None and truncated[1] is not None:
        fraction, size = truncated
        if fraction < MIN_DECODED_FRACTION:
            return None, Problem(CORRUPT_IMAGE, source,
                                 f"image of {record.image_id!r} is a truncated JPEG of which only "
                                 f"{fraction:.0%} of the rows decode (at least {MIN_DECODED_FRACTION:.0%} "
                                 f"needed); training skips it")
        problem = Problem(TRUNCATED_IMAGE, source,
                          f"image of {record.image_id!r} is a truncated JPEG; {fraction:.0%} of its rows "
                          f"decode, the rest is grey")
        return size, _size_problem(size, source, record) or problem
    if image is None or truncated is not None:
        return None, Problem(CORRUPT_IMAGE, source,
                             f"image of {record.image_id!r} cannot be decoded (damaged or not an image)")
    return size, _size_problem(size, source, record)


def _size_problem(size, source, record):
    width, height = size
    if (width, height) != (record.width, record.height):
        return Problem(SIZE_MISMATCH, source, f"the annotation says {record.width} x {record.height} (w x h), "
                                              f"the image is {width} x {height}")
    return None
