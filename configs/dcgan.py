"""DCGAN on the embedded handwritten digits (scikit-learn's 1,797 real 8x8 digits,
1,500 for training), upsampled to 16x16.

    python train.py --config=configs/dcgan.py

Takes about 1.5 minutes on 2 CPU cores (4,000 iterations at about 65 per second, plus
a few seconds of compilation). The last grid, runs/dcgan/samples/step_004000.png, shows
blurry digits, most of them recognisable, as blurry as the 2x-upsampled 8x8 originals.
With 1,500 training images the discriminator overfits easily; dropout in it and a
learning rate 4x below the generator's keep the game going for a while, and the quality
measured by `python -m genjax.evaluate` peaks around 4,000 iterations (the discriminator
wins after that).

Real datasets (prepare them first, see the README), e.g. MNIST at 32x32:

    python train.py --config=configs/dcgan.py --config.dataset.name=mnist \
        --config.image_size=32 --config.d_learning_rate=2e-4 --config.num_train_steps=20000

A quick smoke run: --config.num_train_steps=20 --config.log_every_steps=5.
"""

from genjax.tasks import gan


def get_config():
    config = gan.defaults()
    config.dataset.name = "digits"
    config.image_size = 16
    config.num_train_steps = 4000
    config.batch_size = 64
    config.log_every_steps = 200
    config.sample_every_steps = 1000
    config.checkpoint_every_steps = 1000
    config.model.g_width = 64
    config.model.d_width = 32
    config.model.d_dropout = 0.3
    config.g_learning_rate = 2e-4
    config.d_learning_rate = 5e-5
    return config
