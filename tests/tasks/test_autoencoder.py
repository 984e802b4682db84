"""The autoencoder and VAE tasks: losses against hand computation, gradients through the
reparameterisation, the evaluation-mode API, pictures, multi-device equality."""

import functools
from types import SimpleNamespace

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import tasks as tasks_lib
from genjax import losses, tasks
from genjax.errors import ConfigError
from genjax.tasks import autoencoder as ae
from taskutil import assert_one_device_matches_eight, batches, run, tiny

META = SimpleNamespace(image_shape=(8, 8, 1), num_classes=10)


def tiny_config(task="autoencoder", **overrides):
    defaults = (tasks_lib.defaults("autoencoder") if task == "autoencoder"
                else tasks_lib.defaults("vae"))
    fields = {"image_size": 8, "batch_size": 16, "model.width": 4, "model.latent_dim": 3,
              "num_sample_images": 4}
    return tiny(defaults, fields, overrides)


# ------------------------------------------------------------------------- the formulas


def test_gaussian_kl_matches_monte_carlo_and_closed_form():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(2, 3)).astype(np.float32)
    log_std = (0.3 * rng.normal(size=(2, 3))).astype(np.float32)
    kl = np.asarray(losses.gaussian_kl(mean, log_std))
    # By hand, one dimension at a time: log(1/s) + (s^2 + m^2)/2 - 1/2.
    s = np.exp(log_std.astype(np.float64))
    by_hand = np.sum(-np.log(s) + (s ** 2 + mean ** 2) / 2 - 0.5, axis=1)
    np.testing.assert_allclose(kl, by_hand, rtol=1e-5)
    # Monte Carlo: E_q[log q(z) - log p(z)] with 200,000 samples.
    z = mean + s * rng.normal(size=(200_000, 2, 3))
    log_q = losses.log_normal(z.reshape(-1, 3), np.tile(mean, (200_000, 1)),
                              np.tile(log_std, (200_000, 1)))
    log_p = losses.log_normal(z.reshape(-1, 3), 0.0, 0.0)
    mc = np.asarray(log_q - log_p).reshape(200_000, 2).mean(0)
    np.testing.assert_allclose(mc, by_hand, atol=0.02)


def test_log_likelihoods_by_hand():
    x = np.array([[[[-1.0], [1.0]], [[0.0], [0.5]]]], np.float32)  # one 2x2 image
    logits = np.array([[[[0.3], [-2.0]], [[1.5], [0.0]]]], np.float32)
    t, p = (x + 1) / 2, 1 / (1 + np.exp(-logits.astype(np.float64)))
    bern = np.sum(t * np.log(p) + (1 - t) * np.log(1 - p))
    np.testing.assert_allclose(losses.bernoulli_log_likelihood(logits, x), [bern], rtol=1e-5)
    mean = np.tanh(logits)
    gauss = np.sum(-0.5 * ((x - mean) / 0.2) ** 2 - np.log(0.2) - 0.5 * np.log(2 * np.pi))
    np.testing.assert_allclose(losses.gaussian_log_likelihood(mean, x, 0.2), [gauss], rtol=1e-5)
    # The autoencoder's losses are per-pixel means of the same quantities.
    np.testing.assert_allclose(losses.reconstruction_loss(logits, x, "bernoulli"), -bern / 4,
                               rtol=1e-5)
    np.testing.assert_allclose(losses.reconstruction_loss(logits, x, "mse"),
                               np.mean((mean - x) ** 2), rtol=1e-5)


def test_vae_step_metrics_are_the_elbo_by_hand():
    """The step's ELBO equals log p(x|z) - KL recomputed from the model's own outputs with
    the same latent noise, and the loss uses beta·KL."""
    config = tiny_config("vae", beta=3.0)
    task = tasks.make(config, META)
    model = ae.build_model(config, 1).clone(bn_axis_name=None)  # one device, outside pmap
    s0 = task.init(0)
    batch = batches(1)[0]
    _, metrics = run(task.train_step, s0, [batch], 1)
    # Recompute on one device: the step's latent key is the device key of the step key.
    step_key = jax.random.fold_in(jax.random.wrap_key_data(s0.key), 0)
    step_key = jax.random.fold_in(step_key, 0)  # parallel.device_key on device 0
    rngs = {"dropout": jax.random.fold_in(step_key, ae._DROPOUT),
            "latent": jax.random.fold_in(step_key, ae._LATENT)}
    (logits, (mean, log_std), _), _ = model.apply(
        {"params": s0.model.params, "batch_stats": s0.model.batch_stats}, batch["image"],
        train=True, mutable=["batch_stats"], rngs=rngs)
    rec = losses.bernoulli_log_likelihood(logits, batch["image"])
    kl = losses.gaussian_kl(mean, log_std)
    np.testing.assert_allclose(metrics["vae/elbo"][0], np.mean(rec - kl), rtol=1e-4)
    np.testing.assert_allclose(metrics["ae/loss"][0], np.mean(3.0 * kl - rec), rtol=1e-4)


