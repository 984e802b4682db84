"""DCGAN on the embedded handwritten digits (scikit-learn's 1,797 real 8x8 digits,
1,500 for training), upsampled to 32x32, with a spectrally normalised discriminator.

    python train.py --config=configs/dcgan.py

Chosen by measurement: of the recipes in bench/gan_study.py (16 and 32 pixels, the
earlier dropout and slow-discriminator handicaps, DiffAugment, R1, spectral
normalisation, EMA on and off; 2 seeds each), this one reached the lowest FD on the
test split within 300 s of wall time on 2 CPU cores, start-up included (README,
"Quality per second"). About 5 minutes here: 2,800 iterations at about 10.7 per
second after about 18 s of start-up and compilation (3,000 iterations took 314 s with an
empty compilation cache on a quiet machine).

With 1,500 training images the discriminator is the player to restrain: spectral
normalisation bounds it for about 9% more time per iteration. Dropout and a 4x smaller
discriminator learning rate (the earlier default, at 16x16) made things worse: with them
the FD stopped improving after about 60 s and then rose; without them it kept falling.

Real datasets (prepare them first, see the README), e.g. MNIST:

    python train.py --config=configs/dcgan.py --config.dataset.name=mnist \
        --config.num_train_steps=20000

A quick smoke run: --config.num_train_steps=20 --config.log_every_steps=5.
"""

from genjax.tasks import gan


def get_config():
    config = gan.defaults()
    config.dataset.name = "digits"
    config.image_size = 32
    config.num_train_steps = 2800
    config.batch_size = 64
    config.log_every_steps = 200
    config.sample_every_steps = 700
    config.checkpoint_every_steps = 1400
    config.model.g_width = 32
    config.model.d_width = 32
    config.model.d_dropout = 0.0
    config.model.d_norm = "spectral"
    config.g_learning_rate = 2e-4
    config.d_learning_rate = 2e-4
    return config
