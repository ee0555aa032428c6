"""D4 transforms against numpy, inverses, symmetrisation and the relative equivariance error."""
import numpy as np
import pytest
import tensorflow as tf

from models import equivariance as eq


def _x(seed=0, shape=(5, 6, 6, 2)):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _numpy_transform(x, i):
    if i >= 4:
        x = np.flip(x, axis=2)
    return np.rot90(x, i % 4, axes=(1, 2))


@pytest.mark.parametrize("i", range(8))
def test_transform_matches_numpy_and_inverts(i):
    x = _x()
    gx = eq.transform(x, i).numpy()
    np.testing.assert_array_equal(gx, _numpy_transform(x, i))
    np.testing.assert_array_equal(eq.inverse_transform(gx, i).numpy(), x)
    np.testing.assert_array_equal(eq.transform_by_tensor(x, tf.constant(i)).numpy(), gx)


def test_the_eight_elements_are_distinct():
    x = _x(shape=(1, 4, 4, 1))
    flat = {eq.transform(x, i).numpy().tobytes() for i in range(8)}
    assert len(flat) == 8


def _non_equivariant(x):
    # Pixel-position-dependent weighting plus a directional difference: not D4-equivariant.
    b = x.shape[1]
    ramp = tf.reshape(tf.linspace(0.5, 1.5, b), [1, b, 1, 1])
    return x * ramp + 0.3 * tf.roll(x, 1, axis=2)


def test_symmetrise_is_exactly_equivariant():
    x = _x(1)
    assert eq.relative_equivariance_error(_non_equivariant, x) > 1e-3
    sym = lambda t: eq.symmetrise(_non_equivariant, t)  # noqa: E731
    assert eq.relative_equivariance_error(sym, x) < 1e-6
    # Symmetrising an equivariant function changes nothing.
    np.testing.assert_allclose(eq.symmetrise(tf.square, x).numpy(), x**2, rtol=1e-6)


def test_relative_error_value_independently_computed():
    x = _x(2)
    f = _non_equivariant
    fx = f(x).numpy()
    num = sum(np.sum((f(_numpy_transform(x, i)).numpy() - _numpy_transform(fx, i)) ** 2) for i in range(1, 8))
    expected = num / (7 * np.sum(fx**2))
    assert eq.relative_equivariance_error(f, x) == pytest.approx(expected, rel=1e-4)
    assert eq.relative_equivariance_error(tf.square, x) == 0.0