def test_gradients_flow_through_the_reparameterisation():
    config = tiny_config("vae")
    model = ae.build_model(config, 1).clone(bn_axis_name=None)  # one device, outside pmap
    variables = model.init({"params": jax.random.key(0), "latent": jax.random.key(1)},
                           jnp.zeros((2, 8, 8, 1)))
    x = jnp.asarray(batches(1)[0]["image"][:4])

    def recon_only(params):  # the decoder term alone reaches the encoder only through z
        (logits, _, _), _ = model.apply({**variables, "params": params}, x, train=True,
                                        mutable=["batch_stats"],
                                        rngs={"latent": jax.random.key(2)})
        return -jnp.mean(losses.bernoulli_log_likelihood(logits, x))

    grads = jax.grad(recon_only)(variables["params"])
    for head in ("mean", "log_std"):
        assert float(jnp.abs(grads[head]["kernel"]).max()) > 0, head
    assert float(jnp.abs(grads["enc_convs_0"]["kernel"]).max()) > 0


def test_kl_warmup_ramps_beta():
    config = tiny_config("vae", beta=2.0, kl_warmup_steps=4)
    task = tasks.make(config, META)
    betas = []
    state = task.init(0)
    for b in batches(5):
        state, m = run(task.train_step, state, [b], 1)
        betas.append(float(m["vae/beta"][0]))
    np.testing.assert_allclose(betas, [0.0, 0.5, 1.0, 1.5, 2.0])


# -------------------------------------------------------------------------- training


@pytest.mark.parametrize("task_name,overrides", [
    ("autoencoder", {}),
    ("autoencoder", {"loss": "bernoulli", "corruption.kind": "masking",
                     "corruption.amount": 0.3, "model.dropout": 0.1}),
    ("vae", {}),
])
def test_train_step_learns_a_fixed_batch(task_name, overrides):
    task = tasks.make(tiny_config(task_name, learning_rate=1e-2, num_train_steps=1000,
                                  **overrides), META)
    s0 = task.init(0)
    batch = batches(1)
    _, first = run(task.train_step, s0, batch, 2)
    s1, last = run(task.train_step, s0, batch * 30, 2)
    assert int(s1.step) == 30
    assert float(last["ae/loss"][0]) < float(first["ae/loss"][0])
    assert float(last["ae/mse"][0]) < float(first["ae/mse"][0])


def test_eight_devices_match_one_device():
    """BatchNorm statistics and gradients are global (no dropout and no corruption: those
    draw per device)."""
    task = tasks.make(tiny_config(), META)
    assert_one_device_matches_eight(task, "ae/loss")


def test_corruption():
    x = jnp.zeros((4, 8, 8, 1))
    key = jax.random.key(0)
    assert ae.corrupt(x, key, "none", 0.0) is x
    masked = np.asarray(ae.corrupt(x, key, "masking", 0.5))
    assert set(np.unique(masked)) <= {-1.0, 0.0} and 0.3 < np.mean(masked == -1) < 0.7
    noisy = np.asarray(ae.corrupt(x, key, "gaussian", 0.2))
    assert abs(noisy.std() - 0.2) < 0.03 and noisy.min() >= -1 and noisy.max() <= 1


# ------------------------------------------------------------------ evaluation-mode API


@pytest.fixture(scope="module")
def trained():
    out = {}
    for name in ("autoencoder", "vae"):
        config = tiny_config(name, learning_rate=1e-2, num_train_steps=1000)
        task = tasks.make(config, META)
        state, _ = run(task.train_step, task.init(0), batches(10), 1)
        out[name] = (task, state)
    return out


@pytest.mark.parametrize("name", ["autoencoder", "vae"])
def test_interpolation_endpoints_are_the_reconstructions(trained, name):
    task, state = trained[name]
    images = batches(1)[0]["image"]
    path = task.interpolate(state, images[0], images[1], 5)
    assert path.shape == (5, 8, 8, 1)
    ends = task.reconstruct(state, images[:2])
    np.testing.assert_allclose(path[0], ends[0], atol=1e-5)
    np.testing.assert_allclose(path[-1], ends[1], atol=1e-5)
    # Batched pairs give the same as one pair at a time.
    both = task.interpolate(state, images[:2], images[1:3], 5)
    assert both.shape == (2, 5, 8, 8, 1)
    np.testing.assert_allclose(both[0], path, atol=1e-5)


