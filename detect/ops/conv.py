"""A stride-1 ``SAME`` convolution whose gradients run as forward convolutions and matmuls (CPU).

TensorFlow's CPU kernels for ``Conv2DBackpropInput`` and
``Conv2DBackpropFilter`` are slower than its forward ``Conv2D`` on the same
arithmetic (measured on Darknet-53's layers at batch 2, 2 cores, AVX2: 1.1 to
2.9x the forward time), while the forward kernel and ``MatMul`` are the
tuned paths. Both gradients are convolutions themselves, so they can be
written with those:

- input gradient: ``dx = conv(dy, K')`` with ``K'[i, j, o, c] = K[k-1-i, k-1-j, c, o]``
  (the kernel turned by 180 degrees, its in/out channels swapped), stride 1,
  ``SAME``: for odd ``k`` the forward pass pads ``(k-1)/2`` on every side,
  so the transposed convolution pads the same amounts;
- filter gradient: ``dK[i, j, c, o] = sum_{b,y,x} xpad[b, y+i, x+j, c] * dy[b, y, x, o]``,
  a ``VALID`` convolution of ``xpad`` laid out ``[C, H+k-1, W+k-1, B]`` (batch
  as channels) with ``dy`` laid out ``[H, W, B, O]`` as the kernel, giving
  ``[C, k, k, O]``;
- a 1x1 kernel is a matmul over the ``B*H*W`` pixels both ways.

The sums are the same products in another order, so the gradients equal
TensorFlow's to float rounding (tested against ``tf.GradientTape`` over
``tf.nn.conv2d``). Where TensorFlow's own backward kernels are the fast
path, ``conv2d_same`` leaves the gradient to them: on a GPU (cuDNN) and on
a CPU where TensorFlow runs oneDNN (on by default where the CPU has
AVX-512; ``TF_ENABLE_ONEDNN_OPTS``). On a 2-core AVX-512 EPYC with oneDNN,
TensorFlow's gradients were 1.0 to 2.5x faster than these in float32 and
1.2 to 3.5x in bfloat16 (Darknet-53 layer shapes, ``/tmp`` script of the
#21 note); without oneDNN (AVX2 machine) these were 2x (float32) and 20x
(bfloat16) faster.
"""

import functools

import tensorflow as tf


def _gpu_visible():
    return bool(tf.config.list_logical_devices("GPU"))


@functools.lru_cache(maxsize=None)
def _onednn_enabled():
    """Whether TensorFlow runs its CPU convolutions with oneDNN (fixed for the process)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow without it: assume the Eigen kernels
        return False
    return bool(_pywrap_util_port.IsMklEnabled())


def fast_gradients_available():
    """Whether ``conv2d_same`` uses the gradients above (no GPU visible, TensorFlow's CPU kernels without oneDNN)."""
    return not (_gpu_visible() or _onednn_enabled())


def _input_gradient(dy, kernel):
    """dy [B, H, W, O], kernel [k, k, C, O] -> dx [B, H, W, C]."""
    k, _, channels, filters = kernel.shape
    if k == 1:
        dx = tf.matmul(tf.reshape(dy, [-1, filters]), tf.reshape(kernel, [channels, filters]), transpose_b=True)
        return tf.reshape(dx, tf.concat([tf.shape(dy)[:3], [channels]], 0))
    turned = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])
    return tf.nn.conv2d(dy, turned, 1, "SAME")


def _filter_gradient(x, dy, k):
    """x [B, H, W, C], dy [B, H, W, O] -> dK [k, k, C, O]."""
    channels, filters = x.shape[-1], dy.shape[-1]
    if k == 1:
        dk = tf.matmul(tf.reshape(x, [-1, channels]), tf.reshape(dy, [-1, filters]), transpose_a=True)
        return tf.reshape(dk, [1, 1, channels, filters])
    pad = (k - 1) // 2
    padded = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    batch_as_channels = tf.transpose(padded, [3, 1, 2, 0])  # [C, H+k-1, W+k-1, B]
    dy_as_kernel = tf.transpose(dy, [1, 2, 0, 3])  # [H, W, B, O]
    dk = tf.nn.conv2d(batch_as_channels, dy_as_kernel, 1, "VALID")  # [C, k, k, O]
    return tf.transpose(dk, [1, 2, 0, 3])


@tf.custom_gradient
def _conv2d_same_forward_grads(x, kernel):
    y = tf.nn.conv2d(x, kernel, 1, "SAME")

    def grad(dy):
        return _input_gradient(dy, kernel), _filter_gradient(x, dy, kernel.shape[0])

    return y, grad


def conv2d_same(x, kernel):
    """``tf.nn.conv2d(x, kernel, 1, "SAME")``, NHWC, with the gradients above where they are faster.

    Args:
      x: [B, H, W, C] float tensor.
      kernel: [k, k, C, O] tensor or variable, ``k`` odd.

    Returns:
      [B, H, W, O].
    """
    kernel = tf.convert_to_tensor(kernel)  # the variable read stays on the tape, outside the custom gradient
    k = kernel.shape[0]
    if k is None or k % 2 == 0 or kernel.shape[1] != k or not fast_gradients_available():
        return tf.nn.conv2d(x, kernel, 1, "SAME")
    return _conv2d_same_forward_grads(x, kernel)
