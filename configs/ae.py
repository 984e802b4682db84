"""Convolutional autoencoder on the embedded handwritten digits (scikit-learn's 1,797 real
8x8 digits, 1,500 for training), upsampled to 16x16: 256 pixels into a 16-number code.

    python train.py --config=configs/ae.py --workdir=runs/ae

Takes about 30 seconds on 2 CPU cores (2,000 steps at about 130 per second, then the
evaluation). The reconstructions in runs/ae/samples/reconstructions_step_002000.png are
close to the inputs, slightly blurred; `python -m genjax.evaluate --workdir=runs/ae`
reports a test PSNR of 27.6 dB (PCA with 16 components: 24.1 dB), and a linear probe on
the 16-number codes classifies 95% of the test digits.

Variations:
  denoising:   --config.corruption.kind=masking --config.corruption.amount=0.3
  code size:   --config.model.latent_dim=4 (or a whole rate-distortion table from one
               command: python -m genjax.evaluate.rate_distortion --config=configs/ae.py)
  Bernoulli:   --config.loss=bernoulli
  MNIST 32x32: --config.dataset.name=mnist --config.image_size=32 --config.num_train_steps=10000
"""

from genjax.tasks import autoencoder


def get_config():
    config = autoencoder.defaults()
    config.dataset.name = "digits"
    config.image_size = 16
    config.num_train_steps = 2000
    config.batch_size = 64
    config.log_every_steps = 200
    config.sample_every_steps = 1000
    config.checkpoint_every_steps = 1000
    config.eval_every_steps = 2000
    config.model.latent_dim = 16
    config.model.width = 32
    config.loss = "mse"
    config.learning_rate = 1e-3
    return config