@pytest.mark.parametrize("name", ["autoencoder", "vae"])
def test_encode_decode_reconstruct(trained, name):
    task, state = trained[name]
    images = batches(1)[0]["image"]
    z = task.encode(state, images)
    assert z.shape == (16, 3)
    out = task.decode(state, z)
    assert out.shape == images.shape and float(jnp.abs(out).max()) <= 1.0
    np.testing.assert_allclose(task.reconstruct(state, images), out, atol=1e-6)
    # Evaluation mode: each image's code depends on that image only.
    np.testing.assert_allclose(task.encode(state, images[:5]), z[:5], atol=1e-5)


def test_vae_samples_and_likelihood_bounds(trained):
    task, state = trained["vae"]
    a = task.sample(state, jax.random.key(3), 6)
    assert a.shape == (6, 8, 8, 1)
    np.testing.assert_array_equal(a, task.sample(state, jax.random.key(3), 6))
    images = batches(1)[0]["image"][:8]
    bounds = task.log_likelihood(state, images, jax.random.key(0), 50)
    assert set(bounds) == {"elbo", "iwae", "reconstruction", "kl"}
    assert all(v.shape == (8,) and np.isfinite(v).all() for v in bounds.values())
    assert np.all(bounds["kl"] >= 0)
    # Jensen: the importance-weighted bound is at least the ELBO on average (same samples),
    # and with k = 1 the two estimate the same quantity.
    assert bounds["iwae"].mean() >= bounds["elbo"].mean() - 0.5
    one = task.log_likelihood(state, images, jax.random.key(0), 1)
    np.testing.assert_allclose(one["iwae"], one["reconstruction"] + (
        np.asarray(losses.log_normal(*_z_for_k1(task, state, images), 0.0, 0.0))) - _log_q(
            task, state, images), rtol=1e-4)


def _z_for_k1(task, state, images):
    mean, log_std = ae.posterior(state, images, model=_model(task))
    eps = jax.random.normal(jax.random.fold_in(jax.random.key(0), 0), (1, *mean.shape))[0]
    return (mean + jnp.exp(log_std) * eps,)


def _log_q(task, state, images):
    mean, log_std = ae.posterior(state, images, model=_model(task))
    (z,) = _z_for_k1(task, state, images)
    return np.asarray(losses.log_normal(z, mean, log_std))


def _model(task):
    return task.encode.keywords["model"]


@pytest.mark.parametrize("name,corruption", [("autoencoder", "none"), ("autoencoder", "masking"),
                                             ("vae", "none")])
def test_pictures(trained, name, corruption):
    task, state = trained[name]
    if corruption != "none":
        config = tiny_config(name, **{"corruption.kind": corruption, "corruption.amount": 0.3})
        task = tasks.make(config, META)
    images = np.concatenate([b["image"] for b in batches(2)])  # 32 held-out images
    pics = task.pictures(state, images, jax.random.key(0))
    rows = 3 if corruption != "none" else 2
    assert pics["reconstructions"][0].shape == (16 * rows, 8, 8, 1)
    np.testing.assert_array_equal(pics["reconstructions"][0][:8], images[:8])  # inputs first
    interp, columns = pics["interpolations"]
    assert columns == 12 and interp.shape == (8 * 12, 8, 8, 1)
    np.testing.assert_array_equal(interp[0], images[0])  # each row starts at a real image
    np.testing.assert_array_equal(interp[11], images[8])  # ... and ends at its partner
    traversal, steps = pics["traversals"]
    assert traversal.shape == (3 * steps, 8, 8, 1)  # one row per code dimension (3 here)


def test_config_validation():
    with pytest.raises(ConfigError, match="corruption.amount"):
        tiny_config(**{"corruption.kind": "gaussian"})
    with pytest.raises(ConfigError, match="corruption.kind"):
        tiny_config(**{"corruption.amount": 0.2})
    with pytest.raises(ConfigError, match="loss"):
        tiny_config(loss="hinge")
    with pytest.raises(ConfigError, match="beta"):
        tiny_config("vae", beta=-1.0)
    vae = tiny_config("vae")
    vae.corruption = {"kind": "masking"}  # the VAE has no denoising mode
    with pytest.raises(ConfigError, match="Unknown config field 'corruption.kind'"):
        tasks_lib.validate(vae)


# ------------------------------------------------- the bounds on a known log p(x)


