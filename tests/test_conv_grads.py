"""``detect.ops.conv.conv2d_same``: TensorFlow's convolution, with gradients written as forward convolutions.

References: the forward pass against ``tf.nn.conv2d``; both gradients
against ``tf.GradientTape`` over ``tf.nn.conv2d`` (TensorFlow's own
backprop kernels) and against a numpy loop over the definition
``dK[i, j, c, o] = sum xpad[b, y+i, x+j, c] dy[b, y, x, o]``.
"""

import numpy as np
import pytest
import tensorflow as tf

from detect.backbones.base import Conv2D
from detect.ops import conv as conv_module
from detect.ops.conv import conv2d_same

_FAST_GRADIENTS_AVAILABLE = conv_module.fast_gradients_available  # before the fixture replaces it
CASES = [  # (batch, height, width, channels, filters, k)
    (2, 9, 7, 3, 5, 3),
    (1, 6, 6, 4, 4, 1),
    (3, 5, 8, 2, 6, 5),
    (2, 1, 1, 8, 3, 3),  # the kernel is larger than the image
    (1, 13, 13, 16, 8, 3),
]


@pytest.fixture(autouse=True)
def our_gradients(monkeypatch):
    """Our gradients whatever this machine has (with oneDNN or a GPU, ``conv2d_same`` leaves them to TensorFlow)."""
    monkeypatch.setattr(conv_module, "fast_gradients_available", lambda: True)


def _gradient_ops(**patches):
    """The op types of ``conv2d_same``'s traced gradient, with ``detect.ops.conv`` attributes patched."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in patches.items():
            patch.setattr(conv_module, name, value)

        @tf.function
        def grads(x, kernel):
            with tf.GradientTape() as tape:
                tape.watch([x, kernel])
                y = conv2d_same(x, kernel)
            return tape.gradient(y, [x, kernel])

        graph = grads.get_concrete_function(tf.TensorSpec([1, 6, 6, 2]), tf.TensorSpec([3, 3, 2, 4])).graph
    return {op.type for op in graph.get_operations()}


def test_tensorflows_gradients_with_onednn_or_a_gpu_ours_otherwise():
    ours = _gradient_ops(_gpu_visible=lambda: False, _onednn_enabled=lambda: False,
                         fast_gradients_available=_FAST_GRADIENTS_AVAILABLE)
    assert "Conv2DBackpropInput" not in ours and "Conv2DBackpropFilter" not in ours
    for machine in (dict(_gpu_visible=lambda: True, _onednn_enabled=lambda: False),
                    dict(_gpu_visible=lambda: False, _onednn_enabled=lambda: True)):
        theirs = _gradient_ops(**machine, fast_gradients_available=_FAST_GRADIENTS_AVAILABLE)
        assert {"Conv2DBackpropInput", "Conv2DBackpropFilter"} <= theirs, machine


def _tape_gradients(fn, x, kernel, upstream):
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        y = fn(x, kernel)
    return y, tape.gradient(y, [x, kernel], output_gradients=upstream)


def _numpy_filter_gradient(x, dy, k):
    pad = (k - 1) // 2
    padded = np.pad(x.astype(np.float64), [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    height, width = dy.shape[1:3]
    dk = np.zeros((k, k, x.shape[-1], dy.shape[-1]))
    for i in range(k):
        for j in range(k):
            window = padded[:, i:i + height, j:j + width, :]
            dk[i, j] = np.einsum("bhwc,bhwo->co", window, dy.astype(np.float64))
    return dk


@pytest.mark.parametrize("batch,height,width,channels,filters,k", CASES)
def test_forward_and_gradients_equal_tensorflows(batch, height, width, channels, filters, k):
    rng = np.random.default_rng(k * 100 + height)
    x = tf.constant(rng.normal(size=(batch, height, width, channels)), tf.float32)
    kernel = tf.constant(rng.normal(size=(k, k, channels, filters)), tf.float32)
    upstream = tf.constant(rng.normal(size=(batch, height, width, filters)), tf.float32)
    ours_y, (ours_dx, ours_dk) = _tape_gradients(conv2d_same, x, kernel, upstream)
    ref_y, (ref_dx, ref_dk) = _tape_gradients(lambda a, b: tf.nn.conv2d(a, b, 1, "SAME"), x, kernel, upstream)
    np.testing.assert_array_equal(ours_y.numpy(), ref_y.numpy())  # the same forward op
    np.testing.assert_allclose(ours_dx.numpy(), ref_dx.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ours_dk.numpy(), ref_dk.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ours_dk.numpy(), _numpy_filter_gradient(x.numpy(), upstream.numpy(), k),
                               rtol=1e-5, atol=1e-4)


def test_gradients_in_a_compiled_function_and_under_xla():
    rng = np.random.default_rng(7)
    x = tf.constant(rng.normal(size=(2, 8, 8, 4)), tf.float32)
    kernel = tf.Variable(rng.normal(size=(3, 3, 4, 6)), dtype=tf.float32)

    def grads(conv):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(conv(x, kernel)))
        return tape.gradient(loss, [x, kernel])

    ref = grads(lambda a, b: tf.nn.conv2d(a, b, 1, "SAME"))
    for compiled in (tf.function(lambda: grads(conv2d_same)), tf.function(lambda: grads(conv2d_same),
                                                                          jit_compile=True)):
        for ours, theirs in zip(compiled(), ref):
            np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-3)


def test_even_kernel_falls_back_to_tensorflows_gradient():
    """SAME pads an even kernel unequally; the transposed convolution above assumes equal padding."""
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(1, 6, 6, 2)), tf.float32)
    kernel = tf.constant(rng.normal(size=(2, 2, 2, 3)), tf.float32)
    upstream = tf.ones((1, 6, 6, 3))
    ours = _tape_gradients(conv2d_same, x, kernel, upstream)[1]
    ref = _tape_gradients(lambda a, b: tf.nn.conv2d(a, b, 1, "SAME"), x, kernel, upstream)[1]
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, padding="same", use_bias=False),
                                    dict(kernel_size=1, use_bias=True),  # 1x1 "valid" is "same"
                                    dict(kernel_size=3, strides=2, padding="valid")])  # Keras' own op
def test_layer_equals_keras_conv2d_with_the_same_weights(kwargs):
    import keras

    rng = np.random.default_rng(11)
    x = tf.constant(rng.normal(size=(2, 10, 10, 4)), tf.float32)
    ours, theirs = Conv2D(5, **kwargs), keras.layers.Conv2D(5, **kwargs)
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in theirs.get_weights()])
    ours.set_weights(theirs.get_weights())
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.cos(y))
        results.append((y, *tape.gradient(loss, [x, *layer.trainable_variables])))
    np.testing.assert_array_equal(results[0][0].numpy(), results[1][0].numpy())
    for a, b in zip(results[0][1:], results[1][1:]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-4)
