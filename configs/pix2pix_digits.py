"""pix2pix, 4x4 -> 16x16 digits (the embedded 'digits_upsample': the input is the 16x16
digit's 4x4 block mean, nearest-upsampled back to 16x16; the target is the digit). A
4x4 input is truly ambiguous (many digits share it), so L1 alone draws the blurry
average of the candidates while the adversarial term picks a sharp one. The digits'
labels travel with the pairs for the evaluation (an evaluation classifier's accuracy on
the outputs against the input's label).

    python train.py --config=configs/pix2pix_digits.py --workdir=runs/pix2pix_digits

The pictures runs/pix2pix_digits/samples/translations_step_<N>.png hold three rows of
held-out digits: the 4x4 input, G's 16x16 digit, the true digit. Ablations as in
configs/pix2pix.py (--config.gan_weight=0 for L1 only, --config.l1_weight=0, ...).

    python -m genjax.translate --workdir=runs/pix2pix_digits --input=DIR --output=OUT

1,000 iterations: the budget of bench/ablation.py's pix2pix_digits study (the README's
table): L1 0.066-0.067, FD 1.1, the digits classifier right on 96.6-97.0% of the outputs
(on the 4x4 inputs: 68%), 2 seeds. Longer runs have not been measured here. 2-4 minutes on 2 busy cores.
A quick smoke run: --config.num_train_steps=20 --config.log_every_steps=5.
"""

from genjax.tasks import pix2pix


def get_config():
    config = pix2pix.defaults()
    config.dataset.name = "digits_upsample"
    # No jitter: the input's 4x4 blocks must stay aligned with the pixel grid, and a
    # mirrored digit is no digit.
    config.dataset.jitter = False
    config.image_size = 16
    config.batch_size = 32
    config.num_train_steps = 1000
    config.log_every_steps = 100
    config.sample_every_steps = 500
    config.checkpoint_every_steps = 500
    config.num_sample_images = 10
    config.model.num_downs = 4  # 16 -> 1 at the innermost
    config.model.ngf = 32
    config.model.ndf = 32
    # 1 stride-2 layer: 16x16 patches (the whole digit), a 6x6 logit map.
    config.model.n_layers = 1
    config.model.dropout_blocks = 1  # the reference's rule would give 4 levels none
    return config