class LinearGaussian(nn.Module):
    """A VAE whose log p(x) is known: z ~ N(0, I_16), x | z ~ N(a·z, sigma²·I) on 4x4x1
    images, so x ~ N(0, (a² + sigma²)·I). Its encoder is the exact posterior
    N(v·a·x / sigma², v·I), v = 1 / (1 + a²/sigma²), with the mean shifted by
    `mean_shift` and the standard deviation scaled by `std_scale` (1 and 0: exact). The
    decoder returns logits whose tanh (the 'mse' likelihood's mean) is a·z, and hands
    each z it decodes to `_SEEN`, so a test can recompute the weights itself."""

    a: float
    sigma: float
    std_scale: float = 1.0
    mean_shift: float = 0.0
    latent_dim: int = 16
    variational: bool = True

    def encode(self, x, train=False):
        v = 1.0 / (1.0 + self.a ** 2 / self.sigma ** 2)
        mean = v * self.a * x.reshape(x.shape[0], -1) / self.sigma ** 2 + self.mean_shift
        log_std = jnp.full_like(mean, 0.5 * np.log(v) + np.log(self.std_scale))
        return mean, log_std

    def decode(self, z, train=False):
        jax.debug.callback(lambda value: _SEEN.append(np.asarray(value)), z)
        return jnp.arctanh(self.a * z).reshape(z.shape[0], 4, 4, 1)


_SEEN: list = []  # the latent codes LinearGaussian.decode was called with


def _linear_gaussian(**kw):
    _SEEN.clear()
    seen = _SEEN
    model = LinearGaussian(a=0.1, sigma=0.1, **kw)
    state = SimpleNamespace(model=SimpleNamespace(params={}, batch_stats={}))
    x = np.random.default_rng(0).normal(0, np.sqrt(0.1 ** 2 + 0.1 ** 2), (6, 4, 4, 1))
    bounds = functools.partial(ae.log_likelihood_bounds, state, x.astype(np.float32),
                               model=model, likelihood="mse", decoder_std=0.1)
    log_px = np.sum(-0.5 * x.reshape(6, -1) ** 2 / 0.02 - 0.5 * np.log(2 * np.pi * 0.02), 1)
    return bounds, seen, x, log_px


@pytest.mark.parametrize("k", [1, 7, 50])
def test_iwae_and_elbo_equal_log_px_under_the_exact_posterior(k):
    """With q(z|x) the exact posterior every importance weight is p(x), so for any k the
    iwae equals the analytic log p(x) (a missing or doubled log k shows as log k nats).
    (The elbo, a Monte Carlo mean of log p(x|z) minus the exact KL, equals it only in
    expectation; it is checked against its formula below.)"""
    bounds, _, _, log_px = _linear_gaussian()
    out = bounds(jax.random.key(0), k)
    np.testing.assert_allclose(out["iwae"], log_px, atol=2e-3)


def _log_normal64(v, mean, std):
    return np.sum(-0.5 * ((v - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi), -1)


def test_iwae_is_the_log_mean_of_the_weights_and_tightens_towards_log_px():
    """Under an inexact posterior: iwae is the float64 log-mean-exp of the weights
    p(x|z)p(z)/q(z|x) of the very samples the decoder saw, the elbo the mean of their
    log-likelihoods minus the closed-form KL. With k = 2,000 the iwae is within 0.05 nats
    of log p(x), while the elbo stays KL(q || p(z|x)) ≈ 2 nats below it."""
    bounds, seen, x, log_px = _linear_gaussian(std_scale=1.3, mean_shift=0.2)
    k = 40
    out = bounds(jax.random.key(1), k)
    z = np.concatenate(seen).astype(np.float64).reshape(k, 6, 16)
    v = 1.0 / (1.0 + 0.1 ** 2 / 0.1 ** 2)
    q_mean = v * 0.1 * x.reshape(6, -1) / 0.1 ** 2 + 0.2
    q_std = np.sqrt(v) * 1.3
    log_px_z = _log_normal64(x.reshape(1, 6, -1), 0.1 * z, 0.1)
    log_w = log_px_z + _log_normal64(z, 0.0, 1.0) - _log_normal64(z, q_mean, q_std)
    top = log_w.max(0)
    iwae = top + np.log(np.mean(np.exp(log_w - top), axis=0))
    np.testing.assert_allclose(out["iwae"], iwae, atol=2e-3)
    kl = np.sum(0.5 * (q_mean ** 2 + q_std ** 2 - 1) - np.log(q_std), -1)
    np.testing.assert_allclose(out["elbo"], log_px_z.mean(0) - kl, atol=2e-3)
    seen.clear()
    many = bounds(jax.random.key(2), 2000)
    assert np.abs(many["iwae"] - log_px).max() < 0.05
    gap = 16 * (0.5 * (1.3 ** 2 - 1) - np.log(1.3) + 0.5 * 0.2 ** 2 / v)  # KL(q || p(z|x))
    np.testing.assert_allclose(log_px - many["elbo"], gap, atol=0.3)
