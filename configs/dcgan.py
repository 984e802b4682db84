"""DCGAN on the embedded 8x8 handwritten digits (scikit-learn's 1,797 real digits),
upsampled to 16x16.

    python train.py --config=configs/dcgan.py

Runs in about TIME on 2 CPU cores. The final grid (runs/dcgan/samples/step_003000.png)
shows recognisable digits of every class. For MNIST at 32x32 (prepare it first, see
README):

    python train.py --config=configs/dcgan.py --config.dataset.name=mnist --config.image_size=32

A quick smoke run: --config.num_train_steps=20 --config.log_every_steps=5.
"""

from genjax.config import gan_defaults


def get_config():
    config = gan_defaults()
    config.dataset.name = "digits"
    config.image_size = 16
    config.num_train_steps = 3000
    config.batch_size = 64
    return config
