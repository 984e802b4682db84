"""CycleGAN on the embedded unpaired digits (digits_style, 16x16): G turns thin upright
digits (domain A) into thick right-slanted ones (B), F turns them back, learnt from two
disjoint halves of the digits with no pairs (genjax/data/digits_style.py).

    python train.py --config=configs/cyclegan.py --workdir=runs/cyclegan

The reference's game (LSGAN, cycle λ = 10, identity 0.5·λ, pools of 50, Adam 2e-4 β1 0.5,
constant then linearly decaying learning rate) with networks sized for 16x16: a ResNet
generator of 6 blocks at ngf 16 and a PatchGAN of 2 stride-2 layers (34x34 receptive
field: the whole 16x16 image, 2x2 logits). Pictures: runs/cyclegan/samples/
a2b_step_<N>.png (rows a, G(a), F(G(a))) and b2a_step_<N>.png (rows b, F(b), G(F(b))).

Ablations (the paper's Table 4): --config.cycle_weight=0 (GAN alone),
--config.identity_weight=0, --config.pool_size=0, --config.cycle=forward|backward (one
direction's cycle only). Real data: --config.dataset.name=cycle_gan/horse2zebra (prepared
TFDS files, see the README) or folder:PATH with trainA/ trainB/ testA/ testB/, with
--config.image_size=256 --config.batch_size=1 --config.model.ngf=64 --config.model.ndf=64
--config.model.num_blocks=9 --config.model.d_layers=3 --config.dataset.jitter=True.

Translating: task.translate(state, images, 'a2b' | 'b2a') (genjax.load_run). A quick
smoke run: --config.num_train_steps=20 --config.log_every_steps=5.
"""

from genjax.tasks import cyclegan


def get_config():
    config = cyclegan.defaults()
    config.dataset.name = "digits_style"
    config.image_size = 16
    config.batch_size = 16
    config.num_train_steps = 2000
    config.log_every_steps = 100
    config.sample_every_steps = 500
    config.checkpoint_every_steps = 500
    config.model.generator = "resnet"
    config.model.ngf = 16
    config.model.num_blocks = 6
    config.model.ndf = 16
    config.model.d_layers = 2
    return config
