"""configs/ae.py and configs/vae.py end to end: train.py, the pictures, genjax.evaluate,
the rate-distortion command; and the compression measures against direct computation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genjax.evaluate import autoencoding

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--config.image_size=8", "--config.batch_size=16", "--config.model.width=4",
        "--config.model.latent_dim=4", "--config.num_sample_images=4",
        "--config.log_every_steps=2", "--config.sample_every_steps=4",
        "--config.checkpoint_every_steps=4", "--config.num_train_steps=4"]


def _run(args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          env=os.environ.copy(), timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An autoencoder run, then a VAE run that draws the autoencoder beside itself."""
    tmp = tmp_path_factory.mktemp("runs")
    data = f"--config.dataset.data_dir={tmp / 'tfds'}"
    ae = _run([str(ROOT / "train.py"), f"--config={ROOT / 'configs' / 'ae.py'}",
               f"--workdir={tmp / 'ae'}", data, *TINY, "--config.eval_every_steps=4",
               "--config.corruption.kind=gaussian", "--config.corruption.amount=0.2"], tmp)
    assert ae.returncode == 0, ae.stderr[-3000:]
    vae = _run([str(ROOT / "train.py"), f"--config={ROOT / 'configs' / 'vae.py'}",
                f"--workdir={tmp / 'vae'}", data, *TINY, "--config.eval_every_steps=4",
                "--config.eval.iw_samples=5", f"--config.eval.compare_workdir={tmp / 'ae'}"],
               tmp)
    assert vae.returncode == 0, vae.stderr[-3000:]
    return tmp, ae, vae


@pytest.mark.slow
def test_ae_config_trains_draws_and_evaluates(runs):
    tmp, proc, _ = runs
    assert "step 4/4" in proc.stdout and "eval/psnr" in proc.stdout
    samples = tmp / "ae" / "samples"
    names = sorted(p.name for p in samples.iterdir())
    assert names == ["interpolations_step_000004.png", "reconstructions_step_000004.png",
                     "traversals_step_000004.png"]  # an autoencoder draws no prior samples
    # Denoising mode: input, corrupted input, reconstruction: 3 rows of 8 per 8 images.
    tile = 8 * 4 + 1  # 8x8 images at scale 4 (viz.legible_scale) plus the 1-pixel gap
    assert Image.open(samples / names[1]).size == (8 * tile + 1, 6 * tile + 1)
    result = json.loads((tmp / "ae" / "eval" / "step_000004.json").read_text())
    assert result["kind"] == "autoencoder"
    c = result["compression"]
    assert c["code_dims"] == 4 and c["image_bits"] == 8 * 64 and c["compression_ratio"] == 16
    assert c["psnr"] == pytest.approx(10 * np.log10(4 / c["mse"]))
    assert set(result["features"]) == {"codes", "pixels", "pca", "protocol"}
    assert result["features"]["pca"]["dims"] == 4
    assert "likelihood" not in result and "sample_quality" not in result


@pytest.mark.slow
def test_vae_config_draws_the_autoencoder_beside_itself(runs):
    tmp, _, proc = runs
    samples = tmp / "vae" / "samples"
    assert (samples / "step_000004.png").exists()  # prior samples
    tile = 8 * 4 + 1
    interp = Image.open(samples / "interpolations_step_000004.png")
    # 8 pairs, each as a VAE row and an autoencoder row, of 12 images.
    assert interp.size == (12 * tile + 1, 16 * tile + 1)
    result = json.loads((tmp / "vae" / "eval" / "step_000004.json").read_text())
    lk = result["likelihood"]
    assert lk["k"] == 5 and np.isfinite(lk["elbo_nats"]) and lk["kl_nats"] >= 0
    # No classifier has been trained: the sample quality says how to get one.
    assert "configs/classifier.py" in result["sample_quality"]["skipped"]


