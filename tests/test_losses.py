import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import losses

REAL = np.array([2.0, -1.0, 0.0], np.float32)
FAKE = np.array([-3.0, 0.5, 1.0], np.float32)


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_bce_discriminator_matches_log_likelihood():
    loss, on_real, on_fake = jax.jit(losses.bce_discriminator)(REAL, FAKE)
    want_real = -np.mean(np.log(_sig(REAL)))
    want_fake = -np.mean(np.log(1 - _sig(FAKE)))
    np.testing.assert_allclose(on_real, want_real, rtol=1e-6)
    np.testing.assert_allclose(on_fake, want_fake, rtol=1e-6)
    np.testing.assert_allclose(loss, want_real + want_fake, rtol=1e-6)


def test_generator_losses_by_hand():
    np.testing.assert_allclose(losses.minimax_generator(FAKE),
                               np.mean(np.log(1 - _sig(FAKE))), rtol=1e-6)
    np.testing.assert_allclose(losses.non_saturating_generator(FAKE),
                               -np.mean(np.log(_sig(FAKE))), rtol=1e-6)
    np.testing.assert_allclose(losses.hinge_generator(FAKE), -np.mean(FAKE), rtol=1e-6)
    np.testing.assert_allclose(losses.least_squares_generator(FAKE),
                               np.mean(0.5 * (FAKE - 1) ** 2), rtol=1e-6)


def test_hinge_and_least_squares_discriminator_by_hand():
    # hinge: relu(1 - [2, -1, 0]) = [0, 2, 1]; relu(1 + [-3, .5, 1]) = [0, 1.5, 2]
    loss, r, f = losses.hinge_discriminator(REAL, FAKE)
    np.testing.assert_allclose([r, f, loss], [1.0, 3.5 / 3, 1.0 + 3.5 / 3], rtol=1e-6)
    # least squares: ½[(1)², (-2)², (-1)²] = [.5, 2, .5]; ½[9, .25, 1]
    loss, r, f = losses.least_squares_discriminator(REAL, FAKE)
    np.testing.assert_allclose([r, f], [3.0 / 3, 5.125 / 3], rtol=1e-6)


@pytest.mark.parametrize("name", list(losses.GAN_LOSSES))
def test_losses_finite_and_differentiable_at_extreme_logits(name):
    pair = losses.get(name)
    big = jnp.array([1e4, -1e4, 80.0, -80.0])
    d_loss, d_grad = jax.value_and_grad(lambda r: pair.discriminator(r, -r)[0])(big)
    g_loss, g_grad = jax.value_and_grad(pair.generator)(big)
    for x in (d_loss, d_grad, g_loss, g_grad):
        assert np.all(np.isfinite(np.asarray(x))), name


def test_unknown_loss_is_named():
    with pytest.raises(KeyError, match="wasserstein"):
        losses.get("wasserstein")
