"""Variational autoencoder on the embedded handwritten digits, upsampled to 16x16, with a
16-dimensional Gaussian latent space and a Bernoulli decoder.

    python train.py --config=configs/vae.py --workdir=runs/vae

Takes about 45 seconds on 2 CPU cores (3,000 steps at about 140 per second, then the
evaluation: ELBO, the importance-weighted bound with k=100 and, if the digits classifier of
configs/classifier.py has been trained, sample quality). Test ELBO about -102 nats per
image; the prior samples in runs/vae/samples/step_003000.png are smooth, mostly legible
digits; the KL of about 8 nats means the VAE uses only a few of its 16 dimensions (see the
traversals picture).

Its interpolation pictures show the autoencoder of configs/ae.py (runs/ae, if trained
first) in the rows between its own, on the same test images.

Variations:
  beta-VAE:    --config.beta=4
  KL warm-up:  --config.kl_warmup_steps=1000
  Gaussian:    --config.loss=mse --config.decoder_std=0.1
  MNIST 32x32: --config.dataset.name=mnist --config.image_size=32 --config.num_train_steps=10000
"""

from genjax.tasks import vae


def get_config():
    config = vae.defaults()
    config.dataset.name = "digits"
    config.image_size = 16
    config.num_train_steps = 3000
    config.batch_size = 64
    config.log_every_steps = 200
    config.sample_every_steps = 1000
    config.checkpoint_every_steps = 1000
    config.eval_every_steps = 3000
    config.model.latent_dim = 16
    config.model.width = 32
    config.loss = "bernoulli"
    config.beta = 1.0
    config.kl_warmup_steps = 500
    config.learning_rate = 1e-3
    config.eval.iw_samples = 100
    config.eval.compare_workdir = "runs/ae"
    return config
