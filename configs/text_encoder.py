"""The text encoder of text-to-image synthesis: a word-level caption encoder φ and a small
image encoder trained together with a symmetric contrastive loss (CLIP-style) on the
embedded captioned digits (32x32 colour digits with colour, thickness and slant captions).

    python train.py --config=configs/text_encoder.py --workdir=runs/text_encoder

About 11 minutes here (2 busy CPU cores, 1.4-1.7 steps/s). Result (python -m genjax.evaluate
--workdir=runs/text_encoder, 1,485 test captions against 297 images): caption -> image
R@1 0.874 (R@5 0.993), image -> caption R@1 0.882 (R@5 0.949); chance 0.003.
Then configs/text2image.py loads φ from runs/text_encoder, frozen. Retrieval (caption ->
image and image -> caption recall on the test split) is measured by the 'retrieval'
evaluator: python -m genjax.evaluate --workdir=runs/text_encoder.

Real data: --config.dataset.name=folder:PATH (PATH/<split>/images/x.jpg with
PATH/<split>/text/x.txt, one caption per line: Reed et al.'s CUB-200 / Oxford-102 layout)
or --config.dataset.name=coco_captions (prepared TFDS), with --config.image_size=64.

A quick smoke run: --config.num_train_steps=20 --config.log_every_steps=5.
"""

from genjax.tasks import text_encoder


def get_config():
    config = text_encoder.defaults()
    config.dataset.name = "captioned_digits"
    config.image_size = 32
    config.num_train_steps = 1000
    config.batch_size = 128
    config.log_every_steps = 100
    config.checkpoint_every_steps = 500
    config.learning_rate = 1e-3
    return config
