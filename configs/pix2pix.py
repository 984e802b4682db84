"""pix2pix, grey -> colour on 32x32 photo patches (the embedded 'photo_colour': patches
cut from the photographs that ship inside scikit-image and scikit-learn, whole
photographs held out for the test split): a U-Net G(grey) -> colour and a PatchGAN D
on (grey, colour) pairs, L1 (lambda 100) + the conditional adversarial loss.

    python train.py --config=configs/pix2pix.py --workdir=runs/pix2pix

The pictures runs/pix2pix/samples/translations_step_<N>.png hold three rows of held-out
patches: the grey input, G's colouring, the true colours. The paper's finding to look
for: with L1 alone (--config.gan_weight=0) the colours are washed out towards grey;
with the adversarial term they are more saturated.

Translate your own images (any size; converted to 32x32 grey, the model's input):
    python -m genjax.translate --workdir=runs/pix2pix --input=DIR --output=OUT

Ablations (the paper's Tables 1-2): --config.gan_weight=0 (L1 only: D not trained),
--config.l1_weight=0 (GAN only), --config.model.conditional_d=False (L1 + an
unconditional D), --config.model.skips=False (encoder-decoder). A paired folder of your
own (A|B side by side under train/ val/ test/, or A/ and B/ matched by name):
--config.dataset.name=folder:PATH --config.image_size=... (see the README).

800 iterations: the budget of bench/ablation.py's pix2pix study (the README's table); on
held-out photographs it reaches L1 0.19-0.20 and 0.90-0.97 of the true colours'
colourfulness (L1 alone: 0.75-0.84), 2 seeds. Longer runs have not been measured here. About 3-5 minutes on 2 busy cores.
A quick smoke run: --config.num_train_steps=20 --config.log_every_steps=5.
"""

from genjax.tasks import pix2pix


def get_config():
    config = pix2pix.defaults()
    config.dataset.name = "photo_colour"
    config.dataset.jitter = True  # resize 32 -> 36, random 32 crop, mirror (the paper's)
    config.image_size = 32
    config.batch_size = 16
    config.num_train_steps = 800
    config.log_every_steps = 100
    config.sample_every_steps = 400
    config.checkpoint_every_steps = 400
    config.num_sample_images = 8
    # 5 levels: 32 -> 1 at the innermost, as unet_256's 8 take 256 -> 1.
    config.model.num_downs = 5
    config.model.ngf = 32
    config.model.ndf = 32
    # 2 stride-2 layers: 34x34 patches, a 6x6 logit map on 32x32 (the 70x70 of n_layers=3
    # would leave a 2x2 map that sees all of every patch).
    config.model.n_layers = 2
    # The reference's rule gives a 5-level U-Net no dropout; the 2 decoder blocks after
    # the innermost keep it as G's noise source.
    config.model.dropout_blocks = 2
    return config
