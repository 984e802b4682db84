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


WRONG = np.array([0.7, -2.0, 3.0], np.float32)


@pytest.mark.parametrize("name", list(losses.GAN_LOSSES))
@pytest.mark.parametrize("weight", [0.0, 0.5, 0.3])
def test_matching_aware_loss_by_hand(name, weight):
    # Each term by hand: the target 'real' for REAL, 'fake' for WRONG and FAKE.
    on_real_fn, on_fake_fn = {
        "non_saturating": (lambda t: -np.log(_sig(t)), lambda t: -np.log(1 - _sig(t))),
        "minimax": (lambda t: -np.log(_sig(t)), lambda t: -np.log(1 - _sig(t))),
        "hinge": (lambda t: np.maximum(0, 1 - t), lambda t: np.maximum(0, 1 + t)),
        "least_squares": (lambda t: 0.5 * (t - 1) ** 2, lambda t: 0.5 * t ** 2),
    }[name]
    r, w, f = (np.mean(on_real_fn(REAL.astype(np.float64))),
               np.mean(on_fake_fn(WRONG.astype(np.float64))),
               np.mean(on_fake_fn(FAKE.astype(np.float64))))
    got = jax.jit(losses.matching_aware_discriminator, static_argnums=0)(
        losses.get(name), REAL, WRONG, FAKE, weight)
    np.testing.assert_allclose(got, [r + weight * w + (1 - weight) * f, r, w, f], rtol=1e-5)


def test_matching_aware_loss_without_the_term_is_the_plain_loss():
    pair = losses.get("non_saturating")
    total = losses.matching_aware_discriminator(pair, REAL, WRONG, FAKE, 0.0)[0]
    np.testing.assert_allclose(total, pair.discriminator(REAL, FAKE)[0], rtol=1e-6)
    grad = jax.grad(lambda w: losses.matching_aware_discriminator(pair, REAL, w, FAKE, 0.0)[0])
    np.testing.assert_array_equal(grad(WRONG), 0.0)


def test_mismatched_labels_are_never_the_right_ones_and_uniform_over_the_others():
    k = 10
    labels = jnp.tile(jnp.arange(k, dtype=jnp.int32), 20_000)
    wrong = np.asarray(losses.mismatched_labels(jax.random.key(0), labels, k))
    labels = np.asarray(labels)
    assert wrong.dtype == labels.dtype and wrong.min() >= 0 and wrong.max() < k
    assert not np.any(wrong == labels)
    # Each of the 9 other classes gets 1/9 of each class's draws (20,000 per class):
    # binomial std ~ 44, so 5 std is a generous band.
    counts = np.zeros((k, k))
    np.add.at(counts, (labels, wrong), 1)
    off = counts[~np.eye(k, dtype=bool)]
    assert np.all(np.abs(off - 20_000 / 9) < 5 * np.sqrt(20_000 * (1 / 9) * (8 / 9))), off
    with pytest.raises(ValueError, match="2 classes"):
        losses.mismatched_labels(jax.random.key(0), labels, 1)