@pytest.mark.slow
def test_evaluate_command_on_a_vae_run(runs):
    tmp, _, _ = runs
    proc = _run(["-m", "genjax.evaluate", f"--workdir={tmp / 'vae'}"], tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in ("compression:", "codes", "pixels", "pca", "IWAE (k=5)"):
        assert text in proc.stdout


@pytest.mark.slow
def test_rate_distortion_command(tmp_path):
    proc = _run(["-m", "genjax.evaluate.rate_distortion", f"--config={ROOT / 'configs' / 'ae.py'}",
                 f"--workdir={tmp_path / 'rd'}", "--code_sizes=2,4",
                 f"--config.dataset.data_dir={tmp_path / 'tfds'}", *TINY], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = json.loads((tmp_path / "rd" / "rate_distortion.json").read_text())
    rows = table["rows"]
    assert [r["code_size"] for r in rows] == [2, 4]
    assert [r["code_bits_8bit"] for r in rows] == [16, 32]
    assert all((tmp_path / "rd" / f"latent_{n}" / "checkpoints" / "4").is_dir() for n in (2, 4))
    assert "PCA PSNR" in proc.stdout
    bad = _run(["-m", "genjax.evaluate.rate_distortion", f"--config={ROOT / 'configs' / 'vae.py'}",
                f"--workdir={tmp_path / 'rd2'}"], tmp_path)
    assert bad.returncode == 2 and "configs/ae.py" in bad.stderr and "Traceback" not in bad.stderr


def test_quantise_and_pca_mse():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(100, 3)).astype(np.float32)
    q = autoencoding.quantise(codes, bits=2)
    for d in range(3):  # 4 levels per dimension, from its min to its max
        levels = np.unique(q[:, d])
        assert len(levels) <= 4
        np.testing.assert_allclose([levels.min(), levels.max()],
                                   [codes[:, d].min(), codes[:, d].max()], rtol=1e-6)
    assert np.abs(q - codes).max() <= (codes.max(0) - codes.min(0)).max() / 6 + 1e-6
    # PCA baseline against an SVD by hand.
    train = rng.normal(size=(60, 4, 4, 1)) @ np.ones((1, 1))
    test = rng.normal(size=(20, 4, 4, 1))
    flat, tflat = train.reshape(60, -1), test.reshape(20, -1)
    mu = flat.mean(0)
    _, _, vt = np.linalg.svd(flat - mu, full_matrices=False)
    proj = (tflat - mu) @ vt[:3].T @ vt[:3] + mu
    assert autoencoding.pca_mse(train, test, 3, 0) == pytest.approx(
        np.mean((proj - tflat) ** 2), rel=1e-6)
    assert autoencoding.psnr(0.04) == pytest.approx(20.0)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["autoencoder", "vae"])
def test_resume_is_bitwise_equal_to_a_straight_run(tmp_path, task, monkeypatch):
    """Stopped after step 3 as by SIGTERM, then resumed: bit for bit the straight run (the
    learning-rate schedule spans num_train_steps, so the stop must not change it)."""
    import signal

    import chex
    import ml_collections

    import genjax
    from genjax import tasks as tasks_lib
    from genjax import loop
    from genjax.preemption import StopSignal

    class StopAtStep3(StopSignal):
        reads = 0

        @property
        def requested(self):  # the loop reads it once per step
            StopAtStep3.reads += 1
            if StopAtStep3.reads == 3:
                self.signum = signal.SIGTERM
            return self.signum is not None

    def config(steps):
        c = ml_collections.ConfigDict((tasks_lib.defaults("autoencoder") if task == "autoencoder"
                                       else tasks_lib.defaults("vae")).to_dict())
        c.image_size, c.batch_size, c.num_train_steps = 8, 16, steps
        c.model.width, c.model.latent_dim, c.model.dropout = 4, 4, 0.1
        c.dataset.data_dir = str(tmp_path / "tfds")
        c.log_every_steps = c.sample_every_steps = c.checkpoint_every_steps = 3
        if task == "autoencoder":
            c.corruption.kind, c.corruption.amount = "masking", 0.2
        return c

    straight = genjax.train_and_evaluate(config(6), tmp_path / "a")
    monkeypatch.setattr(loop, "StopSignal", StopAtStep3)
    with pytest.raises(genjax.Preempted, match="at step 3"):
        genjax.train_and_evaluate(config(6), tmp_path / "b")
    monkeypatch.undo()
    resumed = genjax.train_and_evaluate(config(6), tmp_path / "b")
    assert int(resumed.step) == 6
    chex.assert_trees_all_equal(straight, resumed)
