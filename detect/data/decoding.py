"""Decoding encoded images in the graph, and recovering truncated JPEGs.

Real datasets hold JPEGs whose last bytes are missing (an interrupted copy
or download; libjpeg warns "Premature end of JPEG file"). A strict
``tf.io.decode_jpeg`` refuses them. Given the same bytes with the
end-of-image marker appended, libjpeg decodes the rows that are there, the
row of 8x8 or 16x16 blocks where the data stops in part, and fills the rest
with mid-grey (128, the zero of the DCT). That is deterministic, unlike
``decode_jpeg(try_recover_truncated=True)``, which in TensorFlow 2.21
leaves the rows after an early stop with whatever the buffer held (and
counts them as read, so ``acceptable_fraction`` cannot reject the image).
The decoded share is measured as the rows above the run of uniform
mid-grey rows at the bottom, and an image is usable when at least
``MIN_DECODED_FRACTION`` of its rows decoded. The pipeline and the dataset
checker use the same functions, so they agree on which images are repaired
and which are corrupt.

Content, not the file name, decides the format: a PNG saved as ``.jpg``
decodes as the PNG it is; the checker notes the mismatch
(``detect.data.imagesize.image_format``).
"""

import tensorflow as tf

# Below this share of decoded rows, a truncated JPEG is skipped as corrupt.
MIN_DECODED_FRACTION = 0.5
# libjpeg's fill value for rows that are missing from a truncated file.
TRUNCATED_FILL = 128
JPEG_END = b"\xff\xd9"  # the end-of-image marker

def decode(data):
    """[H, W, 3] uint8 from encoded bytes (a scalar string tensor); fails on a truncated JPEG.

    JPEG uses the faster integer IDCT.
    """
    return tf.cond(tf.io.is_jpeg(data),
                   lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_FAST"),
                   lambda: tf.io.decode_image(data, channels=3, expand_animations=False))


def decode_truncated_jpeg(data):
    """Recovers a truncated JPEG.

    Args:
      data: scalar string tensor, the file's bytes.

    Returns:
      ``(image [H, W, 3] uint8, decoded_fraction float32 scalar)``: the rows
      libjpeg could decode, mid-grey below them, and the share of rows that
      decoded.

    Raises:
      tf.errors.InvalidArgumentError: not a JPEG, nothing decodes (the cut
        is inside the headers), or less than ``MIN_DECODED_FRACTION`` of
        the rows decoded, so that an isolated dataset stage can drop it with
        ``ignore_errors``.
    """
    tf.debugging.assert_equal(tf.io.is_jpeg(data), True, message="not a JPEG")
    image = tf.io.decode_jpeg(tf.strings.join([data, JPEG_END]), channels=3, dct_method="INTEGER_FAST")
    fraction = decoded_fraction(image)
    tf.debugging.assert_greater_equal(fraction, MIN_DECODED_FRACTION,
                                      message="too little of the truncated JPEG decodes")
    return image, fraction


def decoded_fraction(image):
    """Share of rows above the bottom run of uniform ``TRUNCATED_FILL`` rows.

    Args:
      image: [H, W, C] uint8.

    Returns:
      float32 scalar in [0, 1].
    """
    filled = tf.reduce_all(tf.equal(image, TRUNCATED_FILL), axis=[1, 2])
    # Length of the run of filled rows at the bottom: cumulative product from the end.
    run = tf.reduce_sum(tf.math.cumprod(tf.cast(filled[::-1], tf.int32)))
    height = tf.shape(image)[0]
    return tf.cast(height - run, tf.float32) / tf.cast(tf.maximum(height, 1), tf.float32)


def inspect_truncated_jpeg(data):
    """For the checker: how much of a JPEG that fails a strict decode can be recovered.

    Args:
      data: bytes of a JPEG file.

    Returns:
      None if it decodes strictly (not truncated), else
      ``(decoded_fraction, (width, height))``; the fraction is 0.0 and the
      size None when nothing decodes. Usable when the fraction is at least
      ``MIN_DECODED_FRACTION``, as in the pipeline.
    """
    tensor = tf.constant(data)
    try:
        decode(tensor)
        return None
    except tf.errors.InvalidArgumentError:
        pass
    try:
        image = tf.io.decode_jpeg(data + JPEG_END, channels=3, dct_method="INTEGER_FAST")
    except tf.errors.InvalidArgumentError:
        return 0.0, None
    return float(decoded_fraction(image)), (int(image.shape[1]), int(image.shape[0]))


__all__ = ["MIN_DECODED_FRACTION", "decode", "decode_truncated_jpeg", "decoded_fraction",
           "inspect_truncated_jpeg"]
